"""nn modules: PyTorch's constructor arguments, parameter shapes, state_dict keys, forward parity."""

from __future__ import annotations

import numpy as np
import pytest

import striate
import striate.nn as nn
from harness import needs_torch, torch

# (striate constructor, torch constructor, input shape) — same arguments on both sides
LAYERS = [
    ("Conv1d", (3, 4, 3), {"stride": 2, "padding": 1}, (2, 3, 9)),
    ("Conv2d", (3, 6, 3), {"padding": 1, "groups": 3, "bias": False}, (2, 3, 7, 7)),
    ("Conv2d", (4, 8, (3, 5)), {"stride": (2, 1), "dilation": 2}, (2, 4, 11, 12)),
    ("ConvTranspose1d", (4, 2, 3), {"stride": 2, "output_padding": 1}, (2, 4, 5)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "groups": 2}, (2, 4, 5, 5)),
    ("Linear", (12, 5), {}, (3, 12)),
    ("BatchNorm1d", (6,), {}, (4, 6, 3)),
    ("BatchNorm2d", (3,), {"momentum": 0.2}, (4, 3, 5, 5)),
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1}, (2, 3, 10)),
    ("MaxPool2d", (3,), {"stride": 2, "ceil_mode": True}, (2, 3, 9, 9)),
    ("AvgPool1d", (2,), {}, (2, 3, 10)),
    ("AvgPool2d", (3,), {"stride": 1, "padding": 1, "count_include_pad": False}, (2, 3, 6, 6)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 5, 7)),
    ("AdaptiveAvgPool2d", ((3, 2),), {}, (2, 3, 8, 7)),
    ("Upsample", (), {"scale_factor": 2, "mode": "bilinear", "align_corners": False}, (2, 3, 4, 5)),
    ("Upsample", (), {"scale_factor": 2, "mode": "nearest"}, (2, 3, 4, 5)),
    ("Flatten", (), {}, (2, 3, 4, 5)),
    ("Identity", (), {}, (2, 3)),
    ("ReLU", (), {}, (3, 7)),
    ("LeakyReLU", (0.2,), {}, (3, 7)),
    ("ELU", (), {"alpha": 0.5}, (3, 7)),
    ("GELU", (), {}, (3, 7)),
    ("Sigmoid", (), {}, (3, 7)),
    ("Tanh", (), {}, (3, 7)),
    ("Softplus", (), {"beta": 2.0}, (3, 7)),
    ("Softmax", (), {"dim": 1}, (3, 7)),
    ("LogSoftmax", (), {"dim": 1}, (3, 7)),
]


def _layer_id(spec):
    return f"{spec[0]}{spec[1]}{spec[2]}"


@needs_torch
@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=[_layer_id(s) for s in LAYERS])
@pytest.mark.parametrize("train", [True, False])
def test_layer_matches_torch_with_torch_weights(name, args, kwargs, shape, train):
    tl = getattr(torch.nn, name)(*args, **kwargs).double()
    sl = getattr(nn, name)(*args, **kwargs).double()
    tsd = {k: v.detach().numpy().copy() for k, v in tl.state_dict().items()}
    ssd = sl.state_dict()
    assert list(ssd) == list(tsd), "state_dict keys must equal PyTorch's, in order"
    for k in tsd:
        assert ssd[k].shape == tsd[k].shape, k
    sl.load_state_dict(tsd)
    tl.train(train)
    sl.train(train)
    x = np.random.default_rng(0).standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    sx = striate.tensor(x, requires_grad=True)
    ty, sy = tl(tx), sl(sx)
    np.testing.assert_allclose(sy.numpy() if not sy.requires_grad else sy.detach().numpy(),
                               ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = np.random.default_rng(1).standard_normal(ty.shape)
    ty.backward(torch.tensor(g))
    sy.backward(g)
    np.testing.assert_allclose(sx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-10)
    for (k, p), (tk, tp) in zip(sl.named_parameters(), tl.named_parameters()):
        assert k == tk
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=k)
    for k, v in tl.state_dict().items():  # running statistics updated identically
        np.testing.assert_allclose(sl.state_dict()[k], v.numpy(), rtol=1e-12, atol=1e-12, err_msg=k)


@needs_torch
def test_default_init_has_torch_distribution_bounds():
    striate.random.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / np.sqrt(16 * 9)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert conv.weight.dtype == np.float32
    assert np.abs(conv.weight.numpy()).max() <= bound
    assert np.abs(conv.weight.numpy()).max() > 0.9 * bound
    assert np.abs(conv.bias.numpy()).max() <= bound


def test_manual_seed_makes_construction_reproducible():
    striate.random.manual_seed(3)
    a = nn.Linear(5, 4)
    striate.random.manual_seed(3)
    b = nn.Linear(5, 4)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())


def _net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
    )


def test_parameters_buffers_children_and_keys():
    net = _net()
    names = [k for k, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert [k for k, _ in net.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(list(net.children())) == 6
    assert len(list(net.modules())) == 7
    assert net[0].weight.shape == (4, 1, 3, 3)
    assert isinstance(net[1:3], nn.Sequential) and len(net[1:3]) == 2


def test_load_state_dict_reports_every_problem_at_once_and_changes_nothing():
    net = _net()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    sd = {k: v.copy() for k, v in net.state_dict().items()}
    del sd["0.bias"]
    sd["extra.weight"] = np.zeros(3)
    sd["5.weight"] = np.zeros((10, 3))
    sd["1.weight"] = sd["1.weight"] + 1
    with pytest.raises(nn.StateDictError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert "0.bias" in msg and "extra.weight" in msg and "5.weight" in msg and "(10, 3)" in msg and "(10, 64)" in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} changed by a failed load")


def test_load_state_dict_non_strict_and_in_place():
    net = _net()
    w = net[0].weight
    sd = {"0.weight": np.ones((4, 1, 3, 3))}
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert "0.bias" in missing and unexpected == []
    assert net[0].weight is w and w.dtype == np.float32 and np.all(w.numpy() == 1)


def test_train_eval_zero_grad_and_dtype_conversion():
    net = _net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    out = net(striate.tensor(np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)))
    assert out.dtype == np.float32
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net[1].running_mean.dtype == np.float64 and net[1].num_batches_tracked.dtype == np.int64


def test_repr_is_readable():
    text = repr(_net())
    assert "(0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert "(5): Linear(in_features=64, out_features=10, bias=True)" in text


def test_module_containers():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and len(list(ml.parameters())) == 6
    md = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.ReLU()})
    assert "a" in md and list(md.keys()) == ["a", "b"]
    assert [k for k, _ in md.named_parameters()] == ["a.weight", "a.bias"]


def test_assigning_wrong_type_to_parameter_slot_raises():
    lin = nn.Linear(2, 3)
    with pytest.raises(TypeError, match="weight"):
        lin.weight = np.zeros((3, 2))


def test_batchnorm_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        nn.BatchNorm2d(3)(striate.tensor(np.zeros((2, 3), np.float32)))


def test_dropout_layer_train_eval():
    d = nn.Dropout(0.5, generator=np.random.default_rng(0))
    x = striate.tensor(np.ones((100, 100), np.float32))
    y = d(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_upsample_zeros_and_downsample_layers():
    x = striate.tensor(np.arange(4.0).reshape(1, 1, 2, 2))
    up = nn.Upsample(scale_factor=2, mode="zeros")(x).numpy()
    np.testing.assert_array_equal(up[0, 0], [[0, 0, 1], [0, 0, 0], [2, 0, 3]])
    np.testing.assert_array_equal(nn.Downsample(2)(striate.tensor(up)).numpy(), x.numpy())
