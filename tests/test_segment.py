"""Segmentation: synthetic shapes, U-Net/FCN, Dice loss, IoU metrics, `striate train --task segment`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from striate import functional as F
from striate import random as srandom
from striate.autograd import Tensor
from striate.cli import main
from striate.data import get_dataset
from striate.data.synthetic import SyntheticSet, boxes_from_masks, digits_canvas, shapes
from striate.models import get_model
from striate.models.fcn import FCN
from striate.models.unet import UNet
from striate.tasks import (SegmentationLoss, dice_loss, iou_per_class, mean_iou, one_hot, pixel_accuracy,
                           pixel_confusion, segmentation_scores)

torch = pytest.importorskip("torch")

# ------------------------------------------------------------------------------------------ data


def test_shapes_are_seeded_and_consistent():
    a, b = shapes(24, seed=3), shapes(24, seed=3)
    assert isinstance(a, SyntheticSet)
    for name in ("images", "labels", "masks", "boxes", "box_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.images, shapes(24, seed=4).images)
    assert a.images.shape == (24, 3, 32, 32) and a.images.dtype == np.float32
    assert 0 <= a.images.min() and a.images.max() <= 1
    assert a.masks.shape == (24, 32, 32) and set(np.unique(a.masks)) <= {0, 1, 2, 3}
    assert a.mask_classes == ["background", "circle", "square", "triangle"]
    for i in range(24):
        present = a.box_labels[i] >= 0
        assert present[0] and 1 <= present.sum() <= 2
        assert a.labels[i] == a.box_labels[i, 0]
        for box, label in zip(a.boxes[i][present], a.box_labels[i][present]):
            x0, y0, x1, y1 = box.astype(int)
            inside = a.masks[i, y0:y1, x0:x1]
            # the box is the tight box of this object's pixels: its border rows/columns touch the object
            assert (inside == label + 1).any(axis=1)[[0, -1]].all() and (inside == label + 1).any(axis=0)[[0, -1]].all()
        # objects do not overlap: every object pixel lies in exactly one box
        covered = np.zeros((32, 32), int)
        for x0, y0, x1, y1 in a.boxes[i][present].astype(int):
            covered[y0:y1, x0:x1] += 1
        assert covered.max() <= 1 and np.all(covered[a.masks[i] > 0] == 1)


def test_boxes_from_masks():
    m = np.zeros((2, 5, 6), int)
    m[0, 1:3, 2:5] = 1
    np.testing.assert_array_equal(boxes_from_masks(m), [[2, 1, 5, 3], [0, 0, 0, 0]])


def test_digits_canvas_from_given_digits():
    rng = np.random.default_rng(0)
    digits = np.zeros((6, 28, 28))
    digits[:, 6:22, 10:18] = rng.uniform(0.6, 1.0, (6, 16, 8))
    ds = digits_canvas(digits, np.arange(6), n=9, size=40, digit_size=(14, 28), per_canvas=2, seed=1)
    assert ds.images.shape == (9, 1, 40, 40) and ds.boxes.shape == (9, 2, 4)
    again = digits_canvas(digits, np.arange(6), n=9, size=40, digit_size=(14, 28), per_canvas=2, seed=1)
    np.testing.assert_array_equal(ds.images, again.images)
    for i in range(9):
        for box, label in zip(ds.boxes[i], ds.box_labels[i]):
            x0, y0, x1, y1 = box.astype(int)
            assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 40
            assert np.all(np.isin(np.unique(ds.masks[i, y0:y1, x0:x1]), [0, label + 1]))
            assert (ds.masks[i, y0:y1, x0:x1] == label + 1).any()
    with pytest.raises(ValueError, match="digit_size"):
        digits_canvas(digits, np.arange(6), size=20, digit_size=(14, 28))


def test_registered_datasets():
    import striate.data.synthetic  # noqa: F401 - registers "shapes" and "digits-canvas"

    train, held = get_dataset("shapes", seed=1)
    assert len(train) == 3000 and len(held) == 500
    assert not np.array_equal(train.images[:5], held.images[:5])


# ------------------------------------------------------------------------------------------ losses


def _torch_dice(logits, target, k, ignore_index=-100, eps=1.0):
    p = torch.softmax(logits, dim=1)
    valid = (target != ignore_index).to(p.dtype)[:, None]
    t = torch.nn.functional.one_hot(torch.where(target == ignore_index, 0, target), k).permute(0, 3, 1, 2).to(p.dtype)
    t = t * valid
    p = p * valid
    dims = (0, 2, 3)
    dice = (2 * (p * t).sum(dims) + eps) / (p.sum(dims) + t.sum(dims) + eps)
    return 1 - dice.mean()


@pytest.mark.parametrize("ignore", [False, True])
def test_dice_loss_matches_torch_value_and_gradient(ignore):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 4, 5, 6))
    target = rng.integers(0, 4, (2, 5, 6))
    if ignore:
        target[rng.random(target.shape) < 0.3] = -100
    x = Tensor(logits, requires_grad=True)
    loss = dice_loss(x, target)
    loss.backward()
    xt = torch.tensor(logits, requires_grad=True)
    ref = _torch_dice(xt, torch.tensor(target), 4)
    ref.backward()
    assert abs(float(loss.item()) - ref.item()) < 1e-12
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), atol=1e-12)
    if ignore:  # ignored pixels neither count nor receive gradient
        assert np.all(np.asarray(x.grad).transpose(0, 2, 3, 1)[target == -100] == 0)


def test_dice_loss_extremes_and_errors():
    target = np.array([[[0, 1], [2, 2]]])
    perfect = Tensor(50.0 * one_hot(target, 3, dtype=np.float64))
    assert float(dice_loss(perfect, target).item()) < 1e-6
    wrong = Tensor(50.0 * one_hot((target + 1) % 3, 3, dtype=np.float64))
    assert float(dice_loss(wrong, target, eps=1e-9).item()) > 0.99
    with pytest.raises(ValueError, match="target of shape"):
        dice_loss(perfect, target[:, :1])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        one_hot(np.array([[[3]]]), 3)


def test_segmentation_loss_is_ce_plus_weighted_dice():
    rng = np.random.default_rng(1)
    logits = Tensor(rng.standard_normal((3, 4, 4, 4)))
    target = rng.integers(0, 4, (3, 4, 4))
    want = F.cross_entropy(logits, target).item() + 0.25 * dice_loss(logits, target).item()
    assert abs(SegmentationLoss(dice_weight=0.25)(logits, target).item() - want) < 1e-12
    assert abs(SegmentationLoss(dice_weight=0)(logits, Tensor(target)).item() - F.cross_entropy(logits, target).item()) < 1e-12
    with pytest.raises(ValueError, match="per-pixel|segmentation needs"):
        SegmentationLoss()(Tensor(rng.standard_normal((3, 4))), target)


# ------------------------------------------------------------------------------------------ metrics


def test_iou_metrics_on_a_hand_example():
    target = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 1]])
    cm = pixel_confusion(pred, target, 4)
    np.testing.assert_array_equal(cm[:3, :3], [[2, 1, 0], [0, 3, 0], [1, 0, 1]])
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou[:3], [2 / 4, 3 / 4, 1 / 2])
    assert np.isnan(iou[3])  # class 3 neither present nor predicted
    assert mean_iou(cm) == pytest.approx((0.5 + 0.75 + 0.5) / 3)
    assert pixel_accuracy(pred, target) == pytest.approx(6 / 8)
    ignored = target.copy()
    ignored[0, 1] = -100  # the wrong pixel at (0, 1) is ignored
    assert pixel_accuracy(pred, ignored) == pytest.approx(6 / 7)
    s = segmentation_scores(pred, ignored, 4)
    assert s["pixel_accuracy"] == pytest.approx(6 / 7) and s["confusion"].sum() == 7
    with pytest.raises(ValueError, match="lie in"):
        pixel_confusion(pred, target, 2)


# ------------------------------------------------------------------------------------------ models


class _TorchBlock(torch.nn.Sequential):
    def __init__(self, a, b):
        super().__init__(torch.nn.Conv2d(a, b, 3, padding=1, bias=False), torch.nn.BatchNorm2d(b), torch.nn.ReLU(),
                         torch.nn.Conv2d(b, b, 3, padding=1, bias=False), torch.nn.BatchNorm2d(b), torch.nn.ReLU())


class _TorchUp(torch.nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(a, b, 2, stride=2)

    def forward(self, x):
        return self.up(x)


class _TorchUNet(torch.nn.Module):  # the same network, same state_dict keys
    def __init__(self, k, c, base, depth):
        super().__init__()
        w = [base * 2 ** i for i in range(depth + 1)]
        self.encoders = torch.nn.ModuleList([_TorchBlock(c if i == 0 else w[i - 1], w[i]) for i in range(depth)])
        self.pool = torch.nn.MaxPool2d(2)
        self.middle = _TorchBlock(w[depth - 1], w[depth])
        self.ups = torch.nn.ModuleList([_TorchUp(w[i + 1], w[i]) for i in reversed(range(depth))])
        self.decoders = torch.nn.ModuleList([_TorchBlock(2 * w[i], w[i]) for i in reversed(range(depth))])
        self.head = torch.nn.Conv2d(w[0], k, 1)

    def forward(self, x):
        skips = []
        for e in self.encoders:
            x = e(x)
            skips.append(x)
            x = self.pool(x)
        x = self.middle(x)
        for up, dec, s in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([up(x), s], 1))
        return self.head(x)


@pytest.mark.parametrize("train_mode", [False, True])
def test_unet_matches_torch(train_mode):
    srandom.manual_seed(0)
    ours = UNet(num_classes=3, in_channels=2, base=4, depth=2).double()
    ref = _TorchUNet(3, 2, 4, 2).double()
    ref.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    ours.train(train_mode)
    ref.train(train_mode)
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 12))
    xo, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), ref(xt)
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), atol=1e-10)
    g = np.random.default_rng(1).standard_normal(yo.shape)
    (yo * g).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.head.weight.grad, ref.head.weight.grad.numpy(), atol=1e-10)


def test_segmentation_models_shapes_and_errors():
    srandom.manual_seed(0)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 16, 24)).astype(np.float32))
    for model in (UNet(4, 3), UNet(4, 3, depth=3, upsample="nearest", batch_norm=False), FCN(4, 3, base=4),
                  get_model("unet", num_classes=4, in_channels=3), get_model("fcn", num_classes=4, in_channels=3)):
        y = model(x)
        assert y.shape == (2, 4, 16, 24) and y.dtype == np.float32
    assert sum(p.data.size for p in UNet(4, 3).parameters()) < 50_000  # small enough for 2 cores
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(4, 3)(Tensor(np.zeros((1, 3, 10, 12), np.float32)))
    with pytest.raises(ValueError, match="divisible by 8"):
        FCN(4, 3)(Tensor(np.zeros((1, 3, 12, 16), np.float32)))
    with pytest.raises(ValueError, match="upsample"):
        UNet(upsample="bilinear")


def test_unet_learns_a_tiny_set():
    from striate import optim

    srandom.manual_seed(0)
    data = shapes(16, size=16, max_objects=1, radius=(3, 6), seed=0)
    x = (data.images - 0.5) / 0.3
    model = UNet(4, 3, base=4, depth=2)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = SegmentationLoss()
    first = None
    for _ in range(40):
        loss = loss_fn(model(Tensor(x)), data.masks)
        first = first if first is not None else float(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.item()) < 0.5 * first


# ------------------------------------------------------------------------------------------ CLI

TINY = "shapes:n=48,held=16,size=16,rmin=3,rmax=6"


def test_cli_train_segment_resume_and_predict(tmp_path, capsys):
    run, split = tmp_path / "run", tmp_path / "split"
    args = ["--task", "segment", "--data", TINY, "--batch-size", "16", "--scheduler", "none", "--no-progress"]
    assert main(["train", *args, "--epochs", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "held-out mIoU" in out and "IoU triangle" in out
    for name in ("checkpoint/checkpoint.json", "log.csv", "metrics.json", "curves.png", "examples.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "unet" and metrics["epochs"] == 2 and 0 <= metrics["miou"] <= 1
    assert "val_miou" in (run / "log.csv").read_text()
    # stopped after one epoch and resumed: the same weights as the uninterrupted run (a constant
    # learning rate, as a cosine schedule depends on the total number of epochs)
    assert main(["train", *args, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["train", "--task", "segment", "--resume", str(split), "--epochs", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert json.loads((split / "metrics.json").read_text())["miou"] == metrics["miou"]
    # `striate evaluate` for task runs (striate.tasks.<task>.cli_evaluate) recomputes the figures
    from types import SimpleNamespace

    from striate.tasks.segment import cli_evaluate

    assert cli_evaluate(SimpleNamespace(checkpoint=str(run), data=None)) == 0
    assert f"mIoU {metrics['miou']:.4f}" in capsys.readouterr().out
    # prediction on a generated held-out image
    assert main(["synth", TINY, "--count", "2", "--out", str(tmp_path / "imgs")]) == 0
    image = tmp_path / "imgs" / "shapes-0000.png"
    assert image.is_file() and (tmp_path / "imgs" / "boxes.csv").is_file()
    assert main(["segment", str(run), str(image), "--out", str(tmp_path / "overlay.png")]) == 0
    assert "of the pixels" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "overlay.png") as im:
        assert im.width >= 3 * 16 and im.mode == "RGB"


def test_cli_segment_errors(tmp_path, capsys):
    def fails(argv, text):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "striate: error:" in err and text in err, err

    fails(["train", "--task", "segment", "--data", "digits", "--out", str(tmp_path / "a")], "need masks and boxes")
    fails(["train", "--task", "segment", "--data", "shapes:bogus=1", "--out", str(tmp_path / "a")], "bad option")
    fails(["train", "--task", "segment", "--data", TINY, "--model", "localizer", "--epochs", "1",
           "--out", str(tmp_path / "b")], "per-pixel logits")
    fails(["segment", str(tmp_path / "missing"), "x.png"], "no checkpoint")
