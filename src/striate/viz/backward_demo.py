"""Show the backward pass: the steps the math prescribes, on small real numbers, drawn and checked.

`backward_demo` takes a small convolution (a few integer-valued filters over an integer
image, stride ``S``, padding ``P``) and a small pooling layer, and recomputes their gradients with
plain NumPy exactly as the lecture derives them:

* **bias**: ``db[n]`` is the sum of ``dZ[n]``;
* **input**: ``dX`` is a *full* convolution of ``dZ`` with the flipped filters --
  insert ``S-1`` zeros between the samples of ``dZ`` (the positions the stride skipped receive no
  gradient), pad the result by ``K-1`` on every side, slide each filter rotated by 180 degrees
  (channel axes swapped) over it at stride 1, sum over output maps, then crop the forward padding;
* **filters**: ``dW[n, m]`` is the input map ``m`` correlated with the zero-inserted ``dZ[n]``;
* **max pooling** routes each window's gradient to the element that won the max (overlaps add);
* **mean pooling** spreads each window's gradient equally, ``1/K^2`` to every element.

Each hand-computed array is compared with the gradients that striate's own backward
(``F.conv2d(...).backward``, ``F.max_pool2d``, ``F.avg_pool2d``) puts in ``.grad``; any
difference raises `BackwardMismatchError`, so a figure is never drawn from numbers the
real backward disagrees with.  The figures print the value in every cell and are written as PNGs;
the function returns every array it drew (and the exact strings it printed) so that tests can
check the pictures' numbers against the backward.

    demo = backward_demo("figures/")          # writes eight PNGs
    demo.arrays["dx"], demo.backward["dx"]    # the steps' dX and striate's x.grad (equal)
    demo.figures["conv_dx"].texts             # the numbers printed in that figure's cells
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._figure import new_figure, save_png

__all__ = ["backward_demo", "BackwardDemo", "DemoFigure", "BackwardMismatchError", "format_cell",
           "conv_backward_steps", "pool_backward_steps", "FIGURES"]

#: The figures `backward_demo` writes, in the order a reader should look at them.
FIGURES = ("conv_forward", "conv_dz_upsampled", "conv_dz_padded", "conv_flipped_filters", "conv_dx",
           "conv_dw", "maxpool_backward", "avgpool_backward")

_CELL = 0.42    # inches per array cell
_GAP = 0.45     # inches between panels in a row
_TITLE = 0.55   # inches above a panel for its title
_MARGIN = 0.3   # inches around the figure
_HEAD = 0.55    # inches for the figure's title
_LINE = 0.2     # inches per caption line
_SKIP = 0.3     # inches between the last row and the caption


class BackwardMismatchError(AssertionError):
    """A step computed by hand disagrees with striate's backward (a bug in one of them)."""


def format_cell(v: float) -> str:
    """How a number is printed in a cell: integers without a decimal point, else up to 2 decimals."""
    v = float(v)
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


@dataclass
class DemoFigure:
    """One PNG: where it is, its size in pixels, and every panel's array and printed cell texts."""

    name: str
    path: Path | None
    size: tuple[int, int] | None  # (width, height) in pixels, as written
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # panel title -> 2-D array drawn
    texts: dict[str, np.ndarray] = field(default_factory=dict)   # panel title -> strings printed


@dataclass
class BackwardDemo:
    """What `backward_demo` computed, checked and drew.

    ``arrays``: every hand-computed array by name (``x, w, b, z, dz, dz_up, dz_full, w_flip,
    dx_full, dx, dw, db`` for the convolution; ``pool_x, pool_dy, maxpool_y, maxpool_dx,
    avgpool_y, avgpool_dx`` for pooling). ``backward``: the same quantities from striate's
    backward (``dx, dw, db, z, maxpool_dx, avgpool_dx``). ``max_abs_diff``: their largest
    absolute differences (all within ``atol``). ``figures``: name -> `DemoFigure`.
    """

    arrays: dict[str, np.ndarray]
    backward: dict[str, np.ndarray]
    max_abs_diff: dict[str, float]
    figures: dict[str, DemoFigure]
    config: dict

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.figures.values() if f.path is not None]


# ----------------------------------------------------------------------------------- the math
def _correlate(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Valid stride-1 cross-correlation: a (M, H, W), k (D, M, kh, kw) -> (D, H-kh+1, W-kw+1).

    ``out[d, x, y] = sum_m sum_i sum_j k[d, m, i, j] * a[m, x + i, y + j]``, one loop over the
    kernel offsets (the demo's arrays are tiny).
    """
    d, m, kh, kw = k.shape
    ho, wo = a.shape[1] - kh + 1, a.shape[2] - kw + 1
    out = np.zeros((d, ho, wo))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("dm,mxy->dxy", k[:, :, i, j], a[:, i:i + ho, j:j + wo])
    return out


def conv_backward_steps(x, w, b, dz, stride: int, padding: int) -> dict[str, np.ndarray]:
    """The convolution's forward and backward, step by step, in plain NumPy (one image).

    ``x`` (M, H, W), ``w`` (D, M, K, K), ``b`` (D,), ``dz`` (D, Ho, Wo).  Returns ``z`` (the
    forward), ``xpad``, ``dz_up`` (S-1 zeros inserted), ``dz_full`` (padded by K-1), ``w_flip``
    ((M, D, K, K): rotated 180 degrees, channel axes swapped), ``contrib`` ((M, D, ...): the full
    convolution of each ``dz_full[n]`` with ``w_flip[m, n]``), ``dx_full`` (their sum over n, on
    the padded grid), ``dx`` (cropped by P), ``dw`` and ``db``.
    """
    x, w, b, dz = (np.asarray(a, dtype=np.float64) for a in (x, w, b, dz))
    S, P = int(stride), int(padding)
    m, h, wd = x.shape
    d, _, k, _ = w.shape
    xpad = np.pad(x, ((0, 0), (P, P), (P, P)))
    z_dense = _correlate(xpad, w) + b[:, None, None]       # stride 1 ...
    z = z_dense[:, ::S, ::S]                                # ... then keep every S-th sample
    if z.shape != dz.shape:
        raise ValueError(f"dz has shape {dz.shape} but the convolution's output has shape {z.shape}")
    ho, wo = z.shape[1:]

    # dX, step 1: insert S-1 zeros between the samples of dZ.
    dz_up = np.zeros((d, (ho - 1) * S + 1, (wo - 1) * S + 1))
    dz_up[:, ::S, ::S] = dz
    # step 2: pad by K-1 on every side -- a "full" convolution lets the filter hang over the edges.
    dz_full = np.pad(dz_up, ((0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    # step 3: flip every filter left-right and up-down; output maps become input maps.
    w_flip = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()      # (M, D, K, K)
    # step 4: slide the flipped filters over the padded dZ at stride 1, sum over output maps n.
    contrib = np.array([[_correlate(dz_full[n][None], w_flip[mi, n][None, None])[0] for n in range(d)]
                        for mi in range(m)])                         # (M, D, Hf, Wf): map n's share
    dx_full = contrib.sum(axis=1)
    # rows/columns at the far edge that no forward window reached get no gradient.
    hp, wp = h + 2 * P, wd + 2 * P
    dx_full = np.pad(dx_full, ((0, 0), (0, hp - dx_full.shape[1]), (0, wp - dx_full.shape[2])))
    contrib = np.pad(contrib, ((0, 0), (0, 0), (0, hp - contrib.shape[2]), (0, wp - contrib.shape[3])))
    dx = dx_full[:, P:P + h, P:P + wd]                     # step 5: crop the forward padding

    # dW[n, m] = input map m correlated with the zero-inserted dZ[n]; only offsets 0..K-1 exist.
    dw = np.zeros_like(w)
    for n in range(d):
        for mi in range(m):
            dw[n, mi] = _correlate(xpad[mi][None], dz_up[n][None, None])[0, :k, :k]
    db = dz.sum(axis=(1, 2))
    return {"z": z, "xpad": xpad, "dz_up": dz_up, "dz_full": dz_full, "w_flip": w_flip, "contrib": contrib,
            "dx_full": dx_full, "dx": dx, "dw": dw, "db": db}


def _windows(size: int, kernel: int, stride: int):
    """Top-left corners (row, col) of every pooling window, row-major."""
    n = (size - kernel) // stride + 1
    return [(i * stride, j * stride) for i in range(n) for j in range(n)]


def pool_backward_steps(x, dy, kernel: int, stride: int) -> dict[str, np.ndarray]:
    """Max and mean pooling (no padding) of one (H, W) map, forward and backward in plain NumPy.

    Returns ``maxpool_y``, ``winners`` (bool (H, W): won at least one window), ``maxpool_dx``
    (each ``dy`` added to its window's argmax), ``avgpool_y`` and ``avgpool_dx`` (each ``dy``
    divided by ``K^2`` and added to every element of its window).
    """
    x, dy = np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    k, s = int(kernel), int(stride)
    corners = _windows(x.shape[0], k, s)
    n = int(round(len(corners) ** 0.5))
    if dy.shape != (n, n):
        raise ValueError(f"dy has shape {dy.shape} but pooling gives ({n}, {n})")
    ymax, yavg = np.zeros((n, n)), np.zeros((n, n))
    dmax, davg = np.zeros_like(x), np.zeros_like(x)
    winners = np.zeros(x.shape, dtype=bool)
    for idx, (r, c) in enumerate(corners):
        i, j = divmod(idx, n)
        win = x[r:r + k, c:c + k]
        a, bb = np.unravel_index(int(np.argmax(win)), win.shape)
        ymax[i, j] = win[a, bb]
        dmax[r + a, c + bb] += dy[i, j]          # routed to the winner only
        winners[r + a, c + bb] = True
        yavg[i, j] = win.mean()
        davg[r:r + k, c:c + k] += dy[i, j] / (k * k)   # spread equally
    return {"maxpool_y": ymax, "winners": winners, "maxpool_dx": dmax, "avgpool_y": yavg, "avgpool_dx": davg}


def _striate_backward(x, w, b, dz, stride, padding, pool_x, pool_dy, pool_kernel, pool_stride):
    """The same gradients from striate's autograd (the thing being explained)."""
    import striate
    import striate.functional as F

    xt = striate.tensor(x[None], requires_grad=True)
    wt = striate.tensor(w, requires_grad=True)
    bt = striate.tensor(b, requires_grad=True)
    z = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    z.backward(dz[None])
    out = {"z": z.detach().numpy()[0], "dx": xt.grad.numpy()[0], "dw": wt.grad.numpy(), "db": bt.grad.numpy()}
    for op, key in ((F.max_pool2d, "maxpool"), (F.avg_pool2d, "avgpool")):
        v = striate.tensor(pool_x[None, None], requires_grad=True)
        y = op(v, kernel_size=pool_kernel, stride=pool_stride)
        y.backward(pool_dy[None, None])
        out[f"{key}_y"] = y.detach().numpy()[0, 0]
        out[f"{key}_dx"] = v.grad.numpy()[0, 0]
    return out


# ----------------------------------------------------------------------------------- drawing
@dataclass
class _Panel:
    title: str
    array: np.ndarray          # 2-D
    faint: np.ndarray | None = None   # bool: cells drawn grey (inserted zeros, padding)
    marked: np.ndarray | None = None  # bool: cells outlined (max-pool winners)
    windows: list | None = None       # (row, col, k) pooling windows to outline
    crop: tuple | None = None         # (r0, c0, h, w) rectangle to outline (the part kept)
    op: str = ""                      # text drawn in the gap before this panel ("->", "*", "=")


def _draw(path, name: str, title: str, rows: list[list[_Panel]], caption: list[str], dpi: int) -> DemoFigure:
    """Lay panels out in rows (sizes in inches from the array shapes), print every cell's value.

    With ``path=None`` nothing is drawn: the record holds the panels' arrays and cell texts only.
    """
    if path is None:
        record = DemoFigure(name=name, path=None, size=None)
        for row in rows:
            for p in row:
                a = np.asarray(p.array, dtype=np.float64)
                record.arrays[p.title] = a.copy()
                record.texts[p.title] = np.array([format_cell(v) for v in a.ravel()], dtype=object).reshape(a.shape)
        return record
    import matplotlib
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    row_w = [sum(p.array.shape[1] * _CELL for p in row) + _GAP * (len(row) - 1) for row in rows]
    row_h = [max(p.array.shape[0] for p in row) * _CELL + _TITLE for row in rows]
    # text widths estimated from the character count (DejaVu Sans: about 0.6 em per character)
    text_w = max([len(title) * 0.6 * 11 / 72] + [len(line) * 0.56 * 8.5 / 72 for line in caption])
    fig_w = max(max(row_w), text_w, 4.0) + 2 * _MARGIN
    fig_h = _HEAD + sum(row_h) + _GAP * (len(rows) - 1) + _SKIP + _LINE * len(caption) + 2 * _MARGIN
    fig_w, fig_h = round(fig_w * dpi) / dpi, round(fig_h * dpi) / dpi  # whole pixels: size is exact
    record = DemoFigure(name=name, path=None, size=None)
    cmap = matplotlib.colormaps["RdBu_r"]
    grid = []  # cell borders of every panel, drawn as one collection
    with new_figure(figsize=(fig_w, fig_h), dpi=dpi) as fig:
        # one axes over the whole figure, in inches: panels are images placed with `extent`
        ax = fig.add_axes([0, 0, 1, 1])
        ax.set_axis_off()
        ax.text(fig_w / 2, fig_h - _MARGIN - 0.2, title, ha="center", va="center", fontsize=11, weight="bold")
        top = fig_h - _MARGIN - _HEAD
        for row, rh in zip(rows, row_h):
            x0 = _MARGIN + (fig_w - 2 * _MARGIN - sum(p.array.shape[1] * _CELL for p in row)
                            - _GAP * (len(row) - 1)) / 2
            for p in row:
                a = np.asarray(p.array, dtype=np.float64)
                h, w = a.shape
                pw, ph = w * _CELL, h * _CELL
                y0 = top - _TITLE - ph  # bottom edge of the panel

                def cell(r, c, _x0=x0, _y0=y0, _ph=ph):  # lower-left corner of cell (r, c)
                    return _x0 + c * _CELL, _y0 + _ph - (r + 1) * _CELL

                if p.op:
                    ax.text(x0 - _GAP / 2, y0 + ph / 2, p.op, ha="center", va="center", fontsize=14)
                vmax = max(float(np.abs(a).max()), 1e-12)
                ax.imshow(a, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest",
                          extent=(x0, x0 + pw, y0, y0 + ph))
                texts = np.empty(a.shape, dtype=object)
                for r in range(h):
                    for c in range(w):
                        t = format_cell(a[r, c])
                        texts[r, c] = t
                        faint = p.faint is not None and p.faint[r, c]
                        color = "0.6" if faint else ("white" if abs(a[r, c]) > 0.6 * vmax else "black")
                        cx, cy = cell(r, c)
                        ax.text(cx + _CELL / 2, cy + _CELL / 2, t, ha="center", va="center",
                                fontsize=8 if len(t) < 5 else 6.5, color=color, style="italic" if faint else "normal")
                        if p.marked is not None and p.marked[r, c]:
                            ax.add_patch(Rectangle((cx + 0.05 * _CELL, cy + 0.05 * _CELL), 0.9 * _CELL, 0.9 * _CELL,
                                                   fill=False, edgecolor="black", linewidth=2.2))
                for (r0, c0, k) in p.windows or []:
                    cx, cy = cell(r0 + k - 1, c0)
                    ax.add_patch(Rectangle((cx, cy), k * _CELL, k * _CELL, fill=False, edgecolor="darkorange",
                                           linewidth=1.6))
                if p.crop is not None:
                    r0, c0, hh, ww = p.crop
                    cx, cy = cell(r0 + hh - 1, c0)
                    ax.add_patch(Rectangle((cx, cy), ww * _CELL, hh * _CELL, fill=False, edgecolor="green",
                                           linewidth=2.0, linestyle="--"))
                grid += [[(x0 + c * _CELL, y0), (x0 + c * _CELL, y0 + ph)] for c in range(1, w)]
                grid += [[(x0, y0 + r * _CELL), (x0 + pw, y0 + r * _CELL)] for r in range(1, h)]
                ax.add_patch(Rectangle((x0, y0), pw, ph, fill=False, edgecolor="black", linewidth=0.8))
                ax.text(x0 + pw / 2, y0 + ph + 0.06, p.title, ha="center", va="bottom", fontsize=8.5)
                record.arrays[p.title] = a.copy()
                record.texts[p.title] = texts
                x0 += pw + _GAP
            top -= rh + _GAP
        ax.add_collection(LineCollection(grid, colors="0.75", linewidths=0.5))
        for i, line in enumerate(caption):
            ax.text(_MARGIN, _MARGIN + _LINE * (len(caption) - 1 - i) + 0.05, line, ha="left", va="bottom",
                    fontsize=8.5)
        ax.set_xlim(0, fig_w)
        ax.set_ylim(0, fig_h)
        ax.set_aspect("auto")
        record.path = save_png(fig, path, dpi=dpi)
        record.size = tuple(int(v) for v in fig.canvas.get_width_height())
    return record


def _check(name: str, ours: np.ndarray, theirs: np.ndarray, atol: float) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise BackwardMismatchError(f"{name}: the steps give shape {ours.shape}, striate's backward {theirs.shape}")
    diff = float(np.abs(ours - theirs).max()) if ours.size else 0.0
    if not diff <= atol:
        raise BackwardMismatchError(
            f"{name}: the steps and striate's backward differ by up to {diff:.3g} (atol {atol:g})\n"
            f"steps:\n{ours}\nbackward:\n{theirs}")
    return diff


def _positive_int(name, v, lo=1):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def backward_demo(out_dir=None, *, in_channels: int = 1, out_channels: int = 2, size: int = 5,
                  kernel_size: int = 3, stride: int = 2, padding: int = 0, pool_size: int = 4,
                  pool_kernel: int = 2, pool_stride: int | None = None, seed: int = 0,
                  atol: float = 1e-9, dpi: int = 100) -> BackwardDemo:
    """Compute, check and draw the backward pass of a small convolution and of max/mean pooling.

    Convolution: one ``in_channels`` x ``size`` x ``size`` image, ``out_channels`` filters of
    ``kernel_size`` x ``kernel_size``, ``stride``, ``padding``; pooling: one ``pool_size`` x
    ``pool_size`` map of distinct values, windows of ``pool_kernel`` at ``pool_stride``
    (default: ``pool_kernel``, non-overlapping).  All values are small integers drawn from
    ``seed`` (float64), so the printed numbers are exact.

    Every step is computed with plain NumPy and compared with striate's backward
    (``F.conv2d(...).backward(dz)``, ``F.max_pool2d``, ``F.avg_pool2d``); a difference larger
    than ``atol`` raises `BackwardMismatchError`.  With ``out_dir`` (a directory, created
    if needed) writes the PNGs named in `FIGURES`; with ``out_dir=None`` draws nothing to
    disk (the figures' arrays and texts are still returned).  Returns a `BackwardDemo`.
    """
    m = _positive_int("in_channels", in_channels)
    d = _positive_int("out_channels", out_channels)
    k = _positive_int("kernel_size", kernel_size)
    s = _positive_int("stride", stride)
    p = _positive_int("padding", padding, lo=0)
    h = _positive_int("size", size)
    ps = _positive_int("pool_size", pool_size)
    pk = _positive_int("pool_kernel", pool_kernel)
    pst = pk if pool_stride is None else _positive_int("pool_stride", pool_stride)
    if m > 3 or d > 3:
        raise ValueError(f"the demo draws at most 3 input and 3 output maps, got in_channels={m}, out_channels={d}")
    if not k <= h + 2 * p <= 12:
        raise ValueError(f"need kernel_size <= size + 2*padding <= 12 to draw, got size={h}, "
                         f"kernel_size={k}, padding={p}")
    if p >= k:
        raise ValueError(f"padding must be smaller than kernel_size, got padding={p}, kernel_size={k}")
    if not pk <= ps <= 8:
        raise ValueError(f"need pool_kernel <= pool_size <= 8, got pool_size={ps}, pool_kernel={pk}")

    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (m, h, h)).astype(np.float64)
    w = rng.integers(-2, 3, (d, m, k, k)).astype(np.float64)
    b = rng.integers(-1, 2, d).astype(np.float64)
    ho = (h + 2 * p - k) // s + 1
    dz = rng.integers(-3, 4, (d, ho, ho)).astype(np.float64)
    dz[dz == 0] = 1.0  # so every real sample of dZ is visibly non-zero (inserted zeros are the only zeros)
    pool_x = (rng.permutation(ps * ps) + 1).reshape(ps, ps).astype(np.float64)
    po = (ps - pk) // pst + 1
    pool_dy = rng.integers(-4, 5, (po, po)).astype(np.float64)
    pool_dy[pool_dy == 0] = 1.0  # a zero gradient would hide where it went

    steps = conv_backward_steps(x, w, b, dz, s, p)
    pools = pool_backward_steps(pool_x, pool_dy, pk, pst)
    real = _striate_backward(x, w, b, dz, s, p, pool_x, pool_dy, pk, pst)
    arrays = {"x": x, "w": w, "b": b, "dz": dz, **{key: v for key, v in steps.items()},
              "pool_x": pool_x, "pool_dy": pool_dy, **pools}
    diffs = {key: _check(key, arrays[key], real[key], atol)
             for key in ("z", "dx", "dw", "db", "maxpool_y", "maxpool_dx", "avgpool_y", "avgpool_dx")}

    config = {"in_channels": m, "out_channels": d, "size": h, "kernel_size": k, "stride": s, "padding": p,
              "pool_size": ps, "pool_kernel": pk, "pool_stride": pst, "seed": seed}
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    figures = {}
    checked = "checked: equals striate's backward, max |difference| {:.1g}"

    def draw(name, title, rows, caption):
        figures[name] = _draw(None if out is None else out / f"{name}.png", name, title, rows, caption, dpi)

    xpad, dz_up, dz_full, w_flip = steps["xpad"], steps["dz_up"], steps["dz_full"], steps["w_flip"]
    pad_mask = np.ones(xpad.shape[1:], bool)
    pad_mask[p:p + h, p:p + h] = False
    geometry = f"{m}x{h}x{h} input, {d} filters {m}x{k}x{k}, stride S={s}, padding P={p}"

    # 0. the forward pass, for reference
    rows = [[_Panel(f"X[m={mi}]" + (" (padded)" if p else ""), xpad[mi], faint=pad_mask) for mi in range(m)]]
    for n in range(d):
        rows.append([_Panel(f"W[n={n}, m={mi}]", w[n, mi], op="*" if mi else "") for mi in range(m)]
                    + [_Panel(f"Z[n={n}] (b={format_cell(b[n])})", steps["z"][n], op="=")])
    draw("conv_forward", f"Forward: Z = W * X + b  ({geometry})", rows,
         ["Z[n, x, y] = sum_m sum_i sum_j W[n, m, i, j] X[m, x*S + i, y*S + j] + b[n]   (the layer to be inverted)",
          checked.format(diffs["z"]) + " (forward)"])

    # 1. insert S-1 zeros
    inserted = np.ones(dz_up.shape[1:], bool)
    inserted[::s, ::s] = False
    rows = [[_Panel(f"dZ[n={n}]", dz[n]), _Panel(f"dZ[n={n}] with {s - 1} zero(s) inserted", dz_up[n],
                                                  faint=inserted, op="->")] for n in range(d)]
    draw("conv_dz_upsampled", f"dX, step 1: insert S-1 = {s - 1} zero(s) between the samples of dZ", rows,
         ["The stride skipped these positions in the forward pass, so they receive no gradient (grey).",
          f"Shape {dz.shape[1]}x{dz.shape[2]} -> (Ho-1)*S+1 = {dz_up.shape[1]}x{dz_up.shape[2]}."])

    # 2. pad by K-1
    padded = np.ones(dz_full.shape[1:], bool)
    padded[k - 1:k - 1 + dz_up.shape[1], k - 1:k - 1 + dz_up.shape[2]] = False
    padded |= np.pad(inserted, k - 1, constant_values=True)
    rows = [[_Panel(f"dZ[n={n}] zeros inserted", dz_up[n], faint=inserted),
             _Panel(f"padded by K-1 = {k - 1}", dz_full[n], faint=padded, op="->")] for n in range(d)]
    draw("conv_dz_padded", f"dX, step 2: pad by K-1 = {k - 1} on every side (a full convolution)", rows,
         ["Every input pixel touched by any window must collect its share: the filter may hang over the edges,",
          f"so the map grows to {dz_full.shape[1]}x{dz_full.shape[2]}."])

    # 3. flipped filters
    rows = [[_Panel(f"W[n={n}, m={mi}]", w[n, mi]),
             _Panel(f"flipped: W'[m={mi}, n={n}]", w_flip[mi, n], op="->")] for n in range(d) for mi in range(m)]
    draw("conv_flipped_filters", "dX, step 3: flip every filter up-down and left-right; swap n and m", rows,
         ["W'[m, n, i, j] = W[n, m, K-1-i, K-1-j]: the filters that made output map n from input map m",
          "now carry the gradient of map n back to input map m."])

    # 4. full convolution -> dX (and crop)
    hp = h + 2 * p
    rows = []
    for mi in range(m):
        for n in range(d):
            rows.append([_Panel(f"padded dZ[n={n}]", dz_full[n], faint=padded),
                         _Panel(f"W'[m={mi}, n={n}]", w_flip[mi, n], op="*"),
                         _Panel(f"share of map n={n}", steps["contrib"][mi, n], op="=")])
        crop = (p, p, h, h) if p else None
        rows.append([_Panel(f"sum over n: dX[m={mi}]" + (" (padded grid)" if p else ""), steps["dx_full"][mi],
                            crop=crop),
                     _Panel(f"striate's backward\nx.grad[m={mi}]", real["dx"][mi], op="==")])
    draw("conv_dx", "dX, step 4: slide the flipped filters over the padded dZ (stride 1), sum over n", rows,
         [f"dX[m] = sum_n (padded dZ[n]) * W'[m, n]" + (f"; crop the forward padding P={p} (green box)" if p else ""),
          checked.format(diffs["dx"])])

    # 5. dW
    rows = []
    for n in range(d):
        for mi in range(m):
            rows.append([_Panel(f"X[m={mi}]" + (" (padded)" if p else ""), xpad[mi], faint=pad_mask),
                         _Panel(f"dZ[n={n}] zeros inserted", dz_up[n], faint=inserted, op="*"),
                         _Panel(f"dW[n={n}, m={mi}]", steps["dw"][n, mi], op="="),
                         _Panel(f"striate's backward\nw.grad[n={n}, m={mi}]", real["dw"][n, mi], op="==")])
    draw("conv_dw", "dW: correlate the input with the zero-inserted dZ", rows,
         ["dW[n, m, i, j] = sum_x sum_y dZ[n, x, y] X[m, x*S + i, y*S + j]: the forward's sliding window with dZ as",
          f"the filter; db[n] = sum of dZ[n] = {', '.join(format_cell(v) for v in steps['db'])}.  "
          + checked.format(max(diffs['dw'], diffs['db']))])

    # 6. pooling
    wins = [(r, c, pk) for r, c in _windows(ps, pk, pst)] if pst >= pk else None
    pgeom = f"{pk}x{pk} windows, stride {pst}"
    draw("maxpool_backward", f"Max pooling ({pgeom}): the gradient is routed to the winner", [[
        _Panel("X (winners boxed)", pool_x, marked=pools["winners"], windows=wins),
        _Panel("Y = max", pools["maxpool_y"], op="->"),
        _Panel("dY", pool_dy, op="   "),
        _Panel("dX: dY at the winners", pools["maxpool_dx"], marked=pools["winners"], op="->"),
        _Panel("striate's backward\nx.grad", real["maxpool_dx"], op="==")]],
        ["Only the element that won a window influenced the output, so only it receives that window's dY",
         "(where windows overlap, an element winning several adds their dY); the others get 0.  "
         + checked.format(diffs["maxpool_dx"])])
    draw("avgpool_backward", f"Mean pooling ({pgeom}): the gradient is spread evenly", [[
        _Panel("X", pool_x, windows=wins),
        _Panel("Y = mean", pools["avgpool_y"], op="->"),
        _Panel("dY", pool_dy, op="   "),
        _Panel(f"dX: dY / {pk * pk} in each window", pools["avgpool_dx"], op="->"),
        _Panel("striate's backward\nx.grad", real["avgpool_dx"], op="==")]],
        [f"Each element contributed 1/K^2 = 1/{pk * pk} of its window's mean, so it receives dY/{pk * pk} "
         "(overlaps add).  " + checked.format(diffs["avgpool_dx"])])

    return BackwardDemo(arrays=arrays, backward=real, max_abs_diff=diffs, figures=figures, config=config)
