"""Safetensors weights files and crash-safe training checkpoints (striate.io, striate.train.checkpoint)."""

from __future__ import annotations

import ast
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors")

import striate  # noqa: E402
from striate import nn, optim  # noqa: E402
from striate.io import (  # noqa: E402
    SafetensorsError,
    load_safetensors,
    load_state_dict_file,
    save_safetensors,
    save_state_dict,
)
from striate.train import (  # noqa: E402
    ArchitectureMismatchError,
    CheckpointError,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from striate.train import checkpoint as ckpt_mod  # noqa: E402

SRC = Path(striate.__file__).parent
lr_scheduler = optim.lr_scheduler


# ---------------------------------------------------------------------- helpers


def assert_identical(a, b, where="value"):
    """Equal values of equal types; arrays bitwise equal with equal dtype and shape."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: array bits differ"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def snapshot(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def assert_model_equals(model, snap):
    assert_identical({k: np.asarray(v) for k, v in model.state_dict().items()}, snap, "model")


def temp_files(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith(".tmp-"))


def weight_files(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("weights-"))


def make_mlp(seed=0, hidden=8):
    striate.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.25), nn.Linear(hidden, 3))


def make_optimizer(kind, model):
    if kind == "sgd":
        return optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    params = list(model.parameters())  # two groups, one with its own lr; amsgrad adds a buffer
    return optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 3e-3}], lr=1e-2, amsgrad=True)


SCHEDULERS = {
    "step": lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "multistep": lambda o: lr_scheduler.MultiStepLR(o, milestones=[1, 3, 3], gamma=0.5),
    "plateau": lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=0),  # best = inf
    "onecycle": lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20),
}


def train_steps(model, opt, sched, start, n):
    """n deterministic steps (batch i depends only on i); dropout draws from the global RNG."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for i in range(start, start + n):
        rng = np.random.default_rng(1000 + i)
        x = striate.tensor(rng.standard_normal((6, 4)).astype(np.float32))
        y = striate.tensor(rng.integers(0, 3, size=6))
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
            sched.step(float(loss.data))
        else:
            sched.step()


# ---------------------------------------------------------------------- striate.io


def test_safetensors_round_trip_dtypes_and_metadata(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = {
        "f32": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32),
        "f64_strided": base[:, ::2],                  # non-contiguous
        "f16": np.array([1.5, -2.0, np.inf], np.float16),
        "big_endian": np.arange(5, dtype=">f4"),
        "i64_scalar": np.array(7, np.int64),          # 0-d stays 0-d
        "u64": np.array([2**64 - 1], np.uint64),
        "u8": np.arange(10, dtype=np.uint8),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
    }
    path = save_safetensors(tmp_path / "w.safetensors", arrays, {"note": "hi", "n": "3"})
    loaded, meta = load_safetensors(path)
    assert meta == {"note": "hi", "n": "3"}
    assert sorted(loaded) == sorted(arrays)  # safetensors orders tensors by dtype, then name
    for k, a in arrays.items():
        b = loaded[k]
        assert b.shape == a.shape and np.array_equal(a, b, equal_nan=True), k
        assert b.dtype == a.dtype.newbyteorder("=") and b.flags.writeable, k
    assert temp_files(tmp_path) == []
    assert load_safetensors(save_safetensors(tmp_path / "n.safetensors", {"a": np.ones(2)}))[1] == {}


@pytest.mark.parametrize("arrays, metadata, match", [
    ({"a": np.array([object()])}, None, "dtype object"),
    ({"a": np.ones(2, np.complex128)}, None, "complex128"),
    ({1: np.ones(2)}, None, "keys must be strings"),
    ({"a": [1.0, 2.0]}, None, "numpy array"),
    ({"a": np.ones(2)}, {"k": 1}, "metadata"),
])
def test_save_safetensors_rejects_bad_input_before_writing(tmp_path, arrays, metadata, match):
    with pytest.raises(TypeError, match=match):
        save_safetensors(tmp_path / "w.safetensors", arrays, metadata)
    assert list(tmp_path.iterdir()) == []


def test_load_safetensors_truncated_or_garbage_names_the_path(tmp_path):
    path = save_safetensors(tmp_path / "w.safetensors", {"a": np.ones((50, 50), np.float32)})
    data = path.read_bytes()
    for bad in (data[: len(data) // 2], data[:5], b"\xff" * 64):
        path.write_bytes(bad)
        with pytest.raises(SafetensorsError, match=str(path).replace("\\", "\\\\")):
            load_safetensors(path)
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "missing.safetensors")


def test_state_dict_file_round_trip_and_mismatch(tmp_path):
    model = make_mlp(1)
    path = save_state_dict(model, tmp_path / "model.safetensors")
    arrays, _ = load_safetensors(path)
    assert sorted(arrays) == sorted(model.state_dict())  # PyTorch's key names, no prefix
    other = make_mlp(2)
    assert load_state_dict_file(other, path) == ([], [])
    assert_model_equals(other, snapshot(model))

    wrong = make_mlp(3, hidden=5)
    before = snapshot(wrong)
    with pytest.raises(nn.StateDictError) as info:
        load_state_dict_file(wrong, path)
    assert "size mismatch for 0.weight: checkpoint has (8, 4), model has (5, 4)" in str(info.value)
    assert_model_equals(wrong, before)


# ---------------------------------------------------------------------- exact round trip


@pytest.mark.parametrize("opt_kind, sched_kind", [
    ("sgd", "step"), ("adam", "multistep"), ("sgd", "plateau"), ("adam", "onecycle"),
])
def test_checkpoint_resume_is_bitwise_exact(tmp_path, opt_kind, sched_kind):
    model = make_mlp(0)
    opt = make_optimizer(opt_kind, model)
    sched = SCHEDULERS[sched_kind](opt)
    train_steps(model, opt, sched, 0, 3)
    config = {"hidden": 8, "layers": (4, 8, 3)}
    save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, epoch=1, step=3,
                    model_name="mlp", model_config=config, data_state={"position": 3, "order": [2, 0, 1]},
                    extra={"best": 0.5})
    saved_opt, saved_sched, saved_rng = opt.state_dict(), sched.state_dict(), striate.random.get_rng_state()
    train_steps(model, opt, sched, 3, 3)  # the uninterrupted run
    reference = snapshot(model)

    # a "restarted process": other initial weights, fresh optimizer/scheduler, scrambled RNG
    model2 = make_mlp(42)
    opt2 = make_optimizer(opt_kind, model2)
    sched2 = SCHEDULERS[sched_kind](opt2)
    striate.manual_seed(12345)
    state = load_checkpoint(tmp_path, model=model2, optimizer=opt2, scheduler=sched2,
                            expect_model={"name": "mlp", "config": config}, restore_rng=True)
    assert_identical(opt2.state_dict(), saved_opt, "optimizer")
    assert_identical(sched2.state_dict(), saved_sched, "scheduler")
    assert_identical(striate.random.get_rng_state(), saved_rng, "rng")
    assert (state["epoch"], state["step"], state["model_name"]) == (1, 3, "mlp")
    assert_identical(state["model_config"], config)
    assert_identical(state["data_state"], {"position": 3, "order": [2, 0, 1]})
    assert_identical(state["extra"], {"best": 0.5})
    assert_identical(state["rng_state"], saved_rng)
    assert_identical(state["optimizer_state"], saved_opt)
    assert state["format_version"] == ckpt_mod.FORMAT_VERSION

    train_steps(model2, opt2, sched2, 3, 3)
    assert_model_equals(model2, reference)


def test_weights_file_layout_and_json_is_strict(tmp_path):
    model = make_mlp(0)
    opt = make_optimizer("sgd", model)
    train_steps(model, opt, lr_scheduler.StepLR(opt, 1), 0, 1)
    pointer = save_checkpoint(tmp_path, model=model, optimizer=opt, step=7)
    doc = json.loads(pointer.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    name = doc["weights"]["file"]
    assert name.startswith("weights-0000000007-") and weight_files(tmp_path) == [name]
    arrays, meta = load_safetensors(tmp_path / name)
    assert meta["format"] == "striate-checkpoint"
    keys = set(arrays)
    assert {f"model.{k}" for k in model.state_dict()} <= keys
    assert "optimizer.state.0.momentum_buffer" in keys
    assert all(k.startswith(("model.", "optimizer.")) for k in keys)


def test_rng_states_and_extra_values_round_trip_exactly(tmp_path):
    mt = np.random.Generator(np.random.MT19937(5))
    mt.random(3)
    philox = np.random.Generator(np.random.Philox(6))
    philox.random(3)
    pcg = np.random.default_rng(2**100 + 3)
    pcg.random(1)
    extra = {
        "pcg": pcg.bit_generator.state,       # 128-bit ints
        "philox": philox.bit_generator.state,  # uint64 arrays
        "tuple": (1, (2.5, "x"), [None, True]),
        7: "int key", (1, 2): "tuple key", "$odd": "dollar key",
        "floats": [float("inf"), -float("inf"), float("nan"), 0.1, -0.0, 1e308],
        "np_scalars": [np.float32(0.1), np.int64(-3), np.bool_(True), np.uint8(255)],
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "nested": {"arrays": [np.ones(2, np.float16), np.zeros((), np.float64)]},
        "big": 2**200,
    }
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, model=model, rng_state=mt.bit_generator.state, extra=extra)
    state = load_checkpoint(tmp_path)
    assert_identical(state["extra"], extra)
    assert_identical(state["rng_state"], mt.bit_generator.state)
    for saved, live in ((state["rng_state"], mt), (state["extra"]["pcg"], pcg), (state["extra"]["philox"], philox)):
        resumed = np.random.Generator(getattr(np.random, saved["bit_generator"])())
        resumed.bit_generator.state = saved
        assert np.array_equal(resumed.random(10), live.random(10))


def test_unstorable_value_raises_before_anything_is_written(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, model=model, step=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for bad in ({"s": {1, 2}}, {"f": lambda: 0}, {"a": np.array(["x"])}, {"t": striate.tensor([1.0])}):
        with pytest.raises(TypeError, match="cannot store"):
            save_checkpoint(tmp_path, model=model, step=2, extra=bad)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(TypeError, match="step"):
        save_checkpoint(tmp_path, model=model, step=-1)
    missing = tmp_path / "never"
    with pytest.raises(TypeError):
        save_checkpoint(missing, model=model, extra={"s": {1}})
    assert not missing.exists()


def test_new_checkpoint_replaces_old_weights(tmp_path):
    model = nn.Linear(3, 2)
    for step in (1, 2, 2, 3):  # saving the same step twice with other weights is fine too
        model.weight.data[...] = step + 0.5 * (len(weight_files(tmp_path)))
        save_checkpoint(tmp_path / "run", model=model, step=step)
        assert len(weight_files(tmp_path / "run")) == 1
    expected = snapshot(model)
    fresh = nn.Linear(3, 2)
    assert load_checkpoint(tmp_path / "run", model=fresh)["step"] == 3
    assert_model_equals(fresh, expected)
    assert has_checkpoint(tmp_path / "run") and not has_checkpoint(tmp_path)


# ---------------------------------------------------------------------- refusing bad checkpoints


@pytest.fixture
def saved(tmp_path):
    model = make_mlp(0)
    opt = make_optimizer("adam", model)
    train_steps(model, opt, lr_scheduler.StepLR(opt, 1), 0, 2)
    save_checkpoint(tmp_path, model=model, optimizer=opt, step=2, model_name="mlp", model_config={"hidden": 8})
    target = make_mlp(9)
    target_opt = make_optimizer("adam", target)
    train_steps(target, target_opt, lr_scheduler.StepLR(target_opt, 1), 5, 1)
    return tmp_path, target, target_opt


def _expect_refusal(directory, target, target_opt, match, path=None, cls=CheckpointError, **kw):
    before, before_opt = snapshot(target), target_opt.state_dict()
    with pytest.raises(cls, match=match) as info:
        load_checkpoint(directory, model=target, optimizer=target_opt, **kw)
    assert isinstance(info.value, ValueError)
    if path is not None:
        assert str(path) in str(info.value) and info.value.path == path
    assert_model_equals(target, before)
    assert_identical(target_opt.state_dict(), before_opt, "optimizer")
    return info.value


def test_corrupt_json_is_refused(saved):
    directory, target, opt = saved
    pointer = directory / "checkpoint.json"
    text = pointer.read_text()
    pointer.write_text(text[: len(text) // 2])
    _expect_refusal(directory, target, opt, "not valid JSON", pointer)
    pointer.write_text(json.dumps({"hello": 1}))
    _expect_refusal(directory, target, opt, "not a striate checkpoint", pointer)
    doc = json.loads(text)
    pointer.write_text(json.dumps({**doc, "format_version": 99}))
    _expect_refusal(directory, target, opt, "version 99", pointer)
    pointer.write_text(json.dumps({**doc, "weights": {**doc["weights"], "file": "../../etc/passwd"}}))
    _expect_refusal(directory, target, opt, "bad 'weights' entry", pointer)
    opt_doc = json.loads(text)
    opt_doc["optimizer"]["state_dict"]["state"]["$dict"][0][1]["exp_avg"] = {"$array": "nope"}
    pointer.write_text(json.dumps(opt_doc))
    _expect_refusal(directory, target, opt, "not in the weights file", pointer)
    pointer.unlink()
    _expect_refusal(directory, target, opt, "no checkpoint", pointer)
    _expect_refusal(directory / "absent", target, opt, "directory does not exist")


def test_truncated_or_tampered_weights_are_refused(saved):
    directory, target, opt = saved
    weights = directory / weight_files(directory)[0]
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    _expect_refusal(directory, target, opt, "truncated or replaced", weights)
    flipped = bytearray(data)
    flipped[-5] ^= 0x01  # same size, one bit in the arrays
    weights.write_bytes(bytes(flipped))
    _expect_refusal(directory, target, opt, "SHA-256", weights)
    weights.unlink()
    _expect_refusal(directory, target, opt, "is missing", weights)

    # a pointer whose hash matches a file that is not safetensors at all
    import hashlib
    garbage = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(50)
    weights.write_bytes(garbage)
    pointer = directory / "checkpoint.json"
    doc = json.loads(pointer.read_text())
    doc["weights"].update(sha256=hashlib.sha256(garbage).hexdigest(), size=len(garbage))
    pointer.write_text(json.dumps(doc))
    _expect_refusal(directory, target, opt, "corrupt", weights)


def test_other_architecture_is_refused_with_all_keys_listed(saved):
    directory, _, _ = saved
    striate.manual_seed(3)
    other = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    other_opt = optim.Adam([{"params": list(other.parameters())[:2]}, {"params": list(other.parameters())[2:6]}])
    err = _expect_refusal(directory, other, other_opt, "does not fit this Sequential", cls=ArchitectureMismatchError)
    msg = str(err)
    assert "size mismatch for 0.weight: checkpoint has (8, 4), model has (5, 4)" in msg
    assert "size mismatch for 1.running_mean: checkpoint has (8,), model has (5,)" in msg
    assert "missing keys: 3.weight, 3.bias" in msg
    assert "unexpected keys: 4.bias, 4.weight" in msg  # in the file's (sorted) order
    assert isinstance(err.__cause__, nn.StateDictError)

    _, target, opt = saved
    err = _expect_refusal(directory, target, opt, "another architecture", cls=ArchitectureMismatchError,
                          expect_model={"name": "mlp", "config": {"hidden": 16}})
    assert "config['hidden']: checkpoint 8, expected 16" in str(err)
    _expect_refusal(directory, target, opt, "model name: checkpoint 'mlp', expected 'resnet'",
                    cls=ArchitectureMismatchError, expect_model={"name": "resnet"})


def test_wrong_optimizer_or_scheduler_is_refused_before_the_model_is_touched(saved):
    directory, target, opt = saved
    sgd = optim.SGD(target.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="holds Adam state, the optimizer given is SGD"):
        load_checkpoint(directory, model=target, optimizer=sgd)
    one_group = optim.Adam(target.parameters())
    with pytest.raises(CheckpointError, match=r"sizes \[6\], the saved ones \[2, 4\]"):
        load_checkpoint(directory, model=target, optimizer=one_group)
    with pytest.raises(CheckpointError, match="no scheduler state"):
        load_checkpoint(directory, model=target, optimizer=opt, scheduler=lr_scheduler.StepLR(opt, 1))
    assert_model_equals(target, before)


class _FailingOptimizer:
    """Saves fine; its load_state_dict fails after the model has been assigned."""

    def state_dict(self):
        return {"state": {}, "param_groups": []}

    def load_state_dict(self, state):
        raise RuntimeError("boom")


def test_failure_while_assigning_rolls_the_model_back(tmp_path):
    model = make_mlp(0)
    save_checkpoint(tmp_path, model=model, optimizer=_FailingOptimizer())
    target = make_mlp(1)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="RuntimeError: boom.*nothing was changed"):
        load_checkpoint(tmp_path, model=target, optimizer=_FailingOptimizer())
    assert_model_equals(target, before)


# ---------------------------------------------------------------------- crash safety


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_are_swept_live_ones_kept(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, model=model, step=1)
    dead, live = _dead_pid(), os.getppid()
    stale = [
        f".tmp-{dead}-0123456789ab-checkpoint.json",
        f".tmp-{dead}-ba9876543210-weights-0000000002-0123456789abcdef.safetensors",
    ]
    alive = f".tmp-{live}-0123456789ab-checkpoint.json"
    for name in stale + [alive]:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "weights-0000000009-0123456789abcdef.safetensors").write_bytes(b"orphan")
    load_checkpoint(tmp_path, model=model)
    assert temp_files(tmp_path) == [alive]
    assert len(weight_files(tmp_path)) == 2  # a reader never deletes weights (a writer may be mid-save)
    (tmp_path / stale[0]).write_bytes(b"partial")
    save_checkpoint(tmp_path, model=model, step=2)
    assert temp_files(tmp_path) == [alive]
    assert len(weight_files(tmp_path)) == 1  # the orphan went with the old weights


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    from striate import nn
    from striate.train import has_checkpoint, load_checkpoint, save_checkpoint

    directory, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    model = nn.Linear(size, size)

    def save(step):
        model.weight.data[...] = step
        model.bias.data[...] = step
        save_checkpoint(directory, model=model, step=step, epoch=step,
                        extra={"marker": np.full(16, step, np.int64)})

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    start = load_checkpoint(directory, model=model)["step"] if has_checkpoint(directory) else 0
    if mode == "loop":
        step = start
        while True:
            step += 1
            save(step)
            print(step, flush=True)
            time.sleep(pause)

    # deterministic crash points: "<write|before|after>:<weights|pointer>"
    when, target = mode.split(":")
    prefix = {"weights": "weights-", "pointer": "checkpoint.json"}.get(target, "<no file>")
    real_open, real_write, real_replace = os.open, os.write, os.replace
    fd_names = {}

    def hooked_open(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        fd_names[fd] = os.path.basename(os.fspath(path))
        return fd

    def hooked_write(fd, data):
        if when == "write" and prefix in fd_names.get(fd, ""):
            real_write(fd, bytes(data[: max(1, len(data) // 2)]))
            die()
        return real_write(fd, data)

    def hooked_replace(src, dst):
        hit = os.path.basename(os.fspath(dst)).startswith(prefix)
        if hit and when == "before":
            die()
        real_replace(src, dst)
        if hit and when == "after":
            die()

    os.open, os.write, os.replace = hooked_open, hooked_write, hooked_replace
    save(start + 1)
    print("not killed", flush=True)
""")


def _run_child(script, directory, mode, size, pause=0.0, **kw):
    return subprocess.Popen([sys.executable, str(script), str(directory), mode, str(size), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _check_consistent(directory, size):
    """The checkpoint loads, and its JSON step, weights and extra array all agree."""
    model = nn.Linear(size, size)
    state = load_checkpoint(directory, model=model)
    step = state["step"]
    assert state["epoch"] == step
    assert np.all(model.weight.data == step) and np.all(model.bias.data == step)
    assert_identical(state["extra"]["marker"], np.full(16, step, np.int64))
    assert temp_files(directory) == []  # the dead writer's temp files were swept by the load
    return step


@pytest.mark.parametrize("mode, expected_step", [
    ("write:weights", 1), ("before:weights", 1), ("after:weights", 1),
    ("write:pointer", 1), ("before:pointer", 1), ("after:pointer", 2),
])
def test_sigkill_at_each_stage_of_a_save_keeps_a_consistent_checkpoint(tmp_path, mode, expected_step):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory, size = tmp_path / "ckpt", 16
    model = nn.Linear(size, size)
    model.weight.data[...] = 1
    model.bias.data[...] = 1
    save_checkpoint(directory, model=model, step=1, epoch=1, extra={"marker": np.full(16, 1, np.int64)})

    proc = _run_child(script, directory, mode, size)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    left = temp_files(directory) + weight_files(directory)
    assert _check_consistent(directory, size) == expected_step
    if mode in ("write:weights", "before:weights", "write:pointer", "before:pointer"):
        assert any(name.startswith(".tmp-") for name in left)  # the crash did leave debris
    # the next save cleans up whatever the killed writer left
    proc = _run_child(script, directory, "after:nothing", size)  # hooks match nothing: a clean save
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "not killed" in out, err
    assert _check_consistent(directory, size) == expected_step + 1
    assert len(weight_files(directory)) == 1 and temp_files(directory) == []


def test_sigkill_at_random_moments_while_saving_in_a_loop(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory, size = tmp_path / "ckpt", 768  # 2.3 MB of weights per save
    rnd = random.Random(1234)
    last_step = 0
    for _ in range(6):
        proc = _run_child(script, directory, "loop", size)
        first = proc.stdout.readline()  # one save completed in this run
        assert first.strip().isdigit(), proc.stderr.read()
        time.sleep(rnd.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        # read through the same buffered file as readline() (communicate() would bypass its buffer)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err
        printed = [int(s) for s in (first + out).split()]
        assert printed == list(range(last_step + 1, printed[-1] + 1))
        step = _check_consistent(directory, size)
        # every save that returned is durable; at most the one being written when killed is newer
        assert printed[-1] <= step <= printed[-1] + 1
        assert len(weight_files(directory)) <= 2  # current (+ an orphan a later save removes)
        last_step = step


def test_reader_running_alongside_a_writer_always_sees_a_consistent_checkpoint(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory, size = tmp_path / "ckpt", 128
    proc = _run_child(script, directory, "loop", size, pause=0.005)  # a save every ~10 ms
    try:
        assert proc.stdout.readline().strip().isdigit()
        steps, deadline = set(), time.monotonic() + 1.0
        while time.monotonic() < deadline:
            model = nn.Linear(size, size)
            state = load_checkpoint(directory, model=model)  # retries if the pointer moves mid-read
            assert np.all(model.weight.data == state["step"])
            steps.add(state["step"])
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert len(steps) > 1  # the writer really was writing meanwhile


# ---------------------------------------------------------------------- no pickle


@pytest.mark.parametrize("module", ["io/safetensors.py", "io/__init__.py", "train/checkpoint.py"])
def test_modules_do_not_use_pickle(module):
    source = (SRC / module).read_text()
    banned = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "torch"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & banned, module
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in banned, module
    assert "allow_pickle" not in source and "np.load(" not in source


def test_round_trip_never_calls_pickle(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("dump", "dumps", "load", "loads", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    model = make_mlp(0)
    opt = make_optimizer("adam", model)
    sched = SCHEDULERS["multistep"](opt)
    train_steps(model, opt, sched, 0, 1)
    save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, extra={"x": (1, np.ones(2))})
    load_checkpoint(tmp_path, model=make_mlp(1), optimizer=make_optimizer("adam", make_mlp(1)),
                    scheduler=None, expect_model={"name": "Sequential"})
    save_state_dict(model, tmp_path / "m.safetensors")
    load_state_dict_file(make_mlp(2), tmp_path / "m.safetensors")
