"""Invariance measurements, the `striate invariance` command and test-time augmentation."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from striate.cli import main
from striate.invariance import (
    SWEEP_NAMES, default_sweeps, format_markdown, load_checkpoint_data, measure_invariance, tta_evaluate,
    tta_predict, tta_views,
)
from striate.train.loop import predict

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from striate.train.run import train_run

    out = tmp_path_factory.mktemp("inv") / "run"
    train_run({"epochs": 1, "out": str(out), "augment": "none", "prefetch": 0}, progress=False, plots=False)
    return out


def test_invariance_command_writes_csv_markdown_and_png(run_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["invariance", str(run_dir), str(run_dir), "--labels", "a,b", "--out", str(out), "--quick",
                 "--limit", "120", "--quiet"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "## rotation" in stdout and "| strength | a | b |" in stdout
    with open(out / "invariance.csv") as f:
        rows = list(csv.DictReader(f))
    sweeps = default_sweeps(quick=True)
    assert len(rows) == 2 * sum(len(s.strengths) for s in sweeps)
    assert {r["transform"] for r in rows} == set(SWEEP_NAMES)
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and int(r["n"]) == 120
    by = {(r["model"], r["transform"], r["strength"]): float(r["accuracy"]) for r in rows}
    assert by[("a", "rotation", "30")] == by[("b", "rotation", "30")]  # the same run twice
    for angle in ("-45", "-30", "0", "30", "45"):
        assert ("a", "rotation", angle) in by
    for s in ("0.8", "1", "1.2"):
        assert ("a", "scale", s) in by
    with PIL.open(out / "invariance.png") as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
    assert "| strength | a | b |" in (out / "invariance.md").read_text()


def test_subset_of_transformations_and_default_out(run_dir, capsys):
    code = main(["invariance", str(run_dir), "--transforms", "rotation,flip", "--quick", "--limit", "50", "--quiet"])
    assert code == 0
    rows = list(csv.DictReader(open(run_dir / "invariance" / "invariance.csv")))
    assert {r["transform"] for r in rows} == {"rotation", "flip"}
    assert {r["strength"] for r in rows if r["transform"] == "flip"} == {"none", "hflip", "vflip", "transpose"}


@pytest.mark.parametrize("argv,pattern", [
    (["--transforms", "spin"], "unknown transformation"),
    (["--labels", "a,b"], "labels"),
    (["--limit", "0"], "limit"),
])
def test_bad_options_are_one_line_errors(run_dir, tmp_path, capsys, argv, pattern):
    code = main(["invariance", str(run_dir), "--out", str(tmp_path / "x"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("striate: error:") and pattern in err and "Traceback" not in err


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    code = main(["invariance", str(tmp_path / "nothing"), "--quiet"])
    assert code == 2 and "no checkpoint" in capsys.readouterr().err


def test_identity_strength_equals_plain_accuracy_and_rotation_hurts(run_dir):
    model, _, images, labels, norm = load_checkpoint_data(run_dir, limit=200)
    plain = float(np.mean(predict(model, norm(images)).argmax(1) == labels))
    sweeps = [s for s in default_sweeps(quick=True) if s.name in ("rotation", "elastic")]
    rows = measure_invariance(model, images, labels, sweeps, normalize=norm)
    acc = {(r["transform"], r["strength"]): r["accuracy"] for r in rows}
    assert acc[("rotation", 0.0)] == plain == acc[("elastic", 0.0)]
    assert acc[("rotation", 45.0)] < plain - 0.1  # a model trained without rotations is not rotation invariant
    again = measure_invariance(model, images, labels, sweeps, normalize=norm)
    assert rows == again  # fixed seed: reproducible
    md = format_markdown({"m": rows})
    assert md.count("## ") == 2


def test_tta_views_and_predictions(run_dir):
    assert tta_views("none") == [None]
    assert len(tta_views("hflip")) == 2
    assert len(tta_views("shift:1")) == 5
    assert len(tta_views("shift:2,hflip")) == 10
    assert len(tta_views("rotate:10,scale:0.1")) == 9
    with pytest.raises(ValueError, match="unknown --tta"):
        tta_views("spin")
    model, cfg, images, labels, norm = load_checkpoint_data(run_dir, limit=64)
    x = norm(images)
    np.testing.assert_array_equal(tta_predict(model, x, "none"), predict(model, x))
    p = tta_predict(model, x, "shift:1")
    assert p.shape == (64, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    r = tta_evaluate(model, x, labels, "shift:1", num_classes=len(cfg["classes"]))
    assert r["n"] == 64 and r["views"] == 5 and r["confusion"].sum() == 64
    assert r["accuracy"] == float(np.mean(p.argmax(1) == labels))


@pytest.mark.slow
def test_acceptance_augmented_lenet_keeps_90_percent_under_rotation_and_scale(tmp_path):
    """Issue 6 acceptance (about 2 minutes): augmentation buys rotation and scale tolerance."""
    from striate.invariance import compare
    from striate.train.run import train_run

    runs = {}
    for name, spec in (("augmented", "rotate:30,scale:0.25,elastic:34/4,shift:2"), ("plain", "none")):
        runs[name] = tmp_path / name
        train_run({"augment": spec, "out": str(runs[name])}, progress=False, plots=False)
    result = compare([runs["augmented"], runs["plain"]], tmp_path / "cmp", labels=["augmented", "plain"],
                     sweep_names=["rotation", "scale"])
    acc = {(label, r["transform"], r["strength"]): r["accuracy"]
           for label, rows in result["results"].items() for r in rows}
    for key in (("rotation", -30.0), ("rotation", 30.0), ("scale", 0.8), ("scale", 1.2)):
        assert acc[("augmented",) + key] >= 0.90, key
        assert acc[("plain",) + key] < acc[("augmented",) + key] - 0.01, key
