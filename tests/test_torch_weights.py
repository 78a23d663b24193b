"""PyTorch weights into striate models: safetensors only, torchvision key names, clear mismatch reports."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

import striate
import striate.nn as nn
from striate.io import SafetensorsError, load_torch_weights, read_torch_state_dict, save_safetensors
from striate.models import get_model
from harness import needs_torch, torch

pytestmark = needs_torch

TOOL = Path(__file__).resolve().parents[1] / "tools" / "pt_to_safetensors.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("pt_to_safetensors", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _twin(name, num_classes=10, in_channels=3):
    """A PyTorch twin initialised by PyTorch, with non-trivial BN statistics (as trained weights have)."""
    from test_models import _torch_zoo

    torch.manual_seed(0)
    twin = _torch_zoo()[name](num_classes, in_channels)
    g = torch.Generator().manual_seed(1)
    for m in twin.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.num_batches_tracked.fill_(7)
    return twin.eval()


def _save(state, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _assert_same_state(model, state):
    ours = model.state_dict()
    assert set(ours) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)


# ---------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", ["resnet20", "densenet_bc40", "resnet18"])
def test_weights_saved_from_pytorch_load_and_give_the_same_logits(name, tmp_path):
    twin = _twin(name)
    path = _save(twin.state_dict(), tmp_path / f"{name}.safetensors")
    model = get_model(name, num_classes=10)
    assert load_torch_weights(model, path) == ([], [])
    _assert_same_state(model, twin.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    model.eval()
    with striate.no_grad():
        ours = model(striate.tensor(x)).data
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


def test_densenet121_in_torchvisions_layout_loads_key_for_key(tmp_path):
    twin = _twin("densenet121", num_classes=1000)
    state = twin.state_dict()
    assert "features.denseblock1.denselayer1.norm1.weight" in state
    assert "features.transition3.conv.weight" in state and "features.norm5.running_var" in state
    model = get_model("densenet121")
    load_torch_weights(model, _save(state, tmp_path / "d121.safetensors"))
    _assert_same_state(model, state)


def test_files_without_num_batches_tracked_load(tmp_path):
    # torchvision's published ResNet/DenseNet files predate the counter
    state = {k: v for k, v in _twin("resnet20").state_dict().items() if not k.endswith("num_batches_tracked")}
    model = get_model("resnet20")
    model.bn1.num_batches_tracked.data[...] = 3
    assert load_torch_weights(model, _save(state, tmp_path / "old.safetensors")) == ([], [])
    assert int(model.bn1.num_batches_tracked.data) == 3  # kept
    np.testing.assert_array_equal(model.layer2[0].bn1.running_var.data, state["layer2.0.bn1.running_var"].numpy())


def test_counters_the_model_does_not_keep_are_ignored(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    state = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    state["1.num_batches_tracked"] = torch.tensor(5)
    assert load_torch_weights(model, _save(state, tmp_path / "w.safetensors")) == ([], [])


def test_weights_convert_to_the_models_dtype(tmp_path):
    twin = _twin("resnet20")
    model = get_model("resnet20").double()
    load_torch_weights(model, _save(twin.state_dict(), tmp_path / "w.safetensors"))
    assert model.conv1.weight.dtype == np.float64
    np.testing.assert_array_equal(model.conv1.weight.data, twin.conv1.weight.detach().numpy().astype(np.float64))


def test_bfloat16_files_are_widened_exactly(tmp_path):
    twin = _twin("resnet20")
    state = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in twin.state_dict().items()}
    model = get_model("resnet20")
    load_torch_weights(model, _save(state, tmp_path / "bf16.safetensors"))
    np.testing.assert_array_equal(model.fc.weight.data, state["fc.weight"].float().numpy())


def test_data_parallel_prefix_and_key_map(tmp_path):
    state = _twin("resnet20").state_dict()
    wrapped = {"module." + k.replace("fc.", "linear."): v for k, v in state.items()}
    model = get_model("resnet20")
    path = _save(wrapped, tmp_path / "dp.safetensors")
    with pytest.raises(nn.StateDictError, match="linear.weight"):
        load_torch_weights(model, path)
    load_torch_weights(model, path, key_map={"linear.weight": "fc.weight", "linear.bias": "fc.bias"})
    _assert_same_state(model, state)
    model2 = get_model("resnet20")
    load_torch_weights(model2, path, key_map=lambda k: k.replace("linear.", "fc."))
    _assert_same_state(model2, state)


# ---------------------------------------------------------------------- mismatches


def test_mismatches_are_reported_key_by_key_and_nothing_is_loaded(tmp_path):
    path = _save(_twin("resnet20").state_dict(), tmp_path / "r20.safetensors")
    model = get_model("resnet32", num_classes=100)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(nn.StateDictError) as info:
        load_torch_weights(model, path)
    err = info.value
    msg = str(err)
    assert msg.startswith(str(path))
    assert "layer1.3.conv1.weight" in err.missing and "layer3.4.bn2.running_mean" in err.missing
    assert not any(k.endswith("num_batches_tracked") for k in err.missing)
    assert ("fc.weight", (10, 64), (100, 64)) in err.mismatched and ("fc.bias", (10,), (100,)) in err.mismatched
    assert "size mismatch for fc.weight: checkpoint has (10, 64), model has (100, 64)" in msg
    assert "layer1.3.conv1.weight" in msg
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_unexpected_keys_are_listed_and_strict_false_tolerates_them(tmp_path):
    state = dict(_twin("resnet20").state_dict())
    state["fc2.weight"] = torch.zeros(3, 3)
    path = _save(state, tmp_path / "extra.safetensors")
    with pytest.raises(nn.StateDictError, match="unexpected keys: fc2.weight"):
        load_torch_weights(get_model("resnet20"), path)
    assert load_torch_weights(get_model("resnet20"), path, strict=False) == ([], ["fc2.weight"])


def test_pickled_files_are_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.mkdir, (str(marker),))

    legacy = tmp_path / "evil.pth"
    legacy.write_bytes(pickle.dumps(Payload()))
    torch_file = tmp_path / "weights.pt"
    torch.save(_twin("resnet20").state_dict(), torch_file)
    for path in (legacy, torch_file):
        with pytest.raises(SafetensorsError, match="pt_to_safetensors.py"):
            load_torch_weights(get_model("resnet20"), path)
    assert not marker.exists()


def test_corrupt_files_raise_safetensors_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(SafetensorsError):
        read_torch_state_dict(bad)
    with pytest.raises(FileNotFoundError):
        read_torch_state_dict(tmp_path / "missing.safetensors")


def test_striate_files_round_trip_through_the_same_loader(tmp_path):
    model = get_model("densenet_bc40")
    path = save_safetensors(tmp_path / "own.safetensors", model.state_dict())
    other = get_model("densenet_bc40")
    load_torch_weights(other, path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


# ---------------------------------------------------------------------- the converter


def test_converter_turns_a_state_dict_file_into_safetensors(tool, tmp_path):
    twin = _twin("resnet20")
    src = tmp_path / "resnet20.pth"
    torch.save(twin.state_dict(), src)
    dst = tmp_path / "out" / "resnet20.safetensors"
    assert tool.main([str(src), str(dst)]) == 0
    model = get_model("resnet20")
    load_torch_weights(model, dst)
    _assert_same_state(model, twin.state_dict())


def test_converter_finds_the_state_dict_inside_a_checkpoint(tool, tmp_path):
    twin = _twin("resnet20")
    ckpt = {"epoch": 3, "model": twin.state_dict(), "optimizer": {"lr": 0.1}, "note": "best"}
    src = tmp_path / "ckpt.pt"
    torch.save(ckpt, src)
    for key in (None, "model"):
        dst = tmp_path / f"ckpt-{key}.safetensors"
        tool.convert(src, dst, key=key, quiet=True)
        model = get_model("resnet20")
        load_torch_weights(model, dst)
        _assert_same_state(model, twin.state_dict())
    with pytest.raises(tool.ConvertError, match="no key 'weights'"):
        tool.convert(src, tmp_path / "x.safetensors", key="weights")


def test_converter_handles_shared_storage_and_half_precision(tool, tmp_path):
    w = torch.randn(4, 4)
    state = {"a.weight": w, "b.weight": w, "c.weight": torch.randn(3).half()}  # tied weights
    src = tmp_path / "tied.pt"
    torch.save(state, src)
    dst = tmp_path / "tied.safetensors"
    tool.convert(src, dst, dtype="float32", quiet=True)
    arrays = read_torch_state_dict(dst)
    np.testing.assert_array_equal(arrays["a.weight"], arrays["b.weight"])
    assert arrays["c.weight"].dtype == np.float32


def test_converter_refuses_what_weights_only_refuses(tool, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.mkdir, (str(marker),))

    src = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, src)
    assert tool.main([str(src), str(tmp_path / "evil.safetensors")]) == 2
    assert "weights_only" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()
    assert tool.main([str(tmp_path / "nope.pt"), str(tmp_path / "n.safetensors")]) == 2
