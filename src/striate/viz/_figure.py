"""The shared plumbing of ``striate.viz``: the lazy matplotlib import, figures, atomic PNG writes."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install 'striate[train]'"


def require_matplotlib():
    """Import matplotlib on first use; a missing install names the extra that provides it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching sys.modules
        raise ImportError(f"striate.viz needs matplotlib, which is not installed: {INSTALL_HINT}") from exc
    return Figure, FigureCanvasAgg


@contextlib.contextmanager
def new_figure(**kwargs):
    """A Figure on its own Agg canvas (outside pyplot's registry), cleared when the block ends."""
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    try:
        yield fig
    finally:
        fig.clear()


def save_png(fig, path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically: a sibling temp file, then ``os.replace``.

    A reader never sees a half-written file, and a failed save leaves the old file (if any) intact.
    Missing parent directories are created.
    """
    path = Path(os.fspath(path))
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; created with the usual umask permissions
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def to_numpy(x, name: str) -> np.ndarray:
    """A float64 array from an ndarray, a striate Tensor/Parameter, or anything array-like."""
    data = getattr(x, "data", x)
    if not isinstance(data, np.ndarray):
        data = np.asarray(x)
    arr = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        arr = np.where(np.isfinite(arr), arr, 0.0)
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)})")
    return arr


def upscale_factor(h: int, w: int, target: int = 48) -> int:
    """Integer factor that makes an ``h`` x ``w`` tile at least ``target`` pixels on its long side."""
    return max(1, -(-target // max(h, w)))


def mosaic(tiles: np.ndarray, ncols: int, factor: int, pad: int, fill: float) -> np.ndarray:
    """Lay out ``tiles`` (T, h, w[, 3]) on a grid of ``ncols`` columns, each upscaled ``factor`` times
    by pixel repetition (nearest neighbour), separated by ``pad`` pixels of ``fill``."""
    t, h, w = tiles.shape[:3]
    extra = tiles.shape[3:]
    nrows = -(-t // ncols)
    H, W = h * factor, w * factor
    out = np.full((nrows * (H + pad) + pad, ncols * (W + pad) + pad) + extra, fill, dtype=np.float64)
    big = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    for i in range(t):
        r, c = divmod(i, ncols)
        y, x = pad + r * (H + pad), pad + c * (W + pad)
        out[y:y + H, x:x + W] = big[i]
    return out


def figure_size(pixels_h: int, pixels_w: int, dpi: int = 100, lo: float = 3.0, hi: float = 14.0,
                extra_w: float = 0.0, extra_h: float = 0.6) -> tuple[float, float]:
    """Inches for a mosaic of ``pixels_h`` x ``pixels_w``: about one pixel per pixel, clamped."""
    w, h = pixels_w / dpi, pixels_h / dpi
    scale = 1.0
    if max(w, h) > hi:
        scale = hi / max(w, h)
    elif max(w, h) < lo:
        scale = lo / max(w, h)
    return w * scale + extra_w, h * scale + extra_h
