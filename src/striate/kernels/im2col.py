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

Chunks (the fast path)
----------------------
:func:`im2col` builds the whole matrix at once, ``C*K*K`` times the input: tens or hundreds of
MiB for a training batch, written to fresh memory and read back from RAM.  The fast kernels of
``kernels/conv.py`` instead fill the same layout for a *chunk* -- images ``n0:n1`` and output rows
``r0:r1`` -- into a reused buffer (:func:`im2col_chunk`), straight from the unpadded NCHW input:
for each tap ``(i, j)`` the rows and columns of the chunk that land on real input samples
(:func:`tap_range`) are one strided copy, the ones that land on padding are zeroed.  Its
adjoint, :func:`col2im_chunk_add`, adds a column matrix back onto the input positions its taps
came from -- the scatter of the kernel-offset slices that computes dX by summation.

Channels-last (positions as rows)
---------------------------------
The same numbers can be laid out transposed, one *row per output position* holding its whole
receptive field: ``colsT[(n, p, q), (i, j, c)] = xpad[n, c, p*S_h + i*d_h, q*S_w + j*d_w]``,
built from a channels-last (N, H, W, C) copy of the chunk (:func:`im2col_chunk_cl`).  Then the
forward GEMM is ``z^T = colsT (n*P, K*K*C) @ W^T (K*K*C, O)``.  For layers with many channels
and small images this is the faster form: each tap copies runs of ``C`` contiguous values
(rather than runs of ``W_o``, a handful of values on an 8x8 map), and OpenBLAS multiplies a
tall row-major left operand at close to its peak, where the wide ``W @ cols`` form with a few
dozen output channels reaches only half of it.  When the chunk is first copied into a zero-padded
channels-last buffer (:func:`pad_into_cl`), the ``K_w`` taps of one kernel row are adjacent in
both the buffer and the row -- ``(q*S + j)*C + c`` for ``j < K_w, c < C`` -- so one strided
copy per kernel row moves runs of ``K_w*C`` values (:func:`im2col_padded_cl`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import as_strided as _as_strided
from ..backend import get_array_module
from . import workspace
from .shapes import effective_kernel

__all__ = [
    "pad_signed", "window_view", "im2col", "conv_output_hw", "tap_range",
    "im2col_chunk", "col2im_chunk_add", "col2im_batch_inner_add", "im2col_chunk_cl", "col2im_chunk_add_cl",
    "padded_extent", "pad_into_cl", "im2col_padded_cl",
]


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
    xp = get_array_module(x)
    out = xp.zeros(x.shape[:lead] + tuple(n + lo + hi for (lo, hi), n in zip(pairs, tail)), dtype=x.dtype)
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
    return _as_strided(xp, (n, c, kh, kw, ho, wo), (bn, bc, dh * bh, dw * bw, sh * bh, sw * bw))


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
    cols = get_array_module(x).empty((groups, cg, kh, kw, n, ho, wo), dtype=x.dtype)
    cols[...] = v
    return cols.reshape(groups, cg * kh * kw, n * ho * wo), (ho, wo)


def tap_range(offset: int, length: int, stride: int, start: int, stop: int) -> tuple[int, int]:
    """Output positions ``p`` in ``[start, stop)`` whose tap ``p*stride + offset`` lies in
    ``[0, length)`` (the rest fall on padding); an empty range comes back as ``(a, a)``."""
    lo = max(start, -(offset // stride))  # ceil(-offset / stride)
    hi = min(stop, (length - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


def _tap_slices(x_hw, kernel, stride, padding, dilation, rows, wo):
    """Per tap (i, j): (destination (rows, cols) slices, source (rows, cols) slices) or None when
    every position of the tap falls on padding.  Memoised: a network reuses a few geometries."""
    key = (tuple(x_hw), tuple(kernel), tuple(stride), tuple(tuple(p) for p in padding), tuple(dilation),
           tuple(rows), int(wo))
    return _tap_slices_cached(*key)


@functools.lru_cache(maxsize=1024)
def _tap_slices_cached(x_hw, kernel, stride, padding, dilation, rows, wo):
    (h, w), (kh, kw), (sh, sw), (dh, dw) = x_hw, kernel, stride, dilation
    (lo_h, _), (lo_w, _) = padding
    r0, r1 = rows
    out = []
    for i in range(kh):
        th = i * dh - lo_h
        pa, pb = tap_range(th, h, sh, r0, r1)
        for j in range(kw):
            tw = j * dw - lo_w
            qa, qb = tap_range(tw, w, sw, 0, wo)
            if pa == pb or qa == qb:
                out.append(None)
                continue
            dst = (slice(pa - r0, pb - r0), slice(qa, qb))
            src = (slice(pa * sh + th, (pb - 1) * sh + th + 1, sh), slice(qa * sw + tw, (qb - 1) * sw + tw + 1, sw))
            out.append((dst, src))
    return tuple(out)


def im2col_chunk(x: np.ndarray, out: np.ndarray, kernel, stride, padding, dilation, chunk) -> np.ndarray:
    """Fill ``out`` with the columns of images ``n0:n1``, output rows ``r0:r1``; return it as a
    matrix ``(C*K_h*K_w, (n1-n0)*(r1-r0)*W_o)``.

    ``x (N, C, H, W)`` is the unpadded input; ``out`` is a buffer of shape
    ``(C, K_h, K_w, n1-n0, r1-r0, W_o)`` and receives
    ``out[c, i, j, n, p, q] = xpad[n0 + n, c, (r0 + p)*S_h + i*d_h, q*S_w + j*d_w]``
    -- the rows of :func:`im2col`'s matrix restricted to the chunk.  ``padding`` pairs may be
    negative (a crop), as in :func:`pad_signed`.
    """
    n0, n1, r0, r1 = chunk
    c, kh, kw, nb, rows, wo = out.shape
    xt = x[n0:n1].transpose(1, 0, 2, 3)  # (C, nb, H, W) view: the channel axis leads, as in out
    for t, sl in enumerate(_tap_slices(x.shape[2:], kernel, stride, padding, dilation, (r0, r1), wo)):
        dst = out[:, t // kw, t % kw]
        if sl is None:
            dst[...] = 0
            continue
        (pr, qr), (sr, sc) = sl
        dst[:, :, pr, qr] = xt[:, :, sr, sc]
        # zero what falls on padding: whole rows above/below, then the side columns
        if pr.start > 0:
            dst[:, :, :pr.start] = 0
        if pr.stop < rows:
            dst[:, :, pr.stop:] = 0
        if qr.start > 0:
            dst[:, :, pr, :qr.start] = 0
        if qr.stop < wo:
            dst[:, :, pr, qr.stop:] = 0
    return out.reshape(c * kh * kw, nb * rows * wo)


def col2im_chunk_add(cols: np.ndarray, dx: np.ndarray, kernel, stride, padding, dilation, chunk) -> None:
    """The adjoint of :func:`im2col_chunk`: ``dx[n0 + n, c, (r0+p)*S + i*d - lo, ...] +=
    cols[c, i, j, n, p, q]`` for every tap landing on a real input position (padding is dropped).

    ``cols (C, K_h, K_w, n1-n0, r1-r0, W_o)``; ``dx (N, C, H, W)`` is updated in place.  Taps of
    one chunk are added one after the other, so overlapping windows accumulate.
    """
    n0, n1, r0, r1 = chunk
    wo = cols.shape[-1]
    kw = kernel[1]
    dxt = dx[n0:n1].transpose(1, 0, 2, 3)
    for t, sl in enumerate(_tap_slices(dx.shape[2:], kernel, stride, padding, dilation, (r0, r1), wo)):
        if sl is None:
            continue
        (pr, qr), (sr, sc) = sl
        view = dxt[:, :, sr, sc]
        view += cols[:, t // kw, t % kw, :, pr, qr]


def col2im_batch_inner_add(cols: np.ndarray, acc: np.ndarray, kernel, stride, padding, dilation) -> None:
    """:func:`col2im_chunk_add` with the image index innermost: ``acc[c, (p)*S + i*d - lo, ..., n]
    += cols[c, i, j, p, q, n]``.

    ``cols (C, K_h, K_w, H_o, W_o, n)``, ``acc (C, H, W, n)`` (updated in place).  With the images
    innermost, a tap's rows are runs of ``W_o * n`` contiguous values at stride 1 instead of runs
    of ``W_o`` -- ten values on LeNet's 10x10 maps, where NumPy's per-run cost dominates.
    """
    kw = kernel[1]
    ho, wo = cols.shape[3:5]
    for t, sl in enumerate(_tap_slices(acc.shape[1:3], kernel, stride, padding, dilation, (0, ho), wo)):
        if sl is None:
            continue
        (pr, qr), (sr, sc) = sl
        view = acc[:, sr, sc]
        view += cols[:, t // kw, t % kw, pr, qr]


def im2col_chunk_cl(xh: np.ndarray, out: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """Channels-last columns of a chunk: ``xh (n, H, W, C)`` (the chunk's images, NHWC) into
    ``out (n, H_o, W_o, K_h, K_w, C)`` with ``out[n, p, q, i, j, c] = xpad[n, c, p*S_h + i*d_h,
    q*S_w + j*d_w]`` (zero on padding); returned as the matrix ``(n*H_o*W_o, K_h*K_w*C)``."""
    nb, ho, wo, kh, kw, c = out.shape
    for t, sl in enumerate(_tap_slices(xh.shape[1:3], kernel, stride, padding, dilation, (0, ho), wo)):
        dst = out[:, :, :, t // kw, t % kw, :]
        if sl is None:
            dst[...] = 0
            continue
        (pr, qr), (sr, sc) = sl
        dst[:, pr, qr] = xh[:, sr, sc]
        if pr.start > 0:
            dst[:, :pr.start] = 0
        if pr.stop < ho:
            dst[:, pr.stop:] = 0
        if qr.start > 0:
            dst[:, pr, :qr.start] = 0
        if qr.stop < wo:
            dst[:, pr, qr.stop:] = 0
    return out.reshape(nb * ho * wo, kh * kw * c)


def col2im_chunk_add_cl(cols: np.ndarray, dxh: np.ndarray, kernel, stride, padding, dilation) -> None:
    """Adjoint of :func:`im2col_chunk_cl`: ``dxh[n, (p*S + i*d - lo), (q*S + j*d - lo), c] +=
    cols[n, p, q, i, j, c]`` for every tap on a real position; ``dxh (n, H, W, C)`` in place."""
    nb, ho, wo, kh, kw, c = cols.shape
    for t, sl in enumerate(_tap_slices(dxh.shape[1:3], kernel, stride, padding, dilation, (0, ho), wo)):
        if sl is None:
            continue
        (pr, qr), (sr, sc) = sl
        view = dxh[:, sr, sc]
        view += cols[:, pr, qr, t // kw, t % kw]


def padded_extent(length: int, kernel: int, stride: int, dilation: int, lo: int, out: int) -> int:
    """Size a padded axis needs: the input after ``lo`` leading zeros, and far enough for the
    last window, ``(out - 1)*S + d*(K - 1) + 1``."""
    return max(lo + length, (out - 1) * stride + dilation * (kernel - 1) + 1)


def pad_into_cl(src: np.ndarray, buf: np.ndarray, lo_hw, channels_last_src: bool = False) -> np.ndarray:
    """Copy ``src`` -- NCHW ``(n, C, H, W)``, or NHWC when ``channels_last_src`` -- into the
    zero-padded channels-last buffer ``buf (n, H_p, W_p, C)`` at rows/columns ``lo_hw`` onwards;
    everything else in ``buf`` is set to zero.  Returns ``buf``."""
    (lo_h, lo_w) = lo_hw
    h, w = src.shape[1:3] if channels_last_src else src.shape[2:]
    hp, wp = buf.shape[1:3]
    if lo_h:
        buf[:, :lo_h] = 0
    if lo_h + h < hp:
        buf[:, lo_h + h:] = 0
    if lo_w:
        buf[:, lo_h:lo_h + h, :lo_w] = 0
    if lo_w + w < wp:
        buf[:, lo_h:lo_h + h, lo_w + w:] = 0
    np.copyto(buf[:, lo_h:lo_h + h, lo_w:lo_w + w], src if channels_last_src else src.transpose(0, 2, 3, 1))
    return buf


def im2col_padded_cl(xp: np.ndarray, out: np.ndarray, stride, dilation) -> np.ndarray:
    """Channels-last columns from a padded channels-last chunk ``xp (n, H_p, W_p, C)``:
    ``out[n, p, q, i, j, c] = xp[n, p*S_h + i*d_h, q*S_w + j*d_w, c]`` for ``out (n, H_o, W_o,
    K_h, K_w, C)``; returned as ``(n*H_o*W_o, K_h*K_w*C)``.  Without dilation along W the
    ``K_w*C`` values of a kernel row are one contiguous run in ``xp`` (and in ``out``): one copy
    per kernel row."""
    nb, ho, wo, kh, kw, c = out.shape
    (sh, sw), (dh, dw) = stride, dilation
    sn, sr, sq, sc = xp.strides
    for i in range(kh):
        if dw == 1:
            src = workspace.strided(xp, (nb, ho, wo, kw * c), (sn, sh * sr, sw * sq, sc), i * dh * sr)
            dst = workspace.strided(out, (nb, ho, wo, kw * c), out.strides[:3] + (out.strides[-1],),
                                    i * out.strides[3], writeable=True)
            np.copyto(dst, src)
        else:
            rows = xp[:, i * dh:]
            for j in range(kw):
                np.copyto(out[:, :, :, i, j],
                          rows[:, : (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw])
    return out.reshape(nb * ho * wo, kh * kw * c)
