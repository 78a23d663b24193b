"""Pictures of predictions: masks overlaid on images, boxes with class names, heat maps (PNG).

Images are ``(C, H, W)`` arrays in [0, 1] (C = 1 or 3).  Pillow draws masks and boxes; the
heat map uses matplotlib (for its colour maps and colour bar).  Files are written atomically.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

__all__ = ["PALETTE", "to_rgb", "overlay_mask", "solid_mask", "draw_boxes", "save_png", "mask_legend", "heat_map_png",
           "grid"]

#: RGB colours of mask classes 1, 2, ... (class 0, the background, is left transparent).
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
], dtype=np.uint8)


def _pil():
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("drawing predictions needs Pillow: pip install 'striate[data]' (or pip install Pillow)") \
            from None
    return Image, ImageDraw


def to_rgb(image) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a ``(C, H, W)`` (or (H, W)) float image in [0, 1]."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"images must be (1, H, W) or (3, H, W), got shape {a.shape}")
    a = np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def _colour(k: int) -> np.ndarray:
    return PALETTE[(k - 1) % len(PALETTE)]


def _colour_table(mask: np.ndarray) -> np.ndarray:
    colours = np.zeros((max(int(mask.max()), 0) + 1, 3))
    for k in range(1, len(colours)):
        colours[k] = _colour(k)
    return colours


def solid_mask(mask, background=(40, 40, 40)) -> np.ndarray:
    """``(H, W, 3)`` uint8: every class of ``mask`` (H, W) in its palette colour, background dark gray."""
    mask = np.asarray(mask)
    colours = _colour_table(mask)
    colours[0] = background
    return colours[np.clip(mask, 0, None)].astype(np.uint8)


def overlay_mask(image, mask, alpha: float = 0.55, outline: bool = True) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image with each non-background class of ``mask`` (H, W) tinted.

    With ``outline``, the pixels on a region's border are drawn in the full class colour.
    """
    rgb = to_rgb(image).astype(np.float64)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the image's {rgb.shape[:2]}")
    colours = _colour_table(mask)
    paint = colours[np.clip(mask, 0, None)]
    fg = (mask > 0)[..., None]
    out = np.where(fg, (1 - alpha) * rgb + alpha * paint, rgb)
    if outline:
        p = np.pad(mask, 1, mode="edge")
        edge = (mask > 0) & ((p[:-2, 1:-1] != mask) | (p[2:, 1:-1] != mask) | (p[1:-1, :-2] != mask)
                             | (p[1:-1, 2:] != mask))
        out[edge] = paint[edge]
    return out.round().astype(np.uint8)


def _upscale(rgb: np.ndarray, scale: int):
    Image, _ = _pil()
    img = Image.fromarray(rgb)
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale > 1 else img


def _auto_scale(size: int, target: int = 256) -> int:
    return max(1, target // max(size, 1))


def draw_boxes(image, boxes, texts=(), colours=((230, 25, 75),), scale: int | None = None):
    """A PIL image: ``image`` upscaled by ``scale`` with ``boxes`` (M, 4) pixel corners and their ``texts``."""
    Image, ImageDraw = _pil()
    rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 else to_rgb(image)
    scale = _auto_scale(max(rgb.shape[:2])) if scale is None else scale
    img = _upscale(rgb, scale)
    draw = ImageDraw.Draw(img)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        colour = tuple(int(c) for c in colours[k % len(colours)])
        draw.rectangle([x0 * scale, y0 * scale, max(x1 * scale - 1, x0 * scale), max(y1 * scale - 1, y0 * scale)],
                       outline=colour, width=2)
        if k < len(texts) and texts[k]:
            ty = max(y0 * scale - 12, 0) if y0 * scale >= 12 else y1 * scale + 1
            draw.rectangle([x0 * scale, ty, x0 * scale + 6 * len(texts[k]) + 4, ty + 11], fill=colour)
            draw.text((x0 * scale + 2, ty), texts[k], fill=(0, 0, 0) if sum(colour) > 380 else (255, 255, 255))
    return img


def mask_legend(img, names, present=None):
    """Write the class names with their colours along the bottom of PIL image ``img`` (returns a new image)."""
    Image, ImageDraw = _pil()
    ks = [k for k in range(1, len(names)) if present is None or k in present]
    rows = max(1, -(-len(ks) // 4))
    out = Image.new("RGB", (img.width, img.height + 14 * rows), (255, 255, 255))
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    col_w = max(img.width // 4, 60)
    for i, k in enumerate(ks):
        x, y = (i % 4) * col_w + 2, img.height + 14 * (i // 4) + 2
        draw.rectangle([x, y, x + 10, y + 10], fill=tuple(int(c) for c in _colour(k)))
        draw.text((x + 14, y), names[k], fill=(0, 0, 0))
    return out


def grid(tiles, columns: int, gap: int = 4):
    """PIL images (all the same size) in a grid with white gaps."""
    Image, _ = _pil()
    w, h = tiles[0].width, tiles[0].height
    rows = -(-len(tiles) // columns)
    out = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i, t in enumerate(tiles):
        out.paste(t, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return out


def save_png(img, path) -> Path:
    """Write a PIL image or (H, W, 3) uint8 array as PNG atomically (temp file + rename)."""
    Image, _ = _pil()
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def heat_map_png(image, heat, path, class_names, *, window, stride, title: str | None = None,
                 label: str = "probability", max_panels: int = 11) -> Path:
    """A figure: the image, and one heat map per class in ``heat`` (K, Ho, Wo), drawn over the image.

    Heat cell ``(i, j)`` stands for the window whose top-left corner is ``(i * stride_h,
    j * stride_w)``; it is drawn as a stride-sized cell centred on that window's centre, so the map
    lines up with the image.  With more than ``max_panels`` classes only the ``max_panels`` with
    the highest peaks are drawn.
    """
    from ..viz._figure import new_figure
    from ..viz._figure import save_png as save_fig

    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 3 or heat.shape[0] != len(class_names):
        raise ValueError(f"heat must be (K, Ho, Wo) with K = {len(class_names)} class names, got {heat.shape}")
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    (wh, ww), (sh, sw) = window, stride
    ho, wo = heat.shape[1:]
    # cell (i, j) is centred on its window's centre, (j * sw + (ww - 1) / 2, i * sh + (wh - 1) / 2)
    left, top = (ww - 1) / 2 - sw / 2, (wh - 1) / 2 - sh / 2
    extent = (left, left + wo * sw, top + ho * sh, top)
    shown = np.arange(len(class_names))
    if len(shown) > max_panels:
        shown = np.sort(np.argsort(-heat.reshape(len(heat), -1).max(axis=1), kind="stable")[:max_panels])
        title = (title + "\n" if title else "") + f"the {max_panels} of {len(class_names)} classes with the highest peaks"
    k = len(shown)
    cols = min(k + 1, 6)
    rows = -(-(k + 1) // cols)
    vmax = float(np.nanmax(heat)) if label != "probability" else 1.0
    vmin = float(np.nanmin(heat)) if label != "probability" else 0.0
    with new_figure(figsize=(2.2 * cols, 2.3 * rows + 0.3)) as fig:
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        axes[0].imshow(rgb, interpolation="nearest")
        axes[0].set_title("image", fontsize=9)
        im = None
        for panel, c in enumerate(shown):
            ax = axes[panel + 1]
            ax.imshow(rgb, interpolation="nearest", alpha=0.45)
            im = ax.imshow(heat[c], cmap="inferno", vmin=vmin, vmax=vmax, extent=extent, alpha=0.75,
                           interpolation="nearest")
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"{class_names[c]} (max {heat[c].max():.2f})", fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[k + 1:]:
            ax.axis("off")
        if im is not None:
            fig.colorbar(im, ax=list(axes), shrink=0.6, label=label)
        if title:
            fig.suptitle(title, fontsize=10)
        return save_fig(fig, path)
