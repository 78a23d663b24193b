"""Localization: the class of the object in an image and its bounding box.

Train with ``striate train --task localize`` (default: the localizer on digits-on-a-canvas), which
calls :func:`cli_train`; predict with ``striate localize RUN IMAGE --out box.png``
(:func:`localize_file`).  The model outputs ``(N, K + 4)``: class logits, then the box corners
``(x0, y0, x1, y1)`` divided by the image width and height.  Training targets are ``(N, 5)``: the
class, then the true normalised corners; the loss is cross-entropy plus ``box_weight`` (5) times
smooth-L1 (``beta`` 0.05) on the corners (:class:`~striate.tasks.losses.LocalizationLoss`).  The
figures are classification accuracy and the mean IoU of predicted and true boxes on held-out images.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, no_grad
from ..data import Normalize
from ..train.run import RunError
from .common import Task, evaluate_run, load_task_model, predict_outputs, read_image, run_task
from .losses import LocalizationLoss
from .metrics import box_iou

__all__ = ["cli_evaluate", "LocalizeTask", "cli_train", "box_targets", "predict_boxes", "evaluate_localization", "localize_file"]


def box_targets(labels, boxes, height: int, width: int) -> np.ndarray:
    """``(N, 5)`` float32 training targets: the class, then ``boxes`` (N, 4) pixel corners / (W, H, W, H)."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.concatenate([np.asarray(labels, dtype=np.float64)[:, None], np.asarray(boxes) / scale],
                          axis=1).astype(np.float32)


def predict_boxes(model, images, batch_size: int = 64):
    """``(probabilities (N, K), boxes (N, 4) in pixels)`` for normalised images (N, C, H, W).

    Boxes are clipped to the image and their corners put in order.
    """
    k = model.num_classes
    out = predict_outputs(model, images, batch_size).astype(np.float64)
    logits, rel = out[:, :k], out[:, k:]
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    h, w = images.shape[2:]
    rel = np.clip(rel, 0.0, 1.0)
    boxes = np.stack([np.minimum(rel[:, 0], rel[:, 2]) * w, np.minimum(rel[:, 1], rel[:, 3]) * h,
                      np.maximum(rel[:, 0], rel[:, 2]) * w, np.maximum(rel[:, 1], rel[:, 3]) * h], axis=1)
    return probs, boxes


def evaluate_localization(model, images, targets, loss_fn=None, batch_size: int = 64) -> dict:
    """Held-out figures: ``accuracy``, ``box_iou`` (mean), ``iou_50`` (fraction with IoU >= 0.5), ``loss``."""
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    try:
        with no_grad():
            if loss_fn is not None:
                for s in range(0, len(images), batch_size):
                    out = model(Tensor._wrap(np.ascontiguousarray(images[s:s + batch_size])))
                    loss_sum += float(loss_fn(out, targets[s:s + batch_size]).item()) * len(out)
    finally:
        model.train(was_training)
    probs, boxes = predict_boxes(model, images, batch_size)
    h, w = images.shape[2:]
    true = np.asarray(targets[:, 1:], dtype=np.float64) * np.array([w, h, w, h])
    ious = box_iou(boxes, true)
    result = {"accuracy": float(np.mean(probs.argmax(axis=1) == targets[:, 0].astype(np.int64))),
              "box_iou": float(ious.mean()), "iou_50": float(np.mean(ious >= 0.5)), "n": len(images)}
    if loss_fn is not None:
        result["loss"] = loss_sum / len(images)
    return result


class LocalizeTask(Task):
    name = "localize"
    default_model = "localizer"
    default_data = "digits-canvas"
    default_epochs = 12
    data_defaults = {"shapes": {"max_objects": 1}}

    def model_config(self, train):
        c, h, w = train.images.shape[1:]
        if h != w:
            raise RunError(f"the localizer takes square images, got {h}x{w}")
        return {"num_classes": len(train.classes), "in_channels": int(c), "input_size": int(h)}

    def classes(self, train):
        return list(train.classes)

    def targets(self, data):
        h, w = data.images.shape[2:]
        return box_targets(data.box_labels[:, 0], data.boxes[:, 0], h, w)

    def loss(self, cfg):
        return LocalizationLoss(len(cfg["classes"]), box_weight=cfg.get("box_weight", 5.0),
                                beta=cfg.get("box_beta", 0.05))

    def check_outputs(self, outputs, targets, cfg):
        want = (len(targets), len(cfg["classes"]) + 4)
        if tuple(outputs.shape) != want:
            raise RunError(f"model {cfg['model']!r} outputs {tuple(outputs.shape)}, but --task localize needs "
                           f"class logits and a box, {want} (try --model localizer)")

    def score(self, outputs, targets, cfg):
        k = len(cfg["classes"])
        return float(np.sum(outputs.data[:, :k].argmax(axis=1) == np.asarray(targets)[:, 0].astype(np.int64)))

    def evaluate(self, model, images, targets, cfg):
        return evaluate_localization(model, images, targets, self.loss(cfg))

    def record(self, result):
        return {"val_loss": result["loss"], "val_acc": result["accuracy"], "val_box_iou": result["box_iou"]}

    def report(self, result, cfg):
        return [f"held-out classification accuracy {result['accuracy']:.2%}, mean box IoU {result['box_iou']:.4f}, "
                f"IoU >= 0.5 for {result['iou_50']:.1%} (loss {result['loss']:.4f}, {result['n']} images)"]

    def examples(self, model, raw, cfg, path, count: int = 12):
        from .draw import draw_boxes, grid, save_png

        norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
        images = raw.images[:count]
        probs, boxes = predict_boxes(model, norm(images))
        tiles = []
        for img, truth, p, box in zip(images, raw.boxes[:count, 0], probs, boxes):
            k = int(p.argmax())
            tiles.append(draw_boxes(img, [truth, box], ["", f"{cfg['classes'][k]} ({p[k]:.0%})"],
                                    colours=((60, 180, 75), (230, 25, 75)), scale=3))
        save_png(grid(tiles, 4), path)


def cli_train(args) -> int:
    """``striate train --task localize``: defaults ``--model localizer --data digits-canvas``."""
    run_task(args, LocalizeTask())
    return 0


def cli_evaluate(args) -> int:
    """``striate evaluate RUN [--data SPEC]`` for a --task localize run: the held-out figures."""
    _, lines = evaluate_run(args.checkpoint, LocalizeTask(), getattr(args, "data", None))
    print("\n".join(lines))
    return 0


def localize_file(checkpoint, image_path, out) -> list[str]:
    """Find the object in one image file with a trained run; draw box and class into ``out`` (PNG).

    The image is resized to the run's input size for the network; the box is mapped back to
    the file's own pixels.
    """
    from .draw import draw_boxes, save_png

    model, cfg = load_task_model(checkpoint, "localize")
    c, h, w = cfg["input_shape"]
    image = read_image(image_path, c)
    net_input = read_image(image_path, c, size=(h, w))
    norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    probs, boxes = predict_boxes(model, norm(net_input[None]))
    ih, iw = image.shape[1:]
    box = boxes[0] * np.array([iw / w, ih / h, iw / w, ih / h])
    k = int(probs[0].argmax())
    name = cfg["classes"][k]
    save_png(draw_boxes(image, [box], [f"{name} ({probs[0, k]:.0%})"]), out)
    x0, y0, x1, y1 = box
    return [f"{image_path}: {name} ({probs[0, k]:.1%}) in box x {x0:.1f}..{x1:.1f}, y {y0:.1f}..{y1:.1f} "
            f"(pixels of the {iw}x{ih} image)", f"wrote {out}"]
