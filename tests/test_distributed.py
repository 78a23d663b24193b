"""Data-parallel training over MPI (striate.distributed).

In-process tests (no MPI needed) check the sharding arithmetic, sharded augmentation, the
synchronised batch-norm math and the bucketed reducer against a one-rank stand-in world.  The
MPI tests launch 2 ranks with ``mpiexec -n 2 python -m mpi4py`` -- this file doubles as the worker
script (``python -m mpi4py tests/test_distributed.py WORKER ARGS``) -- and are skipped when mpi4py
or mpiexec is missing (``pip install 'striate[mpi]'``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import striate
import striate.functional as F
from striate import nn, optim
from striate.data import ArrayDataset, DataLoader
from striate.data.transforms import random_shift
from striate.distributed import GradientReducer, ShardedAugment, ShardedDataLoader, shard_bounds
from striate.distributed.sync_bn import SyncBatchNorm, convert_sync_batchnorm, sync_batch_norm
from striate.train.loop import Trainer

HERE = Path(__file__).resolve()


def _find_mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"  # where the mpich wheel puts it
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpiexec: pip install 'striate[mpi]'")


def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(name, None)
    return env


def _mpirun(args, n=2, timeout=60, cwd=None):
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)


def _check(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


# ============================================================================ shared problem
class _BNNet(nn.Module):
    """Conv + BatchNorm2d + Linear + BatchNorm1d: every kind of layer whose sync matters.

    No bias before a batch norm: its true gradient is zero, so its computed gradient is rounding
    noise, which Adam would scale up to full-size steps and make incomparable across runs.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(4 * 5 * 5, 16, bias=False)
        self.bn1 = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        x = F.relu(self.bn1(self.fc1(x.flatten(1))))
        return self.fc2(x)


def _problem(n=93, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 12, 12)) * 0.5
    x[np.arange(n), 0, 2 + 3 * y, :] += 1.5
    return x, y


CONFIGS = {  # name: (dtype, optimizer, overlap, bucket cap in MiB)
    "f64-sgd-overlap": (np.float64, "sgd", True, 0.002),
    "f64-adamw-blocking": (np.float64, "adamw", False, 0.002),
    "f32-adamw-overlap": (np.float32, "adamw", True, 1.0),
}
EPOCHS, BATCH = 2, 16  # 93 samples: 6 global batches per epoch, the last one of 13 (shards 7 and 6)


def _build(name, world=None, out_dir=None):
    """Model, optimizer and trainer for CONFIGS[name]; sharded and synchronised when ``world`` is given."""
    dtype, opt_name, overlap, cap = CONFIGS[name]
    x, y = _problem()
    striate.manual_seed(0)
    model = _BNNet().to(dtype)
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        opt = optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    loader = DataLoader(ArrayDataset(x.astype(dtype), y), batch_size=BATCH, shuffle=True, generator=5)
    augment = lambda images, rng: random_shift(images, rng, 1)  # noqa: E731
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS * len(loader))
    kwargs = {}
    if world is not None:
        loader = ShardedDataLoader.from_loader(loader, world.rank, world.size)
        augment = ShardedAugment(augment, loader)
        convert_sync_batchnorm(model, world)
        reducer = GradientReducer(model.parameters(), world, bucket_cap_mb=cap, overlap=overlap)
        kwargs = dict(backward_fn=reducer.backward, reduce_stats=reducer.reduce_stats, is_main=world.is_main)
    trainer = Trainer(model, opt, loader, scheduler=sched, scheduler_interval="step", progress=False,
                      augment=augment, augment_seed=3, log=lambda m: None, out_dir=out_dir, **kwargs)
    return model, trainer


def _state(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}


# ============================================================================ MPI workers
def worker_equivalence(out_dir):
    """Every config for EPOCHS epochs on this rank's shards; each rank saves its final state."""
    from striate.distributed import World, sync_trainer

    world = World()
    out_dir = Path(out_dir)
    for name in CONFIGS:
        model, trainer = _build(name, world)
        sync_trainer(trainer, world)
        trainer.fit(EPOCHS)
        losses = [r["train_loss"] for r in trainer.history]
        np.savez(out_dir / f"{name}-rank{world.rank}.npz", losses=np.array(losses), **_state(model))


def worker_kill(out_dir, step_to_die):
    """Train with a checkpoint every 2 steps; rank 1 kills itself with SIGKILL after the given step."""
    import signal

    from striate.distributed import World, sync_trainer
    from striate.train.loop import Callback, ModelCheckpoint

    world = World()
    model, trainer = _build("f32-adamw-overlap", world, out_dir=out_dir)
    sync_trainer(trainer, world)
    die_at = int(step_to_die)

    class Die(Callback):
        def on_step_end(self, trainer, loss):
            if world.rank == 1 and trainer.step == die_at:
                os.kill(os.getpid(), signal.SIGKILL)

    trainer.callbacks += [ModelCheckpoint(every_steps=2, every_epochs=None), Die()]
    trainer.fit(1000)  # far longer than the test allows: only the dead rank can end it
    print("training finished", flush=True)


def worker_resume(out_dir):
    """Rank 0 reads the checkpoint, every rank continues to EPOCHS epochs; rank 0 saves the weights."""
    from striate.distributed import World, sync_trainer

    world = World()
    model, trainer = _build("f32-adamw-overlap", world, out_dir=out_dir)
    if world.is_main:
        trainer.resume()
    sync_trainer(trainer, world)
    assert trainer.step == 8, trainer.step
    trainer.fit(EPOCHS)
    if world.is_main:
        np.savez(Path(out_dir) / "resumed.npz", **_state(model))


# ============================================================================ in-process tests
def test_shard_bounds_partition_every_batch():
    for n in range(0, 40):
        for size in range(1, 6):
            bounds = [shard_bounds(n, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        shard_bounds(10, 2, 2)


def test_an_mpi_launch_is_detected_from_the_launcher_environment(monkeypatch):
    from striate.distributed import get_world, launched_world_size

    if "mpi4py.MPI" in sys.modules:
        pytest.skip("MPI is initialised in this process; its world size answers instead")
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launched_world_size() == 1 and get_world() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_world_size() == 4


@pytest.mark.parametrize("n,batch,size", [(93, 16, 2), (50, 7, 3), (10, 4, 4), (33, 8, 1)])
def test_sharded_loaders_together_deliver_the_single_process_batches(n, batch, size):
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    ds = ArrayDataset(x, np.arange(n) % 3)
    single = DataLoader(ds, batch_size=batch, shuffle=True, generator=7)
    shards = [ShardedDataLoader(ds, batch_size=batch, shuffle=True, generator=7, rank=r, world_size=size)
              for r in range(size)]
    for _ in range(2):  # two epochs: the same permutation stream
        expected = [xb.ravel() for xb, _ in single]
        got = [np.concatenate([xb.ravel() for xb, _ in batches]) for batches in zip(*shards)]
        drop = len(expected[-1]) < size
        assert len(got) == len(expected) - drop == len(shards[0])
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(e, g)


def test_sharded_loader_drops_a_last_batch_smaller_than_the_world_and_resumes():
    ds = ArrayDataset(np.zeros((17, 1, 1, 1), np.float32), np.zeros(17, np.int64))
    loader = ShardedDataLoader(ds, batch_size=8, shuffle=True, generator=1, rank=1, world_size=2)
    assert len(loader) == 2  # 8 + 8 (+ 1 dropped: one rank would get nothing)
    with pytest.raises(ValueError, match="smaller than the 3 ranks"):
        ShardedDataLoader(ds, batch_size=2, rank=0, world_size=3)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    rest = [xb for xb, _ in it]
    again = ShardedDataLoader(ds, batch_size=8, shuffle=True, generator=99, rank=1, world_size=2)
    again.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate(rest), np.concatenate([xb for xb, _ in again]))


def test_sharded_augment_equals_the_global_batch_augmentation():
    n, batch, size = 29, 12, 3
    x = np.random.default_rng(0).random((n, 2, 6, 6)).astype(np.float32)
    ds = ArrayDataset(x, np.zeros(n, np.int64))
    aug = lambda images, rng: random_shift(images, rng, 2)  # noqa: E731
    single = DataLoader(ds, batch_size=batch, shuffle=True, generator=4)
    expected = [aug(xb, np.random.default_rng([0, b])) for b, (xb, _) in enumerate(single)]
    loaders = [ShardedDataLoader(ds, batch_size=batch, shuffle=True, generator=4, rank=r, world_size=size)
               for r in range(size)]
    augs = [ShardedAugment(aug, loader) for loader in loaders]
    iters = [iter(loader) for loader in loaders]
    for b, e in enumerate(expected):
        parts = []
        for it, a in zip(iters, augs):
            xb, _ = next(it)
            parts.append(a(xb, np.random.default_rng([0, b])))
        np.testing.assert_array_equal(np.concatenate(parts), e)


class _OneRank:
    """A world of one rank without MPI (allreduce and broadcast are identities)."""

    rank, size, is_main = 0, 1, True

    class MPI:
        class Request:
            @staticmethod
            def Waitall(requests):
                for r in requests:
                    r.done = True

    class _Req:
        def __init__(self, log):
            self.done, self.log = False, log

        def Test(self):
            return True

    def __init__(self):
        self.started = []  # (bucket size, how many parameters still lacked a gradient)
        self.params = []

    def allreduce_(self, a):
        return a

    def iallreduce_(self, a):
        self.started.append((a.size, sum(p.grad is None for p in self.params)))
        return self._Req(self.started)

    def bcast_(self, a, root=0):
        return a


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 7), (4, 3, 5, 6)])
def test_sync_batch_norm_on_one_rank_equals_batch_norm_forward_and_backward(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    dy = rng.standard_normal(shape)
    outs = []
    for sync in (False, True):
        xt = striate.tensor(x, requires_grad=True)
        wt, bt = striate.tensor(w, requires_grad=True), striate.tensor(b, requires_grad=True)
        rm, rv = np.zeros(3), np.ones(3)
        if sync:
            y = sync_batch_norm(xt, rm, rv, wt, bt, 0.1, 1e-5, _OneRank())
        else:
            y = F.batch_norm(xt, rm, rv, wt, bt, True, 0.1, 1e-5)
        y.backward(dy)
        outs.append([y.data, xt.grad.data, wt.grad.data, bt.grad.data, rm, rv])
    for a, c in zip(*outs):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


def test_convert_sync_batchnorm_shares_parameters_and_keeps_the_state_dict():
    model = _BNNet()
    keys, params = list(model.state_dict()), list(model.parameters())
    world = _OneRank()
    assert convert_sync_batchnorm(model, world) is model
    assert isinstance(model.bn, SyncBatchNorm) and isinstance(model.bn1, SyncBatchNorm)
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))
    single = convert_sync_batchnorm(nn.BatchNorm2d(4), world)
    assert isinstance(single, SyncBatchNorm) and single.world is world
    model.eval()
    assert model(striate.tensor(np.zeros((2, 1, 12, 12), np.float32))).shape == (2, 3)


@pytest.mark.parametrize("overlap", [True, False])
def test_reducer_on_one_rank_gives_the_plain_gradients_and_starts_buckets_during_backward(overlap):
    x, y = _problem(20)
    grads = []
    for use_reducer in (False, True):
        striate.manual_seed(0)
        model = _BNNet().to(np.float64)
        model.fc2.bias.requires_grad_(False)  # a frozen parameter is left alone
        loss = F.cross_entropy(model(striate.tensor(x)), striate.tensor(y))
        if use_reducer:
            world = _OneRank()
            world.params = [p for p in model.parameters() if p.requires_grad]
            reducer = GradientReducer(model.parameters(), world, bucket_cap_mb=0.001, overlap=overlap)
            assert len(reducer.buckets) >= 3
            assert reducer.reduce_stats(loss.item(), 5, 20) == (pytest.approx(loss.item()), 5, 20)
            reducer.backward(loss)
            assert all("_accumulate" not in p.__dict__ for p in model.parameters())  # hooks removed
            if overlap:  # the first buckets (last layers) were started while earlier grads were missing
                assert len(world.started) == len(reducer.buckets)
                assert world.started[0][1] > 0
        else:
            loss.backward()
        grads.append([None if p.grad is None else p.grad.data for p in model.parameters()])
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-15)


def test_trainer_hooks_are_used_and_a_non_main_trainer_writes_nothing(tmp_path):
    x, y = _problem(24)
    striate.manual_seed(0)
    model = _BNNet()
    calls = []

    def reduce_stats(loss, correct, n):
        calls.append("stats")
        return loss, correct, 2 * n  # as if a second rank had an equal shard

    def backward(loss):
        calls.append("backward")
        loss.backward()

    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), DataLoader(ArrayDataset(x.astype(np.float32), y), 8),
                      out_dir=tmp_path / "run", progress=True, reduce_stats=reduce_stats, backward_fn=backward,
                      is_main=False, log=lambda m: calls.append(m))
    history = trainer.fit(1)
    assert calls == ["stats", "backward"] * 3
    assert trainer.last_batch_size == 16 and history[0]["step"] == 3
    trainer.save_checkpoint()
    assert not (tmp_path / "run").exists()


# ============================================================================ MPI tests
@needs_mpi
def test_mpi_training_equals_single_process_training_on_the_combined_batch(tmp_path):
    _check(_mpirun([HERE, "worker_equivalence", tmp_path], timeout=90))
    for name, (dtype, *_rest) in CONFIGS.items():
        model, trainer = _build(name)
        trainer.fit(EPOCHS)
        want = _state(model)
        tol = 1e-10 if dtype == np.float64 else 1e-5
        ranks = [np.load(tmp_path / f"{name}-rank{r}.npz") for r in range(2)]
        for key, value in want.items():
            np.testing.assert_array_equal(ranks[1][key], ranks[0][key], err_msg=f"{name} {key}: ranks differ")
            np.testing.assert_allclose(ranks[0][key], value, rtol=0, atol=tol, err_msg=f"{name} {key}")
        assert trainer.step == EPOCHS * 6
        losses = [r["train_loss"] for r in trainer.history]
        np.testing.assert_allclose(ranks[0]["losses"], losses, rtol=10 * tol)


@needs_mpi
def test_a_rank_killed_mid_training_ends_the_job_and_its_last_checkpoint_resumes(tmp_path):
    # 6 steps per epoch: the checkpoint of step 8 is in the middle of the second epoch
    proc = _mpirun([HERE, "worker_kill", tmp_path, 9], timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "training finished" not in output
    assert re.search(r"signal 9|killed", output, re.IGNORECASE), output[-2000:]
    assert json.loads((tmp_path / "checkpoint" / "checkpoint.json").read_text())["step"] == 8

    _check(_mpirun([HERE, "worker_resume", tmp_path], timeout=60))
    model, trainer = _build("f32-adamw-overlap")
    trainer.fit(EPOCHS)
    resumed = np.load(tmp_path / "resumed.npz")
    for key, value in _state(model).items():
        np.testing.assert_allclose(resumed[key], value, rtol=0, atol=1e-5, err_msg=key)


def _write_idx_digits(directory: Path, n_train=120, n_test=40):
    from striate.data.idx import write_idx

    rng = np.random.default_rng(0)
    directory.mkdir()
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for k in range(10):  # a bright bar per class
            images[labels == k, 2 + 2 * k : 4 + 2 * k, 4:24] = 250
        write_idx(directory / f"{split}-images-idx3-ubyte", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels)


@needs_mpi
def test_striate_train_under_mpiexec_resumes_and_matches_a_single_process_run(tmp_path):
    from safetensors.numpy import load_file

    from striate.cli import main

    data = tmp_path / "digits"
    _write_idx_digits(data)
    common = ["train", "--data", f"idx:{data}", "--batch-size", "25", "--lr", "0.005", "--augment", "shift:1",
              "--no-progress", "--scheduler", "cosine"]
    mpi_out, single_out = tmp_path / "mpi", tmp_path / "single"
    first = _check(_mpirun(["-m", "striate", *common, "--epochs", "1", "--out", mpi_out], timeout=90))
    text = first.stdout + first.stderr
    assert text.count("held-out accuracy") == 1, text  # rank 0 alone prints
    assert text.count("data-parallel over 2 MPI ranks") == 1, text
    saved = json.loads((mpi_out / "checkpoint" / "checkpoint.json").read_text())
    assert saved["step"] == 5 and saved["extra"]["run"]["distributed"]["world_size"] == 2
    second = _check(_mpirun(["-m", "striate", "train", "--resume", mpi_out, "--epochs", "2"], timeout=90))
    assert "resumed" in second.stderr and second.stdout.count("held-out accuracy") == 1

    # the same two launches in one process (resuming with more epochs stretches the cosine schedule)
    assert main([*common, "--epochs", "1", "--out", str(single_out)]) == 0
    assert main(["train", "--resume", str(single_out), "--epochs", "2", "--no-progress"]) == 0

    def weights(out):
        pointer = json.loads((out / "checkpoint" / "checkpoint.json").read_text())
        arrays = load_file(out / "checkpoint" / pointer["weights"]["file"])
        return pointer, {k: v for k, v in arrays.items() if k.startswith("model.")}

    (p_mpi, w_mpi), (p_single, w_single) = weights(mpi_out), weights(single_out)
    assert p_mpi["step"] == p_single["step"] == 10
    for key, value in w_single.items():
        np.testing.assert_allclose(w_mpi[key], value, rtol=0, atol=1e-5, err_msg=key)
    rows = [list(csv.DictReader(open(out / "log.csv"))) for out in (mpi_out, single_out)]
    assert [r["epoch"] for r in rows[0]] == ["1", "2"]
    for a, b in zip(*rows):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
        assert float(a["val_acc"]) == pytest.approx(float(b["val_acc"]), abs=1e-9)
    assert (mpi_out / "curves.png").exists()


if __name__ == "__main__":  # a worker: python -m mpi4py tests/test_distributed.py WORKER ARGS...
    globals()[sys.argv[1]](*sys.argv[2:])
