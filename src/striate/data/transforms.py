"""Augmentation transforms in NumPy, driven by an explicit ``numpy.random.Generator``.

A convolutional network gets some tolerance to shifts from weight sharing and pooling; tolerance
to flips, scaling, rotation and deformation it has to learn from examples that show them.  These
transforms make such examples.

Every transform works on a batch ``(N, C, H, W)`` -- each image draws its own parameters -- or on
one image ``(C, H, W)``, and never modifies its input::

    from striate.data import transforms as T

    aug = T.Compose([T.RandomRotation(15), T.RandomScale((0.9, 1.1)),
                     T.ElasticDeformation(alpha=34, sigma=4), T.RandomHorizontalFlip()])
    out = aug(images, np.random.default_rng(0))                 # images only
    out, masks, boxes = aug.apply(images, rng, masks=masks, boxes=boxes)  # jointly

Geometry
--------
Pixel ``(row i, column j)`` has its centre at index coordinates ``(y, x) = (i, j)``.  A geometric
transform is a map from *output* coordinates to *source* coordinates; the output value is the
source image sampled there (backward warping, so every output pixel gets exactly one value).
Affine transforms are 3x3 matrices acting about the image centre ``((W-1)/2, (H-1)/2)``::

    p_out = c_out + s * R(angle) @ Shear(shx, shy) @ (p_src - c_in) + t

with ``R(angle)`` a counter-clockwise rotation as seen on screen (so ``rotate(x, 90)`` is
``np.rot90(x, axes=(-2, -1))``).  Consecutive geometric transforms in a :class:`Compose` are
fused: their matrices multiply, an elastic stage adds its displacement, and the image is
resampled **once** with a single gather for the whole batch.

Resampling is bilinear for images and nearest-neighbour for segmentation masks.  Source
coordinates outside the image follow ``boundary``: ``"zeros"`` (a constant ``fill``, 0 by default;
after standardisation 0 is the dataset mean) or ``"edge"`` (the nearest border pixel).
Coordinates within 1e-6 px of a pixel centre snap to it, so identities, flips, quarter turns and
integer shifts copy values exactly.

Bounding boxes are ``(x0, y0, x1, y1)`` in pixel-edge coordinates: pixel ``j`` spans
``[j, j + 1)``, so a box over columns 3..5 has ``x0 = 3, x1 = 6``.  Under an affine map a box
becomes the axis-aligned box around its four transformed corners, clipped to the output image;
under an elastic deformation it becomes the box around the output pixels whose source lies in it.
A box that leaves the image ends up with zero area (see :func:`box_area`).

Elastic deformation (Simard, Steinkraus & Platt 2003): draw a displacement ``u(p)`` uniform in
[-1, 1] per pixel and axis, smooth it with a Gaussian of width ``sigma`` (a separable
convolution, done here as two small matrix products), scale it by ``alpha`` and sample the image
at ``p + u(p)``.  Small ``sigma`` gives random jitter; large ``sigma`` nearly a translation;
``alpha = 34, sigma = 4`` makes the handwriting-like wobble of the paper on 28x28 digits.

CLI specs (``striate train --augment``): see :func:`parse_augment`.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import numpy as np

from .dataset import Normalize

__all__ = [
    "BOUNDARIES",
    # building blocks
    "sample_bilinear", "sample_nearest", "gaussian_smoothing_matrix", "affine_matrix", "box_area",
    # transforms
    "Transform", "Compose", "Lambda", "Affine", "RandomAffine", "RandomRotation", "RandomScale",
    "RandomTranslate", "RandomShear", "RandomShift", "RandomCrop", "RandomResizedCrop",
    "RandomHorizontalFlip", "RandomVerticalFlip", "RandomTranspose", "ElasticDeformation",
    "RandomBrightness", "RandomContrast", "Normalize",
    # functional helpers
    "hflip", "vflip", "transpose", "rotate", "affine", "elastic", "adjust_brightness", "adjust_contrast",
    "random_shift",
    # CLI
    "parse_augment", "AUGMENT_HELP",
]

BOUNDARIES = ("zeros", "edge")
_SNAP = 1e-6


# ============================================================================ sampling kernels


def _snap(g: np.ndarray) -> np.ndarray:
    """Coordinates within 1e-6 px of an integer become that integer (exact copies, no blur)."""
    r = np.rint(g)
    return np.where(np.abs(g - r) < _SNAP, r, g)


def _check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    return boundary


def sample_bilinear(images: np.ndarray, gx: np.ndarray, gy: np.ndarray, boundary: str = "zeros",
                    fill: float = 0.0) -> np.ndarray:
    """Bilinear samples of ``images`` (N, C, H, W) at source coordinates ``gx, gy`` (N, Ho, Wo).

    ``out[n, c, i, j] = sum over the 4 neighbours q of (gy, gx)[n, i, j] of  w_q * images[n, c, q]``
    with the usual weights ``(1-fx)(1-fy), fx(1-fy), (1-fx)fy, fx*fy``.  A neighbour outside the
    image contributes ``fill`` (``boundary="zeros"``); with ``"edge"`` the coordinates are first
    clamped into ``[0, W-1] x [0, H-1]``.  All 4 x N x Ho x Wo neighbours come from one
    ``take_along_axis`` gather.  Returns the images' floating dtype (integers become float32).
    """
    _check_boundary(boundary)
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"sample_bilinear expects images (N, C, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    n, c, h, w = x.shape
    if gx.shape != gy.shape or gx.ndim != 3 or gx.shape[0] != n:
        raise ValueError(f"sample_bilinear: grids must both be (N={n}, Ho, Wo), got {gx.shape} and {gy.shape}")
    ho, wo = gx.shape[1:]
    gx = np.asarray(gx, dtype=np.float64)
    gy = np.asarray(gy, dtype=np.float64)
    if boundary == "edge":
        gx = np.clip(gx, 0, w - 1)
        gy = np.clip(gy, 0, h - 1)
    x0 = np.floor(gx)
    y0 = np.floor(gy)
    fx = (gx - x0).astype(x.dtype)
    fy = (gy - y0).astype(x.dtype)
    x0 = x0.astype(np.intp)
    y0 = y0.astype(np.intp)
    # 1-D weights, zeroed for neighbours outside the image; the corner weights are their products
    wx0 = np.where((x0 >= 0) & (x0 < w), 1 - fx, 0)
    wx1 = np.where((x0 >= -1) & (x0 < w - 1), fx, 0)
    wy0 = np.where((y0 >= 0) & (y0 < h), 1 - fy, 0)
    wy1 = np.where((y0 >= -1) & (y0 < h - 1), fy, 0)
    wts = np.stack([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1], axis=1)  # (N, 4, Ho, Wo)
    # flat indices of the 4 neighbours; out-of-image ones are clamped (their weight is 0)
    base = (y0 * w + x0)[:, None] + np.array([0, 1, w, w + 1]).reshape(1, 4, 1, 1)
    np.clip(base, 0, h * w - 1, out=base)
    vals = np.take_along_axis(x.reshape(n, c, h * w), base.reshape(n, 1, 4 * ho * wo), axis=2)
    out = (vals.reshape(n, c, 4, ho, wo) * wts[:, None]).sum(axis=2)
    if fill != 0 and boundary == "zeros":
        out += x.dtype.type(fill) * (1 - wts.sum(axis=1))[:, None]
    return out


def sample_nearest(arrays: np.ndarray, gx: np.ndarray, gy: np.ndarray, boundary: str = "zeros",
                   fill=0) -> np.ndarray:
    """Nearest-neighbour samples of ``arrays`` (N, C, H, W), any dtype (segmentation masks, labels).

    The sample for source coordinate ``g`` is pixel ``floor(g + 0.5)``; outside the image it is
    ``fill`` (``boundary="zeros"``) or the nearest border pixel (``"edge"``).  dtype preserved.
    """
    _check_boundary(boundary)
    m = np.asarray(arrays)
    if m.ndim != 4:
        raise ValueError(f"sample_nearest expects (N, C, H, W), got shape {m.shape}")
    n, c, h, w = m.shape
    ho, wo = gx.shape[1:]
    xi = np.floor(np.asarray(gx, dtype=np.float64) + 0.5)
    yi = np.floor(np.asarray(gy, dtype=np.float64) + 0.5)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi = np.clip(xi, 0, w - 1).astype(np.intp)
    yi = np.clip(yi, 0, h - 1).astype(np.intp)
    vals = np.take_along_axis(m.reshape(n, c, h * w), (yi * w + xi).reshape(n, 1, ho * wo), axis=2)
    vals = vals.reshape(n, c, ho, wo)
    if boundary == "zeros":
        vals = np.where(inside[:, None], vals, np.asarray(fill, dtype=m.dtype))
    return vals


def gaussian_smoothing_matrix(size: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The (size, size) matrix ``S`` with ``S @ v`` = ``v`` convolved with a normalised Gaussian.

    The kernel ``g[k] ~ exp(-k^2 / (2 sigma^2))``, ``|k| <= round(truncate * sigma)``, sums to 1;
    beyond the ends the signal is mirrored (``... b a | a b c ... | c b ...``), so every row of
    ``S`` sums to 1.  ``sigma = 0`` gives the identity.  A 2-D Gaussian blur of ``f`` (H, W) is
    the separable product ``S_H @ f @ S_W.T``.
    """
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    if sigma == 0:
        return np.eye(size)
    r = max(1, int(truncate * sigma + 0.5))
    k = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    g /= g.sum()
    src = np.arange(size)[:, None] + k[None, :]  # (size, 2r+1) source index of each tap
    m = np.mod(src, 2 * size)  # half-sample symmetric reflection, any overshoot
    src = np.where(m < size, m, 2 * size - 1 - m)
    S = np.zeros((size, size))
    np.add.at(S, (np.broadcast_to(np.arange(size)[:, None], src.shape), src), np.broadcast_to(g, src.shape))
    return S


def affine_matrix(n: int, in_size, out_size=None, angle=0.0, scale=1.0, shear=(0.0, 0.0),
                  translate=(0.0, 0.0)) -> np.ndarray:
    """Forward matrices (n, 3, 3) mapping source index coordinates ``(x, y, 1)`` to output ones.

    ``p_out = c_out + scale * R(angle) @ Shear @ (p_src - c_in) + translate`` where ``c`` is the
    centre ``((W-1)/2, (H-1)/2)``, ``R(a) = [[cos a, sin a], [-sin a, cos a]]`` (counter-clockwise on
    screen, y pointing down), ``Shear = [[1, tan shx], [tan shy, 1]]``; angles in degrees.  Each
    argument is a scalar or a per-sample array of length ``n``; ``shear`` is ``shx`` or
    ``(shx, shy)``, ``translate`` is ``(tx, ty)`` in pixels (x right, y down).
    """
    h, w = in_size
    ho, wo = out_size if out_size is not None else in_size
    a = np.deg2rad(np.broadcast_to(np.asarray(angle, dtype=np.float64), (n,)))
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,))
    shx, shy = (shear, 0.0) if np.ndim(shear) == 0 else shear  # a number shears along x only
    shx = np.tan(np.deg2rad(np.broadcast_to(np.asarray(shx, dtype=np.float64), (n,))))
    shy = np.tan(np.deg2rad(np.broadcast_to(np.asarray(shy, dtype=np.float64), (n,))))
    tx, ty = translate
    tx = np.broadcast_to(np.asarray(tx, dtype=np.float64), (n,))
    ty = np.broadcast_to(np.asarray(ty, dtype=np.float64), (n,))
    cos, sin = np.cos(a), np.sin(a)
    R = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)  # (n, 2, 2)
    Sh = np.stack([np.stack([np.ones(n), shx], -1), np.stack([shy, np.ones(n)], -1)], -2)
    A = s[:, None, None] * (R @ Sh)
    c_in = np.array([(w - 1) / 2, (h - 1) / 2])
    c_out = np.array([(wo - 1) / 2, (ho - 1) / 2])
    F = np.zeros((n, 3, 3))
    F[:, :2, :2] = A
    F[:, :2, 2] = c_out - A @ c_in + np.stack([tx, ty], -1)
    F[:, 2, 2] = 1.0
    return F


def _invert_affine(F: np.ndarray) -> np.ndarray:
    """Closed-form inverse of affine matrices (n, 3, 3) with last row (0, 0, 1)."""
    a, b, c, d = F[:, 0, 0], F[:, 0, 1], F[:, 1, 0], F[:, 1, 1]
    det = a * d - b * c
    if np.any(np.abs(det) < 1e-12):
        raise ValueError("a geometric transform is singular (scale 0?); cannot resample")
    inv = np.zeros_like(F)
    inv[:, 0, 0], inv[:, 0, 1] = d / det, -b / det
    inv[:, 1, 0], inv[:, 1, 1] = -c / det, a / det
    inv[:, :2, 2] = -(inv[:, :2, :2] @ F[:, :2, 2:3])[:, :, 0]
    inv[:, 2, 2] = 1.0
    return inv


def box_area(boxes) -> np.ndarray:
    """Areas of boxes ``(..., 4)`` ``(x0, y0, x1, y1)``; 0 for boxes transformed out of the image."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


# ============================================================================ transform classes


def _need_rng(rng, who):
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise TypeError(f"{who} is random: pass a numpy Generator, e.g. np.random.default_rng(seed)")
    return np.random.default_rng(rng)


def _range(value, name, centre=0.0, lo_bound=None):
    """``v`` -> ``(centre - v, centre + v)``; a pair is kept; checks ``lo <= hi``."""
    if isinstance(value, numbers.Real):
        if value < 0:
            raise ValueError(f"{name} must be >= 0 (or a (lo, hi) pair), got {value}")
        lo, hi = centre - float(value), centre + float(value)
    else:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or a (lo, hi) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} range must be finite with lo <= hi, got ({lo}, {hi})")
    if lo_bound is not None and lo <= lo_bound:
        raise ValueError(f"{name} must stay above {lo_bound}, got range ({lo}, {hi})")
    return lo, hi


def _size_pair(size, name):
    if size is None:
        return None
    if isinstance(size, numbers.Integral):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {size}")
    return h, w


def _prob(p, name="p"):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {p}")
    return p


class Transform:
    """Base class.  ``t(images, rng)`` returns transformed images; ``t.apply(images, rng, masks,
    boxes)`` returns ``(images, masks, boxes)`` transformed jointly.

    Subclasses are either *geometric* (``geometric = True``; they implement ``_plan`` and move
    pixels, masks and boxes) or *photometric* (they implement ``_photometric`` and change values only).
    """

    geometric = False
    boundary = "zeros"
    fill = 0.0

    def __call__(self, images, rng=None):
        return self.apply(images, rng)[0]

    def apply(self, images, rng=None, masks=None, boxes=None, mask_fill=0):
        """Images ``(N, C, H, W)`` or ``(C, H, W)``; masks ``(N, H, W)``/``(N, K, H, W)`` (or without
        N for one image), resampled nearest-neighbour (``mask_fill`` outside); boxes ``(N, K, 4)``,
        ``(N, 4)``, a list of ``(K_i, 4)`` arrays (or ``(K, 4)``/``(4,)`` for one image)."""
        return Compose([self]).apply(images, rng, masks=masks, boxes=boxes, mask_fill=mask_fill)

    # geometric: (n, (H, W), rng) -> ((Ho, Wo), "affine", F (n, 3, 3)) or ((H, W), "field", u (n, 2, H, W))
    def _plan(self, n, size, rng):  # pragma: no cover - interface
        raise NotImplementedError

    # photometric: (images (N, C, H, W) float, rng) -> images
    def _photometric(self, images, rng):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Lambda(Transform):
    """A photometric transform from a function ``fn(images)`` (or ``fn(images, rng)``)."""

    def __init__(self, fn: Callable, needs_rng: bool = False):
        if not callable(fn):
            raise TypeError(f"Lambda needs a callable, got {type(fn).__name__}")
        self.fn, self.needs_rng = fn, needs_rng

    def _photometric(self, images, rng):
        return np.asarray(self.fn(images, rng) if self.needs_rng else self.fn(images))


def _as_transform(t) -> Transform:
    if isinstance(t, Transform):
        return t
    if callable(t):
        return Lambda(t)
    raise TypeError(f"Compose takes transforms or callables, got {type(t).__name__}")


def _geometry_key(t):
    return (t.boundary, t.fill)


class Compose(Transform):
    """Apply ``transforms`` in order.  Runs of consecutive geometric transforms with the same
    boundary handling are fused into one resampling (one gather for the whole batch); the random
    parameters are drawn from ``rng`` in the listed order, so a seed fixes everything."""

    def __init__(self, transforms: Sequence):
        self.transforms = [_as_transform(t) for t in transforms]

    @property
    def geometric(self):  # type: ignore[override]
        return False

    def __call__(self, images, rng=None):
        return self.apply(images, rng)[0]

    def apply(self, images, rng=None, masks=None, boxes=None, mask_fill=0):
        x = np.asarray(images)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"transforms expect images (N, C, H, W) or (C, H, W), got shape {np.shape(images)}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        n = x.shape[0]
        if rng is not None and not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)  # a seed: one generator shared by all stages
        m, m_squeeze = _prepare_masks(masks, single, x.shape)
        b, b_restore = _prepare_boxes(boxes, single, n)
        flat = _flatten(self.transforms)
        out = x
        i = 0
        while i < len(flat):
            t = flat[i]
            if not t.geometric:
                out = np.asarray(t._photometric(out, rng))
                i += 1
                continue
            j = i
            while j < len(flat) and flat[j].geometric and _geometry_key(flat[j]) == _geometry_key(t):
                j += 1
            out, m, b = _warp(flat[i:j], out, rng, m, b, mask_fill)
            i = j
        if out is x:
            out = x.copy()
        if single:
            out = out[0]
        masks_out = None if m is None else m_squeeze(m)
        boxes_out = None if b is None else b_restore(b)
        return out, masks_out, boxes_out

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def _flatten(ts):
    out = []
    for t in ts:
        if isinstance(t, Compose):
            out.extend(_flatten(t.transforms))
        else:
            out.append(t)
    return out


def _prepare_masks(masks, single, xshape):
    if masks is None:
        return None, None
    m = np.asarray(masks)
    if single:
        m = m[None]
    n, _, h, w = xshape
    if m.ndim == 3:
        m4, squeeze = m[:, None], (lambda a: a[:, 0][0] if single else a[:, 0])
    elif m.ndim == 4:
        m4, squeeze = m, (lambda a: a[0] if single else a)
    else:
        raise ValueError(f"masks must be (N, H, W) or (N, K, H, W) (without N for one image), got {np.shape(masks)}")
    if m4.shape[0] != n or m4.shape[2:] != (h, w):
        raise ValueError(f"masks of shape {np.shape(masks)} do not match images of shape {xshape}")
    return m4, squeeze


def _prepare_boxes(boxes, single, n):
    """Boxes -> (flat (M, 4) float64, sample index (M,)) and a function restoring the input layout."""
    if boxes is None:
        return None, None
    if isinstance(boxes, (list, tuple)) and not single:  # per-image (K_i, 4) arrays
        if len(boxes) != n:
            raise ValueError(f"boxes: got a list of {len(boxes)} entries for a batch of {n} images")
        arrays = [np.asarray(bx, dtype=np.float64).reshape(-1, 4) for bx in boxes]
        counts = [len(a) for a in arrays]
        flat = np.concatenate(arrays) if arrays else np.zeros((0, 4))
        idx = np.repeat(np.arange(n), counts)
        splits = np.cumsum(counts)[:-1]
        return (flat, idx), (lambda fb: [a for a in np.split(fb[0], splits)])
    b = np.asarray(boxes, dtype=np.float64)
    shape = b.shape
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes must end in 4 coordinates (x0, y0, x1, y1), got shape {shape}")
    if single:
        b = b[None]
    if b.ndim == 2:
        b = b[:, None]
    if b.ndim != 3 or b.shape[0] != n:
        raise ValueError(f"boxes of shape {shape} do not match a batch of {n} images")
    k = b.shape[1]
    flat = b.reshape(-1, 4)
    idx = np.repeat(np.arange(n), k)
    return (flat, idx), (lambda fb: fb[0].reshape(shape))


def _warp(stages, x, rng, masks, boxes, mask_fill):
    """Resample ``x`` (and masks, boxes) once through the composition of geometric ``stages``."""
    n, c, h, w = x.shape
    size = (h, w)
    segments = []  # ("affine", F) or ("field", u); F maps segment input -> output coordinates
    for st in stages:
        out_size, kind, data = st._plan(n, size, rng)
        if kind == "field" and not np.any(data):  # alpha = 0: no displacement at all
            kind, data = "affine", np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        if kind == "affine" and segments and segments[-1][0] == "affine":
            segments[-1] = ("affine", data @ segments[-1][1])
        else:
            segments.append((kind, data))
        size = out_size
    boundary, fill = stages[0].boundary, stages[0].fill
    ho, wo = size
    if (ho, wo) == (h, w) and all(k == "affine" and np.array_equal(F, np.broadcast_to(np.eye(3), F.shape))
                                  for k, F in segments):
        return x.copy(), (None if masks is None else masks.copy()), boxes  # exact identity
    gy, gx = np.meshgrid(np.arange(ho, dtype=np.float64), np.arange(wo, dtype=np.float64), indexing="ij")
    gx = np.broadcast_to(gx, (n, ho, wo))
    gy = np.broadcast_to(gy, (n, ho, wo))
    for kind, data in reversed(segments):
        if kind == "affine":
            M = _invert_affine(data)
            gx, gy = (M[:, 0, 0, None, None] * gx + M[:, 0, 1, None, None] * gy + M[:, 0, 2, None, None],
                      M[:, 1, 0, None, None] * gx + M[:, 1, 1, None, None] * gy + M[:, 1, 2, None, None])
        else:  # displacement field on this stage's output grid, sampled where the coordinates are
            sx, sy = _snap(gx), _snap(gy)
            on_grid = np.array_equal(sx, np.floor(sx)) and np.array_equal(sy, np.floor(sy))
            d = (sample_nearest if on_grid else sample_bilinear)(data, sx, sy, boundary="edge")
            gx, gy = gx + d[:, 0], gy + d[:, 1]
    gx, gy = _snap(gx), _snap(gy)
    out = sample_bilinear(x, gx, gy, boundary, fill)
    if masks is not None:
        masks = sample_nearest(masks, gx, gy, boundary, mask_fill)
    if boxes is not None:
        if all(k == "affine" for k, _ in segments):
            F = segments[0][1] if segments else np.broadcast_to(np.eye(3), (n, 3, 3))
            boxes = _boxes_affine(boxes, F, (ho, wo))
        else:
            boxes = _boxes_from_grid(boxes, gx, gy)
    return out, masks, boxes


def _boxes_affine(boxes, F, out_size):
    flat, idx = boxes
    if len(flat) == 0:
        return boxes
    ho, wo = out_size
    x0, y0, x1, y1 = (flat[:, k] - 0.5 for k in range(4))  # edges -> index coordinates
    cx = np.stack([x0, x1, x0, x1], 1)
    cy = np.stack([y0, y0, y1, y1], 1)
    Fi = F[idx]
    px = Fi[:, 0, 0, None] * cx + Fi[:, 0, 1, None] * cy + Fi[:, 0, 2, None] + 0.5
    py = Fi[:, 1, 0, None] * cx + Fi[:, 1, 1, None] * cy + Fi[:, 1, 2, None] + 0.5
    out = np.stack([np.clip(px.min(1), 0, wo), np.clip(py.min(1), 0, ho),
                    np.clip(px.max(1), 0, wo), np.clip(py.max(1), 0, ho)], 1)
    return _snap(out), idx


def _boxes_from_grid(boxes, gx, gy):
    """New box = the box around output pixels whose source centre lies inside the old box."""
    flat, idx = boxes
    if len(flat) == 0:
        return boxes
    sx, sy = gx[idx], gy[idx]  # (M, Ho, Wo)
    inside = ((sx >= flat[:, 0, None, None] - 0.5) & (sx < flat[:, 2, None, None] - 0.5)
              & (sy >= flat[:, 1, None, None] - 0.5) & (sy < flat[:, 3, None, None] - 0.5))
    rows, cols = inside.any(axis=2), inside.any(axis=1)
    ho, wo = rows.shape[1], cols.shape[1]
    y0 = rows.argmax(1)
    y1 = ho - rows[:, ::-1].argmax(1)
    x0 = cols.argmax(1)
    x1 = wo - cols[:, ::-1].argmax(1)
    out = np.stack([x0, y0, x1, y1], 1).astype(np.float64)
    out[~rows.any(1)] = 0.0
    return out, idx


# ----------------------------------------------------------------------------- geometric


class _Geometric(Transform):
    geometric = True

    def __init__(self, boundary: str = "zeros", fill: float = 0.0):
        self.boundary = _check_boundary(boundary)
        self.fill = float(fill)


class Affine(_Geometric):
    """A fixed affine transform (see :func:`affine_matrix`); each argument a scalar or per-sample array.

    ``Affine(angle=30)`` rotates every image by 30 degrees counter-clockwise, ``Affine(scale=1.2)``
    zooms in by 20 %, ``Affine(translate=(2, -1))`` moves content 2 px right and 1 px up.
    """

    def __init__(self, angle=0.0, scale=1.0, shear=(0.0, 0.0), translate=(0.0, 0.0), boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        self.angle, self.scale, self.shear, self.translate = angle, scale, shear, translate
        if np.any(np.asarray(scale) == 0):
            raise ValueError("Affine: scale must be non-zero")

    def _plan(self, n, size, rng):
        return size, "affine", affine_matrix(n, size, size, self.angle, self.scale, self.shear, self.translate)


class RandomAffine(_Geometric):
    """Per-image random affine: angle uniform in ``degrees`` (``d`` -> ``(-d, d)``), scale uniform in
    ``scale`` (a ``(lo, hi)`` pair; a number ``s`` -> ``(1-s, 1+s)``), x/y shear angles uniform in
    ``shear`` (degrees), translation uniform in ``translate`` pixels on each axis (``t`` -> ``(-t, t)``).

    The draws, in this order, are one uniform array of length N each: angle, scale, shear x,
    shear y, translation x, translation y.  A zero-width range gives its identity value exactly.
    """

    def __init__(self, degrees=0.0, scale=(1.0, 1.0), shear=0.0, translate=0.0, boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        self.degrees = _range(degrees, "degrees")
        self.scale = _range(scale, "scale", centre=1.0, lo_bound=0.0)
        self.shear = _range(shear, "shear")
        self.translate = _range(translate, "translate")

    def _plan(self, n, size, rng):
        rng = _need_rng(rng, type(self).__name__)
        angle = rng.uniform(*self.degrees, n)
        scale = rng.uniform(*self.scale, n)
        shx = rng.uniform(*self.shear, n)
        shy = rng.uniform(*self.shear, n)
        tx = rng.uniform(*self.translate, n)
        ty = rng.uniform(*self.translate, n)
        return size, "affine", affine_matrix(n, size, size, angle, scale, (shx, shy), (tx, ty))

    def __repr__(self):
        identity = {"degrees": (0.0, 0.0), "scale": (1.0, 1.0), "shear": (0.0, 0.0), "translate": (0.0, 0.0)}
        parts = [f"{k}={getattr(self, k)}" for k, v in identity.items() if getattr(self, k) != v]
        if self.boundary != "zeros" or self.fill:
            parts.append(f"boundary={self.boundary!r}" + (f", fill={self.fill}" if self.fill else ""))
        return f"{type(self).__name__}({', '.join(parts)})"


class RandomRotation(RandomAffine):
    """Rotation by an angle uniform in ``(-degrees, degrees)`` (or a ``(lo, hi)`` pair)."""

    def __init__(self, degrees, boundary="zeros", fill=0.0):
        super().__init__(degrees=degrees, boundary=boundary, fill=fill)


class RandomScale(RandomAffine):
    """Isotropic zoom about the centre by a factor uniform in ``scale`` (``s`` -> ``(1-s, 1+s)``)."""

    def __init__(self, scale, boundary="zeros", fill=0.0):
        super().__init__(scale=scale, boundary=boundary, fill=fill)


class RandomTranslate(RandomAffine):
    """Sub-pixel translation uniform in ``(-t, t)`` pixels on each axis (bilinear)."""

    def __init__(self, translate, boundary="zeros", fill=0.0):
        super().__init__(translate=translate, boundary=boundary, fill=fill)


class RandomShear(RandomAffine):
    """Shear along x and y by angles uniform in ``(-degrees, degrees)``."""

    def __init__(self, degrees, boundary="zeros", fill=0.0):
        super().__init__(shear=degrees, boundary=boundary, fill=fill)


class RandomShift(_Geometric):
    """Integer translation by ``(dy, dx)`` uniform in ``[-max_shift, max_shift]`` (exact pixel copies).

    Draws ``oy = integers(0, 2K+1, N)`` then ``ox`` like :func:`random_shift`, so with zero fill
    the two give identical results for the same generator.
    """

    def __init__(self, max_shift: int = 2, boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        if int(max_shift) != max_shift or max_shift < 0:
            raise ValueError(f"max_shift must be an integer >= 0, got {max_shift}")
        self.max_shift = int(max_shift)

    def _plan(self, n, size, rng):
        rng = _need_rng(rng, "RandomShift")
        s = self.max_shift
        oy = rng.integers(0, 2 * s + 1, n)
        ox = rng.integers(0, 2 * s + 1, n)
        return size, "affine", affine_matrix(n, size, size, translate=(s - ox, s - oy))


class RandomCrop(_Geometric):
    """Pad by ``padding`` (per ``boundary``), then crop a ``size`` window at a random integer offset.

    ``size`` defaults to the input size (then this is a random integer shift by up to ``padding``).
    """

    def __init__(self, size=None, padding: int = 0, boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        self.size = _size_pair(size, "size")
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {padding}")
        self.padding = int(padding)

    def _plan(self, n, size, rng):
        rng = _need_rng(rng, "RandomCrop")
        h, w = size
        ho, wo = self.size or size
        p = self.padding
        if ho > h + 2 * p or wo > w + 2 * p:
            raise ValueError(f"RandomCrop: crop {ho}x{wo} is larger than the padded image {h + 2 * p}x{w + 2 * p}")
        oy = rng.integers(0, h + 2 * p - ho + 1, n)
        ox = rng.integers(0, w + 2 * p - wo + 1, n)
        F = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        F[:, 0, 2] = p - ox
        F[:, 1, 2] = p - oy
        return (ho, wo), "affine", F


class RandomResizedCrop(_Geometric):
    """Crop a random region and resize it to ``size`` (default: the input size), bilinearly.

    The region's area is a fraction uniform in ``scale`` of the image's, its aspect ratio
    log-uniform in ``ratio``; it is clamped to fit and placed uniformly at random (continuous
    offsets).  No anti-aliasing: keep the shrink factor moderate.
    """

    def __init__(self, size=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        self.size = _size_pair(size, "size")
        self.scale = _range(scale, "scale", lo_bound=0.0)
        self.ratio = _range(ratio, "ratio", lo_bound=0.0)
        if self.scale[1] > 1:
            raise ValueError(f"RandomResizedCrop: scale must lie in (0, 1], got {self.scale}")

    def _plan(self, n, size, rng):
        rng = _need_rng(rng, "RandomResizedCrop")
        h, w = size
        ho, wo = self.size or size
        area = h * w * rng.uniform(*self.scale, n)
        r = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), n))
        cw = np.minimum(np.sqrt(area * r), w)
        ch = np.minimum(np.sqrt(area / r), h)
        x0 = rng.uniform(0, 1, n) * (w - cw)
        y0 = rng.uniform(0, 1, n) * (h - ch)
        sx, sy = wo / cw, ho / ch
        F = np.zeros((n, 3, 3))
        F[:, 0, 0], F[:, 1, 1], F[:, 2, 2] = sx, sy, 1.0
        F[:, 0, 2] = (0.5 - x0) * sx - 0.5  # edge coordinate x0 -> 0, x0 + cw -> wo
        F[:, 1, 2] = (0.5 - y0) * sy - 0.5
        return (ho, wo), "affine", F


class _RandomFlip(_Geometric):
    _matrix = None

    def __init__(self, p: float = 0.5, boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        self.p = _prob(p)

    def _chosen(self, n, rng):
        if self.p == 1.0:
            return np.ones(n, bool)
        if self.p == 0.0:
            return np.zeros(n, bool)
        return _need_rng(rng, type(self).__name__).random(n) < self.p

    def _plan(self, n, size, rng):
        h, w = size
        F = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        F[self._chosen(n, rng)] = self._flip(h, w)
        return size, "affine", F


class RandomHorizontalFlip(_RandomFlip):
    """Mirror left-right (``x -> W-1-x``) with probability ``p`` per image."""

    @staticmethod
    def _flip(h, w):
        return np.array([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]])


class RandomVerticalFlip(_RandomFlip):
    """Mirror top-bottom (``y -> H-1-y``) with probability ``p`` per image."""

    @staticmethod
    def _flip(h, w):
        return np.array([[1.0, 0, 0], [0, -1, h - 1], [0, 0, 1]])


class RandomTranspose(_RandomFlip):
    """Swap rows and columns (mirror about the main diagonal) with probability ``p``.

    With ``0 < p < 1`` the images must be square (a batch cannot mix shapes)."""

    def _plan(self, n, size, rng):
        h, w = size
        chosen = self._chosen(n, rng)
        if h != w and 0 < chosen.sum() < n:
            raise ValueError(f"RandomTranspose with 0 < p < 1 needs square images, got {h}x{w}")
        F = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        F[chosen] = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
        return ((w, h) if chosen.all() and n else size), "affine", F


class ElasticDeformation(_Geometric):
    """Simard et al. (2003) elastic distortion: sample at ``p + alpha * (G_sigma * U)(p)``.

    ``U`` is uniform in [-1, 1], one value per pixel and axis, drawn per image (one
    ``rng.uniform`` call of shape (N, 2, H, W)); ``G_sigma *`` is the Gaussian blur of
    :func:`gaussian_smoothing_matrix` along each axis; ``alpha = 0`` is the identity exactly.
    """

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0, boundary="zeros", fill=0.0):
        super().__init__(boundary, fill)
        if alpha < 0 or not math.isfinite(alpha):
            raise ValueError(f"elastic alpha must be finite and >= 0, got {alpha}")
        if sigma < 0 or not math.isfinite(sigma):
            raise ValueError(f"elastic sigma must be finite and >= 0, got {sigma}")
        self.alpha, self.sigma = float(alpha), float(sigma)

    def displacement(self, n, size, rng) -> np.ndarray:
        """The displacement field (n, 2, H, W) in pixels: channel 0 along x, channel 1 along y."""
        rng = _need_rng(rng, "ElasticDeformation")
        h, w = size
        u = rng.uniform(-1.0, 1.0, (n, 2, h, w))
        Sh = gaussian_smoothing_matrix(h, self.sigma)
        Sw = gaussian_smoothing_matrix(w, self.sigma)
        u = Sh @ u @ Sw.T  # blur down the columns, then along the rows (separable Gaussian)
        return self.alpha * u

    def _plan(self, n, size, rng):
        return size, "field", self.displacement(n, size, rng)


# ----------------------------------------------------------------------------- photometric


def adjust_brightness(images, factor):
    """``x * factor`` (per image if ``factor`` is an array of length N)."""
    x = np.asarray(images)
    f = np.asarray(factor, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    return x * (f.reshape(-1, 1, 1, 1) if f.ndim == 1 and x.ndim == 4 else f)


def adjust_contrast(images, factor):
    """``mean + factor * (x - mean)`` with each image's mean over channels and pixels."""
    x = np.asarray(images)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    axes = tuple(range(x.ndim - 3, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    f = np.asarray(factor, dtype=x.dtype)
    if f.ndim == 1 and x.ndim == 4:
        f = f.reshape(-1, 1, 1, 1)
    return (x * f + mean * (1 - f)).astype(x.dtype, copy=False)  # factor 1 returns x exactly


class RandomBrightness(Transform):
    """Multiply each image by a factor uniform in ``(1-b, 1+b)`` (or a ``(lo, hi)`` pair)."""

    def __init__(self, strength):
        self.strength = _range(strength, "brightness", centre=1.0)

    def _photometric(self, images, rng):
        f = _need_rng(rng, "RandomBrightness").uniform(*self.strength, len(images))
        return adjust_brightness(images, f.astype(images.dtype))


class RandomContrast(Transform):
    """Scale each image's deviation from its mean by a factor uniform in ``(1-c, 1+c)``."""

    def __init__(self, strength):
        self.strength = _range(strength, "contrast", centre=1.0)

    def _photometric(self, images, rng):
        f = _need_rng(rng, "RandomContrast").uniform(*self.strength, len(images))
        return adjust_contrast(images, f.astype(images.dtype))


# ----------------------------------------------------------------------------- functional


def hflip(images, masks=None, boxes=None):
    """Mirror left-right; with masks/boxes returns ``(images, masks, boxes)``."""
    return _fixed(RandomHorizontalFlip(1.0), images, masks, boxes)


def vflip(images, masks=None, boxes=None):
    """Mirror top-bottom; with masks/boxes returns ``(images, masks, boxes)``."""
    return _fixed(RandomVerticalFlip(1.0), images, masks, boxes)


def transpose(images, masks=None, boxes=None):
    """Swap rows and columns; with masks/boxes returns ``(images, masks, boxes)``."""
    return _fixed(RandomTranspose(1.0), images, masks, boxes)


def rotate(images, angle, boundary="zeros", fill=0.0, masks=None, boxes=None):
    """Rotate counter-clockwise by ``angle`` degrees about the centre (bilinear)."""
    return _fixed(Affine(angle=angle, boundary=boundary, fill=fill), images, masks, boxes)


def affine(images, angle=0.0, scale=1.0, shear=(0.0, 0.0), translate=(0.0, 0.0), boundary="zeros", fill=0.0,
           masks=None, boxes=None):
    """A fixed affine transform (:class:`Affine`)."""
    return _fixed(Affine(angle, scale, shear, translate, boundary, fill), images, masks, boxes)


def elastic(images, rng, alpha=34.0, sigma=4.0, boundary="zeros", fill=0.0, masks=None, boxes=None):
    """One random elastic deformation per image (:class:`ElasticDeformation`)."""
    t = ElasticDeformation(alpha, sigma, boundary, fill)
    if masks is None and boxes is None:
        return t(images, rng)
    return t.apply(images, rng, masks=masks, boxes=boxes)


def _fixed(t, images, masks, boxes):
    if masks is None and boxes is None:
        return t(images)
    return t.apply(images, None, masks=masks, boxes=boxes)


def random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], filling with zeros.

    Vectorised: the batch is zero-padded once and every image's window is gathered with one
    fancy-indexing operation.  (Same draws and result as ``RandomShift(max_shift)``, faster.)
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"random_shift expects a batch (N, C, H, W), got shape {images.shape}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return images.copy()
    n, c, h, w = images.shape
    s = max_shift
    padded = np.pad(images, ((0, 0), (0, 0), (s, s), (s, s)))
    oy = rng.integers(0, 2 * s + 1, n)
    ox = rng.integers(0, 2 * s + 1, n)
    rows = oy[:, None] + np.arange(h)
    cols = ox[:, None] + np.arange(w)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


# ============================================================================ CLI specs

AUGMENT_HELP = """\
--augment SPEC: 'none' or comma-separated items applied in order (geometric ones fused into
one resampling):
  shift:K            integer translation, up to K px per axis (default 2)
  translate:T        sub-pixel translation uniform in [-T, T] px per axis
  rotate:D | rotate:LO/HI       rotation, degrees (D -> [-D, D])
  scale:S | scale:LO/HI         zoom factor (S -> [1-S, 1+S])
  shear:D | shear:LO/HI         x and y shear, degrees
  elastic:ALPHA[/SIGMA]         Simard elastic deformation (SIGMA default 4), e.g. elastic:34/4
  hflip[:P] vflip[:P] transpose[:P]   mirror with probability P (default 0.5)
  crop:PAD           pad by PAD then crop back to the input size at a random offset
  resized_crop:LO[/HI]          random area fraction in [LO, HI] (HI default 1), resized back
  brightness:B  contrast:C      photometric factors in [1-B, 1+B], [1-C, 1+C]
  border:zeros|edge|VALUE       what geometric items sample outside the image (default zeros =
                                the dataset mean after standardisation; edge = nearest border pixel)
e.g. rotate:15,scale:0.1,elastic:34/4,shift:2,hflip"""

_ITEMS = ("shift", "translate", "rotate", "scale", "shear", "elastic", "hflip", "vflip", "transpose", "crop",
          "resized_crop", "brightness", "contrast", "border")


def _numbers(name, arg, spec, count=(1, 1)):
    parts = arg.split("/") if arg else []
    lo, hi = count
    if not lo <= len(parts) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise ValueError(f"--augment item {name!r} takes {want} number(s) separated by '/', got {spec!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--augment item {name!r} needs numbers, got {spec!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"--augment item {name!r} needs finite numbers, got {spec!r}")
    return values


def _sym_or_range(values):
    return values[0] if len(values) == 1 else (values[0], values[1])


def parse_augment(spec):
    """A batch transform ``f(images, rng) -> images`` from a CLI spec (``None`` for ``none``).

    Grammar (items are applied in the order written; see :data:`AUGMENT_HELP`)::

        spec  := "none" | item ("," item)*
        item  := NAME [":" ARG ("/" ARG)*]

    ``shift:K`` alone returns :func:`random_shift` (the fast original); anything else returns a
    :class:`Compose`.  A :class:`Transform` or other callable is returned unchanged.
    """
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, str):
        return spec
    spec = str(spec).strip()
    if spec in ("", "none"):
        return None
    raw = [s.strip() for s in spec.split(",")]
    if any(not s for s in raw):
        raise ValueError(f"--augment has an empty item: {spec!r}")
    boundary, fill = "zeros", 0.0
    items = []
    for item in raw:
        name, _, arg = item.partition(":")
        name = name.strip().lower().replace("-", "_")
        arg = arg.strip()
        if name not in _ITEMS:
            raise ValueError(f"unknown augmentation {item!r} in {spec!r}; known: none, {', '.join(_ITEMS)}")
        if name == "border":
            if arg in BOUNDARIES:
                boundary, fill = arg, 0.0
            else:
                try:
                    boundary, fill = "zeros", float(arg)
                except ValueError:
                    raise ValueError(f"--augment border must be zeros, edge or a number, got {item!r}") from None
            continue
        items.append((name, arg, item))
    if len(items) == 1 and items[0][0] == "shift" and boundary == "zeros" and fill == 0.0:
        k = _shift_k(items[0][1], items[0][2])
        return _ShiftFn(k)
    out = []
    geo = {"boundary": boundary, "fill": fill}
    for name, arg, item in items:
        try:
            if name == "shift":
                out.append(RandomShift(_shift_k(arg, item), **geo))
            elif name == "translate":
                out.append(RandomTranslate(_sym_or_range(_numbers(name, arg, item, (1, 2))), **geo))
            elif name == "rotate":
                out.append(RandomRotation(_sym_or_range(_numbers(name, arg, item, (1, 2))), **geo))
            elif name == "scale":
                out.append(RandomScale(_sym_or_range(_numbers(name, arg, item, (1, 2))), **geo))
            elif name == "shear":
                out.append(RandomShear(_sym_or_range(_numbers(name, arg, item, (1, 2))), **geo))
            elif name == "elastic":
                v = _numbers(name, arg, item, (1, 2))
                out.append(ElasticDeformation(v[0], v[1] if len(v) > 1 else 4.0, **geo))
            elif name in ("hflip", "vflip", "transpose"):
                p = _numbers(name, arg, item, (1, 1))[0] if arg else 0.5
                cls = {"hflip": RandomHorizontalFlip, "vflip": RandomVerticalFlip, "transpose": RandomTranspose}[name]
                out.append(cls(p, **geo))
            elif name == "crop":
                pad = _numbers(name, arg, item, (1, 1))[0]
                out.append(RandomCrop(None, int(pad) if pad == int(pad) else pad, **geo))
            elif name == "resized_crop":
                v = _numbers(name, arg, item, (1, 2))
                out.append(RandomResizedCrop(None, scale=(v[0], v[1] if len(v) > 1 else 1.0), **geo))
            elif name == "brightness":
                out.append(RandomBrightness(_numbers(name, arg, item)[0]))
            elif name == "contrast":
                out.append(RandomContrast(_numbers(name, arg, item)[0]))
        except ValueError as exc:
            msg = str(exc)
            raise ValueError(msg if msg.startswith("--augment") else f"--augment {item!r}: {msg}") from None
    if not out:
        return None
    return Compose(out)


def _shift_k(arg, item):
    try:
        k = int(arg or 2)
    except ValueError:
        raise ValueError(f"--augment shift:K needs an integer K, got {item!r}") from None
    if k < 0:
        raise ValueError(f"--augment shift:K needs K >= 0, got {item!r}")
    return k


class _ShiftFn:
    """``random_shift`` with a fixed K, picklable and with a readable repr."""

    def __init__(self, k):
        self.k = k

    def __call__(self, images, rng):
        return random_shift(images, rng, self.k)

    def __repr__(self):
        return f"random_shift(max_shift={self.k})"
