"""Naive references for convolution and transposed convolution, forward and backward.

Every function walks the index sets one element at a time, transcribing the formulas (0-based;
``g`` is the group an output channel belongs to, C_g / O_g the channels per group)::

    z[n, o, p, q] = b[o] + sum_c sum_i sum_j w[o, c, i, j] * xpad[n, g*C_g + c, p*S_h + i*d_h, q*S_w + j*d_w]

Backward follows the lecture's loop: each dZ element scatters ``w * dz`` into the derivative of
the padded input (whose padding is then cut off), and each filter tap collects
``dW[o, c, i, j] = sum dZ[n, o, p, q] * xpad[n, ., p*S + i*d, q*S + j*d]``.

Arguments are normalised with ``striate.kernels.shapes`` only; no fast kernel is called.
"""

from __future__ import annotations

import numpy as np

from ..kernels.shapes import as_padding, as_tuple

__all__ = [
    "conv1d", "conv1d_backward", "conv2d", "conv2d_backward",
    "conv_transpose1d", "conv_transpose1d_backward", "conv_transpose2d", "conv_transpose2d_backward",
]


def _args(nd, w_shape, stride, padding, dilation):
    stride = as_tuple(stride, nd, "stride", minimum=1)
    dilation = as_tuple(dilation, nd, "dilation", minimum=1)
    pairs = as_padding(padding, nd, kernel=w_shape[2:], dilation=dilation, stride=stride)
    return stride, pairs, dilation


def _zero_pad(x, pairs):
    """xpad[..., h + lo, w + lo_w] = x[..., h, w]; zeros elsewhere."""
    shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pairs))
    xpad = np.zeros(shape, dtype=x.dtype)
    xpad[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[2:], pairs))] = x
    return xpad


def _out_size(n, k, s, pair, d):
    return (n + pair[0] + pair[1] - d * (k - 1) - 1) // s + 1


# ------------------------------------------------------------------------------------- conv2d

def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """z[n, o, p, q] = sum_c sum_i sum_j w[o, c, i, j] * xpad[n, g*C_g + c, p*S + i*d, q*S + j*d] + b[o]."""
    (sh, sw), pairs, (dh, dw) = _args(2, w.shape, stride, padding, dilation)
    xpad = _zero_pad(x, pairs)
    n_, _, h, wd = x.shape
    o_, cg, kh, kw = w.shape
    og = o_ // groups
    ho, wo = _out_size(h, kh, sh, pairs[0], dh), _out_size(wd, kw, sw, pairs[1], dw)
    z = np.zeros((n_, o_, ho, wo), dtype=x.dtype)
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for p in range(ho):
                for q in range(wo):
                    acc = 0.0
                    for c in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += w[o, c, i, j] * xpad[n, g * cg + c, p * sh + i * dh, q * sw + j * dw]
                    z[n, o, p, q] = acc + (b[o] if b is not None else 0.0)
    return z


def conv2d_backward(dz, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db) of :func:`conv2d` by the lecture's scatter loop.

    Each dz[n, o, p, q] adds ``w[o, c, i, j] * dz`` to dxpad at the sample it multiplied and
    ``xpad * dz`` to dw[o, c, i, j]; db[o] sums dz[:, o].  dx is dxpad without its padding.
    """
    (sh, sw), pairs, (dh, dw_) = _args(2, w.shape, stride, padding, dilation)
    xpad = _zero_pad(x, pairs)
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    db = None if b is None else np.zeros_like(b)
    n_, o_, ho, wo = dz.shape
    _, cg, kh, kw = w.shape
    og = o_ // groups
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for p in range(ho):
                for q in range(wo):
                    d = dz[n, o, p, q]
                    for c in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i * dh, q * sw + j * dw_
                                dxpad[n, g * cg + c, r, s] += w[o, c, i, j] * d
                                dw[o, c, i, j] += d * xpad[n, g * cg + c, r, s]
                    if db is not None:
                        db[o] += d
    (lo_h, _), (lo_w, _) = pairs
    dx = dxpad[:, :, lo_h:lo_h + x.shape[2], lo_w:lo_w + x.shape[3]].copy()
    return dx, dw, db


# ------------------------------------------------------------------------------------- conv1d

def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """z[n, o, p] = sum_c sum_i w[o, c, i] * xpad[n, g*C_g + c, p*S + i*d] + b[o]."""
    (s,), pairs, (dl,) = _args(1, w.shape, stride, padding, dilation)
    xpad = _zero_pad(x, pairs)
    n_, _, length = x.shape
    o_, cg, k = w.shape
    og = o_ // groups
    lo = _out_size(length, k, s, pairs[0], dl)
    z = np.zeros((n_, o_, lo), dtype=x.dtype)
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for p in range(lo):
                acc = 0.0
                for c in range(cg):
                    for i in range(k):
                        acc += w[o, c, i] * xpad[n, g * cg + c, p * s + i * dl]
                z[n, o, p] = acc + (b[o] if b is not None else 0.0)
    return z


def conv1d_backward(dz, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db) of :func:`conv1d`: the 1-D scatter loop."""
    (s,), pairs, (dl,) = _args(1, w.shape, stride, padding, dilation)
    xpad = _zero_pad(x, pairs)
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    db = None if b is None else np.zeros_like(b)
    n_, o_, lo = dz.shape
    _, cg, k = w.shape
    og = o_ // groups
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for p in range(lo):
                d = dz[n, o, p]
                for c in range(cg):
                    for i in range(k):
                        r = p * s + i * dl
                        dxpad[n, g * cg + c, r] += w[o, c, i] * d
                        dw[o, c, i] += d * xpad[n, g * cg + c, r]
                if db is not None:
                    db[o] += d
    start = pairs[0][0]
    return dxpad[:, :, start:start + x.shape[2]].copy(), dw, db


# ---------------------------------------------------------------------------- transposed conv

def _t_args(nd, stride, padding, output_padding, dilation):
    stride = as_tuple(stride, nd, "stride", minimum=1)
    dilation = as_tuple(dilation, nd, "dilation", minimum=1)
    output_padding = as_tuple(output_padding, nd, "output_padding", minimum=0)
    pad = as_tuple(padding, nd, "padding", minimum=0)
    return stride, pad, output_padding, dilation


def _t_size(n, k, s, p, a, d):
    return (n - 1) * s - 2 * p + d * (k - 1) + a + 1


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Scatter form: out[n, g*O_g + o, p*S + i*d - pad, q*S + j*d - pad] += x[n, c, p, q] * w[c, o, i, j].

    ``x (N, C, H, W)``, ``w (C, O_g, K_h, K_w)``; output size (H-1)*S - 2*pad + d*(K-1) + output_padding + 1.
    Contributions landing outside the output (in the cut padding) are dropped.
    """
    (sh, sw), (ph, pw), (ah, aw), (dh, dw) = _t_args(2, stride, padding, output_padding, dilation)
    n_, c_, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c_ // groups
    ht, wt = _t_size(h, kh, sh, ph, ah, dh), _t_size(wd, kw, sw, pw, aw, dw)
    out = np.zeros((n_, og * groups, ht, wt), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            g = c // cg
            for p in range(h):
                for q in range(wd):
                    for o in range(og):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i * dh - ph, q * sw + j * dw - pw
                                if 0 <= r < ht and 0 <= s < wt:
                                    out[n, g * og + o, r, s] += x[n, c, p, q] * w[c, o, i, j]
    if b is not None:
        for n in range(n_):
            for o in range(og * groups):
                out[n, o] += b[o]
    return out


def conv_transpose2d_backward(dy, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """(dx, dw, db) of :func:`conv_transpose2d`: every scatter ``out[..r, s] += x * w`` sends
    ``w * dy[.., r, s]`` back to dx and ``x * dy[.., r, s]`` to dw; db[o] sums dy[:, o]."""
    (sh, sw), (ph, pw), _, (dh, dw_) = _t_args(2, stride, padding, output_padding, dilation)
    n_, c_, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c_ // groups
    ht, wt = dy.shape[2:]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for n in range(n_):
        for c in range(c_):
            g = c // cg
            for p in range(h):
                for q in range(wd):
                    for o in range(og):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i * dh - ph, q * sw + j * dw_ - pw
                                if 0 <= r < ht and 0 <= s < wt:
                                    d = dy[n, g * og + o, r, s]
                                    dx[n, c, p, q] += w[c, o, i, j] * d
                                    dw[c, o, i, j] += x[n, c, p, q] * d
    db = None
    if b is not None:
        db = np.zeros_like(b)
        for o in range(og * groups):
            db[o] = dy[:, o].sum()
    return dx, dw, db


def conv_transpose1d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """out[n, g*O_g + o, p*S + i*d - pad] += x[n, c, p] * w[c, o, i]."""
    (s,), (pd,), (a,), (dl,) = _t_args(1, stride, padding, output_padding, dilation)
    n_, c_, length = x.shape
    _, og, k = w.shape
    cg = c_ // groups
    lt = _t_size(length, k, s, pd, a, dl)
    out = np.zeros((n_, og * groups, lt), dtype=x.dtype)
    for n in range(n_):
        for c in range(c_):
            g = c // cg
            for p in range(length):
                for o in range(og):
                    for i in range(k):
                        r = p * s + i * dl - pd
                        if 0 <= r < lt:
                            out[n, g * og + o, r] += x[n, c, p] * w[c, o, i]
    if b is not None:
        for n in range(n_):
            for o in range(og * groups):
                out[n, o] += b[o]
    return out


def conv_transpose1d_backward(dy, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """(dx, dw, db) of :func:`conv_transpose1d`, the 1-D scatter loop run backwards."""
    (s,), (pd,), _, (dl,) = _t_args(1, stride, padding, output_padding, dilation)
    n_, c_, length = x.shape
    _, og, k = w.shape
    cg = c_ // groups
    lt = dy.shape[2]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for n in range(n_):
        for c in range(c_):
            g = c // cg
            for p in range(length):
                for o in range(og):
                    for i in range(k):
                        r = p * s + i * dl - pd
                        if 0 <= r < lt:
                            d = dy[n, g * og + o, r]
                            dx[n, c, p] += w[c, o, i] * d
                            dw[c, o, i] += x[n, c, p] * d
    db = None
    if b is not None:
        db = np.zeros_like(b)
        for o in range(og * groups):
            db[o] = dy[:, o].sum()
    return dx, dw, db
