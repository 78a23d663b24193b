"""Localization: the localizer, the multi-task loss, box IoU, `striate train --task localize`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from striate import random as srandom
from striate.autograd import Tensor
from striate.cli import main
from striate.models import get_model
from striate.models.localizer import Localizer, split_outputs
from striate.tasks import LocalizationLoss, box_iou, localization_loss
from striate.tasks.localize import box_targets, evaluate_localization, predict_boxes

torch = pytest.importorskip("torch")


def test_box_iou():
    a = np.array([0, 0, 4, 4])
    assert box_iou(a, a) == 1.0
    assert box_iou(a, [2, 2, 6, 6]) == pytest.approx(4 / 28)
    assert box_iou(a, [4, 0, 8, 4]) == 0.0  # touching edges share no area
    assert box_iou(a, [1, 1, 3, 3]) == pytest.approx(4 / 16)
    many = np.array([[0, 0, 4, 4], [2, 2, 6, 6], [5, 5, 5, 9]])  # the last one is empty
    np.testing.assert_allclose(box_iou(many[:, None], many[None]), box_iou(many[None], many[:, None]))
    np.testing.assert_allclose(box_iou(many, many), [1, 1, 0])
    with pytest.raises(ValueError, match="4 coordinates"):
        box_iou(np.zeros(3), np.zeros(4))


def test_box_targets_normalise_corners():
    t = box_targets([3, 7], [[8, 16, 24, 32], [0, 0, 64, 32]], height=32, width=64)
    np.testing.assert_allclose(t, [[3, 0.125, 0.5, 0.375, 1.0], [7, 0, 0, 1, 1]])
    assert t.dtype == np.float32


@pytest.mark.parametrize("box_weight,beta", [(5.0, 0.05), (1.0, 1.0)])
def test_localization_loss_matches_torch(box_weight, beta):
    rng = np.random.default_rng(0)
    k = 6
    out = rng.standard_normal((5, k + 4)) * 0.5
    targets = np.concatenate([rng.integers(0, k, (5, 1)), rng.uniform(0, 1, (5, 4))], axis=1)
    x = Tensor(out, requires_grad=True)
    loss = localization_loss(x, targets, k, box_weight, beta)
    loss.backward()
    xt = torch.tensor(out, requires_grad=True)
    ref = (torch.nn.functional.cross_entropy(xt[:, :k], torch.tensor(targets[:, 0]).long())
           + box_weight * torch.nn.functional.smooth_l1_loss(xt[:, k:], torch.tensor(targets[:, 1:]), beta=beta))
    ref.backward()
    assert abs(float(loss.item()) - ref.item()) < 1e-12
    np.testing.assert_allclose(np.asarray(x.grad), xt.grad.numpy(), atol=1e-12)
    assert float(LocalizationLoss(k, box_weight, beta)(x, targets).item()) == float(loss.item())
    with pytest.raises(ValueError, match="outputs"):
        localization_loss(x, targets[:, :4], k)


def test_localizer_shapes_and_torch_parity():
    srandom.manual_seed(0)
    model = Localizer(num_classes=10, in_channels=1, input_size=32, widths=(4, 8), hidden=16).double()
    ref = torch.nn.Module()
    layers = []
    for a, b in ((1, 4), (4, 8)):
        layers += [torch.nn.Conv2d(a, b, 3, padding=1, bias=False), torch.nn.BatchNorm2d(b), torch.nn.ReLU(),
                   torch.nn.MaxPool2d(2)]
    ref.backbone = torch.nn.Sequential(*layers)
    ref.fc, ref.classifier, ref.box = torch.nn.Linear(8 * 8 * 8, 16), torch.nn.Linear(16, 10), torch.nn.Linear(16, 4)
    ref.double().load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    model.eval()
    ref.eval()
    x = np.random.default_rng(1).standard_normal((3, 1, 32, 32))
    y = model(Tensor(x))
    h = torch.relu(ref.fc(ref.backbone(torch.tensor(x)).flatten(1)))
    want = torch.cat([ref.classifier(h), ref.box(h)], 1).detach().numpy()
    assert y.shape == (3, 14)
    np.testing.assert_allclose(y.data, want, atol=1e-10)
    logits, box = split_outputs(y, 10)
    assert logits.shape == (3, 10) and box.shape == (3, 4)
    assert get_model("localizer").num_classes == 10
    with pytest.raises(ValueError, match=r"\(N, C, 32, 32\)"):
        model(Tensor(np.zeros((1, 1, 28, 28))))
    with pytest.raises(ValueError, match="at least"):
        Localizer(input_size=8)


class _Oracle:
    """A 'model' returning fixed outputs, to test evaluation and box decoding."""

    num_classes = 3
    training = False

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, x):
        return Tensor(self.outputs[: len(x.data)])

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def test_predict_boxes_and_evaluation():
    images = np.zeros((2, 1, 20, 40), np.float32)
    targets = box_targets([2, 0], [[4, 2, 20, 10], [0, 0, 40, 20]], height=20, width=40)
    perfect = np.concatenate([np.eye(3)[[2, 0]] * 10, targets[:, 1:]], axis=1)
    probs, boxes = predict_boxes(_Oracle(perfect), images)
    np.testing.assert_allclose(boxes, [[4, 2, 20, 10], [0, 0, 40, 20]], atol=1e-5)
    assert probs.argmax(axis=1).tolist() == [2, 0] and np.allclose(probs.sum(1), 1)
    result = evaluate_localization(_Oracle(perfect), images, targets)
    assert result["accuracy"] == 1.0 and result["box_iou"] == pytest.approx(1.0) and result["iou_50"] == 1.0
    # corners out of order or outside the image are put in order and clipped
    messy = perfect.copy()
    messy[0, 3:] = [0.5, 0.5, 0.1, -0.2]
    _, boxes = predict_boxes(_Oracle(messy), images)
    np.testing.assert_allclose(boxes[0], [4, 0, 20, 10], atol=1e-5)


def test_localizer_learns_a_tiny_set():
    from striate import optim
    from striate.data.synthetic import shapes

    srandom.manual_seed(0)
    data = shapes(32, size=16, max_objects=1, radius=(3, 6), seed=1)
    x = (data.images - 0.5) / 0.3
    t = box_targets(data.labels, data.boxes[:, 0], 16, 16)
    model = Localizer(num_classes=3, in_channels=3, input_size=16, widths=(8, 16), hidden=32)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = LocalizationLoss(3)
    losses = []
    for _ in range(40):
        loss = loss_fn(model(Tensor(x)), t)
        losses.append(float(loss.item()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.3 * losses[0]


TINY = "digits-canvas:n=64,held=16,size=32,min=12,max=24"


def test_cli_train_localize_and_predict(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "localize", "--data", TINY, "--epochs", "1", "--batch-size", "16",
                 "--out", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "classification accuracy" in out and "mean box IoU" in out
    for name in ("checkpoint/checkpoint.json", "log.csv", "metrics.json", "curves.png", "examples.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "localizer" and 0 <= metrics["box_iou"] <= 1 and metrics["held_out_images"] == 16
    assert "val_box_iou" in (run / "log.csv").read_text()
    from types import SimpleNamespace

    from striate.tasks.localize import cli_evaluate

    assert cli_evaluate(SimpleNamespace(checkpoint=str(run), data=None)) == 0
    assert f"mean box IoU {metrics['box_iou']:.4f}" in capsys.readouterr().out
    assert main(["synth", TINY, "--count", "1", "--out", str(tmp_path / "imgs")]) == 0
    image = tmp_path / "imgs" / "digits-canvas-0000.png"
    capsys.readouterr()
    assert main(["localize", str(run), str(image), "--out", str(tmp_path / "box.png")]) == 0
    assert "in box x" in capsys.readouterr().out and (tmp_path / "box.png").is_file()
    # a localize run is not a segmenter, nor a classifier to scan
    assert main(["segment", str(run), str(image), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a segment model" in capsys.readouterr().err
    assert main(["scan", str(run), str(image), "--out", str(tmp_path / "x.png")]) == 2
    assert "scanning needs a classifier" in capsys.readouterr().err
