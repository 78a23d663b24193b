"""striate.summary: output shapes, parameters, receptive fields and multiply-adds of any model."""

from __future__ import annotations

import numpy as np
import pytest

import striate
import striate.nn as nn
from striate.models import LeNet5
from striate.summary import LayerSummary, format_summary, summarize


def by_name(rows):
    return {r.name: r for r in rows}


# ---------------------------------------------------------------------------- LeNet-5


def test_lenet5_rows():
    rows = summarize(LeNet5(), (1, 28, 28))
    assert [r.name for r in rows] == ["conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten",
                                      "fc1", "act3", "fc2", "act4", "fc3"]
    r = by_name(rows)
    shapes = {k: r[k].output_shape for k in ("conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "fc3")}
    assert shapes == {"conv1": (6, 28, 28), "pool1": (6, 14, 14), "conv2": (16, 10, 10), "pool2": (16, 5, 5),
                      "flatten": (400,), "fc1": (120,), "fc2": (84,), "fc3": (10,)}
    assert r["conv1"].layer_type == "Conv2d" and r["pool1"].layer_type == "MaxPool2d"
    assert [r[k].params for k in ("conv1", "conv2", "fc1", "fc2", "fc3")] == [156, 2416, 48120, 10164, 850]
    assert rows.total_params == rows.trainable_params == 61_706
    assert sum(x.params for x in rows) == 61_706


def test_lenet5_receptive_fields():
    r = by_name(summarize(LeNet5(), (1, 28, 28)))
    # conv1 r=5 j=1; pool1 r=5+1*1=6 j=2; conv2 r=6+4*2=14 j=2; pool2 r=14+1*2=16 j=4
    fields = {k: (r[k].receptive_field, r[k].jump) for k in ("conv1", "act1", "pool1", "conv2", "act2", "pool2")}
    assert fields == {"conv1": (5, 1), "act1": (5, 1), "pool1": (6, 2), "conv2": (14, 2), "act2": (14, 2),
                      "pool2": (16, 4)}
    for k in ("flatten", "fc1", "act3", "fc2", "act4", "fc3"):
        assert r[k].receptive_field is None and r[k].jump is None


def test_lenet5_mult_adds():
    rows = summarize(LeNet5(), (1, 28, 28))
    r = by_name(rows)
    assert r["conv1"].mult_adds == 6 * 28 * 28 * 1 * 25 == 117_600
    assert r["conv2"].mult_adds == 16 * 10 * 10 * 6 * 25
    assert (r["fc1"].mult_adds, r["fc2"].mult_adds, r["fc3"].mult_adds) == (400 * 120, 120 * 84, 84 * 10)
    assert r["pool1"].mult_adds == r["act1"].mult_adds == 0
    assert rows.total_mult_adds == 117_600 + 240_000 + 48_000 + 10_080 + 840


def test_model_is_restored():
    model = LeNet5()
    x = striate.tensor(np.random.default_rng(0).random((2, 1, 28, 28)), dtype=np.float32)
    before = model(x).data.copy()
    summarize(model, (1, 28, 28))
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert model.conv1.forward.__func__ is nn.Conv2d.forward
    assert model.training and all(m.training for m in model.modules())
    np.testing.assert_array_equal(model(x).data, before)


def test_restored_even_when_forward_raises():
    model = LeNet5()
    model.fc2.eval()  # a mixed mode, to check each flag comes back as it was
    with pytest.raises(Exception):
        summarize(model, (3, 28, 28))  # conv1 expects one channel
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert model.training and model.conv1.training and not model.fc2.training


def test_existing_instance_forward_is_kept():
    model = LeNet5()
    calls = []
    original = model.act1.forward

    def spy(x):
        calls.append(x.shape)
        return original(x)

    object.__setattr__(model.act1, "forward", spy)
    summarize(model, (1, 28, 28))
    assert model.act1.__dict__["forward"] is spy and calls == [(1, 6, 28, 28)]


def test_format_summary():
    text = format_summary(summarize(LeNet5(), (1, 28, 28)))
    for piece in ("conv1", "Conv2d", "(6, 28, 28)", "(16, 5, 5)", "117,600", "Total params:", "61,706",
                  "Trainable params:", "Total mult-adds:", "416,520", "RF", "Jump"):
        assert piece in text, piece
    conv2 = next(line for line in text.splitlines() if line.startswith("conv2"))
    assert conv2.split()[-3:] == ["14", "2", "240,000"]
    # a plain list of rows: totals are the sums of the rows
    row = LayerSummary("fc", "Linear", (3,), 15, 15, None, None, 12)
    plain = format_summary([row])
    assert "Total params:         15" in plain and "Total mult-adds:      12" in plain


# ---------------------------------------------------------------------------- receptive-field oracle


def empirical_field(model, in_hw, out_index):
    """Extent of the input pixels that output unit ``out_index`` depends on: the non-zero support of
    d out / d x, for a linear model with positive weights (so no gradient cancels)."""
    for p in model.parameters():
        p.data[...] = np.abs(p.data) + 0.1
    x = striate.tensor(np.random.default_rng(0).random((1, 1) + in_hw), requires_grad=True)
    y = model(x)
    y[(0, 0) + out_index].backward()
    rows, cols = np.nonzero(x.grad.data[0, 0])
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, rows.min(), cols.min()


@pytest.mark.parametrize("layers", [
    lambda: [nn.Conv2d(1, 2, 3, stride=2), nn.AvgPool2d(2), nn.Conv2d(2, 1, 3)],
    lambda: [nn.Conv2d(1, 2, (3, 5), dilation=2), nn.Conv2d(2, 2, 3, stride=(1, 2)), nn.AvgPool2d(3, stride=2),
             nn.Conv2d(2, 1, 2)],
])
def test_receptive_field_matches_gradient_support(layers):
    model = nn.Sequential(*layers()).double()
    hw = (41, 43)
    last = summarize(model, (1,) + hw)[-1]
    i, j = last.output_shape[1] // 2, last.output_shape[2] // 2
    h, w, r0, c0 = empirical_field(model, hw, (i, j))
    rf = last.receptive_field if isinstance(last.receptive_field, tuple) else (last.receptive_field,) * 2
    assert (h, w) == rf
    # the jump: moving one output unit shifts the field by j input pixels
    jump = last.jump if isinstance(last.jump, tuple) else (last.jump,) * 2
    _, _, r1, _ = empirical_field(model, hw, (i + 1, j))
    _, _, _, c1 = empirical_field(model, hw, (i, j + 1))
    assert (r1 - r0, c1 - c0) == jump


# ---------------------------------------------------------------------------- custom models


class Residual(nn.Module):
    """conv -> relu -> conv, plus the input: the sum is computed outside any leaf."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.act = nn.ReLU()  # called twice
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))  # owned by the root, not a leaf
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.act(self.stem(x))
        y = self.b(self.act(self.a(x)))
        return self.pool(y * self.scale + x)


def test_custom_forward_with_residual_and_shared_module():
    model = Residual()
    rows = summarize(model, (1, 12, 12))
    assert [r.name for r in rows] == ["stem", "act", "a", "act (2)", "b", "pool"]
    r = by_name(rows)
    assert r["act"].params == 0 and r["act (2)"].receptive_field == 5
    assert r["b"].receptive_field == 7 and r["b"].mult_adds == 4 * 12 * 12 * 4 * 9
    # pool's input is b's output plus the stem's: traced back through the graph, the widest wins;
    # a global average over 12x12 then covers 7 + 11 pixels
    assert r["pool"].receptive_field == 7 + 11 and r["pool"].jump == 12 and r["pool"].output_shape == (4, 1, 1)
    assert rows.total_params == 40 + 148 + 144 + 1
    assert sum(x.params for x in rows) == rows.total_params - 1  # the root's own parameter


def test_batchnorm_dropout_upsample_and_transposed_conv():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1), nn.BatchNorm2d(8), nn.Dropout(0.5),
        nn.Conv2d(8, 8, 3, padding=1, groups=4),
        nn.ConvTranspose2d(8, 4, 2, stride=2),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Flatten(), nn.Linear(4 * 16 * 16, 5), nn.BatchNorm1d(5),
    )
    bn = model[1]
    mean_before = bn.running_mean.data.copy()
    rows = summarize(model, (3, 8, 8))
    np.testing.assert_array_equal(bn.running_mean.data, mean_before)  # eval mode: statistics untouched
    assert model.training
    f = [(r.receptive_field, r.jump) for r in rows]
    assert f[:4] == [(3, 2), (3, 2), (3, 2), (3 + 2 * 2, 2)]
    assert f[4] == (7, 1)  # k=2, s=2: each output reads one input; the jump halves
    assert f[5] == (7, 0.5)
    assert f[6:] == [(None, None)] * 3
    assert rows[3].mult_adds == 8 * 4 * 4 * (8 // 4) * 9  # grouped: C_in / groups
    assert rows[4].mult_adds == (8 * 4 * 4) * 4 * 4  # transposed: N_in * C_out * k*k
    assert [r.output_shape for r in rows][4:6] == [(4, 8, 8), (4, 16, 16)]


def test_non_square_fields_and_vector_inputs():
    rows = summarize(nn.Sequential(nn.Conv2d(1, 1, (3, 1)), nn.MaxPool2d((2, 1))), (1, 6, 6))
    assert (rows[0].receptive_field, rows[1].receptive_field, rows[1].jump) == ((3, 1), (4, 1), (2, 1))
    assert "4x1" in format_summary(rows)
    mlp = summarize(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), 784)
    assert [r.output_shape for r in mlp] == [(32,), (32,), (10,)]
    assert all(r.receptive_field is None for r in mlp) and mlp.total_mult_adds == 784 * 32 + 32 * 10
    one = summarize(nn.Conv1d(2, 3, 5, stride=2), (2, 20))  # a single leaf as the model
    assert (one[0].name, one[0].output_shape, one[0].receptive_field, one[0].jump) == ("Conv1d", (3, 8), 5, 2)


def test_rejects_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        summarize(lambda x: x, (1, 4, 4))
