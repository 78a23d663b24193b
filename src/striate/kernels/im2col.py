"""Window index arithmetic for convolution: padding, strided window views and im2col.

A 2-D convolution reads, for output position (p, q), the input samples

    xpad[n, c, p*S_h + i*d_h, q*S_w + j*d_w]      for kernel taps i < K_h, j < K_w

where ``xpad`` is the input zero-padded by ``(lo, hi)`` on each spatial axis.  This module turns
that index rule into arrays, and is the only place where it does:

* :func:`pad_signed` pads (positive amounts) or crops (negative amounts) the spatial axes;
* :func:`window_view` is a zero-copy ``as_strided`` view ``(N, C, K_h, K_w, H_o, W_o)`` of the
  padded input whose element ``[n, c, i, j, p, q]`` is the sample above;
* :func:`im2col` copies that view once into the column matrix the GEMM consumes.

Column layout (the choice, and why)
-----------------------------------
``cols`` has shape ``(G, C_g*K_h*K_w, N*H_o*W_o)``: one matrix per group whose rows are the
(channel, tap) pairs -- ordered exactly as a weight ``w[o, c, i, j]`` flattens -- and whose columns
are every output position of every image.  The forward pass is then a single GEMM per group,

    y_g = w_g (O_g, C_g*K*K)  @  cols_g (C_g*K*K, N*H_o*W_o),

which for ``groups=1`` is one large BLAS call (the best-shaped GEMM available: its long dimension
``N*H_o*W_o`` grows with the batch), and for ``groups > 1`` one batched ``np.matmul`` over the group
axis (a loop in C, not in Python; depthwise convolution is ``G = C`` matrices of ``K*K`` rows).  The
same matrix is reused by the weight gradient, ``dW_g = dZ_g @ cols_g^T`` (see ``kernels/conv.py``).
The price is a transpose of the output from (O, N, ...) to NCHW, which touches ``O*N*H_o*W_o``
elements, ``C*K*K/O`` times fewer than the column matrix itself.
"""

from __future__ import annotations

import numpy as np

from .shapes import effective_kernel

__all__ = ["pad_signed", "window_view", "im2col", "conv_output_hw"]


def pad_signed(x: np.ndarray, pairs) -> np.ndarray:
    """Zero-pad the trailing ``len(pairs)`` axes by ``(lo, hi)``; a negative amount crops instead.

    ``pad_signed(x, ((1, 1),))`` adds one zero at each end of the last axis; ``((-2, 0),)`` drops
    its first two samples.  The result is ``out[k] = x[k - lo]`` (zero where ``k - lo`` falls
    outside ``x``) for ``k < L + lo + hi``, i.e. pad-then-crop, which stays right when a crop on
    one side reaches past the samples into padding added on the other.  With all amounts zero
    ``x`` itself is returned (no copy); a pure crop returns a view.
    """
    pairs = tuple((int(lo), int(hi)) for lo, hi in pairs)
    if all(lo == 0 and hi == 0 for lo, hi in pairs):
        return x
    lead = x.ndim - len(pairs)
    tail = x.shape[lead:]
    # the part of x that survives: x[start:stop] lands at out[start + lo : stop + lo]
    src = [(max(0, -lo), max(max(0, -lo), min(n, n + hi))) for (lo, hi), n in zip(pairs, tail)]
    if all(lo <= 0 and hi <= 0 for lo, hi in pairs):
        return x[(slice(None),) * lead + tuple(slice(a, b) for a, b in src)]
    out = np.zeros(x.shape[:lead] + tuple(n + lo + hi for (lo, hi), n in zip(pairs, tail)), dtype=x.dtype)
    out[(slice(None),) * lead + tuple(slice(a + lo, b + lo) for (a, b), (lo, _) in zip(src, pairs))] = (
        x[(slice(None),) * lead + tuple(slice(a, b) for a, b in src)]
    )
    return out


def conv_output_hw(padded_hw, kernel, stride, dilation) -> tuple[int, ...]:
    """Output size per axis for an already padded input: floor((L_pad - K_eff) / S) + 1."""
    return tuple(
        (n - effective_kernel(k, d)) // s + 1 for n, k, s, d in zip(padded_hw, kernel, stride, dilation)
    )


def window_view(xp: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """Zero-copy view ``v[n, c, i, j, p, q] = xp[n, c, p*S_h + i*d_h, q*S_w + j*d_w]``.

    ``xp`` is the (already padded) input ``(N, C, H_pad, W_pad)``, any strides.  The view is
    read-only: its windows overlap, so writing through it would be meaningless.
    """
    n, c, hp, wp = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho, wo = conv_output_hw((hp, wp), kernel, stride, dilation)
    bn, bc, bh, bw = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp,
        shape=(n, c, kh, kw, ho, wo),
        strides=(bn, bc, dh * bh, dw * bw, sh * bh, sw * bw),
        writeable=False,
    )


def im2col(x: np.ndarray, kernel, stride, padding, dilation, groups: int = 1):
    """Column matrix of a convolution: ``x (N, C, H, W) -> cols (G, C_g*K_h*K_w, N*H_o*W_o)``.

    ``cols[g, (c*K_h + i)*K_w + j, (n*H_o + p)*W_o + q] = xpad[n, g*C_g + c, p*S_h + i*d_h,
    q*S_w + j*d_w]`` with ``xpad`` = ``x`` padded by ``padding`` = ((lo_h, hi_h), (lo_w, hi_w))
    (negative amounts crop, see :func:`pad_signed`).  Returns ``(cols, (H_o, W_o))``.  The only copy
    is the one gathering the windows (plus the padded buffer when padding is non-zero).
    """
    xp = pad_signed(x, padding)
    v = window_view(xp, kernel, stride, dilation)  # (N, C, Kh, Kw, Ho, Wo)
    n, c, kh, kw, ho, wo = v.shape
    cg = c // groups
    # split C into (G, C_g) -- still a view -- then bring the batch next to the output pixels
    v = v.reshape(n, groups, cg, kh, kw, ho, wo).transpose(1, 2, 3, 4, 0, 5, 6)
    cols = np.empty((groups, cg, kh, kw, n, ho, wo), dtype=x.dtype)
    np.copyto(cols, v)
    return cols.reshape(groups, cg * kh * kw, n * ho * wo), (ho, wo)
