"""The `striate` command: train/evaluate/predict/summary, resume, and one-line user errors that damage nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from striate.cli import main

pytest.importorskip("mlxtend")
pytest.importorskip("safetensors")
PIL = pytest.importorskip("PIL.Image")


def _digest(path: Path) -> dict:
    """Bytes of every file under ``path`` (to prove nothing was damaged)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, pattern):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("striate: error: "), err
    import re
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--epochs", "1", "--out", str(out), "--no-progress", "--checkpoint-every", "20"])
    assert code == 0
    return out


def test_train_writes_checkpoint_log_and_pngs(run_dir):
    assert (run_dir / "checkpoint" / "checkpoint.json").is_file()
    lines = (run_dir / "log.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch,")
    for name in ("curves.png", "filters.png"):
        with PIL.open(run_dir / name) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "striate", "train", "--epochs", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    assert "epoch 1/1 step 63/63 loss=" in proc.stderr
    assert "held-out accuracy" in proc.stdout


def test_evaluate_and_predict(run_dir, tmp_path, capsys):
    code, out, _ = _run(capsys, "evaluate", str(run_dir), "--confusion", str(tmp_path / "cm.png"))
    assert code == 0 and "accuracy" in out and "class 9" in out
    assert (tmp_path / "cm.png").stat().st_size > 0
    from striate.data import mnist5k

    images, labels = mnist5k()[:2] if isinstance(mnist5k(), tuple) else (mnist5k().images, mnist5k().labels)
    paths = []
    for k in range(3):
        p = tmp_path / f"digit{k}.png"
        PIL.fromarray((images[k, 0] * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    code, out, _ = _run(capsys, "predict", str(run_dir), *paths)
    assert code == 0
    rows = out.strip().splitlines()
    assert len(rows) == 3 and all("%" in r for r in rows)


def test_resume_continues_and_extends_the_log(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    code, out, err = _run(capsys, "train", "--resume", str(copy), "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert "resumed" in err
    assert len((copy / "log.csv").read_text().splitlines()) == 3


def test_summary_command(capsys):
    code, out, _ = _run(capsys, "summary", "lenet5")
    assert code == 0 and "61,706" in out and "conv2" in out


def test_refuses_to_overwrite_an_existing_run(run_dir, capsys):
    before = _digest(run_dir)
    code, _, err = _run(capsys, "train", "--out", str(run_dir), "--epochs", "1")
    _assert_one_line_error(code, err, "already holds a checkpoint.*--resume")
    assert _digest(run_dir) == before


def _write_idx(path: Path, array: np.ndarray, magic: int):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _idx_dir(tmp_path, *, truncate=False, bad_label=False) -> Path:
    d = tmp_path / "idx"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        labels = rng.integers(0, 10, n)
        if bad_label and split == "train":
            labels[3] = 12
        _write_idx(d / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), 0x803)
        _write_idx(d / f"{split}-labels-idx1-ubyte", labels, 0x801)
    if truncate:
        p = d / "train-images-idx3-ubyte"
        p.write_bytes(p.read_bytes()[:-100])
    return d


@pytest.mark.parametrize("kind,pattern", [
    ("truncate", r"train-images-idx3-ubyte.*(truncat|payload|bytes)"),
    ("bad_label", r"label"),
])
def test_bad_idx_data_is_one_line_and_leaves_files_alone(tmp_path, capsys, kind, pattern):
    d = _idx_dir(tmp_path, **{kind: True})
    before = _digest(d)
    code, _, err = _run(capsys, "train", "--data", f"idx:{d}", "--out", str(tmp_path / "out"), "--epochs", "1")
    _assert_one_line_error(code, err, pattern)
    assert _digest(d) == before
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_missing_data_directory(tmp_path, capsys):
    code, _, err = _run(capsys, "train", "--data", f"idx:{tmp_path / 'nope'}", "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "nope")


def test_hostile_cifar_pickle_is_refused_without_running_it(tmp_path, capsys):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    for name in ["data_batch_1", "test_batch"]:
        (d / name).write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    before = _digest(d)
    code, _, err = _run(capsys, "train", "--data", f"cifar:{d}", "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, r"data_batch_1|test_batch")
    assert not marker.exists(), "the pickle's payload must never run"
    assert _digest(d) == before


def test_non_image_in_folder_names_the_file(tmp_path, capsys):
    root = tmp_path / "folder"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k in range(3):
            PIL.fromarray(np.full((28, 28), 40 * k, np.uint8)).save(root / cls / f"{k}.png")
    (root / "a" / "broken.png").write_bytes(b"this is not a png")
    before = _digest(root)
    code, _, err = _run(capsys, "train", "--data", f"folder:{root}", "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "broken.png")
    assert _digest(root) == before


def test_checkpoint_of_another_architecture_is_refused(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    pointer = copy / "checkpoint" / "checkpoint.json"
    doc = json.loads(pointer.read_text())
    doc["extra"]["run"]["model_config"]["num_classes"] = 5  # the run now asks for another head
    pointer.write_text(json.dumps(doc))
    before = _digest(copy)
    code, _, err = _run(capsys, "evaluate", str(copy))
    _assert_one_line_error(code, err, r"num_classes|fc3")
    assert _digest(copy) == before


def test_corrupt_checkpoint(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    weights = next((copy / "checkpoint").glob("weights-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    before = _digest(copy)
    code, _, err = _run(capsys, "evaluate", str(copy))
    _assert_one_line_error(code, err, r"weights-.*safetensors|sha|hash")
    assert _digest(copy) == before


def test_nan_loss_is_a_clear_error_and_writes_no_checkpoint(tmp_path, capsys):
    code, _, err = _run(capsys, "train", "--lr", "1e30", "--optimizer", "sgd", "--epochs", "1",
                        "--out", str(tmp_path / "o"), "--no-progress")
    lines = [l for l in err.splitlines() if l.startswith("striate: error:")]
    assert code == 2 and len(lines) == 1 and "loss became" in lines[0] and "step" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "checkpoint" / "checkpoint.json").exists()


@pytest.mark.parametrize("argv,pattern", [
    (["--lr", "-1"], "--lr must be positive"),
    (["--optimizer", "sgd", "--momentum", "-0.5"], "momentum"),
    (["--augment", "spin:3"], "unknown augmentation"),
    (["--val-fraction", "1.5"], "val-fraction"),
    (["--data", "nosuchdata"], "unknown dataset"),
])
def test_bad_options_are_one_line(tmp_path, capsys, argv, pattern):
    code, _, err = _run(capsys, "train", "--out", str(tmp_path / "o"), "--epochs", "1", *argv)
    _assert_one_line_error(code, err, pattern)


def test_predict_with_a_missing_or_bad_image(run_dir, tmp_path, capsys):
    code, _, err = _run(capsys, "predict", str(run_dir), str(tmp_path / "none.png"))
    _assert_one_line_error(code, err, "none.png")
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    code, _, err = _run(capsys, "predict", str(run_dir), str(bad))
    _assert_one_line_error(code, err, "bad.png")


def test_evaluate_without_checkpoint(tmp_path, capsys):
    code, _, err = _run(capsys, "evaluate", str(tmp_path))
    _assert_one_line_error(code, err, "no checkpoint")
