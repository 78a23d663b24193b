"""Generated data for segmentation and localization, with per-pixel masks and bounding boxes.

* :func:`shapes` -- circles, squares and triangles of random size, position and colour on a noisy
  background of another colour (RGB, 32x32 by default), 1 to ``max_objects`` per image, never
  overlapping.
* :func:`digits_canvas` -- MNIST-5k digits (:func:`~striate.data.mnist5k`) rescaled to a random
  size and pasted at a random position on a 64x64 noisy canvas; the held-out canvases use digits
  that the training canvases never show.

Both are pure functions of their arguments and ``seed``: the same call gives the same arrays.
They return a :class:`SyntheticSet`, an :class:`~striate.data.ArrayDataset` of ``(image,
label)`` (the label is the class of the first object, so the set also works for classification)
which also carries

``masks``       (N, H, W) int64, 0 for background and ``1 + class`` on an object's pixels
``boxes``       (N, M, 4) float32 corners ``(x0, y0, x1, y1)`` in pixels: the object covers
                columns ``x0 <= x < x1`` and rows ``y0 <= y < y1`` (the tight box of its mask)
``box_labels``  (N, M) int64 object classes, -1 where an image has fewer than M objects
``mask_classes`` ``["background", *classes]``, the names of the mask values

``get_dataset("shapes")`` and ``get_dataset("digits-canvas")`` give independent train and
held-out sets (see :func:`shapes_split` and :func:`digits_canvas_split` for the sizes).
"""

from __future__ import annotations

import numpy as np

from .dataset import ArrayDataset, split_indices
from .datasets import mnist5k, register_dataset

__all__ = [
    "SHAPE_CLASSES",
    "SyntheticSet",
    "shapes",
    "digits_canvas",
    "shapes_split",
    "digits_canvas_split",
    "boxes_from_masks",
]

SHAPE_CLASSES = ["circle", "square", "triangle"]


class SyntheticSet(ArrayDataset):
    """Images and per-image labels plus ``masks``, ``boxes``, ``box_labels`` (see the module docstring)."""

    def __init__(self, images, labels, classes, masks, boxes, box_labels):
        super().__init__(images, labels, classes=classes)
        self.masks = np.asarray(masks, dtype=np.int64)
        self.boxes = np.asarray(boxes, dtype=np.float32)
        self.box_labels = np.asarray(box_labels, dtype=np.int64)
        n, h, w = len(self.images), *self.images.shape[-2:]
        if self.masks.shape != (n, h, w):
            raise ValueError(f"SyntheticSet: masks must be {(n, h, w)}, got {self.masks.shape}")
        if self.boxes.ndim != 3 or self.boxes.shape[0] != n or self.boxes.shape[2] != 4:
            raise ValueError(f"SyntheticSet: boxes must be ({n}, M, 4), got {self.boxes.shape}")
        if self.box_labels.shape != self.boxes.shape[:2]:
            raise ValueError(f"SyntheticSet: box_labels must be {self.boxes.shape[:2]}, got {self.box_labels.shape}")
        self.mask_classes = ["background", *self.classes]

    def __repr__(self) -> str:
        return (f"SyntheticSet(images={self.images.shape}, classes={self.classes}, "
                f"masks={self.masks.shape}, boxes={self.boxes.shape})")


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes ``(x0, y0, x1, y1)`` (float32, (N, 4)) of the nonzero pixels of (N, H, W) masks.

    ``x1``/``y1`` are one past the last column/row, so the box's width is ``x1 - x0`` pixels.
    Empty masks get the box (0, 0, 0, 0).
    """
    masks = np.asarray(masks) != 0
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    n, h, w = masks.shape
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (N, H), (N, W)

    def span(hit, size):
        first = np.argmax(hit, axis=1)
        last = size - np.argmax(hit[:, ::-1], axis=1)
        empty = ~hit.any(axis=1)
        return np.where(empty, 0, first), np.where(empty, 0, last)

    y0, y1 = span(rows, h)
    x0, x1 = span(cols, w)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------ shapes


def _shape_mask(kind: int, cy: float, cx: float, r: float, angle: float, yy, xx) -> np.ndarray:
    """Boolean mask of one shape of 'radius' ``r`` centred at (cy, cx), sampled at pixel centres."""
    if kind == 0:  # circle
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if kind == 1:  # axis-aligned square of half-side 0.85 r (about the circle's area)
        s = 0.85 * r
        return (np.abs(yy - cy) <= s) & (np.abs(xx - cx) <= s)
    # triangle: the intersection of three half-planes through the vertices at angle + 0/120/240 deg
    t = angle + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    vy, vx = cy + 1.15 * r * np.sin(t), cx + 1.15 * r * np.cos(t)
    inside = np.ones_like(yy, dtype=bool)
    for k in range(3):  # each edge (k -> k+1): the centre lies on its inner side
        ay, ax, by, bx = vy[k], vx[k], vy[(k + 1) % 3], vx[(k + 1) % 3]
        side = (bx - ax) * (yy - ay) - (by - ay) * (xx - ax)
        centre = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        inside &= side * np.sign(centre) >= 0
    return inside


def shapes(n: int = 1000, *, size: int = 32, max_objects: int = 2, min_objects: int = 1,
           radius=None, noise: float = 0.08, seed: int = 0) -> SyntheticSet:
    """``n`` RGB images ``(n, 3, size, size)`` float32 in [0, 1] of circles, squares and triangles.

    Each image has a uniform background colour with Gaussian pixel noise (std ``noise``) and
    ``min_objects..max_objects`` shapes of random class, radius (``radius=(lo, hi)`` pixels,
    default ``(size/8, size/3.5)``), position (inside the image) and colour (at least 0.35 away from
    the background in RGB distance).  Shapes do not overlap.  Labels are the first shape's class.
    """
    if n < 1 or size < 8:
        raise ValueError(f"shapes needs n >= 1 and size >= 8, got n={n}, size={size}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    lo, hi = radius if radius is not None else (size / 8, size / 3.5)
    if not 1 <= lo <= hi <= size / 2:
        raise ValueError(f"radius range ({lo}, {hi}) must satisfy 1 <= lo <= hi <= size/2 = {size / 2}")
    rng = np.random.default_rng([seed, 0x5A4E])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    boxes = np.zeros((n, max_objects, 4), dtype=np.float32)
    box_labels = np.full((n, max_objects), -1, dtype=np.int64)
    for i in range(n):
        bg = rng.uniform(0.0, 1.0, size=3)
        img = np.broadcast_to(bg[:, None, None], (3, size, size)).copy()
        placed: list[tuple[float, float, float]] = []
        want = int(rng.integers(min_objects, max_objects + 1))
        for _ in range(50 * want):  # rejection sampling for non-overlapping discs
            if len(placed) == want:
                break
            r = rng.uniform(lo, hi)
            cy, cx = rng.uniform(1.2 * r, size - 1.2 * r, size=2)
            if any((cy - py) ** 2 + (cx - px) ** 2 < (1.25 * (r + pr)) ** 2 for py, px, pr in placed):
                continue
            kind = int(rng.integers(0, 3))
            shape = _shape_mask(kind, cy, cx, r, rng.uniform(0, 2 * np.pi), yy, xx)
            if not shape.any():
                continue
            while True:
                colour = rng.uniform(0.0, 1.0, size=3)
                if np.linalg.norm(colour - bg) >= 0.35:
                    break
            k = len(placed)
            img[:, shape] = colour[:, None]
            masks[i][shape] = kind + 1
            boxes[i, k] = boxes_from_masks(shape[None])[0]
            box_labels[i, k] = kind
            placed.append((cy, cx, r))
        images[i] = img
    images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    labels = np.maximum(box_labels[:, 0], 0)
    return SyntheticSet(images, labels, SHAPE_CLASSES, masks, boxes, box_labels)


def shapes_split(n_train: int = 3000, n_held: int = 500, *, seed: int = 0, **options):
    """Independent training and held-out :func:`shapes` sets (seeds derived from ``seed``)."""
    return (shapes(n_train, seed=2 * seed, **options), shapes(n_held, seed=2 * seed + 1, **options))


# ------------------------------------------------------------------------------ digits on a canvas


def _resize_bilinear(img: np.ndarray, out: int) -> np.ndarray:
    """(H, W) -> (out, out), bilinear with half-pixel centres (PIL's and align_corners=False)."""
    h, w = img.shape

    def taps(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, pos - i0

    y0, y1, fy = taps(h, out)
    x0, x1, fx = taps(w, out)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def digits_canvas(digits: np.ndarray, digit_labels: np.ndarray, n: int | None = None, *, size: int = 64,
                  digit_size=(24, 44), per_canvas: int = 1, noise: float = 0.05, threshold: float = 0.5,
                  seed: int = 0) -> SyntheticSet:
    """``n`` canvases ``(n, 1, size, size)`` float32 with ``per_canvas`` of the given digits each.

    ``digits`` (D, 28, 28) or (D, 1, 28, 28) in [0, 1] with labels (D,); every digit is used in
    turn (in a seeded random order, repeated as needed; ``n`` defaults to ``D // per_canvas``),
    resized to a random side in ``digit_size`` (pixels), pasted at a random position (by maximum,
    so overlapping digits stay visible; boxes never overlap), and Gaussian noise (std ``noise``)
    is added.  A digit's mask is its pixels brighter than ``threshold``; its box the mask's tight box.
    """
    digits = np.asarray(digits, dtype=np.float64)
    if digits.ndim == 4:
        digits = digits[:, 0]
    digit_labels = np.asarray(digit_labels, dtype=np.int64)
    if digits.ndim != 3 or len(digits) != len(digit_labels) or len(digits) == 0:
        raise ValueError(f"digits must be (D, H, W) with D labels, got {digits.shape} and {digit_labels.shape}")
    lo, hi = int(digit_size[0]), int(digit_size[1])
    if not 4 <= lo <= hi <= size:
        raise ValueError(f"digit_size ({lo}, {hi}) must lie within [4, size={size}]")
    if per_canvas < 1:
        raise ValueError(f"per_canvas must be >= 1, got {per_canvas}")
    n = len(digits) // per_canvas if n is None else int(n)
    if n < 1:
        raise ValueError(f"digits_canvas needs n >= 1, got {n}")
    rng = np.random.default_rng([seed, 0xC4A5])
    need = n * per_canvas
    order = np.concatenate([rng.permutation(len(digits)) for _ in range(-(-need // len(digits)))])[:need]
    canvases = np.zeros((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    boxes = np.zeros((n, per_canvas, 4), dtype=np.float32)
    box_labels = np.full((n, per_canvas), -1, dtype=np.int64)
    for i in range(n):
        taken: list[np.ndarray] = []
        for k in range(per_canvas):
            d = order[i * per_canvas + k]
            for _ in range(100):  # find a place whose box does not overlap earlier ones
                side = int(rng.integers(lo, hi + 1))
                y, x = rng.integers(0, size - side + 1, size=2)
                glyph = _resize_bilinear(digits[d], side)
                ink = glyph > threshold
                if not ink.any():
                    continue
                box = boxes_from_masks(ink[None])[0] + np.array([x, y, x, y], dtype=np.float32)
                if all(box[0] >= b[2] or b[0] >= box[2] or box[1] >= b[3] or b[1] >= box[3] for b in taken):
                    break
            else:
                raise ValueError(f"could not place {per_canvas} non-overlapping digits on a {size}x{size} canvas; "
                                 "use fewer or smaller digits")
            region = canvases[i, 0, y:y + side, x:x + side]
            np.maximum(region, glyph, out=region, casting="unsafe")
            masks[i, y:y + side, x:x + side][ink] = digit_labels[d] + 1
            boxes[i, k], box_labels[i, k] = box, digit_labels[d]
            taken.append(box)
    canvases += rng.normal(0.0, noise, size=canvases.shape).astype(np.float32)
    np.clip(canvases, 0.0, 1.0, out=canvases)
    return SyntheticSet(canvases, box_labels[:, 0].copy(), [str(k) for k in range(10)], masks, boxes, box_labels)


def digits_canvas_split(n_train: int | None = None, n_held: int | None = None, *, val_fraction: float = 0.2,
                        seed: int = 0, **options):
    """Training and held-out canvases from a stratified split of the 5,000 MNIST digits.

    The held-out canvases only show digits that the training canvases never show.  By default
    every training digit appears twice (``n_train = 2 * D_train / per_canvas``) and every held-out
    digit once.
    """
    digits = mnist5k()
    train_idx, held_idx = split_indices(len(digits), val_fraction, seed, labels=digits.labels)
    per = options.get("per_canvas", 1)
    parts = []
    for idx, count, s in ((train_idx, n_train, 2 * seed), (held_idx, n_held, 2 * seed + 1)):
        if count is None:
            count = (2 if s % 2 == 0 else 1) * len(idx) // per
        parts.append(digits_canvas(digits.images[idx], digits.labels[idx], count, seed=s, **options))
    return parts[0], parts[1]


register_dataset("shapes", lambda arg, o: shapes_split(seed=o.get("seed", 0)),
                 description="generated circles/squares/triangles (3x32x32) with masks and boxes; 3000 train / "
                             "500 held-out")
register_dataset("digits-canvas", lambda arg, o: digits_canvas_split(val_fraction=o.get("val_fraction", 0.2),
                                                                     seed=o.get("seed", 0)),
                 description="MNIST-5k digits at random positions and sizes on 64x64 canvases, with masks and "
                             "boxes; held-out canvases use unseen digits")
