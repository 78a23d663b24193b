"""The scanning view: fully convolutional classifiers and scanning MLPs equal their window-by-window originals.

All equivalences are checked in float64 with max abs error <= 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest

from striate import nn
from striate import random as srandom
from striate.autograd import Tensor
from striate.models.lenet import LeNet5
from striate.models.scanning import (DistributedScanningMLP, FullyConvolutional, ScanningMLP, scan, scan_windows,
                                     scanning_mlp_to_cnn, to_fully_convolutional)

TOL = 1e-10


def _randomize_bn(model, rng):
    """Give batch-norm layers non-trivial running statistics and affine parameters."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.data[...] = rng.standard_normal(c)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.standard_normal(c)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_lenet_heat_map_equals_window_classification(pool):
    srandom.manual_seed(0)
    model = LeNet5(input_size=32, pool=pool).double()
    fcn = to_fully_convolutional(model, (1, 32, 32))
    assert isinstance(fcn, FullyConvolutional)
    assert fcn.window == (32, 32) and fcn.stride == (4, 4) and fcn.exact
    # the first Linear became a 5x5 convolution holding the same numbers
    assert fcn[6].weight.shape == (120, 16, 5, 5)
    np.testing.assert_array_equal(fcn[6].weight.data.reshape(120, -1), model.fc1.weight.data)
    images = np.random.default_rng(1).standard_normal((2, 1, 47, 58))  # sizes not on the stride grid
    heat = scan(fcn, images)
    ref = scan_windows(model, images, fcn.window, fcn.stride)
    assert heat.shape == ref.shape == (2, 10, 4, 7) == (2, 10, *fcn.output_size(47, 58))
    assert np.max(np.abs(heat - ref)) <= TOL


def test_general_classifier_with_strides_batchnorm_and_global_pool():
    srandom.manual_seed(1)
    rng = np.random.default_rng(2)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3), nn.Tanh(), nn.AvgPool2d(2)),
        nn.Conv2d(6, 5, 2), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Dropout(0.5), nn.Linear(7, 3),
        nn.LogSoftmax(dim=1),
    ).double()
    _randomize_bn(model, rng)
    model.train()  # conversion and scanning use eval mode regardless, and leave the mode alone
    fcn = to_fully_convolutional(model, (3, 21, 19))
    assert model.training
    assert fcn.stride == (4, 4) and fcn.window == (21, 19)
    images = rng.standard_normal((3, 3, 40, 33))
    heat, ref = scan(fcn, images), scan_windows(model, images, fcn.window, fcn.stride)
    assert heat.shape == ref.shape == (3, 3, 5, 4)
    assert np.max(np.abs(heat - ref)) <= TOL


def test_exact_flag_and_padding():
    srandom.manual_seed(0)
    padded = LeNet5().double()  # 28x28 digits: conv1 pads by 2
    fcn = to_fully_convolutional(padded, (1, 28, 28))
    assert not fcn.exact and fcn.stride == (4, 4)
    window = np.random.default_rng(0).standard_normal((1, 1, 28, 28))
    # on a single window the scanner still is the classifier
    np.testing.assert_allclose(scan(fcn, window)[:, :, 0, 0], padded(Tensor(window)).data, atol=TOL)


def test_conversion_errors():
    srandom.manual_seed(0)
    with pytest.raises(ValueError, match="already fully convolutional"):
        to_fully_convolutional(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 8, 8))
    with pytest.raises(ValueError, match="Upsample"):
        to_fully_convolutional(nn.Sequential(nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(64, 2)), (1, 4, 4))

    class Branchy(nn.Module):  # forward is not its layers in order
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(2 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(self.flatten(self.conv(x) * 2.0))

    with pytest.raises(ValueError, match="not the sequence of its layers"):
        to_fully_convolutional(Branchy(), (1, 8, 8))
    fcn = to_fully_convolutional(LeNet5(input_size=32), (1, 32, 32))
    with pytest.raises(ValueError, match="smaller than the 32x32 window"):
        scan(fcn, np.zeros((1, 1, 31, 40), dtype=np.float32))


def test_simple_scanning_mlp_equals_its_cnn():
    srandom.manual_seed(3)
    mlp = ScanningMLP(in_channels=24, window=8, stride=4, sizes=(8, 16, 4), dtype=np.float64)
    cnn = scanning_mlp_to_cnn(mlp)
    convs = [m for m in cnn if isinstance(m, nn.Conv1d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((8,), (4,)), ((1,), (1,)), ((1,), (1,))]
    x = np.random.default_rng(4).standard_normal((2, 24, 61))
    out_mlp, out_cnn = mlp(Tensor(x)).data, cnn(Tensor(x)).data
    assert out_mlp.shape == out_cnn.shape == (2, 4, (61 - 8) // 4 + 1)
    assert np.max(np.abs(out_mlp - out_cnn)) <= TOL
    # the MLP reads its window time-major: moving one input step shifts which weight columns see it
    w = mlp.layers[0].weight.data
    np.testing.assert_array_equal(convs[0].weight.data[:, 5, 2], w[:, 2 * 24 + 5])


def test_distributed_scanning_mlp_equals_its_cnn():
    srandom.manual_seed(5)
    mlp = DistributedScanningMLP(24, layers=[(2, 2, 2), (8, 2, 2), (4, 2, 1)], dtype=np.float64)
    assert mlp.window == 8 and mlp.stride == 4 and mlp.positions == [8, 4, 2, 1]
    # as an MLP on the window, its layers are block-banded copies of one block each
    assert [l.weight.shape for l in mlp.layers] == [(8, 192), (16, 8), (4, 16)]
    cnn = scanning_mlp_to_cnn(mlp)
    convs = [m for m in cnn if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (24, 2, (2,), (2,)), (2, 8, (2,), (2,)), (8, 4, (2,), (1,))]
    x = np.random.default_rng(6).standard_normal((3, 24, 50))
    out_mlp, out_cnn = mlp(Tensor(x)).data, cnn(Tensor(x)).data
    assert out_mlp.shape == out_cnn.shape == (3, 4, (50 - 8) // 4 + 1)
    assert np.max(np.abs(out_mlp - out_cnn)) <= TOL


@pytest.mark.parametrize("layers", [[(3, 3, 1), (5, 2, 3)], [(4, 3, 2), (2, 3, 2), (3, 2, 2), (2, 1, 1)]])
def test_distributed_scanning_other_shapes(layers):
    srandom.manual_seed(7)
    mlp = DistributedScanningMLP(5, layers=layers, activation="tanh", dtype=np.float64)
    cnn = scanning_mlp_to_cnn(mlp)
    x = np.random.default_rng(8).standard_normal((2, 5, mlp.window + 3 * mlp.stride + 1))
    assert np.max(np.abs(mlp(Tensor(x)).data - cnn(Tensor(x)).data)) <= TOL


def test_distributed_mlp_with_untied_weights_is_refused():
    mlp = DistributedScanningMLP(4, layers=[(2, 2, 2), (3, 2, 1)], dtype=np.float64)
    mlp.layers[0].weight.data[2, 5] += 0.1  # position 1's copy of the block drifts
    with pytest.raises(ValueError, match="layer 0 .* no longer repeats"):
        scanning_mlp_to_cnn(mlp)
    with pytest.raises(TypeError):
        scanning_mlp_to_cnn(nn.Linear(3, 2))


def test_cli_scan_writes_a_heat_map(tmp_path, capsys):
    from PIL import Image

    from striate.cli import main
    from striate.data import write_idx

    rng = np.random.default_rng(0)
    data = tmp_path / "idx"
    data.mkdir()
    write_idx(data / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28), dtype=np.uint8))
    write_idx(data / "train-labels-idx1-ubyte", np.arange(40, dtype=np.uint8) % 10)
    run = tmp_path / "run"
    assert main(["train", "--data", f"idx:{data}", "--epochs", "1", "--batch-size", "16", "--out", str(run),
                 "--no-progress"]) == 0
    image = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (40, 52), dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert main(["scan", str(run), str(image), "--out", str(tmp_path / "heat.png")]) == 0
    out = capsys.readouterr().out
    assert "4x7 windows of 28x28, stride 4x4" in out and "strongest:" in out and "pads" in out
    assert (tmp_path / "heat.png").stat().st_size > 1000
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 52), np.uint8)).save(small)
    assert main(["scan", str(run), str(small), "--out", str(tmp_path / "x.png")]) == 2
    assert "smaller than the classifier's 28x28 window" in capsys.readouterr().err
