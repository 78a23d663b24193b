"""Visual explanations: saliency and Grad-CAM equal PyTorch's, the model is left as found, PNGs are valid."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import striate  # noqa: E402
from striate import nn  # noqa: E402
from striate.cli import main  # noqa: E402
from striate.models import LeNet5  # noqa: E402
from striate.viz import explain as E  # noqa: E402
from striate.viz._figure import figure_size, upscale_factor  # noqa: E402
from striate.viz.filters import _columns, _gap  # noqa: E402


def _lenet(seed=0):
    striate.manual_seed(seed)
    return LeNet5().eval()


def _image(seed=1, shape=(1, 28, 28)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _torch_lenet(model):
    """The same LeNet-5 forward in PyTorch, returning (logits, conv1 output, conv2 output)."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    p = {k: torch.tensor(v) for k, v in model.state_dict().items()}

    def forward(x):
        c1 = tf.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=2)
        c2 = tf.conv2d(tf.max_pool2d(tf.relu(c1), 2), p["conv2.weight"], p["conv2.bias"])
        h = tf.max_pool2d(tf.relu(c2), 2).flatten(1)
        h = tf.relu(tf.linear(h, p["fc1.weight"], p["fc1.bias"]))
        h = tf.relu(tf.linear(h, p["fc2.weight"], p["fc2.bias"]))
        return tf.linear(h, p["fc3.weight"], p["fc3.bias"]), c1, c2

    return torch, forward


def _assert_untouched(model):
    for m in model.modules():
        assert "forward" not in m.__dict__, f"{type(m).__name__}.forward left wrapped"
    for p in model.parameters():
        assert p.requires_grad and p.grad is None


# ------------------------------------------------------------------------------- the numbers
@pytest.mark.parametrize("target", [None, 3])
def test_saliency_is_the_input_gradient_pytorch_computes(target):
    model, x = _lenet(), _image()
    r = E.saliency(model, x, target=target)
    torch, forward = _torch_lenet(model)
    xt = torch.tensor(x[None], requires_grad=True)
    logits, _, _ = forward(xt)
    k = int(logits.argmax()) if target is None else target
    logits[0, k].backward()
    assert r.target == k
    np.testing.assert_allclose(r.probs, torch.softmax(logits[0].double(), 0).detach().numpy(), atol=1e-5)
    assert r.score == pytest.approx(float(logits[0, k].detach()), abs=1e-4)
    np.testing.assert_allclose(r.grad, xt.grad.numpy()[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.saliency, np.abs(xt.grad.numpy()[0]).max(axis=0), rtol=1e-4, atol=1e-6)
    _assert_untouched(model)


def test_saliency_agrees_with_finite_differences_in_float64():
    model = _lenet().double()
    x = _image().astype(np.float64)
    r = E.saliency(model, x, target=2)
    d = np.random.default_rng(3).standard_normal(x.shape)
    eps = 1e-6

    def score(v):
        with striate.no_grad():
            return float(model(striate.tensor(v[None])).data[0, 2])

    fd = (score(x + eps * d) - score(x - eps * d)) / (2 * eps)
    assert np.sum(r.grad * d) == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_grad_cam_equals_pytorchs_at_the_last_convolution():
    model, x = _lenet(), _image(seed=4)
    r = E.grad_cam(model, x)
    assert r.layer == "conv2" and r.activations.shape == (16, 10, 10) and r.cam.shape == (28, 28)
    torch, forward = _torch_lenet(model)
    logits, _, c2 = forward(torch.tensor(x[None], requires_grad=True))
    c2.retain_grad()
    logits[0, r.target].backward()
    a, g = c2.detach().numpy()[0], c2.grad.numpy()[0]
    np.testing.assert_allclose(r.activations, a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.layer_grad, g, rtol=1e-4, atol=1e-6)
    alpha = g.mean(axis=(1, 2))
    small = np.maximum(np.tensordot(alpha, a, axes=1), 0)
    np.testing.assert_allclose(r.weights, alpha, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(r.cam_small, small, rtol=1e-3, atol=1e-6)
    big = torch.nn.functional.interpolate(torch.tensor(small[None, None]), size=(28, 28), mode="bilinear",
                                          align_corners=False).numpy()[0, 0]
    np.testing.assert_allclose(r.cam, big / big.max(), atol=1e-4)
    assert r.cam.min() >= 0 and r.cam.max() == pytest.approx(1.0)
    _assert_untouched(model)


def test_grad_cam_at_a_named_layer_and_for_another_class():
    model, x = _lenet(), _image()
    r = E.grad_cam(model, x, target=5, layer="conv1")
    assert r.layer == "conv1" and r.target == 5 and r.activations.shape == (6, 28, 28)
    torch, forward = _torch_lenet(model)
    logits, c1, _ = forward(torch.tensor(x[None], requires_grad=True))
    c1.retain_grad()
    logits[0, 5].backward()
    np.testing.assert_allclose(r.layer_grad, c1.grad.numpy()[0], rtol=1e-4, atol=1e-6)


def test_layer_activations_equal_pytorchs_and_keep_call_order():
    model, x = _lenet(), _image()
    acts = E.layer_activations(model, x)
    assert list(acts) == ["conv1", "conv2"]
    torch, forward = _torch_lenet(model)
    _, c1, c2 = forward(torch.tensor(x[None]))
    np.testing.assert_allclose(acts["conv1"], c1.detach().numpy()[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(acts["conv2"], c2.detach().numpy()[0], rtol=1e-4, atol=1e-5)
    picked = E.layer_activations(model, x, ["pool1", "act2"])
    assert list(picked) == ["pool1", "act2"] and picked["pool1"].shape == (6, 14, 14)
    assert E.layer_activations(model, x, ["fc1"]) == {}  # not a (N, C, H, W) output
    _assert_untouched(model)


class _Residual(nn.Module):
    """Conv-BN-ReLU stem, one residual block, global pooling, a linear head (BN in eval mode)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = self.stem(x)
        h = self.act(self.conv_b(self.act(self.conv_a(h))) + h)  # `act` is called twice
        return self.fc(self.pool(h).flatten(1))


def test_models_with_batch_norm_shared_modules_and_a_residual_path():
    torch = pytest.importorskip("torch")
    striate.manual_seed(0)
    model = _Residual().eval()
    sd = model.state_dict()
    sd["stem.1.running_mean"] = np.linspace(-0.2, 0.2, 8).astype(np.float32)
    sd["stem.1.running_var"] = np.linspace(0.5, 1.5, 8).astype(np.float32)
    model.load_state_dict(sd)
    x = _image(shape=(3, 12, 12))
    r = E.grad_cam(model, x, target=1)
    assert r.layer == "conv_b"
    acts = E.layer_activations(model, x, ["act"])
    tf = torch.nn.functional
    p = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    xt = torch.tensor(x[None], requires_grad=True)
    h = tf.relu(tf.batch_norm(tf.conv2d(xt, p["stem.0.weight"], padding=1), p["stem.1.running_mean"],
                              p["stem.1.running_var"], p["stem.1.weight"], p["stem.1.bias"], training=False))
    a = tf.relu(tf.conv2d(h, p["conv_a.weight"], p["conv_a.bias"], padding=1))
    b = tf.conv2d(a, p["conv_b.weight"], p["conv_b.bias"], padding=1)
    b.retain_grad()
    out = tf.relu(b + h)
    logits = tf.linear(out.mean(dim=(2, 3)), p["fc.weight"], p["fc.bias"])
    logits[0, 1].backward()
    np.testing.assert_allclose(r.grad, xt.grad.numpy()[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.layer_grad, b.grad.numpy()[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(acts["act"], out.detach().numpy()[0], rtol=1e-4, atol=1e-5)  # the last call
    _assert_untouched(model)


def test_dense_outputs_and_tuples_are_scored_by_their_class_maps():
    class Seg(nn.Module):  # (N, K, H, W) scores, e.g. a segmentation network
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    class Loc(Seg):  # (class logits, box), e.g. a localizer
        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3)), x.sum()

    striate.manual_seed(0)
    x = _image(shape=(1, 6, 6))
    seg = Seg()
    r = E.grad_cam(seg, x, target=2)
    assert r.grad.shape == (1, 6, 6) and r.layer == "conv"
    w = seg.conv.weight.data[2, 0]
    expected = np.zeros((6, 6))  # d (sum of map 2) / dx: each pixel times the filter taps that see it
    for i in range(3):
        for j in range(3):
            expected += w[i, j] * np.pad(np.ones((6, 6)), 1)[2 - i:8 - i, 2 - j:8 - j]
    np.testing.assert_allclose(r.grad[0], expected, rtol=1e-5, atol=1e-6)
    loc = Loc()
    loc.load_state_dict(seg.state_dict())
    np.testing.assert_allclose(E.saliency(loc, x, target=2).grad, r.grad / 36, rtol=1e-5, atol=1e-7)


def test_training_mode_is_restored_and_wrappers_removed_on_errors():
    model, x = _lenet(), _image()
    model.train()
    with pytest.raises(ValueError, match=r"target class must be an integer in \[0, 10\)"):
        E.grad_cam(model, x, target=10)
    assert model.training
    _assert_untouched(model)
    with pytest.raises(ValueError, match="no layer named 'conv9'.*conv1"):
        E.layer_activations(model, x, ["conv9"])
    with pytest.raises(ValueError, match="one image"):
        E.saliency(model, np.zeros((2, 1, 28, 28), np.float32))
    _assert_untouched(model)


# ------------------------------------------------------------------------------- the pictures
def _png(path: Path, size) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size, (path.name, im.size, size)
        assert np.asarray(im.convert("L")).std() > 0, f"{path.name} is blank"


def _grid_png_size(c, h, w, max_maps=16, dpi=100):
    """The pixel size of :func:`striate.viz.feature_maps` for a (c, h, w) activation."""
    n = min(c, max_maps)
    factor = upscale_factor(h, w)
    pad = _gap(h, w, factor)
    cols = _columns(n, None)
    rows = -(-n // cols)
    gh, gw = rows * (h * factor + pad) + pad, cols * (w * factor + pad) + pad
    fw, fh = figure_size(gh, gw)
    return int(fw * dpi), int(fh * dpi)  # matplotlib truncates to whole pixels


def _filter_png_size(o, h, w, dpi=100):
    factor = upscale_factor(h, w)
    pad = _gap(h, w, factor)
    cols = _columns(o, None)
    rows = -(-o // cols)
    fw, fh = figure_size(rows * (h * factor + pad) + pad, cols * (w * factor + pad) + pad)
    return int(fw * dpi), int(fh * dpi)  # matplotlib truncates to whole pixels


def _confusion_png_size(k, dpi=100):
    side = min(14.0, max(4.0, 0.45 * k + 2.0))
    return int((side + 1) * dpi), int(side * dpi)


def test_explain_writes_every_png_at_its_expected_size(tmp_path):
    model, x = _lenet(), _image()
    cm = np.diag(np.arange(1, 11))
    written = E.explain(model, x, tmp_path, class_names=[f"digit {i}" for i in range(10)], confusion=cm)
    assert list(written) == ["saliency", "gradcam", "filters", "features:conv1", "features:conv2", "confusion"]
    assert {p.name for p in tmp_path.iterdir()} == {
        "saliency.png", "gradcam.png", "filters.png", "features_01_conv1.png", "features_02_conv2.png",
        "confusion.png"}
    _png(written["saliency"], (900, 340))
    _png(written["gradcam"], (900, 340))
    _png(written["filters"], _filter_png_size(6, 5, 5))
    _png(written["features:conv1"], _grid_png_size(6, 28, 28))
    _png(written["features:conv2"], _grid_png_size(16, 10, 10))
    _png(written["confusion"], _confusion_png_size(10))
    _assert_untouched(model)


def test_plots_at_another_dpi_and_rgb_display(tmp_path):
    rgb = np.random.default_rng(0).random((3, 16, 16))
    heat = np.random.default_rng(1).random((16, 16))
    _png(E.plot_saliency(rgb * 2 - 1, heat, tmp_path / "s.png", display=rgb, dpi=50), (450, 170))
    _png(E.plot_grad_cam(rgb, heat, tmp_path / "g.png", title="t", dpi=80), (720, 272))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        E.plot_saliency(rgb, heat[None], tmp_path / "bad.png")


# ------------------------------------------------------------------------------- the command
def _write_idx(path: Path, array: np.ndarray, magic: int):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real `striate train` run, on 40 random 28x28 images (seconds)."""
    pytest.importorskip("safetensors")
    root = tmp_path_factory.mktemp("explain")
    d = root / "idx"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        _write_idx(d / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), 0x803)
        _write_idx(d / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n), 0x801)
    Image.fromarray(rng.integers(0, 255, (20, 24)).astype(np.uint8)).save(root / "digit.png")
    out = root / "run"
    assert main(["train", "--data", f"idx:{d}", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    return out


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("striate: error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_explain_writes_the_pngs(run_dir, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["explain", str(run_dir), str(run_dir.parent / "digit.png"), "--out", str(out), "--target", "3"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith(f"{run_dir.parent / 'digit.png'}: ")
    names = ["saliency.png", "gradcam.png", "filters.png", "features_01_conv1.png", "features_02_conv2.png",
             "confusion.png"]
    for name in names:
        assert f"wrote {out / name}" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    _png(out / "saliency.png", (900, 340))
    _png(out / "gradcam.png", (900, 340))
    _png(out / "filters.png", _filter_png_size(6, 5, 5))
    _png(out / "features_01_conv1.png", _grid_png_size(6, 28, 28))
    _png(out / "features_02_conv2.png", _grid_png_size(16, 10, 10))
    _png(out / "confusion.png", _confusion_png_size(10))


def test_cli_explain_options(run_dir, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["explain", str(run_dir / "checkpoint"), str(run_dir.parent / "digit.png"), "--out", str(out),
                 "--layers", "pool1,act2", "--cam-layer", "conv1", "--no-confusion", "--max-maps", "4",
                 "--invert"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["saliency.png", "gradcam.png", "filters.png", "features_01_pool1.png", "features_02_act2.png"])
    _png(out / "features_01_pool1.png", _grid_png_size(6, 14, 14, max_maps=4))
    _png(out / "features_02_act2.png", _grid_png_size(16, 10, 10, max_maps=4))


@pytest.mark.parametrize("extra,pattern", [
    (["--target", "eleven"], "neither a class name nor an index"),
    (["--target", "12"], "out of range"),
    (["--layers", "conv7"], "no layer named 'conv7'"),
    (["--cam-layer", "nope"], "no layer named 'nope'"),
    (["--max-maps", "0"], "--max-maps must be positive"),
])
def test_cli_explain_bad_options_are_one_line(run_dir, tmp_path, capsys, extra, pattern):
    code = main(["explain", str(run_dir), str(run_dir.parent / "digit.png"), "--out", str(tmp_path / "o"),
                 "--no-confusion", *extra])
    assert code == 2
    assert pattern in _error_line(capsys)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_cli_explain_without_the_runs_data_skips_the_confusion_matrix(run_dir, tmp_path, capsys, monkeypatch):
    from striate.cli_ext import explain as cmd
    from striate.data import DataError

    def gone(model, cfg):
        raise DataError(f"no such directory: {cfg['data']}")

    monkeypatch.setattr(cmd, "_held_out_confusion", gone)
    out = tmp_path / "o"
    assert main(["explain", str(run_dir), str(run_dir.parent / "digit.png"), "--out", str(out)]) == 0
    assert "skipped confusion.png: no such directory" in capsys.readouterr().err
    assert (out / "saliency.png").is_file() and not (out / "confusion.png").exists()


def test_cli_explain_missing_inputs(run_dir, tmp_path, capsys):
    assert main(["explain", str(run_dir), str(tmp_path / "none.png"), "--out", str(tmp_path / "o")]) == 2
    assert "no such image file" in _error_line(capsys)
    assert main(["explain", str(tmp_path), str(run_dir.parent / "digit.png"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint" in _error_line(capsys)
