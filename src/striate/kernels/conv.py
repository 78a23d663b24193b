"""Convolution and transposed convolution: forward by im2col + GEMM, backward by the lecture's math.

Shapes (NCHW activations, OIHW weights; 1-D ops add a singleton height axis and reuse these)::

    conv2d            x (N, C, H, W),  w (O, C/G, K_h, K_w),  b (O,)   -> z (N, O, H_o, W_o)
    conv_transpose2d  x (N, C, H, W),  w (C, O/G, K_h, K_w),  b (O,)   -> y (N, O, H_t, W_t)

Forward (0-based; ``xpad`` is ``x`` zero-padded by (lo, hi) per axis; C_g = C/G, O_g = O/G and
output channel ``o`` belongs to group ``g = o // O_g``)::

    z[n, o, p, q] = b[o] + sum_{c<C_g} sum_{i<K_h} sum_{j<K_w}
                          w[o, c, i, j] * xpad[n, g*C_g + c, p*S_h + i*d_h, q*S_w + j*d_w]
    H_o = floor((H + lo + hi - d*(K-1) - 1) / S) + 1

computed as one GEMM per group over the column matrix of ``kernels/im2col.py``.

Backward, exactly as the lecture derives it:

* **dX** is the *full* convolution of dZ with the flipped, channel-transposed filters.  When S > 1,
  dZ first gets S-1 zeros inserted between its samples (the forward skipped those positions, so
  they contribute nothing); it is then zero-padded by d*(K-1) on every side -- plus, after the
  end, the rows/columns of the padded input that no window reached -- and correlated (our forward
  op, stride 1, dilation d) with ``wflip[c, o, i, j] = w[o, c, K-1-i, K-1-j]`` within each group.
  The result is dX of the *padded* input; cropping the forward padding gives dX.
* **dW** is the correlation of the padded input with dZ:
  ``dW[o, c, i, j] = sum_{n,p,q} dZ[n, o, p, q] * xpad[n, g*C_g + c, p*S + i*d, q*S + j*d]`` -- and
  the cached column matrix holds exactly those ``xpad`` samples, so it is ``dZ_g @ cols_g^T``.
* **db** sums dZ over the batch and the positions.

The transposed convolution is the adjoint of the convolution with the same weight: its forward is
the convolution's dX path (with ``output_padding`` extra rows at the end), its dX is the
convolution's forward applied to dY, and its dW is the same correlation, with x playing dZ.
"""

from __future__ import annotations

import numpy as np

from .im2col import im2col
from .resample import upsample_zeros_forward
from .shapes import ShapeError, check_float, check_same_dtype, effective_kernel, fmt_shape

__all__ = [
    "check_conv_args",
    "check_conv_transpose_args",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


# --------------------------------------------------------------------------------------------
# validation (any number of spatial axes, so 1-D callers get messages quoting their own shapes)
# --------------------------------------------------------------------------------------------

def _check_common(op, x, w, b, stride, padding, dilation, groups, nd):
    check_float(x, "input")
    check_same_dtype(input=x, weight=w, bias=b)
    layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
    if x.ndim != nd + 2:
        raise ShapeError(f"{op}: input must be {nd + 2}-D {layout}, got shape {fmt_shape(x.shape)}")
    if w.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-D, got shape {fmt_shape(w.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ShapeError(f"{op}: groups must be a positive int, got {groups!r}")
    for name, v in (("stride", stride), ("dilation", dilation)):
        if len(v) != nd or any(s < 1 for s in v):
            raise ShapeError(f"{op}: {name} must be {nd} positive ints, got {tuple(v)}")
    if len(padding) != nd or any(lo < 0 or hi < 0 for lo, hi in padding):
        raise ShapeError(f"{op}: padding must be {nd} non-negative (before, after) pairs, got {tuple(padding)}")
    if b is not None and b.ndim != 1:
        raise ShapeError(f"{op}: bias must be 1-D, got shape {fmt_shape(b.shape)}")


def check_conv_args(op, x, w, b, stride, padding, dilation, groups) -> tuple[int, ...]:
    """Validate a convolution's arguments (``nd`` spatial axes); return the output spatial size.

    ``padding`` is already normalised to (before, after) pairs.  Raises :class:`ShapeError`
    naming the shapes, or ``TypeError`` for a dtype mismatch, before any array is touched.
    """
    nd = len(stride)
    _check_common(op, x, w, b, stride, padding, dilation, groups, nd)
    c, o, cg = x.shape[1], w.shape[0], w.shape[1]
    if c % groups or o % groups:
        raise ShapeError(
            f"{op}: groups={groups} must divide both the input channels ({c}, input {fmt_shape(x.shape)}) "
            f"and the output channels ({o}, weight {fmt_shape(w.shape)})"
        )
    if cg * groups != c:
        raise ShapeError(
            f"{op}: input {fmt_shape(x.shape)} has {c} channels but weight {fmt_shape(w.shape)} expects "
            f"{cg} per group x groups={groups} = {cg * groups}"
        )
    if b is not None and b.shape != (o,):
        raise ShapeError(f"{op}: bias {fmt_shape(b.shape)} must be ({o},) for weight {fmt_shape(w.shape)}")
    spatial = x.shape[2:]
    kernel = w.shape[2:]
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, padding))
    span = tuple(effective_kernel(k, d) for k, d in zip(kernel, dilation))
    if any(k < 1 for k in kernel) or any(s > p for s, p in zip(span, padded)):
        raise ShapeError(
            f"{op}: kernel {fmt_shape(kernel)} with dilation {tuple(dilation)} spans {fmt_shape(span)}, "
            f"larger than the padded input {fmt_shape(padded)} (input {fmt_shape(x.shape)}, "
            f"padding {tuple(padding)}): the output would be empty"
        )
    if c == 0 or o == 0:
        raise ShapeError(f"{op}: zero channels in input {fmt_shape(x.shape)} or weight {fmt_shape(w.shape)}")
    return tuple((p - s) // st + 1 for p, s, st in zip(padded, span, stride))


def check_conv_transpose_args(op, x, w, b, stride, padding, output_padding, dilation, groups) -> tuple[int, ...]:
    """Validate a transposed convolution's arguments; return the output spatial size

    ``L_t = (L - 1)*S - lo - hi + d*(K - 1) + output_padding + 1`` per axis.
    """
    nd = len(stride)
    _check_common(op, x, w, b, stride, padding, dilation, groups, nd)
    c, og = x.shape[1], w.shape[1]
    if w.shape[0] != c:
        raise ShapeError(
            f"{op}: input {fmt_shape(x.shape)} has {c} channels but weight {fmt_shape(w.shape)} "
            f"(in_channels, out_channels/groups, ...) expects {w.shape[0]}"
        )
    if c % groups:
        raise ShapeError(
            f"{op}: groups={groups} must divide the input channels ({c}, input {fmt_shape(x.shape)}, "
            f"weight {fmt_shape(w.shape)})"
        )
    o = og * groups
    if b is not None and b.shape != (o,):
        raise ShapeError(
            f"{op}: bias {fmt_shape(b.shape)} must be ({o},) = weight.shape[1] x groups for weight "
            f"{fmt_shape(w.shape)}, groups={groups}"
        )
    if len(output_padding) != nd or any(op_ < 0 for op_ in output_padding):
        raise ShapeError(f"{op}: output_padding must be {nd} non-negative ints, got {tuple(output_padding)}")
    for a, s, d in zip(output_padding, stride, dilation):
        if a >= s and a >= d:
            raise ShapeError(
                f"{op}: output_padding {tuple(output_padding)} must be smaller than either stride "
                f"{tuple(stride)} or dilation {tuple(dilation)}"
            )
    kernel = w.shape[2:]
    out = tuple(
        (n - 1) * s - lo - hi + effective_kernel(k, d) + a
        for n, s, (lo, hi), k, d, a in zip(x.shape[2:], stride, padding, kernel, dilation, output_padding)
    )
    if any(k < 1 for k in kernel) or any(v < 1 for v in out) or c == 0 or og == 0:
        raise ShapeError(
            f"{op}: output size {out} is empty for input {fmt_shape(x.shape)}, weight {fmt_shape(w.shape)}, "
            f"stride {tuple(stride)}, padding {tuple(padding)}, dilation {tuple(dilation)}, "
            f"output_padding {tuple(output_padding)}"
        )
    return out


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------

def _conv_gemm(x, w, b, stride, padding, dilation, groups):
    """The forward GEMM, unchecked; ``padding`` pairs may be negative (crop).  -> (z, cols)."""
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    cols, (ho, wo) = im2col(x, (kh, kw), stride, padding, dilation, groups)
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    z = np.matmul(wg, cols)  # (G, O_g, N*Ho*Wo): one GEMM per group
    # (G, O_g) is O; bring the batch axis in front (and add the bias) in a single pass
    zt = z.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    out = np.empty((n, o, ho, wo), dtype=z.dtype)
    if b is not None:
        np.add(zt, b.reshape(1, o, 1, 1), out=out)
    else:
        np.copyto(out, zt)
    return out, cols


def conv2d_forward(x, w, b, stride, padding, dilation, groups, *, keep_cols: bool = True):
    """z = conv2d(x, w) + b: ``x (N, C, H, W)``, ``w (O, C/G, K_h, K_w)``, ``b (O,)`` or None.

    ``stride``, ``dilation``: 2-tuples; ``padding``: ((lo_h, hi_h), (lo_w, hi_w)).  Returns
    ``(z, cache)`` with ``z (N, O, H_o, W_o)``, ``H_o = floor((H + lo + hi - d(K-1) - 1)/S) + 1``.
    The cache keeps the column matrix for dW unless ``keep_cols=False`` (then dW rebuilds it).
    """
    stride, dilation = tuple(stride), tuple(dilation)
    padding = tuple(tuple(p) for p in padding)
    check_conv_args("conv2d", x, w, b, stride, padding, dilation, groups)
    z, cols = _conv_gemm(x, w, b, stride, padding, dilation, groups)
    cache = (x, w, b is not None, cols if keep_cols else None, stride, padding, dilation, groups)
    return z, cache


def _flip_transpose(w, groups):
    """Filters of the dX convolution: within each group swap in/out channels and flip both axes.

    ``w (O, C_g, K_h, K_w) -> wflip (C, O_g, K_h, K_w)`` with
    ``wflip[g*C_g + c, o, i, j] = w[g*O_g + o, c, K_h-1-i, K_w-1-j]``.
    """
    o, cg, kh, kw = w.shape
    wt = w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(wt[..., ::-1, ::-1]).reshape(groups * cg, o // groups, kh, kw)


def conv2d_backward_data(dz, w, x_shape, stride, padding, dilation, groups):
    """dX of a convolution: the full convolution of dZ with the flipped, transposed filters.

    ``dz (N, O, H_o, W_o)``, ``w (O, C/G, K_h, K_w)`` and the forward input's shape ``x_shape``
    ``(N, C, H, W)`` -> ``dx (N, C, H, W)``.  Steps (per spatial axis):

    1. insert S-1 zeros between the samples of dZ (length (H_o-1)*S + 1);
    2. zero-pad by d*(K-1) before and d*(K-1) + r after, where
       r = H + lo + hi - ((H_o-1)*S + d*(K-1) + 1) counts the padded-input rows no window reached;
    3. correlate (stride 1, dilation d) with :func:`_flip_transpose` filters: the result has the
       size H + lo + hi of the padded input;
    4. crop the forward padding, keeping rows lo .. lo+H-1.

    Steps 2 and 4 are done together: padding by d*(K-1) and then dropping ``lo`` leading output
    rows is the same as padding by d*(K-1) - lo (a negative amount crops dZ instead), so the
    cropped rows are never computed.
    """
    kernel = w.shape[2:]
    ho_wo = dz.shape[2:]
    hw = x_shape[2:]
    if any(s > 1 for s in stride):
        dz, _ = upsample_zeros_forward(dz, tuple(stride))
    pairs = []
    for n, m, k, s, d, (lo, hi) in zip(hw, ho_wo, kernel, stride, dilation, padding):
        full = d * (k - 1)
        unreached = n + lo + hi - ((m - 1) * s + full + 1)
        pairs.append((full - lo, full + unreached - hi))
    wflip = _flip_transpose(w, groups)
    dx, _ = _conv_gemm(dz, wflip, None, (1, 1), tuple(pairs), tuple(dilation), groups)
    return dx


def conv2d_backward_weight(dz, cols, w_shape, groups):
    """dW of a convolution: the correlation of the padded input with dZ, as ``dZ_g @ cols_g^T``.

    ``dz (N, O, H_o, W_o)``, ``cols (G, C_g*K_h*K_w, N*H_o*W_o)`` from :func:`im2col` of the
    forward input -> ``dw (O, C_g, K_h, K_w)``:
    ``dW[o, c, i, j] = sum_{n,p,q} dZ[n, o, p, q] * xpad[n, g*C_g + c, p*S + i*d, q*S + j*d]``.
    """
    n, o = dz.shape[:2]
    # (N, O, P) -> (G, O_g, N*P), the column order of cols
    p = int(np.prod(dz.shape[2:]))
    dzg = np.ascontiguousarray(dz.reshape(n, o, p).transpose(1, 0, 2)).reshape(groups, o // groups, n * p)
    dw = np.matmul(dzg, cols.transpose(0, 2, 1))
    return dw.reshape(w_shape)


def conv2d_backward(dz, cache, need=(True, True, True)):
    """Gradients of :func:`conv2d_forward`: ``(dx, dw, db)``, None where ``need`` says so."""
    x, w, has_bias, cols, stride, padding, dilation, groups = cache
    need = tuple(need) + (True,) * (3 - len(need))
    dx = dw = db = None
    if need[0]:
        dx = conv2d_backward_data(dz, w, x.shape, stride, padding, dilation, groups)
    if need[1]:
        if cols is None:
            cols, _ = im2col(x, w.shape[2:], stride, padding, dilation, groups)
        dw = conv2d_backward_weight(dz, cols, w.shape, groups)
    if need[2] and has_bias:
        db = dz.sum(axis=(0, 2, 3))
    return dx, dw, db


# --------------------------------------------------------------------------------------------
# transposed convolution
# --------------------------------------------------------------------------------------------

def conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation, groups):
    """y = conv_transpose2d(x, w) + b: ``x (N, C, H, W)``, ``w (C, O/G, K_h, K_w)``, ``b (O,)``.

    Scatter form: ``y[n, g*O_g + o, p*S + i*d - lo, q*S + j*d - lo_w] += x[n, c, p, q] *
    w[c, o, i, j]`` for ``c`` in group g.  It is the dX path of the convolution with weight ``w``
    (read as (out=C, in/G=O_g, K_h, K_w)) whose input has the size
    ``H_t = (H-1)*S - lo - hi + d*(K-1) + output_padding + 1``: ``output_padding`` is the count of
    trailing rows that convolution's windows never reached.  Returns ``(y, cache)``.
    """
    stride, dilation = tuple(stride), tuple(dilation)
    padding = tuple(tuple(p) for p in padding)
    output_padding = tuple(output_padding)
    out_hw = check_conv_transpose_args(
        "conv_transpose2d", x, w, b, stride, padding, output_padding, dilation, groups
    )
    o = w.shape[1] * groups
    y = conv2d_backward_data(x, w, (x.shape[0], o) + out_hw, stride, padding, dilation, groups)
    if b is not None:
        y += b.reshape(1, o, 1, 1)
    return y, (x, w, b is not None, stride, padding, dilation, groups)


def conv_transpose2d_backward(dy, cache, need=(True, True, True)):
    """Gradients of :func:`conv_transpose2d_forward`: ``(dx, dw, db)``.

    * dX is the convolution forward of dY with the same weight, stride, padding and dilation;
    * dW[c, o, i, j] = sum_{n,p,q} x[n, c, p, q] * dYpad[n, g*O_g + o, p*S + i*d, q*S + j*d], the
      correlation of padded dY with x -- the convolution's dW with x as dZ and dY as the input,
      so the column matrix built for dX serves it too;
    * db sums dY.

    When ``output_padding >= S`` (allowed when it is below the dilation) the convolution of dY
    would produce extra trailing rows; the trailing padding is reduced by whole strides so it
    yields exactly H rows (the dropped dY rows lie beyond every window of those H outputs).
    """
    x, w, has_bias, stride, padding, dilation, groups = cache
    need = tuple(need) + (True,) * (3 - len(need))
    dx = dw = db = None
    if need[0] or need[1]:
        pairs = []
        for n, m, k, s, d, (lo, hi) in zip(x.shape[2:], dy.shape[2:], w.shape[2:], stride, dilation, padding):
            extra = (m + lo + hi - effective_kernel(k, d)) // s + 1 - n  # surplus output rows
            pairs.append((lo, hi - extra * s))
        pairs = tuple(pairs)
        if need[0]:
            dx, cols = _conv_gemm(dy, w, None, stride, pairs, dilation, groups)
        else:
            cols, _ = im2col(dy, w.shape[2:], stride, pairs, dilation, groups)
        if need[1]:
            dw = conv2d_backward_weight(x, cols, w.shape, groups)
    if need[2] and has_bias:
        db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db
