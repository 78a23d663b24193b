"""striate.viz: every plot writes a valid PNG atomically, returns its path and leaves no figure open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # for plt.get_fignums() below; striate.viz itself never touches pyplot
import matplotlib.pyplot as plt  # noqa: E402

from striate import viz  # noqa: E402
from striate.models import LeNet5  # noqa: E402
from striate.viz import _figure  # noqa: E402

HISTORY = [
    {"epoch": 1, "train_loss": 2.1, "train_acc": 0.31, "val_loss": 1.9, "val_acc": 0.40, "lr": 0.1},
    {"epoch": 2, "train_loss": 1.2, "train_acc": 0.62},  # no validation this epoch: skipped
    {"epoch": 3, "train_loss": 0.7, "train_acc": 0.80, "val_loss": 0.9, "val_acc": 0.71},
]


@pytest.fixture(autouse=True)
def no_figures_left():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a viz function left a pyplot figure open"


def check_png(path: Path, returned) -> np.ndarray:
    """The file exists, is a PNG of positive size, RGBA, not blank; no temp files beside it."""
    assert Path(returned) == path
    assert path.is_file() and path.stat().st_size > 0
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.mode == "RGBA"
        w, h = im.size
        assert w > 0 and h > 0
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 0, "image is blank"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    return pixels


# ---------------------------------------------------------------------------- curves


def test_plot_curves_list_of_dicts(tmp_path):
    path = tmp_path / "curves.png"
    check_png(path, viz.plot_curves(HISTORY, path))


def test_plot_curves_other_history_forms(tmp_path):
    as_lists = {"train_loss": [1.0, 0.5, 0.2], "val_loss": [1.1, 0.7, float("nan")], "train_acc": [0.5, 0.7, 0.9]}
    check_png(tmp_path / "a.png", viz.plot_curves(as_lists, tmp_path / "a.png"))
    no_epochs = [{"train_loss": 1.0}, {"train_loss": 0.5}]  # epochs count from 1; no accuracy panel data
    check_png(tmp_path / "b.png", viz.plot_curves(no_epochs, str(tmp_path / "b.png")))
    check_png(tmp_path / "c.png", viz.plot_curves([], tmp_path / "c.png"))  # nothing yet: empty panels


def test_plot_curves_rejects_non_history(tmp_path):
    with pytest.raises(TypeError, match="per-epoch"):
        viz.plot_curves(3.0, tmp_path / "x.png")
    with pytest.raises(TypeError, match=r"history\[1\]"):
        viz.plot_curves([{"train_loss": 1.0}, 2.0], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------- filters


def test_filter_grid_lenet_conv1(tmp_path):
    conv1 = LeNet5().conv1
    assert conv1.weight.shape == (6, 1, 5, 5)
    path = tmp_path / "conv1.png"
    check_png(path, viz.filter_grid(conv1.weight, path))
    check_png(tmp_path / "m.png", viz.filter_grid(conv1, tmp_path / "m.png", normalize="global"))  # a module
    check_png(tmp_path / "a.png", viz.filter_grid(conv1.weight.data, tmp_path / "a.png"))  # a bare array


def test_filter_grid_rgb(tmp_path):
    w = np.random.default_rng(0).standard_normal((16, 3, 3, 3))
    for normalize in ("per-filter", "global"):
        path = tmp_path / f"rgb-{normalize}.png"
        pixels = check_png(path, viz.filter_grid(w, path, normalize=normalize))
        assert (np.abs(pixels[..., 0] - pixels[..., 1]) > 30).any()  # colour, not gray


def test_filter_grid_many_channels_and_tiles_upscaled(tmp_path):
    w = LeNet5().conv2.weight  # (16, 6, 5, 5): a row of six per-channel tiles per filter
    check_png(tmp_path / "c2.png", viz.filter_grid(w, tmp_path / "c2.png"))
    # a 5x5 tile is repeated to at least 48x48 pixels, nearest neighbour
    tiles = np.arange(2 * 5 * 5, dtype=float).reshape(2, 5, 5)
    grid = _figure.mosaic(tiles, ncols=2, factor=_figure.upscale_factor(5, 5), pad=3, fill=np.nan)
    f = _figure.upscale_factor(5, 5)
    assert 5 * f >= 48
    assert np.array_equal(grid[3:3 + 5 * f, 3:3 + 5 * f], np.kron(tiles[0], np.ones((f, f))))


def test_filter_grid_errors(tmp_path):
    with pytest.raises(ValueError, match="normalize"):
        viz.filter_grid(np.ones((2, 1, 3, 3)), tmp_path / "x.png", normalize="per-pixel")
    with pytest.raises(ValueError, match=r"OIHW.*\(2, 3\)"):
        viz.filter_grid(np.ones((2, 3)), tmp_path / "x.png")
    check_png(tmp_path / "zero.png", viz.filter_grid(np.zeros((2, 1, 3, 3)), tmp_path / "zero.png"))


# ---------------------------------------------------------------------------- feature maps


def test_feature_maps(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 14, 14))
    check_png(tmp_path / "fm.png", viz.feature_maps(a, tmp_path / "fm.png"))
    check_png(tmp_path / "b.png", viz.feature_maps(a[None, :, :5, :5], tmp_path / "b.png"))  # batch of one, 5x5
    many = rng.standard_normal((40, 8, 8))
    check_png(tmp_path / "m.png", viz.feature_maps(many, tmp_path / "m.png", max_maps=10))


def test_feature_maps_of_a_model_activation(tmp_path):
    import striate

    model = LeNet5()
    with striate.no_grad():
        x = striate.tensor(np.random.default_rng(2).random((1, 1, 28, 28)), dtype=np.float32)
        act = model.act1(model.conv1(x))
    check_png(tmp_path / "act.png", viz.feature_maps(act, tmp_path / "act.png"))


def test_feature_maps_errors(tmp_path):
    with pytest.raises(ValueError, match="C, H, W"):
        viz.feature_maps(np.ones((2, 3, 4, 5)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="max_maps"):
        viz.feature_maps(np.ones((2, 4, 4)), tmp_path / "x.png", max_maps=0)


# ---------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_plot(tmp_path):
    cm = np.random.default_rng(3).integers(0, 50, (10, 10))
    check_png(tmp_path / "cm.png", viz.confusion_matrix_plot(cm, tmp_path / "cm.png"))
    names = ["airplane", "automobile", "bird"]
    cm3 = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # an empty row must not divide by zero
    path = tmp_path / "n.png"
    check_png(path, viz.confusion_matrix_plot(cm3, path, class_names=names, normalize=True))


def test_confusion_matrix_errors(tmp_path):
    with pytest.raises(ValueError, match="square"):
        viz.confusion_matrix_plot(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="class_names has 2 names for a 3x3"):
        viz.confusion_matrix_plot(np.eye(3), tmp_path / "x.png", class_names=["a", "b"])


# ---------------------------------------------------------------------------- writing and importing


def test_overwrite_and_create_parent(tmp_path):
    path = tmp_path / "deep" / "er" / "c.png"
    viz.plot_curves(HISTORY, path)
    first = path.read_bytes()
    check_png(path, viz.plot_curves(HISTORY[:1], path))  # replaced in place
    assert path.read_bytes() != first


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "keep.png"
    path.write_bytes(b"old")

    class Broken:
        def savefig(self, f, **kw):
            f.write(b"partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _figure.save_png(Broken(), path)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"pip install 'striate\[train\]'"):
        viz.plot_curves(HISTORY, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_importing_striate_does_not_import_matplotlib():
    code = ("import sys, striate, striate.viz, striate.summary; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
