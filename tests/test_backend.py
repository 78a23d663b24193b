"""The array-module backend: NumPy by default, a device module (CuPy) when arrays live on a GPU.

Two kinds of tests:

* tests on the **fake device module** (``tests/fake_device.py``), which run everywhere: every op
  of the registry (tests/opinfo), forward and backward, and a few training steps of LeNet-5 and
  ResNet-20, on arrays that refuse to be mixed with host NumPy arrays as CuPy's do -- results
  must equal the NumPy results and stay on the device;
* tests on a **real GPU** with CuPy, skipped cleanly when CuPy or a CUDA device is missing.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import striate
from striate import Tensor, backend
from fake_device import FakeDeviceArray, HostDeviceMixError, fake, installed, to_fake
from harness import as_tuple_out, diff_output, output_grad, run_striate
from opinfo import all_ops

OPS = all_ops()
CASES = [
    pytest.param(info, s, id=f"{info.name}-{k}")
    for info in OPS
    for k, s in enumerate(info.samples(np.random.default_rng(1234)))
]


@pytest.fixture
def fake_cuda():
    with installed() as module:
        yield module


def _grad_rng(sample):
    return np.random.default_rng(zlib.crc32(repr(sample).encode()))


def _device_args(sample, convert):
    out = []
    for i, a in enumerate(sample.args):
        if isinstance(a, np.ndarray):
            t = Tensor._wrap(convert(a))
            if np.issubdtype(a.dtype, np.floating) and i not in sample.nograd:
                t.requires_grad_(True)
            out.append(t)
        else:
            out.append(a)
    return out


def _assert_same(actual, expected, what, rtol=1e-12):
    assert isinstance(actual, FakeDeviceArray), f"{what}: a {type(actual).__name__} came back, not a device array"
    host = actual.view(np.ndarray)
    assert host.shape == expected.shape, f"{what}: shape {host.shape} != {expected.shape}"
    assert host.dtype == expected.dtype, f"{what}: dtype {host.dtype} != {expected.dtype}"
    if np.issubdtype(expected.dtype, np.floating):
        scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
        np.testing.assert_allclose(host, expected, rtol=0, atol=rtol * scale, err_msg=what)
    else:
        np.testing.assert_array_equal(host, expected, err_msg=what)


# --------------------------------------------------------------------------- the fake module itself

def test_fake_module_refuses_host_arrays(fake_cuda):
    d = fake.ones((2, 3))
    assert isinstance(d, FakeDeviceArray)
    with pytest.raises(HostDeviceMixError):
        d + np.ones((2, 3))
    with pytest.raises(HostDeviceMixError):
        np.concatenate([d, np.ones((2, 3))])
    with pytest.raises(HostDeviceMixError):
        fake.matmul(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError):
        np.add.at(d, [0, 0], 1.0)
    assert isinstance(d.sum(), FakeDeviceArray) and isinstance(np.exp(d), FakeDeviceArray)
    assert isinstance(d + 1.0, FakeDeviceArray)


# --------------------------------------------------------------------------- backend functions

def test_get_array_module_and_devices(fake_cuda):
    h = np.ones(3)
    d = to_fake(h)
    assert backend.get_array_module(h, 1.0, None) is np
    assert backend.get_array_module(h, d) is fake
    assert backend.device_of(h) == "cpu" and backend.device_of(d) == "cuda"
    assert backend.is_available("cpu") and backend.is_available("cuda")
    moved = backend.to_device(h, "cuda")
    assert isinstance(moved, FakeDeviceArray)
    back = backend.to_device(moved, "cpu")
    assert type(back) is np.ndarray and np.array_equal(back, h)
    assert backend.to_device(h, "cpu") is h
    with pytest.raises(ValueError, match="unknown device"):
        backend.normalize_device("tpu")
    assert backend.normalize_device("cuda:0") == "cuda"


def test_cuda_unavailable_without_cupy_or_fake():
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed")
    assert not backend.is_available("cuda") and not striate.cuda.is_available()
    with pytest.raises(backend.DeviceError, match="CuPy"):
        backend.to_device(np.ones(2), "cuda")
    with pytest.raises(backend.DeviceError, match="CuPy"):
        striate.tensor([1.0]).to("cuda")


def test_scatter_add_and_as_strided(fake_cuda):
    for xp, conv in ((np, np.asarray), (fake, to_fake)):
        a = xp.zeros(4)
        backend.scatter_add(a, conv(np.array([0, 0, 3])), conv(np.array([1.0, 2.0, 5.0])))
        assert np.array_equal(np.asarray(a), [3.0, 0, 0, 5.0])
        v = backend.as_strided(conv(np.arange(6.0)), (2, 3), (8, 16))
        assert type(v) is type(conv(np.ones(1))) and v[1, 2] == 5.0


# --------------------------------------------------------------------------- tensors and devices

def test_tensor_to_device_roundtrip(fake_cuda):
    t = striate.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    assert t.device == "cpu"
    d = t.to("cuda")
    assert d.device == "cuda" and d.dtype == np.float32 and isinstance(d.data, FakeDeviceArray)
    assert d.to("cuda") is d and t.to("cpu") is t
    y = (d * 2.0).sum()
    y.backward()
    assert t.grad.device == "cpu" and np.array_equal(t.grad.numpy(), np.full((2, 3), 2.0, np.float32))
    h = d.detach().numpy()
    assert type(h) is np.ndarray and np.array_equal(h, t.detach().numpy())
    assert d.detach().cpu().device == "cpu"
    assert d.to("cuda", np.float64).dtype == np.float64
    assert d.to(dtype="float64", device="cpu").device == "cpu"
    assert "device='cuda'" in repr(d)
    assert np.array_equal(np.asarray(d.detach()), h)


def test_mixing_devices_is_a_clear_error(fake_cuda):
    a = striate.tensor(np.ones((2, 2), np.float32))
    b = a.to("cuda")
    with pytest.raises(backend.DeviceError, match="same device.*cpu and cuda|same device.*cuda and cpu"):
        a + b
    import striate.functional as F

    w = striate.tensor(np.ones((3, 2, 1, 1), np.float32))
    with pytest.raises(backend.DeviceError, match="same device"):
        F.conv2d(striate.tensor(np.ones((1, 2, 3, 3), np.float32)).to("cuda"), w)
    assert (b + 1.0).device == "cuda"  # Python scalars go with any device


# --------------------------------------------------------------------------- every op of the registry

@pytest.mark.parametrize("info,sample", CASES)
def test_op_on_fake_device_matches_numpy(info, sample, fake_cuda):
    """Forward and backward of every registry op on device arrays equal the NumPy results (float64)
    and come back as device arrays: no kernel on the generic path calls a NumPy-only function."""
    dy = output_grad(info, sample, _grad_rng(sample)) if sample.diff_indices() else None
    outs, grads = run_striate(info, sample, dy)
    args = _device_args(sample, to_fake)
    out = info.op(*args, **sample.kwargs)
    douts = tuple(o.data if isinstance(o, Tensor) else o for o in as_tuple_out(out))
    assert len(douts) == len(outs)
    for k, (a, e) in enumerate(zip(douts, outs)):
        _assert_same(a, e, f"{info.name} output {k}")
    if dy is None:
        return
    y = diff_output(out, info.output_index)
    y.backward(to_fake(dy))
    for i in sample.diff_indices():
        g = args[i].grad
        assert g is not None, f"{info.name}: no gradient for input {i}"
        _assert_same(g.data, grads[i], f"{info.name} grad of input {i}")


# --------------------------------------------------------------------------- modules and training

def _train_steps(model, opt, images, labels, steps):
    import striate.functional as F

    losses = []
    for k in range(steps):
        opt.zero_grad()
        x = striate.tensor(images[k]).to(model.device)
        y = striate.tensor(labels[k]).to(model.device)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


@pytest.mark.parametrize("name,shape,optimizer", [
    ("lenet5", (4, 1, 28, 28), "sgd"),
    ("resnet20", (2, 3, 32, 32), "adam"),
])
def test_training_on_fake_device_matches_numpy(name, shape, optimizer, fake_cuda):
    """A few optimiser steps of LeNet-5 / ResNet-20 on the fake device give the NumPy weights (float64)."""
    from striate.models import get_model

    rng = np.random.default_rng(0)
    steps = 2
    images = [rng.standard_normal(shape) for _ in range(steps)]
    labels = [rng.integers(0, 10, shape[0]) for _ in range(steps)]
    results = []
    for device in ("cpu", "cuda"):
        striate.manual_seed(0)
        model = get_model(name).double()
        model.to(device)
        assert model.device == device
        params = model.parameters()
        opt = (striate.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4) if optimizer == "sgd"
               else striate.optim.Adam(params, lr=1e-3))
        losses = _train_steps(model, opt, images, labels, steps)
        for p in model.parameters():
            assert backend.device_of(p.data) == device and backend.device_of(p.grad.data) == device
        for b in model.buffers():
            assert backend.device_of(b.data) == device
        for s in opt.state.values():
            for v in s.values():
                if hasattr(v, "shape"):
                    assert backend.device_of(v) == device
        sd = model.state_dict()
        assert all(type(v) is np.ndarray for v in sd.values())
        results.append((losses, sd, opt.state_dict()))
    (l0, sd0, os0), (l1, sd1, os1) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-12)
    for k in sd0:
        np.testing.assert_allclose(sd1[k], sd0[k], rtol=0, atol=1e-12, err_msg=k)
    for i in os0["state"]:
        for key, v in os0["state"][i].items():
            if isinstance(v, np.ndarray):
                w = os1["state"][i][key]
                assert type(w) is np.ndarray
                np.testing.assert_allclose(w, v, rtol=0, atol=1e-12)


def test_module_to_device_and_back(fake_cuda):
    from striate.models import get_model

    model = get_model("lenet5")
    p0 = next(iter(model.parameters()))
    ref = model.state_dict()
    ref = {k: v.copy() for k, v in ref.items()}
    assert model.to("cuda") is model and model.device == "cuda"
    assert next(iter(model.parameters())) is p0 and isinstance(p0.data, FakeDeviceArray)
    model.to("cuda", np.float64)
    assert p0.dtype == np.float64 and model.device == "cuda"
    model.to(dtype=np.float32)
    model.load_state_dict(ref)  # host arrays load into device parameters
    assert isinstance(p0.data, FakeDeviceArray)
    model.cpu()
    assert model.device == "cpu" and type(p0.data) is np.ndarray
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, ref[k])
    x = striate.tensor(np.zeros((1, 1, 28, 28), np.float32)).to("cuda")
    with pytest.raises(backend.DeviceError, match="same device"):
        model(x)


def test_trainer_on_fake_device_checkpoints_host_arrays_and_resumes_on_cpu(tmp_path, fake_cuda):
    """The Trainer moves host batches to the model's device; the checkpoint it writes holds host
    arrays and resumes on the CPU; the weights match a CPU run."""
    from striate.train.loop import ModelCheckpoint
    from test_train import _trainer

    runs = {}
    for device in ("cpu", "cuda"):
        t = _trainer(tmp_path / device, callbacks=[ModelCheckpoint(every_steps=4)])
        t.model.to(device)
        t.fit(1)
        assert t.model.device == device
        runs[device] = t
    for (k, a), (_, b) in zip(runs["cpu"].model.state_dict().items(), runs["cuda"].model.state_dict().items()):
        assert type(b) is np.ndarray
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=k)
    resumed = _trainer(tmp_path / "cuda")
    resumed.resume()
    assert resumed.model.device == "cpu" and resumed.step == runs["cuda"].step
    resumed.fit(2)


def test_cli_train_device_cuda_without_cupy_is_a_one_line_error(capsys):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed")
    from striate.cli import main

    assert main(["train", "--device", "cuda", "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("striate: error:") and "CuPy" in err[0]


# --------------------------------------------------------------------------- a real GPU (CuPy)

def _cupy_or_skip():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"no usable CUDA device ({exc})")
    return cp


@pytest.mark.parametrize("info,sample", CASES)
def test_op_on_cuda_matches_cpu(info, sample):
    """Every registry op, forward and gradients, on a real GPU equals the CPU result (float64)."""
    cp = _cupy_or_skip()
    dy = output_grad(info, sample, _grad_rng(sample)) if sample.diff_indices() else None
    outs, grads = run_striate(info, sample, dy)
    args = _device_args(sample, cp.asarray)
    out = info.op(*args, **sample.kwargs)
    douts = tuple(o.data if isinstance(o, Tensor) else o for o in as_tuple_out(out))
    for k, (a, e) in enumerate(zip(douts, outs)):
        assert isinstance(a, cp.ndarray), f"{info.name} output {k} is not on the GPU"
        np.testing.assert_allclose(cp.asnumpy(a), e, rtol=1e-9, atol=1e-9, err_msg=f"{info.name} output {k}")
    if dy is None:
        return
    diff_output(out, info.output_index).backward(cp.asarray(dy))
    for i in sample.diff_indices():
        g = args[i].grad.data
        assert isinstance(g, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(g), grads[i], rtol=1e-9, atol=1e-9, err_msg=f"{info.name} grad {i}")


@pytest.mark.parametrize("name,shape,optimizer", [
    ("lenet5", (4, 1, 28, 28), "sgd"),
    ("resnet20", (2, 3, 32, 32), "adam"),
])
def test_training_on_cuda_matches_cpu(name, shape, optimizer):
    _cupy_or_skip()
    from striate.models import get_model

    rng = np.random.default_rng(0)
    images = [rng.standard_normal(shape) for _ in range(2)]
    labels = [rng.integers(0, 10, shape[0]) for _ in range(2)]
    results = []
    for device in ("cpu", "cuda"):
        striate.manual_seed(0)
        model = get_model(name).double().to(device)
        opt = (striate.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
               else striate.optim.Adam(model.parameters(), lr=1e-3))
        results.append((_train_steps(model, opt, images, labels, 2), model.state_dict()))
    (l0, sd0), (l1, sd1) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-9)
    for k in sd0:
        np.testing.assert_allclose(sd1[k], sd0[k], rtol=1e-8, atol=1e-10, err_msg=k)
