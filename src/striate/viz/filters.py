"""Grids of images: first-layer filters (OIHW weights) and feature maps (C, H, W activations)."""

from __future__ import annotations

import math

import numpy as np

from ._figure import figure_size, mosaic, new_figure, save_png, to_numpy, upscale_factor

__all__ = ["filter_grid", "feature_maps"]

_NORMALIZE = ("per-filter", "global")


def _weight_array(weight) -> np.ndarray:
    """OIHW array from an array, a Tensor/Parameter, or a module with a ``weight`` (e.g. Conv2d)."""
    w = getattr(weight, "weight", None)
    if w is not None and not isinstance(weight, np.ndarray):
        weight = w
    arr = to_numpy(weight, "weight")
    if arr.ndim == 3:  # (O, H, W): one input channel
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"filter_grid expects an OIHW weight (out, in, kH, kW), got shape {tuple(arr.shape)}")
    return arr


def _gap(h: int, w: int, factor: int) -> int:
    """Separator width: about an eighth of an upscaled tile, at least 2 pixels."""
    return max(2, (max(h, w) * factor) // 8)


def _columns(n: int, ncols: int | None) -> int:
    if ncols is not None:
        if ncols < 1:
            raise ValueError(f"ncols must be positive, got {ncols}")
        return min(ncols, n)
    return min(n, max(1, math.ceil(math.sqrt(n))))


def filter_grid(weight, path, normalize: str = "per-filter", *, ncols: int | None = None,
                max_filters: int = 64, max_channels: int = 16, cmap: str = "RdBu_r",
                title: str | None = None, dpi: int = 100):
    """PNG grid of convolution filters from an OIHW ``weight``.

    * 1 input channel: one gray tile per filter in a diverging colormap centred at 0 (``cmap``,
      red positive, blue negative, white zero).
    * 3 input channels: one RGB tile per filter, each channel mapped linearly to [0, 1] (min-max).
    * otherwise: one row per filter, one diverging tile per input channel (the first
      ``max_channels``).

    ``normalize``: ``'per-filter'`` scales each filter by its own largest |w| (shapes comparable,
    magnitudes not); ``'global'`` uses one scale for all (magnitudes comparable; gray grids get a
    colour bar in weight units).  Tiles are upscaled by pixel repetition (nearest neighbour) so a
    5x5 filter is visible.  At most ``max_filters`` filters are drawn.  Returns ``path`` as a Path.
    """
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    w = _weight_array(weight)
    o, i, kh, kw = w.shape
    shown = w[:max_filters]
    factor = upscale_factor(kh, kw)
    pad = _gap(kh, kw, factor)
    rgb = i == 3
    if rgb:
        if normalize == "global":
            lo, hi = shown.min(), shown.max()
        else:
            lo = shown.min(axis=(1, 2, 3), keepdims=True)
            hi = shown.max(axis=(1, 2, 3), keepdims=True)
        tiles = (shown - lo) / np.where(hi - lo > 0, hi - lo, 1.0)
        tiles = tiles.transpose(0, 2, 3, 1)  # (O, kH, kW, 3)
        grid = mosaic(tiles, _columns(len(tiles), ncols), factor, pad, fill=1.0)
        vmin, vmax, scale = 0.0, 1.0, None
    else:
        if normalize == "global":
            m = np.abs(shown).max()
            scale = float(m) if m > 0 else 1.0
            tiles = shown
        else:
            m = np.abs(shown).max(axis=(1, 2, 3), keepdims=True)
            tiles = shown / np.where(m > 0, m, 1.0)
            scale = None
        if i == 1:
            tiles = tiles[:, 0]
            cols = _columns(len(tiles), ncols)
        else:  # a row per filter, a column per input channel
            tiles = tiles[:, :max_channels].reshape(-1, kh, kw)
            cols = min(i, max_channels)
        grid = mosaic(tiles, cols, factor, pad, fill=np.nan)
        vmin, vmax = (-scale, scale) if scale is not None else (-1.0, 1.0)

    extra_w = 1.2 if (not rgb and scale is not None) else 0.0
    with new_figure(figsize=figure_size(*grid.shape[:2], extra_w=extra_w), dpi=dpi) as fig:
        ax = fig.add_subplot(1, 1, 1)
        if rgb:
            im = ax.imshow(grid, interpolation="nearest")
        else:
            import matplotlib

            cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
            im = ax.imshow(grid, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
            if scale is not None:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
        ax.set_axis_off()
        more = f" (first {len(shown)})" if len(shown) < o else ""
        layout = "" if i in (1, 3) else (
            f"\nrows: filters, columns: input channels{' (first %d)' % max_channels if i > max_channels else ''}")
        ax.set_title(title or f"{o} filters{more}, {i}x{kh}x{kw}, {normalize}{layout}", fontsize=9)
        fig.tight_layout()
        return save_png(fig, path, dpi=dpi)


def feature_maps(activations, path, max_maps: int = 16, *, ncols: int | None = None, cmap: str = "viridis",
                 title: str | None = None, dpi: int = 100):
    """PNG grid of the first ``max_maps`` channels of an activation.

    ``activations``: (C, H, W), or (1, C, H, W) (a batch of one), or one (H, W) map; an array or a
    Tensor.  Each map is scaled to its own min..max (a constant map is drawn flat) and upscaled by
    pixel repetition; the tile's channel index is printed on it.  Returns ``path`` as a Path.
    """
    a = to_numpy(activations, "activations")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(
            f"feature_maps expects a (C, H, W) activation (or (1, C, H, W)), got shape {tuple(a.shape)}")
    if max_maps < 1:
        raise ValueError(f"max_maps must be positive, got {max_maps}")
    c, h, w = a.shape
    maps = a[:max_maps]
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    tiles = (maps - lo) / np.where(hi - lo > 0, hi - lo, 1.0)
    factor = upscale_factor(h, w)
    pad = _gap(h, w, factor)
    cols = _columns(len(tiles), ncols)
    grid = mosaic(tiles, cols, factor, pad, fill=np.nan)
    with new_figure(figsize=figure_size(*grid.shape), dpi=dpi) as fig:
        import matplotlib

        ax = fig.add_subplot(1, 1, 1)
        cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
        ax.imshow(grid, cmap=cm, vmin=0.0, vmax=1.0, interpolation="nearest")
        for k in range(len(tiles)):
            r, q = divmod(k, cols)
            ax.text(pad + q * (w * factor + pad) + 1, pad + r * (h * factor + pad) + 1, str(k),
                    color="white", fontsize=7, ha="left", va="top",
                    bbox=dict(facecolor="black", alpha=0.4, pad=1, linewidth=0))
        ax.set_axis_off()
        more = f" (first {len(tiles)})" if len(tiles) < c else ""
        ax.set_title(title or f"{c} feature maps{more}, {h}x{w}", fontsize=9)
        fig.tight_layout()
        return save_png(fig, path, dpi=dpi)
