"""Semantic segmentation: a class for every pixel.

Train with ``striate train --task segment`` (default: a U-Net on the generated shapes set), which
calls :func:`cli_train`; predict with ``striate segment RUN IMAGE --out overlay.png``
(:func:`segment_file`).  The model maps ``(N, C, H, W)`` images to ``(N, K, H, W)`` logits; the
loss is per-pixel cross-entropy plus ``dice_weight`` (0.5) times the Dice loss
(:class:`~striate.tasks.losses.SegmentationLoss`); the figures are pixel accuracy, the IoU of every
class and their mean (mIoU) on the held-out images.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, no_grad
from ..data import Normalize
from ..train.run import RunError
from .common import Task, evaluate_run, load_task_model, predict_outputs, read_image, run_task
from .losses import SegmentationLoss
from .metrics import segmentation_scores

__all__ = ["cli_evaluate", "SegmentTask", "cli_train", "predict_masks", "segment_file", "evaluate_segmentation"]


def predict_masks(model, images, batch_size: int = 64) -> np.ndarray:
    """``(N, H, W)`` int64 label maps: the argmax over classes of the model's logits."""
    return predict_outputs(model, images, batch_size).argmax(axis=1)


def evaluate_segmentation(model, images, masks, loss_fn=None, batch_size: int = 64) -> dict:
    """Held-out figures: ``loss`` (if ``loss_fn``), ``pixel_accuracy``, ``iou`` per class, ``miou``, ``confusion``."""
    was_training = model.training
    model.eval()
    preds, loss_sum = [], 0.0
    num_classes = None
    try:
        with no_grad():
            for s in range(0, len(images), batch_size):
                x, y = images[s:s + batch_size], masks[s:s + batch_size]
                logits = model(Tensor._wrap(np.ascontiguousarray(x)))
                num_classes = logits.shape[1]
                if loss_fn is not None:
                    loss_sum += float(loss_fn(logits, y).item()) * len(x)
                preds.append(logits.data.argmax(axis=1))
    finally:
        model.train(was_training)
    result = segmentation_scores(np.concatenate(preds), masks, num_classes)
    if loss_fn is not None:
        result["loss"] = loss_sum / len(images)
    return result


class SegmentTask(Task):
    name = "segment"
    default_model = "unet"
    default_data = "shapes"
    default_epochs = 12

    def model_config(self, train):
        c, h, _ = train.images.shape[1:]
        return {"num_classes": len(train.mask_classes), "in_channels": int(c), "input_size": int(h)}

    def classes(self, train):
        return list(train.mask_classes)

    def targets(self, data):
        return data.masks

    def loss(self, cfg):
        return SegmentationLoss(dice_weight=cfg.get("dice_weight", 0.5))

    def check_outputs(self, outputs, targets, cfg):
        want = (len(targets), len(cfg["classes"]), *targets.shape[1:])
        if tuple(outputs.shape) != want:
            raise RunError(f"model {cfg['model']!r} outputs {tuple(outputs.shape)}, but --task segment needs "
                           f"per-pixel logits {want} (try --model unet or --model fcn)")

    def score(self, outputs, targets, cfg):
        pred = outputs.data.argmax(axis=1)
        return float(np.mean(pred == np.asarray(targets))) * len(pred)

    def evaluate(self, model, images, targets, cfg):
        return evaluate_segmentation(model, images, targets, self.loss(cfg))

    def record(self, result):
        return {"val_loss": result["loss"], "val_acc": result["pixel_accuracy"], "val_miou": result["miou"]}

    def report(self, result, cfg):
        lines = [f"held-out mIoU {result['miou']:.4f}, pixel accuracy {result['pixel_accuracy']:.2%} "
                 f"(loss {result['loss']:.4f})"]
        for name, iou in zip(cfg["classes"], result["iou"]):
            lines.append(f"  IoU {name}: {iou:.4f}" if np.isfinite(iou) else f"  IoU {name}: absent")
        return lines

    def examples(self, model, raw, cfg, path, count: int = 8):
        from .draw import _auto_scale, _upscale, grid, mask_legend, save_png, solid_mask, to_rgb

        norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
        images = raw.images[:count]
        pred = predict_masks(model, norm(images))
        scale = max(1, _auto_scale(images.shape[-1], 96))
        tiles = []
        for img, truth, p in zip(images, raw.masks[:count], pred):
            row = np.concatenate([to_rgb(img), solid_mask(truth), solid_mask(p)], axis=1)  # image | truth | predicted
            tiles.append(_upscale(row, scale))
        picture = mask_legend(grid(tiles, 2), cfg["classes"])
        save_png(picture, path)


def cli_train(args) -> int:
    """``striate train --task segment``: defaults ``--model unet --data shapes``."""
    run_task(args, SegmentTask())
    return 0


def cli_evaluate(args) -> int:
    """``striate evaluate RUN [--data SPEC]`` for a --task segment run: the held-out figures."""
    _, lines = evaluate_run(args.checkpoint, SegmentTask(), getattr(args, "data", None))
    print("\n".join(lines))
    return 0


def segment_file(checkpoint, image_path, out, alpha: float = 0.55) -> list[str]:
    """Segment one image file with a trained run; write ``image | overlay | mask`` to ``out``; returns report lines.

    The image is read at its own size (converted to the run's channels); sizes that the network
    cannot take (U-Net: multiples of ``2**depth``) are padded by edge replication and cropped back.
    """
    from .draw import _auto_scale, _upscale, mask_legend, overlay_mask, save_png, solid_mask, to_rgb

    model, cfg = load_task_model(checkpoint, "segment")
    channels = cfg["input_shape"][0]
    image = read_image(image_path, channels)  # (C, H, W) in [0, 1]
    h, w = image.shape[1:]
    m = int(getattr(model, "size_multiple", 1))
    ph, pw = (-h) % m, (-w) % m
    padded = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="edge")
    norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    mask = predict_masks(model, norm(padded[None]))[0, :h, :w]
    row = np.concatenate([to_rgb(image), overlay_mask(image, mask, alpha), solid_mask(mask)], axis=1)
    picture = mask_legend(_upscale(row, _auto_scale(max(h, w), 256)), cfg["classes"], present=set(np.unique(mask)))
    save_png(picture, out)
    counts = np.bincount(mask.ravel(), minlength=len(cfg["classes"]))
    lines = [f"{image_path}: {h}x{w} pixels"]
    lines += [f"  {name}: {c / mask.size:.1%} of the pixels" for name, c in zip(cfg["classes"], counts) if c]
    lines.append(f"wrote {out}")
    return lines
