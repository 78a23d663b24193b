"""Convolution and transposed convolution: forward by im2col + GEMM, backward by the lecture's math.

(The section "How it runs" at the end describes the chunked, multi-core fast path.)

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

How it runs (``groups=1``, the fast path)
----------------------------------------
The formulas above are computed chunk by chunk (a few images at a time, see
``kernels/workspace.py``), each chunk's column matrix built into a reused buffer that stays in
the cache, and the chunks spread over the cores (``kernels/parallel.py``).  Nothing as large as
the full column matrix is ever allocated, and the forward keeps only ``x`` for the backward (the
columns are rebuilt chunk by chunk for dW -- one more cheap copy instead of holding ``C*K*K``
times the input between forward and backward).  Per chunk:

* **forward** -- ``z_chunk = W (O, C*K*K) @ cols_chunk``, copied into ``z[n0:n1]`` with the
  bias added in the same pass;
* **dW, db** -- ``dW^T += cols_chunk @ dZ_chunk^T`` and ``db += sum(dZ_chunk)``, one partial per
  chunk, added in chunk order (deterministic whatever thread ran which chunk);
* **dX** by one of two algorithms that compute the same sum (:func:`dx_algorithm`):

  - ``"flipped"`` -- the lecture's form above: the full correlation of dZ with the flipped,
    channel-transposed filters, i.e. the forward kernel applied to dZ.  It is the reference path
    and the default for **stride 1 and kernels up to 3x3**, where dZ is as large as x and no
    zero is inserted.
  - ``"col2im"`` -- the same sum read the other way round, as the adjoint of im2col:
    ``dcols = W^T (C*K*K, O) @ dZ_chunk``, whose row ``(c, i, j)`` is the gradient reaching
    ``xpad[.., c, p*S + i*d, q*S + j*d]`` through tap ``(i, j)``, and the ``K*K`` kernel-offset
    slices of it are added onto dX.  The default for a **stride > 1**, where it skips the
    ``(S^2 - 1)/S^2`` zeros the flipped form would insert and multiply, and for **kernels larger
    than 3x3**, where it builds ``C*K*K`` values per output position instead of ``O*K*K`` per
    input position.

The same numbers can be laid out five ways (:func:`conv_layout` picks one per shape; both
choices can be forced, and every combination is tested against the naive reference):

* ``"channels_first"`` -- ``im2col``'s ``(C*K*K, n*H_o*W_o)`` matrix, filled tap by tap from
  the NCHW input (``im2col.im2col_chunk``); the general path (any stride, dilation, padding,
  and row ranges of a single image when one image exceeds the memory budget).
* ``"padded_grid"`` -- stride 1: the chunk is laid channel-major on its zero-padded grid
  (``H_p x W_p`` per image, end to end), and each image's ``H_o`` output rows are computed at
  *every* grid column, the ones past ``W_o`` then thrown away.  Tap ``(i, j)`` then reads the
  grid shifted by ``i*d*W_p + j*d``: each row of the column matrix is one contiguous run of
  ``H_o*W_p`` values per image (one strided copy per kernel row), and the col2im scatter one
  add per tap.  It pays ``W_p / W_o`` times the arithmetic (1.04 for VGG's 56x56 maps) and
  is chosen, for maps too wide for "batch_inner", up to 1.25x for few channels, up to 1.15x
  for many.
* ``"batch_inner"`` -- the channels-first matrix with the *images innermost*: columns ordered
  ``(p, q, n)``.  The chunk is copied once onto its zero-padded grid as ``(C, H_p, W_p, n)``,
  and the whole column matrix is one strided copy of a window view of it, in runs of
  ``W_o*n`` contiguous values (stride 1) instead of runs of ``W_o``: on small maps the cost of
  a copy is its number of runs, not its bytes.  The product comes out ``(O, H_o, W_o, n)`` and
  turns to NCHW in the copy that adds the bias; the backward lays dZ out the same way once per
  chunk for dW, db and the col2im scatter.  Chosen for stride-1 layers up to 32 outputs wide
  (LeNet-5's and ResNet-20's 3x3 and 5x5 layers).  When both dX (flipped) and dW are wanted,
  one column matrix serves both: the flipped dX's columns of the padded dZ, ``D``, hold for
  each input position every dZ sample that position met through each tap, so
  ``dW = x @ D^T`` (taps flipped back) -- one pass over the chunks, one column matrix (of dZ)
  instead of two (of x for dW, of dZ for dX); see :func:`_backward_bi_shared`.
* ``"channels_last"`` -- one row of ``K*K*C`` values per output position, built from a
  zero-padded NHWC copy of the chunk, one copy per kernel row (``im2col.im2col_padded_cl``);
  the GEMM ``z^T = colsT @ W^T`` with a tall row-major operand runs closest to OpenBLAS's peak.
  Chosen for 64 channels or more when neither of the two above applies (strided layers).
* ``"pointwise"`` -- a **1x1** kernel without padding needs no columns at all:
  ``z[n] = W (O, C) @ x[n] (C, H_o*W_o)`` is a GEMM per image straight into NCHW (a stride first
  takes every S-th sample), and ``dX[n] = W^T @ dZ[n]``, ``dW = sum_n dZ[n] @ x[n]^T``.

``groups > 1`` keeps the whole-batch path (one batched GEMM per group over :func:`im2col`).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import parallel, workspace
from .im2col import (col2im_batch_inner_add, col2im_chunk_add, col2im_chunk_add_cl, im2col, im2col_chunk, im2col_chunk_cl, im2col_padded_cl,
                     pad_into_cl, padded_extent)
from .resample import upsample_zeros_forward
from .shapes import ShapeError, check_float, check_same_dtype, effective_kernel, fmt_shape

__all__ = [
    "DX_ALGORITHMS",
    "LAYOUTS",
    "dx_algorithm",
    "conv_layout",
    "conv2d_forward_chunked",
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
    xp = get_array_module(x, w)
    z = xp.matmul(wg, cols)  # (G, O_g, N*Ho*Wo): one GEMM per group
    # (G, O_g) is O; bring the batch axis in front (and add the bias) in a single pass
    zt = z.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    out = xp.empty((n, o, ho, wo), dtype=z.dtype)
    if b is not None:
        xp.add(zt, b.reshape(1, o, 1, 1), out=out)
    else:
        out[...] = zt
    return out, cols


def _device(*arrays) -> bool:
    """True for device (CuPy) arrays: they take the whole-batch GEMM path (``_conv_gemm``), the
    threaded, chunked kernels below being written for NumPy."""
    return get_array_module(*arrays) is not np


def conv2d_forward(x, w, b, stride, padding, dilation, groups, *, keep_cols: bool = True, layout=None):
    """z = conv2d(x, w) + b: ``x (N, C, H, W)``, ``w (O, C/G, K_h, K_w)``, ``b (O,)`` or None.

    ``stride``, ``dilation``: 2-tuples; ``padding``: ((lo_h, hi_h), (lo_w, hi_w)).  Returns
    ``(z, cache)`` with ``z (N, O, H_o, W_o)``, ``H_o = floor((H + lo + hi - d(K-1) - 1)/S) + 1``.
    With ``groups=1`` the chunked kernels run (``layout`` forces their column layout, see
    :func:`conv_layout`) and the cache holds no columns (the backward rebuilds them chunk by
    chunk); with ``groups > 1`` the cache keeps the whole column matrix
    for dW unless ``keep_cols=False`` (then dW rebuilds it).
    """
    stride, dilation = tuple(stride), tuple(dilation)
    padding = tuple(tuple(p) for p in padding)
    check_conv_args("conv2d", x, w, b, stride, padding, dilation, groups)
    if groups == 1 and not _device(x, w, b):
        # the chunked path rebuilds columns chunk by chunk in the backward: nothing to keep
        z = conv2d_forward_chunked(x, w, b, stride, padding, dilation, layout=layout)
        return z, (x, w, b is not None, None, stride, padding, dilation, groups)
    z, cols = _conv_gemm(x, w, b, stride, padding, dilation, groups)
    cache = (x, w, b is not None, cols if keep_cols else None, stride, padding, dilation, groups)
    return z, cache


def _flip_transpose(w, groups=1):
    """Filters of the dX convolution: within each group swap in/out channels and flip both axes.

    ``w (O, C_g, K_h, K_w) -> wflip (C, O_g, K_h, K_w)`` with
    ``wflip[g*C_g + c, o, i, j] = w[g*O_g + o, c, K_h-1-i, K_w-1-j]``.
    """
    o, cg, kh, kw = w.shape
    wt = w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)
    return get_array_module(w).ascontiguousarray(wt[..., ::-1, ::-1]).reshape(groups * cg, o // groups, kh, kw)


def conv2d_backward_data(dz, w, x_shape, stride, padding, dilation, groups, algorithm=None, layout=None):
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

    With ``groups=1`` the chunked kernels compute it, by ``algorithm`` ("flipped": the steps
    above, "col2im": the sum of kernel-offset slices; ``None``: :func:`dx_algorithm` decides)
    in ``layout`` (``None``: :func:`conv_layout`).
    """
    if groups == 1 and not _device(dz, w):
        return _conv_backward_chunked(dz, None, w, tuple(x_shape), stride, padding, dilation, (True, False, False),
                                      algorithm, layout)[0]
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
    xp = get_array_module(dz, cols)
    dzg = xp.ascontiguousarray(dz.reshape(n, o, p).transpose(1, 0, 2)).reshape(groups, o // groups, n * p)
    dw = xp.matmul(dzg, cols.transpose(0, 2, 1))
    return dw.reshape(w_shape)


def conv2d_backward(dz, cache, need=(True, True, True), algorithm=None, layout=None):
    """Gradients of :func:`conv2d_forward`: ``(dx, dw, db)``, None where ``need`` says so.

    ``algorithm`` forces the dX algorithm of the chunked path ("flipped" or "col2im") and
    ``layout`` its column layout ("channels_first" or "channels_last"); ``None`` lets
    :func:`dx_algorithm` and :func:`conv_layout` choose per shape (see the module docstring).
    """
    x, w, has_bias, cols, stride, padding, dilation, groups = cache
    need = tuple(need) + (True,) * (3 - len(need))
    if groups == 1 and not _device(dz, x, w):
        return _conv_backward_chunked(dz, x, w, x.shape, stride, padding, dilation,
                                      (need[0], need[1], need[2] and has_bias), algorithm, layout)
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
# the chunked kernels (groups = 1)
# --------------------------------------------------------------------------------------------

DX_ALGORITHMS = ("flipped", "col2im")
# Overflow and NaN in a product propagate silently, as in PyTorch (the loss check reports them);
# the padded grid also multiplies positions whose results are thrown away.
_QUIET = {"over": "ignore", "invalid": "ignore"}
LAYOUTS = ("channels_first", "channels_last", "padded_grid", "batch_inner", "pointwise")
# stride-1 layers with output rows at most this wide take the images-innermost layout
_BATCH_INNER_MAX_WO = 32


def dx_algorithm(kernel, stride, dilation) -> str:
    """The dX algorithm the chunked backward uses for a shape (see the module docstring).

    "flipped" (the lecture's full convolution with flipped filters) for stride 1 and kernels of
    at most 3x3; "col2im" (summing kernel-offset slices) for strided or larger kernels.
    """
    if all(s == 1 for s in stride) and kernel[0] * kernel[1] <= 9:
        return "flipped"
    return "col2im"


def conv_layout(in_channels: int, kernel, padding, stride=(1, 1), dilation=(1, 1), x_hw=None, out_hw=None,
                out_channels=None) -> str:
    """The column layout the chunked kernels use for a shape (see the module docstring).

    * "pointwise" for 1x1 kernels without padding: no columns at all, one GEMM per image,
      ``z[n] = W (O, C) @ x[n] (C, H_o*W_o)``, written straight into NCHW (a forced "pointwise"
      on another shape falls back to the automatic choice);
    * "batch_inner" (im2col's matrix with the images innermost, columns ordered (p, q, n)) for
      stride-1 layers whose output rows are at most ``_BATCH_INNER_MAX_WO`` (32) wide
      (``out_hw`` must be given) -- unless a column holds fewer than twice as many values as an
      output position (``C*K*K < 2*out_channels``, a stem on RGB images), where the cheap
      columns no longer pay for turning the product back to NCHW;
    * "padded_grid" (channel-major columns over the zero-padded grid, every tap one contiguous
      run per image) for other stride-1 layers whose grid rows are at most 1.25x as wide as the
      output rows (at most 1.15x with 32 channels or more; ``x_hw`` must be given too);
    * "channels_last" (a row of ``K*K*C`` values per output position) otherwise for layers with
      at least 64 input channels;
    * "channels_first" (``im2col``'s ``(C*K*K, positions)`` matrix) otherwise.

    Measured on this project's benchmark shapes (AMD EPYC, OpenBLAS Haswell kernels, two
    threads, whole training steps A/B): images-innermost columns took LeNet-5's step from 50 to
    42 ms and ResNet-20's from 1,243 to 1,046 ms (every 3x3 layer, 32x32 maps and smaller),
    with DenseNet-BC-40 unchanged; the padded grid stays for large maps (VGG's 64x56x56, where
    the two are within noise) and channels-first for strided layers, where images-innermost
    runs are only ``n`` values long.  The 3x3 stems on RGB images (27 values a column, 16 or 24
    outputs) run faster over the padded grid, forward and weight gradient (ResNet-20's,
    batch 128: 6.2 -> 4.2 and 5.6 -> 5.0 ms; DenseNet-BC-40's, batch 64: 4.0 -> 2.6 and 3.9 ->
    3.4 ms), while LeNet's first layer (25 values, 6 outputs) keeps the images innermost.
    """
    if _is_pointwise(kernel, padding):
        return "pointwise"
    few_columns = out_channels is not None and in_channels * kernel[0] * kernel[1] < 2 * out_channels
    if out_hw is not None and all(s == 1 for s in stride) and out_hw[1] <= _BATCH_INNER_MAX_WO and not few_columns:
        return "batch_inner"
    grid = None
    if x_hw is not None and out_hw is not None and _flat_ok(stride, padding):
        grid = _flat_overhead(x_hw, kernel, padding, dilation, out_hw)
    if grid is not None and grid <= (1.15 if in_channels >= 32 else 1.25):
        return "padded_grid"
    return "channels_last" if in_channels >= 64 else "channels_first"


def _is_pointwise(kernel, padding) -> bool:
    """A 1x1 kernel without padding: the convolution is a GEMM over channels per position."""
    return tuple(kernel) == (1, 1) and all(lo == 0 and hi == 0 for lo, hi in padding)


def _out_hw(x_hw, kernel, stride, padding, dilation):
    return tuple(
        (n + lo + hi - effective_kernel(k, d)) // s + 1
        for n, k, s, (lo, hi), d in zip(x_hw, kernel, stride, padding, dilation)
    )


def _subsample(x, stride, out_hw):
    """``x[:, :, ::S_h, ::S_w]`` cut to the output size (what a 1x1 kernel reads); a view."""
    (sh, sw), (ho, wo) = stride, out_hw
    return x[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]


def _check_choice(name, value, allowed):
    if value is not None and value not in allowed:
        raise ValueError(f"conv2d: {name} must be one of {allowed} or None, got {value!r}")


def _dot(a, b):
    """``a @ b`` of 2-D arrays inside a chunk.  ``np.dot``, not ``np.matmul``: matmul keeps the GIL
    for the whole product when the result has at most 500 elements (NumPy's threshold for
    releasing it in a gufunc loop), and the weight gradient of a layer with few filters -- LeNet
    conv1's 25x6 -- then stops the other thread's chunks for as long as its product runs.
    LeNet-5 training step A/B on two threads: 22.1 -> 20.9 ms and 22.5 -> 21.2 ms."""
    return np.dot(a, b)


def _sum_parts(parts, k):
    """Sum entry ``k`` of the per-chunk results in chunk order (deterministic)."""
    total = parts[0][k]
    for part in parts[1:]:
        total += part[k]
    return total


def _weight_bias_parts(work, plan, threads, w_shape, need_dw, need_db):
    """Run a backward chunk loop whose chunks return ``(dW^T part, db part)``; return
    ``(dw, db)`` summed in chunk order (None where not needed; both None for an empty plan)."""
    dw = db = None
    if plan:
        parts = parallel.run_chunks(work, plan, threads, _QUIET)
        if need_dw:
            dw = np.ascontiguousarray(_sum_parts(parts, 0).T).reshape(w_shape)
        if need_db:
            db = _sum_parts(parts, 1)
    return dw, db


def _whole_image_plan(n, per_image, threads):
    """Chunks of whole images for the channels-last kernels, or None if one image is over budget."""
    if per_image * threads > workspace.get_memory_budget():
        return None
    return workspace.plan_chunks(n, 1, per_image, threads)


def _to_cl(x, n0, n1, dt, name="xh"):
    """Images n0:n1 of the NCHW array ``x`` copied channels-last, (n, H, W, C), into a buffer."""
    xh = workspace.buffer(name, (n1 - n0,) + x.shape[2:] + (x.shape[1],), dt)
    np.copyto(xh, x[n0:n1].transpose(0, 2, 3, 1))
    return xh


def _padded_hw(hw, kernel, stride, padding, dilation, out_hw):
    return tuple(
        padded_extent(n, k, s, d, max(lo, 0), o)
        for n, k, s, d, (lo, _), o in zip(hw, kernel, stride, dilation, padding, out_hw)
    )


def _cl_columns_elems(hw, c, kernel, stride, padding, dilation, out_hw):
    """Elements of the buffers :func:`_cl_columns` fills for one image."""
    p = out_hw[0] * out_hw[1]
    if _is_pointwise(kernel, padding):
        return p * c
    hp, wp = _padded_hw(hw, kernel, stride, padding, dilation, out_hw)
    return hp * wp * c + p * kernel[0] * kernel[1] * c


def _cl_columns(x, n0, n1, kernel, stride, padding, dilation, out_hw, dt, channels_last_src=False, name="colsT"):
    """Channels-last column matrix of images n0:n1 of ``x``: ``(n*H_o*W_o, K_h*K_w*C)``.

    ``x`` is NCHW, or NHWC when ``channels_last_src``.  A 1x1 kernel without padding needs no
    columns: the (strided) samples, channels-last, are the matrix.  With non-negative padding
    the chunk is copied into a zero-padded channels-last buffer and each kernel row is one copy
    (:func:`im2col_padded_cl`); a crop takes the general per-tap path of :func:`im2col_chunk_cl`.
    """
    nb = n1 - n0
    c = x.shape[3] if channels_last_src else x.shape[1]
    hw = x.shape[1:3] if channels_last_src else x.shape[2:]
    if _is_pointwise(kernel, padding) and not channels_last_src:
        return _to_cl(_subsample(x, stride, out_hw), n0, n1, dt).reshape(nb * out_hw[0] * out_hw[1], c)
    out = workspace.buffer(name, (nb,) + tuple(out_hw) + tuple(kernel) + (c,), dt)
    if all(lo >= 0 for lo, _ in padding):
        xp = workspace.buffer(name + "_pad", (nb,) + _padded_hw(hw, kernel, stride, padding, dilation, out_hw) + (c,),
                              dt)
        pad_into_cl(x[n0:n1], xp, (padding[0][0], padding[1][0]), channels_last_src)
        return im2col_padded_cl(xp, out, stride, dilation)
    xh = x[n0:n1] if channels_last_src else _to_cl(x, n0, n1, dt)
    return im2col_chunk_cl(xh, out, kernel, stride, padding, dilation)


# ---- the padded-grid ("flat") variant of the channels-first columns (stride 1)


def _flat_ok(stride, padding) -> bool:
    return all(s == 1 for s in stride) and all(lo >= 0 for lo, _ in padding)


def _flat_geometry(hw, kernel, padding, dilation, out_hw):
    """Padded grid (H_p, W_p) of one image, the trailing slack a chunk needs, and each tap's
    offset ``i*d_h*W_p + j*d_w`` in the flattened grid."""
    hp, wp = _padded_hw(hw, kernel, (1, 1), padding, dilation, out_hw)
    (kh, kw), (dh, dw) = kernel, dilation
    offsets = tuple(i * dh * wp + j * dw for i in range(kh) for j in range(kw))
    return hp, wp, offsets[-1], offsets, kw, dw


def _flat_overhead(hw, kernel, padding, dilation, out_hw) -> float:
    """Columns of the padded grid per real output position: the ``H_o`` output rows of an
    image are computed at all ``W_p`` grid columns, so ``W_p / W_o``."""
    wp = _flat_geometry(hw, kernel, padding, dilation, out_hw)[1]
    return wp / out_hw[1]


def _flat_fill(src, n0, n1, lo_hw, geom, dt, name):
    """Images n0:n1 of the NCHW ``src``, channel-major on the zero-padded grid: a buffer
    ``(C, n*H_p*W_p + slack)`` whose row c is the images' padded planes end to end."""
    hp, wp, slack = geom[:3]
    c, h, w = src.shape[1:]
    nb = n1 - n0
    buf = workspace.buffer(name, (c, nb * hp * wp + slack), dt)
    grid = buf[:, : nb * hp * wp].reshape(c, nb, hp, wp)
    lo_h, lo_w = lo_hw
    if lo_h:
        grid[:, :, :lo_h] = 0
    if lo_h + h < hp:
        grid[:, :, lo_h + h:] = 0
    if lo_w:
        grid[:, :, lo_h:lo_h + h, :lo_w] = 0
    if lo_w + w < wp:
        grid[:, :, lo_h:lo_h + h, lo_w + w:] = 0
    if slack:
        buf[:, nb * hp * wp:] = 0
    np.copyto(grid[:, :, lo_h:lo_h + h, lo_w:lo_w + w], src[n0:n1].transpose(1, 0, 2, 3))
    return buf


def _flat_cols(buf, geom, nb, rows, dt, name="cols"):
    """Column matrix over the padded grid, ``(C*K_h*K_w, n*rows*W_p)``: row (c, i, j) holds, for
    each image, ``rows*W_p`` consecutive values of row c of the filled buffer from the image's
    plane start shifted by the tap's offset ``i*d_h*W_p + j*d_w``.  The ``K_w`` taps of a kernel
    row are shifts by ``d_w`` apart, i.e. one strided (overlapping, read-only) view of the
    buffer: one copy per kernel row, in runs of ``rows*W_p`` values.  Column
    ``(n*rows + p)*W_p + q`` is the output at (p, q) of image n (``rows`` = H_o: the grid's
    trailing rows are never computed); those with q >= W_o are computed and thrown away."""
    hp, wp, _, offsets, kw, step = geom
    c = buf.shape[0]
    kk = len(offsets)
    span = rows * wp
    cols = workspace.buffer(name, (c, kk, nb, span), dt)
    item = buf.itemsize
    for r in range(0, kk, kw):
        src = workspace.strided(buf, (c, kw, nb, span), (buf.strides[0], step * item, hp * wp * item, item),
                                offsets[r] * buf.strides[1])
        np.copyto(cols[:, r:r + kw], src)
    return cols.reshape(c * kk, nb * span)


def _flat_forward(x, w2, bias, out, padding, geom, chunks, threads, dt):
    o = w2.shape[0]
    hp, wp = geom[:2]
    ho, wo = out.shape[2:]

    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        cols = _flat_cols(_flat_fill(x, n0, n1, (padding[0][0], padding[1][0]), geom, dt, "xflat"), geom, nb, ho,
                          dt)
        z = np.matmul(w2, cols, out=workspace.buffer("z", (o, nb * ho * wp), dt))
        zt = z.reshape(o, nb, ho, wp)[:, :, :, :wo].transpose(1, 0, 2, 3)
        if bias is not None:
            np.add(zt, bias, out=out[n0:n1])
        else:
            np.copyto(out[n0:n1], zt)

    parallel.run_chunks(work, chunks, threads, _QUIET)


def _flat_dz(dz, n0, n1, geom, dt):
    """dZ of images n0:n1 channel-major in the column order of :func:`_flat_cols`,
    ``(O, n*H_o*W_p)``, zero at the discarded positions (q >= W_o)."""
    wp = geom[1]
    o, ho, wo = dz.shape[1:]
    nb = n1 - n0
    buf = workspace.buffer("dzflat", (o, nb, ho, wp), dt)
    if wo < wp:
        buf[:, :, :, wo:] = 0
    np.copyto(buf[:, :, :, :wo], dz[n0:n1].transpose(1, 0, 2, 3))
    return buf.reshape(o, nb * ho * wp)


def _backward_flat(dz, x, w, x_shape, padding, dilation, need, algorithm, threads):
    """Channels-first backward on the padded grid (stride 1): per chunk, dZ is laid on the grid
    once (zeros where the forward threw outputs away, so they add nothing) and serves
    ``dW^T += cols @ dZ^T``, db, and -- for col2im -- ``dcols = W^T @ dZ`` whose tap rows are
    added back onto the grid as contiguous shifted slices.  None if an image is over budget."""
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    ho, wo = dz.shape[2:]
    dt = dz.dtype
    need_dx, need_dw, need_db = need
    ckk = c * kh * kw
    geom = _flat_geometry((h, wd), kernel, padding, dilation, (ho, wo))
    hp, wp, slack, offsets = geom[:4]
    grid = hp * wp
    by_col2im = need_dx and algorithm == "col2im"
    span = ho * wp  # columns per image (see _flat_cols)
    per_image = (span * o + (grid * c + span * ckk) * need_dw + (span * ckk + (grid + slack) * c) * by_col2im) \
        * dt.itemsize
    plan = _whole_image_plan(n, per_image, threads) if (need_dw or need_db or by_col2im) else []
    if plan is None:
        return None
    lo_h, lo_w = padding[0][0], padding[1][0]
    dx = None
    if by_col2im:
        dx = workspace.output(x_shape, dt)
        w2t = np.ascontiguousarray(w.reshape(o, ckk).T)


    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        dzf = _flat_dz(dz, n0, n1, geom, dt)
        part_w = part_b = None
        if need_dw:
            cols = _flat_cols(_flat_fill(x, n0, n1, (lo_h, lo_w), geom, dt, "xflat"), geom, nb, ho, dt)
            part_w = _dot(cols, dzf.T)  # (C*K*K, O): this chunk's share of dW^T
        if need_db:
            part_b = dzf.sum(axis=1)
        if by_col2im:
            dcols = np.matmul(w2t, dzf, out=workspace.buffer("dcols", (ckk, nb * span), dt))
            dcols = dcols.reshape(c, kh * kw, nb, span)
            # one padded plane per image, followed by the slack its shifted taps reach into
            # (only with zeros: dZ is zero at the discarded columns)
            acc = workspace.buffer("dxflat", (c, nb, grid + slack), dt)
            acc[...] = 0
            for t, off in enumerate(offsets):
                view = acc[:, :, off:off + span]
                view += dcols[:, t]
            grid4 = acc[:, :, :grid].reshape(c, nb, hp, wp)
            np.copyto(dx[n0:n1], grid4[:, :, lo_h:lo_h + h, lo_w:lo_w + wd].transpose(1, 0, 2, 3))
        return part_w, part_b

    dw, db = _weight_bias_parts(work, plan, threads, w.shape, need_dw, need_db)
    if need_dx and not by_col2im:
        dx = _dx_flipped(dz, w, x_shape, (1, 1), padding, dilation)
    return dx, dw, db


# ---- images innermost ("batch_inner"): small maps


def _bi_geometry(hw, kernel, stride, padding, dilation, out_hw):
    """Per spatial axis ``(L_p, a, b)``: the padded extent the windows read,
    ``L_p = (out - 1)*S + d*(K - 1) + 1``, and the range ``[a, b)`` of it holding input samples
    (padded index ``k`` holds ``x[k - lo]``; a negative ``lo`` crops)."""
    geo = []
    for n, k, s, d, (lo, _), o in zip(hw, kernel, stride, dilation, padding, out_hw):
        lp = (o - 1) * s + d * (k - 1) + 1
        a = min(max(0, lo), lp)
        geo.append((lp, a, max(a, min(lp, n + lo))))
    return tuple(geo)


def _bi_fill(x, n0, n1, padding, geo, dt, name="xbi"):
    """Images n0:n1 of the NCHW ``x`` on their zero-padded grid with the image index innermost:
    a buffer ``(C, H_p, W_p, n)``, ``buf[c, k, l, n] = xpad[n0 + n, c, k, l]``.

    Each grid (shape and place of the samples in it) has a buffer of its own, zeroed when it is
    allocated: only the samples are written, the border stays zero.  Zeroing the border on every
    fill took four more NumPy calls per chunk, each holding the GIL on the way in and out;
    ResNet-20 step A/B on two threads: 679 -> 653 and 758 -> 733 ms (DenseNet-BC-40 1,018 ->
    996 ms)."""
    (hp, ah, bh), (wp, aw, bw) = geo
    shape = (x.shape[1], hp, wp, n1 - n0)
    buf = workspace.buffer((name, shape, geo, dt.char), shape, dt, zero_new=True)
    if bh > ah and bw > aw:
        (lo_h, _), (lo_w, _) = padding
        _to_images_inner(buf[:, ah:bh, aw:bw], x[n0:n1, :, ah - lo_h:bh - lo_h, aw - lo_w:bw - lo_w], dt)
    return buf


# _to_images_inner copies image by image up to _PER_IMAGE_MAX images, and stages the images
# first when there are at least _STAGED_MIN, a multiple of _ALIAS_BYTES apart
_PER_IMAGE_MAX = 6
_STAGED_MIN = 16
_ALIAS_BYTES = 16384


def _to_images_inner(dst, src, dt):
    """``dst[c, h, w, n] = src[n, c, h, w]``: a chunk of NCHW images (``src``, any strides)
    copied with the image index innermost.

    NumPy copies in the destination's memory order, so one ``copyto`` runs inner loops of ``n``
    values read ``C*H*W`` apart.  Two cases make that slow (AMD EPYC, float32, medians):

    * few images (ResNet-20's 16x32x32 layers take 5 per chunk, DenseNet's 32x32 ones 2): inner
      loops of a handful of values.  One copy per image, whose inner loops run along the image
      rows, took 75 instead of 200 us; interleaved A/B of whole training steps on two threads:
      ResNet-20 583 -> 564 ms, DenseNet-BC-40 806 -> 750 ms.
    * many images a multiple of 16 KiB apart (ResNet's 64x8x8 maps, 22 per chunk, and 32x16x16
      ones, 11 per chunk): the values of an inner loop fall in one L1 cache set and evict each
      other.  Copying the images first to rows 64 bytes longer (a cheap contiguous copy) took 99
      instead of 252 us for the 22 images.  ResNet-20 step A/B: staging 16+ images 596 -> 581
      ms; the 64x8x8 layer timed alone 19.1 -> 18.0 ms.  For the 11 images the copy alone
      gains nothing: staging 8+ images once helped the step (608 -> 594 ms, before kernel
      outputs were pooled); with pooled outputs, leaving them unstaged gave 548 -> 528,
      561 -> 550 and 585 -> 589 ms in three step A/Bs (faster or even), and the 32x16x16 layer
      timed alone 22.2 -> 21.2 ms.
    """
    nb = src.shape[0]
    if 1 < nb <= _PER_IMAGE_MAX:
        for i in range(nb):
            np.copyto(dst[..., i], src[i])
        return
    if nb >= _STAGED_MIN and src.strides[0] % _ALIAS_BYTES == 0:
        m = src[0].size
        rows = workspace.buffer("staged", (nb, m + 64 // dt.itemsize), dt)[:, :m].reshape(src.shape)
        np.copyto(rows, src)
        src = rows
    np.copyto(dst, src.transpose(1, 2, 3, 0))


def _bi_cols(buf, kernel, stride, dilation, out_hw, dt, name="cols"):
    """Column matrix with the images innermost, ``(C*K_h*K_w, H_o*W_o*n)``:
    ``cols[(c, i, j), (p, q, n)] = buf[c, p*S_h + i*d_h, q*S_w + j*d_w, n]``, one strided copy of
    a window view of the filled grid.  With stride 1 along W a tap's row is runs of ``W_o*n``
    contiguous values -- against runs of ``W_o`` (ten on LeNet's 10x10 maps) image by image,
    where NumPy's per-run cost, not the bytes, sets the copy's speed."""
    c, _, _, nb = buf.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    sc, sr, sq, sn = buf.strides
    view = workspace.strided(buf, (c, kh, kw, ho, wo, nb), (sc, dh * sr, dw * sq, sh * sr, sw * sq, sn))
    cols = workspace.buffer(name, (c, kh, kw, ho, wo, nb), dt)
    np.copyto(cols, view)
    return cols.reshape(c * kh * kw, ho * wo * nb)


def _bi_image_elems(c, o, kernel, geo, out_hw):
    """Elements of the forward's buffers for one image: the grid, the columns and the product."""
    p = out_hw[0] * out_hw[1]
    return geo[0][0] * geo[1][0] * c + p * (c * kernel[0] * kernel[1] + o)


def _bi_forward(x, w2, bias, out, kernel, stride, padding, dilation, geo, plan, threads, dt):
    """``z (O, H_o*W_o*n) = W (O, C*K*K) @ cols`` per chunk, turned to NCHW (plus the bias) in
    the copy into ``out``."""
    o = w2.shape[0]
    ho, wo = out.shape[2:]

    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        cols = _bi_cols(_bi_fill(x, n0, n1, padding, geo, dt), kernel, stride, dilation, (ho, wo), dt)
        z = np.matmul(w2, cols, out=workspace.buffer("z", (o, ho * wo * nb), dt))
        z4 = z.reshape(o, ho, wo, nb)
        if bias is not None and nb >= 16 and out[0].nbytes % 4096:
            # the ufunc walks (O, H_o, W_o, n) in this order: contiguous reads of z, and out's
            # image stride is no multiple of 4 KiB, so its strided writes do not collide in
            # one cache set.  LeNet conv1 (32 images, 6x28x28): 82 instead of 181 us
            np.add(z4, bias[..., None], out=out[n0:n1].transpose(1, 2, 3, 0))
        elif bias is not None:
            np.add(z4.transpose(3, 0, 1, 2), bias, out=out[n0:n1])
        else:
            np.copyto(out[n0:n1], z4.transpose(3, 0, 1, 2))

    parallel.run_chunks(work, plan, threads, _QUIET)


def _backward_bi(dz, x, w, x_shape, stride, padding, dilation, need, algorithm, threads):
    """Backward with the images innermost, one pass over chunks of whole images: dZ is laid out
    ``(O, H_o*W_o*n)`` once per chunk and serves ``dW^T += cols @ dZ^T``, db and -- for col2im --
    ``dcols = W^T @ dZ``, whose tap slices (runs of ``W_o*n`` values) are added onto a
    ``(C, H, W, n)`` accumulator.  None if an image is over budget."""
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    ho, wo = dz.shape[2:]
    p = ho * wo
    dt = dz.dtype
    need_dx, need_dw, need_db = need
    ckk = c * kh * kw
    by_col2im = need_dx and algorithm == "col2im"
    if _SHARED_COLUMNS and need_dx and need_dw and algorithm == "flipped" and all(s == 1 for s in stride):
        grads = _backward_bi_shared(dz, x, w, x_shape, padding, dilation, need, threads)
        if grads is not None:
            return grads
    geo = _bi_geometry((h, wd), kernel, stride, padding, dilation, (ho, wo))
    per_image = o * p + (geo[0][0] * geo[1][0] * c + ckk * p) * need_dw + (ckk * p + c * h * wd) * by_col2im
    plan = _whole_image_plan(n, per_image * dt.itemsize, threads) if (need_dw or need_db or by_col2im) else []
    if plan is None:
        return None
    dx = None
    if by_col2im:
        dx = workspace.output(x_shape, dt)
        w2t = np.ascontiguousarray(w.reshape(o, ckk).T)

    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        dzb = workspace.buffer("dzb", (o, ho, wo, nb), dt)
        _to_images_inner(dzb, dz[n0:n1], dt)
        dz2 = dzb.reshape(o, p * nb)
        part_w = part_b = None
        if need_dw:
            cols = _bi_cols(_bi_fill(x, n0, n1, padding, geo, dt), kernel, stride, dilation, (ho, wo), dt)
            part_w = _dot(cols, dz2.T)  # (C*K*K, O): this chunk's share of dW^T
        if need_db:
            part_b = dz2.sum(axis=1)
        if by_col2im:
            dcols = workspace.buffer("dcols", (c, kh, kw, ho, wo, nb), dt)
            np.matmul(w2t, dz2, out=dcols.reshape(ckk, p * nb))
            acc = workspace.buffer("dxacc", (c, h, wd, nb), dt)
            acc[...] = 0
            col2im_batch_inner_add(dcols, acc, kernel, stride, padding, dilation)
            np.copyto(dx[n0:n1], acc.transpose(3, 0, 1, 2))
        return part_w, part_b

    dw, db = _weight_bias_parts(work, plan, threads, w.shape, need_dw, need_db)
    if need_dx and not by_col2im:
        dx = _dx_flipped(dz, w, x_shape, stride, padding, dilation)
    return dx, dw, db


# dX and dW of stride-1 images-innermost layers from one column matrix (False: two passes)
_SHARED_COLUMNS = True


def _backward_bi_shared(dz, x, w, x_shape, padding, dilation, need, threads):
    """dX and dW (and db if ``need[2]``) of a stride-1 layer from one column matrix of dZ,
    images innermost.

    The flipped-filter dX is ``dX (C, H*W*n) = Wf (C, O*K*K) @ D`` with ``D`` the columns of the
    padded dZ, ``D[(o, i, j), (p, q, n)] = dZ[n, o, p + lo - (K-1-i)*d, q + lo - (K-1-j)*d]``
    (zero outside dZ).  The same matrix gives dW: ``dW[o, c, K-1-i, K-1-j] = sum_{p,q,n}
    x[n, c, p, q] * D[(o, i, j), (p, q, n)]``, i.e. ``x (C, H*W*n) @ D^T`` -- so one pass over
    the chunks builds one column matrix (of dZ) instead of two (of x for dW, of dZ for dX).
    None if an image is over budget.

    ``D`` holds zeros where a tap falls outside dZ (the forward's padding), so the products
    there pair an input value with zero: an infinite or NaN input value makes dW non-finite in
    every tap of its channel, where the two-pass path (zeros in x's columns instead) leaves the
    taps that never reach it finite.  Finite inputs: the same sums, up to rounding.

    Measured (AMD EPYC, two threads, interleaved A/B): the backward of ResNet-20's layers
    (batch 128) 25.2 -> 21.3 ms (16x32x32), 20.8 -> 17.5 ms (32x16x16), 17.0 -> 14.6 ms
    (64x8x8); training steps ResNet-20 777 -> 725 ms, DenseNet-BC-40 1,136 -> 1,104 ms (its
    3x3 layers take 48 channels to 12: ``D`` has 108 rows where x's columns had 432).  For
    5x5 kernels (LeNet's conv2) col2im stays faster: 6.7 against 9.2 ms."""
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    dz_hw = dz.shape[2:]
    dt = dz.dtype
    need_db = need[2]
    okk = o * kh * kw
    hw = h * wd
    fpad = _flip_pairs((h, wd), dz_hw, kernel, dilation, padding)
    geo = _bi_geometry(dz_hw, kernel, (1, 1), fpad, dilation, (h, wd))
    per_image = geo[0][0] * geo[1][0] * o + okk * hw + 2 * c * hw
    plan = _whole_image_plan(n, per_image * dt.itemsize, threads)
    if plan is None:
        return None
    wf = _flip_transpose(w).reshape(c, okk)
    dx = workspace.output(x_shape, dt)

    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        d = _bi_cols(_bi_fill(dz, n0, n1, fpad, geo, dt, name="dzbi"), kernel, (1, 1), dilation, (h, wd), dt)
        z = np.matmul(wf, d, out=workspace.buffer("z", (c, hw * nb), dt))
        np.copyto(dx[n0:n1], z.reshape(c, h, wd, nb).transpose(3, 0, 1, 2))
        x2 = workspace.buffer("x2", (c, h, wd, nb), dt)
        _to_images_inner(x2, x[n0:n1], dt)
        part_w = _dot(x2.reshape(c, hw * nb), d.T)  # (C, O*K*K), taps flipped
        part_b = np.einsum("nopq->o", dz[n0:n1]) if need_db else None
        return part_w, part_b

    parts = parallel.run_chunks(work, plan, threads, _QUIET)
    dwf = _sum_parts(parts, 0).reshape(c, o, kh, kw)
    dw = np.ascontiguousarray(dwf[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    db = _sum_parts(parts, 1) if need_db else None
    return dx, dw, db


# ---- 1x1 convolutions without padding: a GEMM per image, no columns


def _pointwise_forward(x, w, b, stride, out, threads):
    """``z[n] = W (O, C) @ xs[n] (C, H_o*W_o)`` with ``xs`` every S-th sample of x (x itself for
    stride 1), per chunk of images one batched product written straight into ``out``."""
    n, c = x.shape[:2]
    o, ho, wo = out.shape[1:]
    p = ho * wo
    dt = out.dtype
    w2 = np.ascontiguousarray(w.reshape(o, c))
    xs = _subsample(x, stride, (ho, wo))
    out3 = out.reshape(n, o, p)
    bias = None if b is None else b.reshape(o, 1)

    def work(ch):
        n0, n1 = ch[:2]
        xc = xs[n0:n1]
        if not xc.flags.c_contiguous:
            xc = _copy_to(workspace.buffer("pw_x", xc.shape, dt), xc)
        zc = np.matmul(w2, xc.reshape(n1 - n0, c, p), out=out3[n0:n1])
        if bias is not None:
            zc += bias

    parallel.run_chunks(work, workspace.plan_chunks(n, 1, (c + o) * p * dt.itemsize, threads), threads, _QUIET)


def _copy_to(dst, src):
    np.copyto(dst, src)
    return dst


def _pointwise_backward(dz, x, w, x_shape, stride, need, threads):
    """Gradients of a 1x1 convolution without padding, per image (P = H_o*W_o positions):
    ``dx[n] = W^T (C, O) @ dz[n] (O, P)`` (scattered back to every S-th sample for a stride),
    ``dW = sum_n dz[n] (O, P) @ xs[n]^T (P, C)`` (one batched product per chunk, summed), and
    ``db = sum dz``."""
    need_dx, need_dw, need_db = need
    n, c = x_shape[:2]
    o = w.shape[0]
    ho, wo = dz.shape[2:]
    dt = dz.dtype
    p = ho * wo
    # with a stride, or trailing input rows no window reached, dX is not dense in x's positions
    strided = any(s > 1 for s in stride) or tuple(x_shape[2:]) != (ho, wo)
    w2t = np.ascontiguousarray(w.reshape(o, c).T)
    dz3 = np.ascontiguousarray(dz).reshape(n, o, p)
    dx = None
    if need_dx:
        dx = np.zeros(x_shape, dtype=dt) if strided else workspace.output(x_shape, dt)
        dx3 = None if strided else dx.reshape(n, c, p)
    xs = _subsample(x, stride, (ho, wo)) if need_dw else None

    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        part_w = part_b = None
        if need_dx:
            if strided:
                dxc = np.matmul(w2t, dz3[n0:n1], out=workspace.buffer("pw_dx", (nb, c, p), dt))
                np.copyto(_subsample(dx[n0:n1], stride, (ho, wo)), dxc.reshape(nb, c, ho, wo))
            else:
                np.matmul(w2t, dz3[n0:n1], out=dx3[n0:n1])
        if need_dw:
            xc = xs[n0:n1]
            if not xc.flags.c_contiguous:
                xc = _copy_to(workspace.buffer("pw_x", xc.shape, dt), xc)
            per = np.matmul(dz3[n0:n1], xc.reshape(nb, c, p).transpose(0, 2, 1),
                            out=workspace.buffer("pw_dw", (nb, o, c), dt))
            part_w = per.sum(axis=0)
        if need_db:
            part_b = dz3[n0:n1].sum(axis=(0, 2))
        return part_w, part_b

    parts = parallel.run_chunks(work, workspace.plan_chunks(n, 1, 2 * (c + o) * p * dt.itemsize, threads),
                                 threads, _QUIET)
    dw = db = None
    if need_dw:
        dw = _sum_parts(parts, 0).reshape(w.shape)
    if need_db:
        db = _sum_parts(parts, 1)
    return dx, dw, db



def conv2d_forward_chunked(x, w, b, stride, padding, dilation, out_hw=None, layout=None) -> np.ndarray:
    """``z = conv2d(x, w) + b`` for ``groups=1``, chunk by chunk (unchecked).

    ``padding`` pairs may be negative (crop); ``out_hw`` overrides the output size (the dX
    convolution, whose trailing padding is implicit); ``layout`` forces the column layout
    ("channels_first" or "channels_last"; ``None``: :func:`conv_layout`).
    Returns ``z (N, O, H_o, W_o)``.
    """
    _check_choice("layout", layout, LAYOUTS)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    ho, wo = out_hw if out_hw is not None else _out_hw((h, wd), kernel, stride, padding, dilation)
    dt = np.result_type(x.dtype, w.dtype)
    out = workspace.output((n, o, ho, wo), dt)
    if n == 0:
        return out
    item = dt.itemsize
    threads = parallel.get_num_threads()
    if layout == "pointwise" and not (_is_pointwise(kernel, padding) and out_hw is None):
        layout = None
    layout = layout or conv_layout(c, kernel, padding, stride, dilation, (h, wd), (ho, wo), o)
    if layout == "pointwise" and out_hw is not None:
        layout = "channels_last"
    if layout == "pointwise":
        _pointwise_forward(x, w, b, stride, out, threads)
        return out
    ckk = c * kh * kw
    plan = None
    if layout == "channels_last":
        per_image = (_cl_columns_elems((h, wd), c, kernel, stride, padding, dilation, (ho, wo)) + ho * wo * o) * item
        plan = _whole_image_plan(n, per_image, threads)
    if plan is not None:
        # z^T (n*P, O) = colsT (n*P, K*K*C) @ W^T (K*K*C, O), columns ordered (i, j, c)
        w2 = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(ckk, o))
        out3 = out.reshape(n, o, ho * wo)
        bias = None if b is None else b.reshape(o, 1)

        def work_cl(ch):
            n0, n1 = ch[:2]
            cols = _cl_columns(x, n0, n1, kernel, stride, padding, dilation, (ho, wo), dt)
            z = np.matmul(cols, w2, out=workspace.buffer("z", (cols.shape[0], o), dt))
            zt = z.reshape(n1 - n0, ho * wo, o).transpose(0, 2, 1)  # NHWC -> NCHW
            if bias is not None:
                np.add(zt, bias, out=out3[n0:n1])
            else:
                np.copyto(out3[n0:n1], zt)

        parallel.run_chunks(work_cl, plan, threads, _QUIET)
        return out

    # z_chunk (O, n*P) = W (O, C*K*K) @ cols_chunk (C*K*K, n*P), columns ordered (c, i, j)
    w2 = np.ascontiguousarray(w.reshape(o, ckk))
    bias = None if b is None else b.reshape(o, 1, 1)
    if layout == "batch_inner":
        geo = _bi_geometry((h, wd), kernel, stride, padding, dilation, (ho, wo))
        plan = _whole_image_plan(n, _bi_image_elems(c, o, kernel, geo, (ho, wo)) * item, threads)
        if plan is not None:
            _bi_forward(x, w2, bias, out, kernel, stride, padding, dilation, geo, plan, threads, dt)
            return out
    if layout == "padded_grid" and _flat_ok(stride, padding):
        geom = _flat_geometry((h, wd), kernel, padding, dilation, (ho, wo))
        span = ho * geom[1]  # grid columns per image (see _flat_cols)
        plan = _whole_image_plan(n, (geom[0] * geom[1] * c + span * (ckk + o)) * item, threads)
        if plan is not None:
            _flat_forward(x, w2, bias, out, padding, geom, plan, threads, dt)
            return out

    def work(ch):
        n0, n1, r0, r1 = ch
        nb, rows = n1 - n0, r1 - r0
        cols = im2col_chunk(x, workspace.buffer("cols", (c, kh, kw, nb, rows, wo), dt),
                            kernel, stride, padding, dilation, ch)
        z = np.matmul(w2, cols, out=workspace.buffer("z", (o, nb * rows * wo), dt))
        zt = z.reshape(o, nb, rows, wo).transpose(1, 0, 2, 3)  # (O, n, ...) -> (n, O, ...)
        dst = out[n0:n1, :, r0:r1]
        if bias is not None:
            np.add(zt, bias, out=dst)
        else:
            np.copyto(dst, zt)

    parallel.run_chunks(work, workspace.plan_chunks(n, ho, (ckk + o) * wo * item, threads), threads, _QUIET)
    return out


def _flip_pairs(x_hw, dz_hw, kernel, dilation, padding):
    """Padding of dZ for the flipped-filter correlation: ``d*(K-1) - lo`` before (negative:
    a crop), so that exactly the rows of the unpadded input come out; the trailing amount only
    fixes the output size."""
    return tuple(
        (d * (k - 1) - lo, n - m + lo)
        for n, m, k, d, (lo, _) in zip(x_hw, dz_hw, kernel, dilation, padding)
    )


def _dx_flipped(dz, w, x_shape, stride, padding, dilation, layout=None):
    """dX as the lecture derives it: the full correlation of (zero-inserted) dZ with the flipped,
    channel-transposed filters -- the forward kernel applied to dZ."""
    if any(s > 1 for s in stride):
        dz, _ = upsample_zeros_forward(dz, tuple(stride))
    pairs = _flip_pairs(x_shape[2:], dz.shape[2:], w.shape[2:], dilation, padding)
    return conv2d_forward_chunked(dz, _flip_transpose(w), None, (1, 1), pairs, tuple(dilation),
                                  out_hw=tuple(x_shape[2:]), layout=layout)


def _conv_backward_chunked(dz, x, w, x_shape, stride, padding, dilation, need, algorithm=None, layout=None):
    """``(dx, dw, db)`` of a ``groups=1`` convolution, chunk by chunk (see the module docstring).

    ``need = (dx, dw, db)``; ``x`` may be None when dW is not needed.  ``algorithm`` forces the
    dX algorithm ("flipped" or "col2im"), ``layout`` the column layout.
    """
    _check_choice("algorithm", algorithm, DX_ALGORITHMS)
    _check_choice("layout", layout, LAYOUTS)
    stride, dilation = tuple(stride), tuple(dilation)
    padding = tuple(tuple(p) for p in padding)
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    ho, wo = dz.shape[2:]
    dt = dz.dtype
    need_dx, need_dw, need_db = need
    threads = parallel.get_num_threads()
    algorithm = algorithm or dx_algorithm(kernel, stride, dilation)
    if layout == "pointwise" and not _is_pointwise(kernel, padding):
        layout = None
    layout = layout or conv_layout(c, kernel, padding, stride, dilation, (h, wd), (ho, wo), o)
    if n == 0:
        return (np.zeros(x_shape, dtype=dt) if need_dx else None,
                np.zeros(w.shape, dtype=dt) if need_dw else None,
                np.zeros((o,), dtype=dt) if need_db else None)
    if layout == "pointwise":
        return _pointwise_backward(dz, x, w, x_shape, stride, need, threads)
    if layout == "channels_last":
        grads = _backward_cl(dz, x, w, x_shape, stride, padding, dilation, need, algorithm, threads)
        if grads is not None:
            return grads
    if layout == "batch_inner":
        grads = _backward_bi(dz, x, w, x_shape, stride, padding, dilation, need, algorithm, threads)
        if grads is not None:
            return grads
    if layout == "padded_grid" and _flat_ok(stride, padding):
        grads = _backward_flat(dz, x, w, x_shape, padding, dilation, need, algorithm, threads)
        if grads is not None:
            return grads
    return _backward_cf(dz, x, w, x_shape, stride, padding, dilation, need, algorithm, threads)


def _backward_cf(dz, x, w, x_shape, stride, padding, dilation, need, algorithm, threads):
    """Channels-first backward: pass 1 over chunks of dZ for dW, db (and dX by col2im); pass 2
    for dX by flipped filters (the forward kernel applied to dZ)."""
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    ho, wo = dz.shape[2:]
    dt = dz.dtype
    need_dx, need_dw, need_db = need
    ckk = c * kh * kw
    by_col2im = need_dx and algorithm == "col2im"
    dx = dw = db = None
    if need_dw or need_db or by_col2im:
        row_bytes = (o + ckk * need_dw + ckk * by_col2im) * wo * dt.itemsize
        chunks = workspace.plan_chunks(n, ho, row_bytes, threads)
        whole_images = all(r0 == 0 and r1 == ho for _, _, r0, r1 in chunks)
        if by_col2im:
            dx = workspace.output(x_shape, dt) if whole_images else np.zeros(x_shape, dtype=dt)
            w2t = np.ascontiguousarray(w.reshape(o, ckk).T)

        def work(ch):
            n0, n1, r0, r1 = ch
            nb, rows = n1 - n0, r1 - r0
            part_w = part_b = None
            dzt = workspace.buffer("dzt", (o, nb, rows, wo), dt)
            np.copyto(dzt, dz[n0:n1, :, r0:r1].transpose(1, 0, 2, 3))
            dz2 = dzt.reshape(o, nb * rows * wo)
            if need_dw:
                cols = im2col_chunk(x, workspace.buffer("cols", (c, kh, kw, nb, rows, wo), dt),
                                    kernel, stride, padding, dilation, ch)
                part_w = _dot(cols, dz2.T)  # (C*K*K, O): this chunk's share of dW^T
            if need_db:
                part_b = dz2.sum(axis=1)
            if by_col2im:
                dcols = workspace.buffer("dcols", (c, kh, kw, nb, rows, wo), dt)
                np.matmul(w2t, dz2, out=dcols.reshape(ckk, nb * rows * wo))
                if whole_images:
                    dx[n0:n1] = 0
                col2im_chunk_add(dcols, dx, kernel, stride, padding, dilation, ch)
            return part_w, part_b

        # row chunks of one image overlap in dX: scatter them from one thread
        parts = parallel.run_chunks(work, chunks, threads if (whole_images or not by_col2im) else 1, _QUIET)
        if need_dw:
            dw = np.ascontiguousarray(_sum_parts(parts, 0).T).reshape(w.shape)
        if need_db:
            db = _sum_parts(parts, 1)
    if need_dx and not by_col2im:
        dx = _dx_flipped(dz, w, x_shape, stride, padding, dilation)
    return dx, dw, db


def _backward_cl(dz, x, w, x_shape, stride, padding, dilation, need, algorithm, threads):
    """Channels-last backward, one pass over chunks of whole images; dZ is made channels-last
    once per chunk and serves dW (``dZ^T @ colsT``), db and dX.  None if an image is over budget."""
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    kernel = (kh, kw)
    ho, wo = dz.shape[2:]
    p = ho * wo
    dt = dz.dtype
    need_dx, need_dw, need_db = need
    ckk = c * kh * kw
    pointwise = _is_pointwise(kernel, padding)
    if need_dx and not pointwise and algorithm == "flipped" and any(s > 1 for s in stride):
        # the zero-inserted form (a reference path, never chosen by default): dW/db here, dX there
        dw_db = _backward_cl(dz, x, w, x_shape, stride, padding, dilation, (False, need[1], need[2]),
                             algorithm, threads)
        if dw_db is None:
            return None
        return _dx_flipped(dz, w, x_shape, stride, padding, dilation, "channels_last"), dw_db[1], dw_db[2]
    flipped = need_dx and not pointwise and algorithm == "flipped"
    by_col2im = need_dx and not pointwise and not flipped
    per_image = p * o
    if need_dw:
        per_image += _cl_columns_elems((h, wd), c, kernel, stride, padding, dilation, (ho, wo))
    if by_col2im:
        per_image += p * ckk + h * wd * c
    if flipped:
        pairs = _flip_pairs((h, wd), (ho, wo), kernel, dilation, padding)
        per_image += _cl_columns_elems((ho, wo), o, kernel, (1, 1), pairs, dilation, (h, wd)) + h * wd * c
    if pointwise and need_dx:
        per_image += p * c
    plan = _whole_image_plan(n, per_image * dt.itemsize, threads)
    if plan is None:
        return None
    w2 = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(ckk, o))  # (i, j, c) x O
    w2t = np.ascontiguousarray(w2.T)
    if flipped:
        wf = _flip_transpose(w)  # (C, O, K_h, K_w)
        wf2 = np.ascontiguousarray(wf.transpose(2, 3, 1, 0).reshape(kh * kw * o, c))
    strided_dx = pointwise and (any(s > 1 for s in stride) or (h, wd) != (ho, wo))
    dx = None
    if need_dx:
        dx = np.zeros(x_shape, dtype=dt) if strided_dx else workspace.output(x_shape, dt)

    def work(ch):
        n0, n1 = ch[:2]
        nb = n1 - n0
        dzh = workspace.buffer("dzh", (nb, ho, wo, o), dt)
        np.copyto(dzh, dz[n0:n1].transpose(0, 2, 3, 1))
        dz2 = dzh.reshape(nb * p, o)
        part_w = part_b = None
        if need_dw:
            cols = _cl_columns(x, n0, n1, kernel, stride, padding, dilation, (ho, wo), dt)
            part_w = _dot(cols.T, dz2)  # (K*K*C, O): this chunk's share of dW^T, taps (i, j, c)
        if need_db:
            part_b = dz2.sum(axis=0)
        if need_dx:
            if pointwise:
                dxh = np.matmul(dz2, w2t, out=workspace.buffer("dxT", (nb * p, c), dt))
                src = dxh.reshape(nb, ho, wo, c).transpose(0, 3, 1, 2)
                dst = _subsample(dx[n0:n1], stride, (ho, wo)) if strided_dx else dx[n0:n1]
                np.copyto(dst, src)
            elif flipped:
                colsz = _cl_columns(dzh, 0, nb, kernel, (1, 1), pairs, dilation, (h, wd), dt,
                                    channels_last_src=True, name="colsZ")
                dxt = np.matmul(colsz, wf2, out=workspace.buffer("dxT", (nb * h * wd, c), dt))
                np.copyto(dx[n0:n1].reshape(nb, c, h * wd), dxt.reshape(nb, h * wd, c).transpose(0, 2, 1))
            else:
                dcols = workspace.buffer("dcolsT", (nb, ho, wo, kh, kw, c), dt)
                np.matmul(dz2, w2t, out=dcols.reshape(nb * p, ckk))
                dxh = workspace.buffer("dxh", (nb, h, wd, c), dt)
                dxh[...] = 0
                col2im_chunk_add_cl(dcols, dxh, kernel, stride, padding, dilation)
                np.copyto(dx[n0:n1], dxh.transpose(0, 3, 1, 2))
        return part_w, part_b

    parts = parallel.run_chunks(work, plan, threads, _QUIET)
    dw = db = None
    if need_dw:
        dw = np.ascontiguousarray(_sum_parts(parts, 0).reshape(kh, kw, c, o).transpose(3, 2, 0, 1))
    if need_db:
        db = _sum_parts(parts, 1)
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
