"""Point-wise activations and the softmax family: forward/backward pairs on NumPy arrays.

A point-wise activation maps every element on its own, ``y = f(x)``, so by the chain rule its
backward is a point-wise product, ``dx = dy * f'(x)``.  Each backward reads whichever saved array
gives ``f'`` most cheaply: the output where the derivative is a function of it (sigmoid:
``y (1 - y)``, tanh: ``1 - y^2``, ELU's negative branch: ``y + alpha``), the input otherwise.

The softmax family couples the elements of one slice along ``dim``::

    softmax:      y_i = exp(x_i - m) / sum_j exp(x_j - m)          m = max_j x_j
    backward:     dx_i = y_i (dy_i - sum_j dy_j y_j)
    log_softmax:  y_i = (x_i - m) - log sum_j exp(x_j - m)
    backward:     dx_i = dy_i - exp(y_i) sum_j dy_j

Subtracting the row maximum changes nothing mathematically and keeps ``exp`` from overflowing.

Everything here is stable for large ``|x|``: no overflow reaches a result or a gradient (an
overflow would be a RuntimeWarning, and an inf or NaN downstream).  The one overflow allowed on
purpose is exp(-x) -> inf inside the sigmoid for x < -88 (float32) / -709 (float64), where
1 / (1 + inf) = 0 is the correctly rounded answer; its warning is silenced locally.  The output
dtype is the input dtype; Python-float hyper-parameters never promote float32.

GELU needs the error function, which NumPy lacks: :func:`erf` and :func:`erfc` below implement
W. J. Cody's rational Chebyshev approximations (Math. Comp. 23, 1969) vectorised over arrays,
accurate to a few units in the last place in float64.

Selections between two branches use a bitwise blend instead of ``np.where``, which is about ten
times slower on the unpredictable sign patterns of activations (see :func:`_select`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import get_array_module
from . import parallel, workspace
from .shapes import DimError, ShapeError, fmt_shape, normalize_dim

__all__ = [
    "DimError", "normalize_dim",
    "erf", "erfc",
    "relu_forward", "relu_backward",
    "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward", "SELU_ALPHA", "SELU_SCALE",
    "gelu_forward", "gelu_backward",
    "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "hardtanh_forward", "hardtanh_backward",
    "hardsigmoid_forward", "hardsigmoid_backward",
    "hardswish_forward", "hardswish_backward",
    "silu_forward", "silu_backward",
    "mish_forward", "mish_backward",
    "softplus_forward", "softplus_backward",
    "logsigmoid_forward", "logsigmoid_backward",
    "threshold_forward", "threshold_backward",
    "prelu_forward", "prelu_backward",
    "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
]

# SELU's constants (Klambauer et al. 2017), as PyTorch spells them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# ---------------------------------------------------------------------------------------------
# validation


def _check_input(x, op: str) -> np.ndarray:
    """``x`` as an ndarray of floating point numbers, or a TypeError naming dtype and shape."""
    x = _asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{op}: input must be a floating-point array, got dtype {x.dtype} with shape "
            f"{fmt_shape(x.shape)}; convert it explicitly (e.g. .astype(np.float32))"
        )
    return x


def _asarray(x):
    """``np.asarray(x)``, except that a device (CuPy) array stays where it is."""
    return x if type(x) is np.ndarray or get_array_module(x) is not np else np.asarray(x)


def _on_host(*arrays) -> bool:
    """True when the arrays are NumPy's (the threaded fast paths apply)."""
    return get_array_module(*arrays) is np


def _scalar(value, name: str, op: str) -> float:
    """A real hyper-parameter as a Python float, so that it never promotes float32 to float64."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    return float(value)


# np.where with an unpredictable mask (the sign pattern of activations) runs about ten times
# slower than a branch-free blend of the floats' bit patterns: with m = -cond as an integer
# (all ones or all zeros), where(cond, a, b) == (a & m) | (b & ~m) bit for bit.
_INT_OF_SIZE = {2: np.int16, 4: np.int32, 8: np.int64}


def _mask_bits(cond: np.ndarray, itype) -> np.ndarray:
    m = cond.astype(itype)
    np.negative(m, out=m)
    return m


def _keep(cond: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``a`` where ``cond``, else +0 (``np.where(cond, a, 0)``, bit-exact, branch-free)."""
    if not _on_host(cond, a):
        return get_array_module(cond, a).where(cond, a, a.dtype.type(0))
    it = _INT_OF_SIZE[a.dtype.itemsize]
    m = _mask_bits(cond, it)
    np.bitwise_and(m, a.view(it), out=m)
    return m.view(a.dtype)


def _select(cond: np.ndarray, a, b, dtype) -> np.ndarray:
    """``np.where(cond, a, b)`` of ``dtype``, bit-exact and branch-free; a and b may be scalars."""
    dtype = np.dtype(dtype)
    if not _on_host(cond, a, b):  # a device module: its where is a fused kernel already
        xp = get_array_module(cond, a, b)
        a = dtype.type(a) if np.isscalar(a) else a
        b = dtype.type(b) if np.isscalar(b) else b
        return xp.where(cond, a, b).astype(dtype, copy=False)
    it = _INT_OF_SIZE[dtype.itemsize]
    a = np.asarray(a, dtype=dtype).view(it)
    b = np.asarray(b, dtype=dtype).view(it)
    m = _mask_bits(cond, it)
    out = np.bitwise_and(m, a)
    np.invert(m, out=m)
    np.bitwise_and(m, b, out=m)
    np.bitwise_or(out, m, out=out)
    return out.view(dtype)


def _pointwise_forward(fn):
    """Let an element-wise forward kernel written with in-place ufuncs accept 0-d arrays (on
    which NumPy's ufuncs return scalars): run it on the 1-element view and reshape back."""

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        x = _asarray(x)
        if x.ndim == 0:
            y, cache = fn(x.reshape(1), *args, **kwargs)
            return y.reshape(()), cache
        return fn(x, *args, **kwargs)

    return wrapper


def _pointwise_backward(fn):
    """The backward counterpart of :func:`_pointwise_forward`."""

    @functools.wraps(fn)
    def wrapper(dy, cache):
        dy = _asarray(dy)
        if dy.ndim == 0:
            return fn(dy.reshape(1), cache).reshape(())
        return fn(dy, cache)

    return wrapper


# ---------------------------------------------------------------------------------------------
# the error function (W. J. Cody, "Rational Chebyshev approximations for the error function")
#
#   |x| <= 0.46875:      erf(x)  = x P1(x^2) / Q1(x^2)
#   0.46875 < |x| <= 4:  erfc(x) = exp(-x^2) P2(|x|) / Q2(|x|)
#   |x| > 4:             erfc(x) = exp(-x^2) / |x| (1/sqrt(pi) - z P3(z) / Q3(z)),  z = 1/x^2
#
# exp(-x^2) is formed as exp(-s^2) exp(-(x - s)(x + s)) with s = x rounded down to 1/16: s^2 is
# exact, so the rounding error of x^2 (which exp would multiply by up to 700) never appears.

_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1
_ERF_SMALL = 0.46875
# erfc(x) underflows to 0 (even as a float64 subnormal) beyond x = 27.3; clipping there keeps
# x^2 finite for huge arguments without changing a single result.
_ERF_CLIP = 30.0


def _horner(coefs, t, lead=None):
    """sum_k coefs[k] t^(n-k) by Horner's rule (highest power first), in place on one array.

    ``lead`` (optional) is the leading coefficient; None means a monic polynomial (lead 1).
    """
    acc = t * lead if lead is not None else t.copy()
    for c in coefs[:-1]:
        acc += c
        acc *= t
    acc += coefs[-1]
    return acc


def _erf_small(x: np.ndarray) -> np.ndarray:
    """erf(x) = x P1(x^2) / Q1(x^2), Cody's first interval |x| <= 0.46875."""
    t = x * x
    num = _horner(_ERF_A[:4], t, lead=_ERF_A[4])
    num /= _horner(_ERF_B, t)
    num *= x  # last, so that a subnormal x is rounded only once
    return num


def _erfc_abs(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y >= 0.46875 (values below give finite garbage, selected away by callers).

    Every element goes through the second interval's rational; the asymptotic third interval is
    evaluated only when some y exceeds 4.  No boolean indexing: gathering and scattering by an
    unpredictable mask costs more than evaluating a rational on the whole array.
    """
    y = np.minimum(y, _ERF_CLIP)  # NaN passes through np.minimum
    r = _horner(_ERF_C[:8], y, lead=_ERF_C[8])
    r /= _horner(_ERF_D, y)
    tail = y > 4.0
    if tail.any():
        y3 = np.maximum(y, 4.0)
        z = y3 * y3
        np.reciprocal(z, out=z)
        r3 = _horner(_ERF_P[:5], z, lead=_ERF_P[5])
        r3 /= _horner(_ERF_Q, z)
        r3 *= z
        np.subtract(_ONE_OVER_SQRT_PI, r3, out=r3)
        r3 /= y3
        r = _select(tail, r3, r, r.dtype)
    # multiply by exp(-y^2) = exp(-s^2) exp(-(y - s)(y + s)), s = floor(16 y) / 16
    s = y * 16.0
    np.trunc(s, out=s)
    s /= 16.0
    rest = y - s
    rest *= y + s
    s *= s
    np.negative(s, out=s)
    np.exp(s, out=s)
    np.negative(rest, out=rest)
    np.exp(rest, out=rest)
    r *= s
    r *= rest
    return r


def _erf_dtype(x: np.ndarray):
    """Work dtype: float16 is evaluated in float32 (the coefficients need the range)."""
    return np.float32 if x.dtype == np.float16 else x.dtype


def _erf_pair(x, want_erf: bool) -> np.ndarray:
    """erf(x) or erfc(x): Cody's first interval where |x| <= 0.46875, erfc(|x|) elsewhere."""
    x = _asarray(x)
    work = x.astype(_erf_dtype(x), copy=False).reshape(-1)
    with np.errstate(under="ignore"):
        small = np.abs(work) <= _ERF_SMALL
        if small.all():
            out = _erf_small(work)
            if not want_erf:
                np.subtract(1.0, out, out=out)
        else:
            r = _erfc_abs(np.abs(work))  # erfc(|x|)
            if want_erf:
                # erf(x) = sign(x) (1 - erfc(|x|)): an exact subtraction as erfc(|x|) <= 1/2
                np.subtract(1.0, r, out=r)
                out = np.copysign(r, work, out=r)
            else:
                # erfc(-y) = 2 - erfc(y)
                out = _select(work < 0, 2.0 - r, r, r.dtype)
            if small.any():
                # clipped so that huge |x| (selected away below) cannot overflow x^2
                inner = _erf_small(np.clip(work, -_ERF_SMALL, _ERF_SMALL))
                if not want_erf:
                    np.subtract(1.0, inner, out=inner)
                out = _select(small, inner, out, out.dtype)
    return out.astype(x.dtype, copy=False).reshape(x.shape)


def erf(x) -> np.ndarray:
    """The error function erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt, element-wise.

    Relative error about 1e-16 in float64 (Cody's approximations); float32 is evaluated in
    float32, float16 in float32.  erf(+-inf) = +-1, erf(nan) = nan.
    """
    return _erf_pair(x, want_erf=True)


def erfc(x) -> np.ndarray:
    """The complementary error function erfc(x) = 1 - erf(x), accurate also where it is tiny.

    Relative error about 1e-15 in float64 down to the smallest normal numbers (x ~ 26.5).
    erfc(-inf) = 2, erfc(+inf) = 0, erfc(nan) = nan.
    """
    return _erf_pair(x, want_erf=False)


# ---------------------------------------------------------------------------------------------
# piece-wise linear units


@_pointwise_forward
def relu_forward(x):
    """y = max(x, 0).  x (*) -> y (*); the cache is y.  Arrays of two blocks or more are split
    over the cores (:func:`striate.kernels.parallel.map_blocks`)."""
    x = _check_input(x, "relu")
    if x.flags.c_contiguous and _on_host(x):
        y = workspace.output(x.shape, x.dtype)
        parallel.map_blocks(_relu_into, y, x)
        return y, y
    y = np.maximum(x, 0)
    return y, y


_ROWS = (8192, 1024)  # lengths of relu's zero row, longest first: see _relu_into
_ZERO_ROWS: dict = {}


def _relu_into(out, x):
    """``out = max(x, 0)`` for C-contiguous arrays.  NumPy's maximum against a scalar takes a
    slow loop (2.3x slower here than against an array); against a row of zeros broadcast over
    rows of as many values it takes the vectorised array-array loop -- same values, bit for bit.
    The row is the longest of ``_ROWS`` that divides the array: per row the loop pays a fixed
    cost, and a 2 MiB block took 0.83 ms in rows of 1,024 values, 0.60 ms in rows of 8,192
    (AMD EPYC, one thread)."""
    row = next((r for r in _ROWS if x.size % r == 0), None) if x.size else None
    if row is None:
        np.maximum(x, 0, out=out)
        return
    zero = _ZERO_ROWS.get((x.dtype, row))
    if zero is None:
        zero = _ZERO_ROWS[x.dtype, row] = np.zeros(row, dtype=x.dtype)
        zero.flags.writeable = False
    np.maximum(x.reshape(-1, row), zero, out=out.reshape(-1, row))


@_pointwise_backward
def relu_backward(dy, cache):
    """dx = dy where y > 0, else 0 (PyTorch's convention: zero gradient at x = 0)."""
    y = cache
    if dy.shape == y.shape and dy.flags.c_contiguous and y.flags.c_contiguous and _on_host(dy, y):
        dx = workspace.output(dy.shape, dy.dtype)
        parallel.map_blocks(_relu_grad_into, dx, dy, y)
        return dx
    return _relu_grad(dy, y)


def _relu_grad_into(out, dy, y):
    """``out = dy where not (y <= 0) else +0``, bit-exact (an infinite dy where y <= 0 gives 0,
    not the NaN of ``dy * mask``), built in ``out`` itself: a reused mask buffer and integer
    passes, no temporary of the array's size (fresh memory costs a page fault per 4 KiB).
    Three passes: ``le = y <= 0`` (bytes), ``m = le - 1`` in place (int8: 0 where y <= 0, all
    ones elsewhere, NaN included, as in PyTorch), ``out = dy & m`` (the int8 mask sign-extended
    to dy's width inside the loop).  Keeping the mask one byte wide instead of widening it into
    ``out`` first: 274 -> 221 us per 2 MiB block (AMD EPYC, one thread), the same bits."""
    it = _INT_OF_SIZE[dy.dtype.itemsize]
    le = workspace.buffer("relu_keep", y.shape, bool).view(np.int8)
    np.less_equal(y, 0, out=le.view(bool))
    np.subtract(le, 1, out=le)
    np.bitwise_and(dy.view(it), le, out=out.view(it))


def _relu_grad(dy, y):
    keep = y <= 0
    np.logical_not(keep, out=keep)  # not (y <= 0): a NaN passes its gradient, as in PyTorch
    return _keep(keep, dy)


@_pointwise_forward
def leaky_relu_forward(x, negative_slope: float = 0.01):
    """y = x for x > 0, negative_slope * x otherwise.  The cache is (x, slope).

    For 0 <= slope <= 1 this is max(x, slope x), for slope > 1 min(x, slope x).
    """
    x = _check_input(x, "leaky_relu")
    slope = _scalar(negative_slope, "negative_slope", "leaky_relu")
    scaled = x * slope
    if 0.0 <= slope <= 1.0:
        return np.maximum(x, scaled, out=scaled), (x, slope)
    if slope > 1.0:
        return np.minimum(x, scaled, out=scaled), (x, slope)
    return _select(x > 0, x, scaled, x.dtype), (x, slope)


@_pointwise_backward
def leaky_relu_backward(dy, cache):
    """dx = dy for x > 0, negative_slope * dy otherwise (the slope also at x = 0)."""
    x, slope = cache
    return _select(x > 0, dy, dy * slope, dy.dtype)


@_pointwise_forward
def hardtanh_forward(x, min_val: float = -1.0, max_val: float = 1.0):
    """y = clip(x, min_val, max_val).  The cache is (x, min_val, max_val)."""
    x = _check_input(x, "hardtanh")
    lo = _scalar(min_val, "min_val", "hardtanh")
    hi = _scalar(max_val, "max_val", "hardtanh")
    if lo > hi:
        raise ValueError(f"hardtanh: min_val ({lo}) cannot be greater than max_val ({hi})")
    return np.clip(x, lo, hi), (x, lo, hi)


@_pointwise_backward
def hardtanh_backward(dy, cache):
    """dx = dy strictly inside (min_val, max_val), 0 elsewhere (also on the two kinks)."""
    x, lo, hi = cache
    keep = x <= lo
    keep |= x >= hi
    np.logical_not(keep, out=keep)
    return _keep(keep, dy)


@_pointwise_forward
def hardsigmoid_forward(x):
    """y = clip(x + 3, 0, 6) / 6, the piece-wise linear sigmoid.  The cache is x."""
    x = _check_input(x, "hardsigmoid")
    y = x + 3.0
    np.clip(y, 0.0, 6.0, out=y)
    y /= 6.0
    return y, x


@_pointwise_backward
def hardsigmoid_backward(dy, cache):
    """dx = dy / 6 for -3 < x < 3, else 0."""
    x = cache
    keep = x > -3.0
    keep &= x < 3.0
    return _keep(keep, dy / 6.0)


@_pointwise_forward
def hardswish_forward(x):
    """y = x clip(x + 3, 0, 6) / 6.  The cache is x."""
    x = _check_input(x, "hardswish")
    g = x + 3.0
    np.clip(g, 0.0, 6.0, out=g)
    g /= 6.0  # before the product, so that x * 6 cannot overflow for huge x
    g *= x
    return g, x


@_pointwise_backward
def hardswish_backward(dy, cache):
    """dx = 0 for x <= -3, dy (x/3 + 1/2) for -3 < x < 3, dy for x >= 3 (PyTorch's kink choice)."""
    x = cache
    mid = x / 3.0
    mid += 0.5
    mid *= dy
    out = _select(x < 3.0, mid, dy, dy.dtype)
    keep = x <= -3.0
    np.logical_not(keep, out=keep)
    return _keep(keep, out)


@_pointwise_forward
def threshold_forward(x, threshold: float, value: float):
    """y = value where x <= threshold, else x.  The cache is (x, threshold)."""
    x = _check_input(x, "threshold")
    t = _scalar(threshold, "threshold", "threshold")
    v = _scalar(value, "value", "threshold")
    return _select(x <= t, v, x, x.dtype), (x, t)


@_pointwise_backward
def threshold_backward(dy, cache):
    """dx = 0 where x <= threshold, else dy."""
    x, t = cache
    keep = x <= t
    np.logical_not(keep, out=keep)
    return _keep(keep, dy)


def prelu_forward(x, weight):
    """y = x for x > 0, a_c x otherwise, one learnt slope per channel (axis 1) or one in all.

    Shapes: x (N, C, *) or any shape when weight has one element; weight (C,), (1,) or ().
    The cache is (x, weight, the weight broadcast to x's rank).
    """
    x = _check_input(x, "prelu")
    weight = _asarray(weight)
    if weight.dtype != x.dtype:
        raise TypeError(
            f"prelu: dtype mismatch: input is {x.dtype} {fmt_shape(x.shape)} but weight is "
            f"{weight.dtype} {fmt_shape(weight.shape)}; convert one explicitly"
        )
    if weight.ndim > 1:
        raise ShapeError(f"prelu: weight must be a scalar or 1-D, got shape {fmt_shape(weight.shape)}")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if weight.size != 1 and weight.size != channels:
        raise ShapeError(
            f"prelu: weight {fmt_shape(weight.shape)} has {weight.size} slopes but input "
            f"{fmt_shape(x.shape)} has {channels} channels (axis 1); give 1 or {channels}"
        )
    if weight.size == 1 or x.ndim < 2:
        a = weight.reshape(())
    else:
        a = weight.reshape((1, channels) + (1,) * (x.ndim - 2))
    return _select(x > 0, x, a * x, x.dtype), (x, weight, a)


def prelu_backward(dy, cache, need=(True, True)):
    """dx = dy for x > 0, a dy otherwise;  da_c = sum over all but axis 1 of dy x where x <= 0."""
    x, weight, a = cache
    pos = x > 0
    dx = _select(pos, dy, a * dy, dy.dtype) if need[0] else None
    dw = None
    if need[1]:
        np.logical_not(pos, out=pos)
        contrib = _keep(pos, dy * x)
        if weight.size == 1 or x.ndim < 2:
            dw = contrib.sum().reshape(weight.shape)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            dw = contrib.sum(axis=axes).reshape(weight.shape)
    return dx, dw


# ---------------------------------------------------------------------------------------------
# exponential units


@_pointwise_forward
def elu_forward(x, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0):
    """y = scale x for x > 0, scale alpha (exp(input_scale x) - 1) otherwise.

    ELU is (alpha, 1, 1); SELU is (SELU_ALPHA, SELU_SCALE, 1); CELU is (alpha, 1, 1/alpha).
    The cache is (x, y, alpha scale, scale, input_scale).
    """
    x = _check_input(x, "elu")
    alpha = _scalar(alpha, "alpha", "elu")
    scale = _scalar(scale, "scale", "elu")
    input_scale = _scalar(input_scale, "input_scale", "elu")
    neg_coef = alpha * scale
    # y = scale max(x, 0) + scale alpha expm1(input_scale min(x, 0)): each term vanishes exactly
    # on the other side of 0, so no selection is needed; expm1 keeps the relative accuracy of
    # exp(t) - 1 for small t, and min(x, 0) keeps huge positive inputs out of the exponential
    t = np.minimum(x, 0)
    t *= input_scale
    with np.errstate(over="ignore"):  # only a negative input_scale can overflow, as in PyTorch
        np.expm1(t, out=t)
    t *= neg_coef
    y = np.maximum(x, 0)
    if scale != 1.0:
        y *= scale
    y += t
    return y, (x, y, neg_coef, scale, input_scale)


@_pointwise_backward
def elu_backward(dy, cache):
    """dx = scale dy for x > 0; otherwise input_scale (y + alpha scale) dy, since
    d/dx [alpha scale (exp(s x) - 1)] = s alpha scale exp(s x) = s (y + alpha scale)."""
    x, y, neg_coef, scale, input_scale = cache
    neg = y + neg_coef
    neg *= input_scale
    neg *= dy
    return _select(x <= 0, neg, dy * scale if scale != 1.0 else dy, dy.dtype)


# ---------------------------------------------------------------------------------------------
# sigmoid-like units


def _exp_neg_abs(x):
    """exp(-|x|), in (0, 1]: the one exponential every stable logistic formula needs."""
    e = np.abs(x)
    np.negative(e, out=e)
    with np.errstate(under="ignore"):
        np.exp(e, out=e)
    return e


def _sigmoid(x, negate: bool = False):
    """sigmoid(x) = 1 / (1 + exp(-x)) (or sigmoid(-x) with ``negate``), accurate for every x.

    For x < 0, exp(-x) is large but 1 / (1 + exp(-x)) keeps full relative accuracy; below
    x = -88.7 (float32) / -709.8 (float64) exp(-x) becomes +inf and the result its exact limit
    1 / inf = 0 (the true value is below the smallest normal number there).  That overflow is
    intended, so its warning is silenced.
    """
    t = x.copy() if negate else np.negative(x)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(t, out=t)
    t += 1.0
    np.reciprocal(t, out=t)
    return t


@_pointwise_forward
def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x)), evaluated without overflow for any x.  The cache is y."""
    x = _check_input(x, "sigmoid")
    y = _sigmoid(x)
    return y, y


@_pointwise_backward
def sigmoid_backward(dy, cache):
    """dx = dy y (1 - y)."""
    y = cache
    return dy * (1.0 - y) * y


@_pointwise_forward
def tanh_forward(x):
    """y = tanh(x).  The cache is y."""
    x = _check_input(x, "tanh")
    y = np.tanh(x)
    return y, y


@_pointwise_backward
def tanh_backward(dy, cache):
    """dx = dy (1 - y^2)."""
    y = cache
    return dy * (1.0 - y * y)


@_pointwise_forward
def silu_forward(x):
    """y = x sigmoid(x) (SiLU, a.k.a. swish).  The cache is (x, sigmoid(x))."""
    x = _check_input(x, "silu")
    s = _sigmoid(x)
    return x * s, (x, s)


@_pointwise_backward
def silu_backward(dy, cache):
    """dx = dy s (1 + x (1 - s)), s = sigmoid(x)."""
    x, s = cache
    g = 1.0 - s
    g *= x
    g += 1.0
    g *= s
    g *= dy
    return g


def _softplus_stable(z, e):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), with e = exp(-|z|): never overflows."""
    return np.maximum(z, 0) + np.log1p(e)


@_pointwise_forward
def softplus_forward(x, beta: float = 1.0, threshold: float = 20.0):
    """y = log(1 + exp(beta x)) / beta, and y = x where beta x > threshold (linear regime).

    The cache is (beta x, threshold).
    """
    x = _check_input(x, "softplus")
    beta = _scalar(beta, "beta", "softplus")
    threshold = _scalar(threshold, "threshold", "softplus")
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero (the function divides by it)")
    z = x * beta
    e = _exp_neg_abs(z)
    soft = _softplus_stable(z, e)
    if beta != 1.0:
        soft /= beta
    return _select(z > threshold, x, soft, x.dtype), (z, threshold)


@_pointwise_backward
def softplus_backward(dy, cache):
    """dx = dy sigmoid(beta x), and dx = dy where beta x > threshold."""
    z, threshold = cache
    return _select(z > threshold, dy, dy * _sigmoid(z), dy.dtype)


@_pointwise_forward
def logsigmoid_forward(x):
    """y = log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)).  The cache is x."""
    x = _check_input(x, "logsigmoid")
    e = _exp_neg_abs(x)
    np.log1p(e, out=e)
    return np.minimum(x, 0) - e, x


@_pointwise_backward
def logsigmoid_backward(dy, cache):
    """dx = dy (1 - sigmoid(x)) = dy sigmoid(-x)."""
    x = cache
    return dy * _sigmoid(x, negate=True)


@_pointwise_forward
def mish_forward(x):
    """y = x tanh(softplus(x)).  The cache is (x, tanh(softplus(x)))."""
    x = _check_input(x, "mish")
    t = np.tanh(_softplus_stable(x, _exp_neg_abs(x)))
    return x * t, (x, t)


@_pointwise_backward
def mish_backward(dy, cache):
    """dx = dy (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x)), since softplus' = sigmoid."""
    x, t = cache
    g = 1.0 - t * t
    g *= _sigmoid(x)
    g *= x
    g += t
    g *= dy
    return g


# ---------------------------------------------------------------------------------------------
# GELU

_SQRT1_2 = 0.70710678118654752440  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)
_GELU_BETA = 0.79788456080286535588  # sqrt(2 / pi)
_GELU_KAPPA = 0.044715
# tanh(sqrt(2/pi) (x + 0.044715 x^3)) is exactly +-1 in float32 and float64 beyond |x| = 10, so
# clipping x at 100 inside the tanh changes nothing and keeps x^3 finite.
_GELU_TANH_CLIP = 100.0
# exp(-x^2 / 2) underflows to 0 beyond |x| = 38.6; clipping at 40 keeps x^2 finite.
_GELU_PDF_CLIP = 40.0


@_pointwise_forward
def gelu_forward(x, approximate: str = "none"):
    """y = x Phi(x), Phi the standard normal CDF.

    ``approximate='none'``: Phi(x) = erfc(-x / sqrt 2) / 2 (exact, via :func:`erfc`).
    ``approximate='tanh'``: Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2.
    The cache is (x, approximate, Phi(x) or the tanh).
    """
    x = _check_input(x, "gelu")
    if approximate == "none":
        cdf = erfc(x * -_SQRT1_2)
        cdf *= 0.5
        return x * cdf, (x, "none", cdf)
    if approximate == "tanh":
        xc = np.clip(x, -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
        inner = xc * xc
        inner *= _GELU_KAPPA
        inner += 1.0
        inner *= xc
        inner *= _GELU_BETA
        t = np.tanh(inner)
        y = t + 1.0
        y *= x
        y *= 0.5
        return y, (x, "tanh", t)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@_pointwise_backward
def gelu_backward(dy, cache):
    """'none': dx = dy (Phi(x) + x phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi).

    'tanh': with u = sqrt(2/pi) (x + k x^3) and t = tanh(u),
    dx = dy ((1 + t) / 2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 k x^2)).
    """
    x, approximate, saved = cache
    if approximate == "none":
        cdf = saved
        a = np.abs(x)
        np.minimum(a, _GELU_PDF_CLIP, out=a)
        a *= a
        a *= -0.5
        with np.errstate(under="ignore"):
            np.exp(a, out=a)
        a *= _INV_SQRT_2PI
        a *= x
        a += cdf
        a *= dy
        return a
    t = saved
    xc = np.clip(x, -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
    d = xc * xc
    d *= 3.0 * _GELU_KAPPA
    d += 1.0
    d *= _GELU_BETA
    d *= 1.0 - t * t
    d *= xc
    d += 1.0 + t
    d *= 0.5
    d *= dy
    return d


# ---------------------------------------------------------------------------------------------
# softmax family


def _softmax_parts(x, dim: int, op: str):
    """(axis, x - max over the axis) with x viewed as at least 1-D."""
    x = _check_input(x, op)
    axis = normalize_dim(dim, x.shape, op)
    x1 = x.reshape(1) if x.ndim == 0 else x
    if x1.size == 0:
        return axis, x1.copy()
    m = np.max(x1, axis=axis, keepdims=True)
    # inf - inf = nan (a row holding +inf, or only -inf) is PyTorch's answer too: no warning
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x1 - m
    return axis, shifted


def softmax_forward(x, dim: int):
    """y_i = exp(x_i - m) / sum_j exp(x_j - m) along ``dim`` (m the maximum there).

    x (*) -> y (*), same shape; ``dim`` in [-ndim, ndim).  The cache is (y, axis).
    """
    axis, e = _softmax_parts(x, dim, "softmax")
    with np.errstate(under="ignore", invalid="ignore"):
        np.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
    y = e.reshape(np.shape(x))
    return y, (y, axis)


def softmax_backward(dy, cache):
    """dx_i = y_i (dy_i - sum_j dy_j y_j), the Jacobian diag(y) - y y^T applied to dy."""
    y, axis = cache
    if y.ndim == 0:
        return np.zeros_like(dy)
    dx = dy * y
    s = dx.sum(axis=axis, keepdims=True)
    dx -= y * s
    return dx


def log_softmax_forward(x, dim: int):
    """y_i = (x_i - m) - log sum_j exp(x_j - m) along ``dim``.  The cache is (y, axis)."""
    axis, shifted = _softmax_parts(x, dim, "log_softmax")
    if shifted.size:
        with np.errstate(under="ignore", invalid="ignore"):
            lse = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
            shifted -= lse
    y = shifted.reshape(np.shape(x))
    return y, (y, axis)


def log_softmax_backward(dy, cache):
    """dx_i = dy_i - softmax(x)_i sum_j dy_j, with softmax(x) = exp(y)."""
    y, axis = cache
    if y.ndim == 0:
        return np.zeros_like(dy)
    with np.errstate(under="ignore"):
        p = np.exp(y)
    p *= dy.sum(axis=axis, keepdims=True)
    return dy - p

