"""Show the backward: every drawn step equals the real backward (striate's and PyTorch's); PNGs are valid."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from striate.cli import main  # noqa: E402
from striate.viz import backward_demo as bd  # noqa: E402
from striate.viz.backward_demo import (  # noqa: E402
    FIGURES, BackwardMismatchError, backward_demo, conv_backward_steps, format_cell, pool_backward_steps)


def _torch_grads(demo):
    """The same gradients from PyTorch (float64): an oracle independent of striate."""
    torch = pytest.importorskip("torch")
    c, a = demo.config, demo.arrays
    x = torch.tensor(a["x"][None], requires_grad=True)
    w = torch.tensor(a["w"], requires_grad=True)
    b = torch.tensor(a["b"], requires_grad=True)
    z = torch.nn.functional.conv2d(x, w, b, stride=c["stride"], padding=c["padding"])
    z.backward(torch.tensor(a["dz"][None]))
    out = {"z": z.detach().numpy()[0], "dx": x.grad.numpy()[0], "dw": w.grad.numpy(), "db": b.grad.numpy()}
    for fn, key in ((torch.nn.functional.max_pool2d, "maxpool"), (torch.nn.functional.avg_pool2d, "avgpool")):
        v = torch.tensor(a["pool_x"][None, None], requires_grad=True)
        y = fn(v, c["pool_kernel"], c["pool_stride"])
        y.backward(torch.tensor(a["pool_dy"][None, None]))
        out[f"{key}_y"], out[f"{key}_dx"] = y.detach().numpy()[0, 0], v.grad.numpy()[0, 0]
    return out


def _numbers(texts: np.ndarray) -> np.ndarray:
    """The numbers printed in a panel's cells, parsed back from the strings drawn."""
    return np.vectorize(float)(texts).astype(np.float64)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("backward")
    return out, backward_demo(out)


def _check_png(path, size):
    assert path.is_file() and path.stat().st_size > 0
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size
        assert im.size[0] >= 300 and im.size[1] >= 250
        assert np.asarray(im.convert("L")).std() > 0


def test_writes_every_figure_as_a_valid_png_of_the_reported_size(drawn):
    out, demo = drawn
    assert list(demo.figures) == list(FIGURES)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.png" for name in FIGURES)
    for name, fig in demo.figures.items():
        assert fig.path == out / f"{name}.png"
        _check_png(fig.path, fig.size)


def test_the_steps_equal_striates_and_torchs_backward(drawn):
    _, demo = drawn
    ref = _torch_grads(demo)
    for key in ("z", "dx", "dw", "db", "maxpool_y", "maxpool_dx", "avgpool_y", "avgpool_dx"):
        np.testing.assert_allclose(demo.arrays[key], ref[key], rtol=0, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(demo.backward[key], ref[key], rtol=0, atol=1e-12, err_msg=key)
        assert demo.max_abs_diff[key] <= 1e-9


def test_the_numbers_printed_in_the_figures_equal_the_backwards_arrays(drawn):
    _, demo = drawn
    ref = _torch_grads(demo)
    figs = demo.figures
    dx_fig = figs["conv_dx"]
    np.testing.assert_array_equal(_numbers(dx_fig.texts["sum over n: dX[m=0]"]), ref["dx"][0])
    np.testing.assert_array_equal(_numbers(dx_fig.texts["striate's backward\nx.grad[m=0]"]), ref["dx"][0])
    dw_fig = figs["conv_dw"]
    for n in range(demo.config["out_channels"]):
        np.testing.assert_array_equal(_numbers(dw_fig.texts[f"dW[n={n}, m=0]"]), ref["dw"][n, 0])
        np.testing.assert_array_equal(_numbers(dw_fig.texts[f"striate's backward\nw.grad[n={n}, m=0]"]),
                                      ref["dw"][n, 0])
        z_title = f"Z[n={n}] (b={format_cell(demo.arrays['b'][n])})"
        np.testing.assert_array_equal(_numbers(figs["conv_forward"].texts[z_title]), ref["z"][n])
    mp = figs["maxpool_backward"]
    np.testing.assert_array_equal(_numbers(mp.texts["dX: dY at the winners"]), ref["maxpool_dx"])
    np.testing.assert_array_equal(_numbers(mp.texts["striate's backward\nx.grad"]), ref["maxpool_dx"])
    np.testing.assert_array_equal(_numbers(mp.texts["Y = max"]), ref["maxpool_y"])
    ap = figs["avgpool_backward"]
    np.testing.assert_allclose(_numbers(ap.texts["dX: dY / 4 in each window"]), ref["avgpool_dx"], atol=0.005)
    np.testing.assert_allclose(_numbers(ap.texts["striate's backward\nx.grad"]), ref["avgpool_dx"], atol=0.005)
    # and every panel's printed text is the formatted array it was drawn from
    for fig in figs.values():
        for title, arr in fig.arrays.items():
            assert fig.texts[title].shape == arr.shape
            assert all(t == format_cell(v) for t, v in zip(fig.texts[title].ravel(), arr.ravel()))


def test_intermediate_steps_are_what_the_math_prescribes(drawn):
    _, demo = drawn
    a, c = demo.arrays, demo.config
    S, K = c["stride"], c["kernel_size"]
    dz, dz_up, dz_full = a["dz"], a["dz_up"], a["dz_full"]
    # step 1: S-1 zeros between samples
    assert dz_up.shape[1:] == ((dz.shape[1] - 1) * S + 1,) * 2
    np.testing.assert_array_equal(dz_up[:, ::S, ::S], dz)
    mask = np.ones(dz_up.shape, bool)
    mask[:, ::S, ::S] = False
    assert np.all(dz_up[mask] == 0) and np.all(dz != 0)
    # step 2: K-1 zeros around
    np.testing.assert_array_equal(dz_full, np.pad(dz_up, ((0, 0), (K - 1, K - 1), (K - 1, K - 1))))
    # step 3: rotated by 180 degrees, in and out swapped
    for n in range(c["out_channels"]):
        for m in range(c["in_channels"]):
            np.testing.assert_array_equal(a["w_flip"][m, n], np.rot90(a["w"][n, m], 2))
    # the shown shares add up to dX; the bias gradient sums dZ
    np.testing.assert_array_equal(a["contrib"].sum(axis=1), a["dx_full"])
    np.testing.assert_array_equal(a["db"], dz.sum(axis=(1, 2)))
    # max pooling: each dY lands on one winner; mean pooling conserves the total
    assert a["maxpool_dx"].sum() == pytest.approx(a["pool_dy"].sum())
    assert np.count_nonzero(a["maxpool_dx"]) <= a["pool_dy"].size
    assert a["avgpool_dx"].sum() == pytest.approx(a["pool_dy"].sum())


@pytest.mark.parametrize("cfg", [
    dict(stride=1),
    dict(stride=3, size=7),
    dict(stride=2, padding=1, size=6),              # a row no window reaches, plus cropping
    dict(in_channels=2, out_channels=3, kernel_size=2, stride=2, padding=1, size=5, seed=3),
    dict(in_channels=3, out_channels=1, kernel_size=3, stride=2, size=7, seed=7),
    dict(pool_size=5, pool_kernel=3, pool_stride=1),    # overlapping windows: gradients add
    dict(pool_size=6, pool_kernel=2, pool_stride=2, seed=11),
])
def test_many_geometries_agree_with_torch_without_drawing(cfg):
    demo = backward_demo(None, **cfg)
    assert all(f.path is None for f in demo.figures.values())
    ref = _torch_grads(demo)
    for key in ("dx", "dw", "db", "maxpool_dx", "avgpool_dx"):
        np.testing.assert_allclose(demo.arrays[key], ref[key], rtol=0, atol=1e-12, err_msg=f"{key} {cfg}")


def test_a_disagreement_with_the_backward_raises(monkeypatch):
    real = bd._striate_backward

    def broken(*args):
        out = real(*args)
        out["dx"] = out["dx"].copy()
        out["dx"][0, 0, 0] += 1.0
        return out

    monkeypatch.setattr(bd, "_striate_backward", broken)
    with pytest.raises(BackwardMismatchError, match="dx"):
        backward_demo(None)


def test_steps_functions_match_torch_on_random_reals():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 7, 7)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    dz = rng.standard_normal((3, 3, 3))
    steps = conv_backward_steps(x, w, b, dz, stride=3, padding=1)
    xt, wt = torch.tensor(x[None], requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt, torch.tensor(b), stride=3, padding=1).backward(torch.tensor(dz[None]))
    np.testing.assert_allclose(steps["dx"], xt.grad.numpy()[0], atol=1e-12)
    np.testing.assert_allclose(steps["dw"], wt.grad.numpy(), atol=1e-12)
    v = rng.permutation(36).reshape(6, 6).astype(float)
    dy = rng.standard_normal((2, 2))
    pools = pool_backward_steps(v, dy, kernel=3, stride=3)
    vt = torch.tensor(v[None, None], requires_grad=True)
    torch.nn.functional.max_pool2d(vt, 3, 3).backward(torch.tensor(dy[None, None]))
    np.testing.assert_allclose(pools["maxpool_dx"], vt.grad.numpy()[0, 0], atol=1e-12)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(stride=0), "stride"),
    (dict(padding=-1), "padding"),
    (dict(kernel_size=6, size=5), "kernel_size"),
    (dict(in_channels=5), "at most 3"),
    (dict(pool_kernel=5, pool_size=4), "pool_kernel"),
    (dict(padding=3, kernel_size=3), "padding"),
])
def test_bad_arguments_are_clear_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        backward_demo(None, **kwargs)


def test_format_cell():
    assert [format_cell(v) for v in (3.0, -0.0, -2.0, 0.25, -0.75, 1 / 3, 1e-12)] == \
        ["3", "0", "-2", "0.25", "-0.75", "0.33", "0"]


def test_cli_writes_the_pngs(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["backward-demo", "--out", str(out), "--padding", "1", "--pool-kernel", "3", "--pool-stride", "1",
                 "--pool-size", "5"]) == 0
    text = capsys.readouterr().out
    assert "every step equals striate's backward" in text
    for name in FIGURES:
        path = out / f"{name}.png"
        assert f"wrote {path}" in text
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] >= 300 and im.size[1] >= 250


def test_cli_bad_option_is_one_line(tmp_path, capsys):
    assert main(["backward-demo", "--out", str(tmp_path), "--stride", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("striate: error: ") and "stride" in err[0]
