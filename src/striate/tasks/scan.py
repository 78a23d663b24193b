"""Scan a trained classifier over a larger image: a per-class heat map (``striate scan``).

The classifier of a ``striate train`` run (e.g. LeNet-5 on 28x28 digits) is converted into its fully
convolutional equivalent (:func:`~striate.models.scanning.to_fully_convolutional`), which classifies
every window of the image at once; the softmax over classes at each window position is the heat map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import Normalize
from ..models.scanning import scan, to_fully_convolutional
from ..train.checkpoint import CheckpointError, load_checkpoint
from ..train.loop import CHECKPOINT_DIR
from ..train.run import RunError, build_model, load_run
from .common import read_image
from .draw import heat_map_png

__all__ = ["heat_map", "scan_file"]


def heat_map(model, image, input_shape, normalize=None, probabilities: bool = True):
    """``(heat (K, Ho, Wo), fcn)``: class probabilities (or logits) of every window of ``image`` (C, H, W)."""
    fcn = to_fully_convolutional(model, input_shape)
    dtype = next((p.data.dtype for p in fcn.parameters()), np.dtype(np.float32))
    x = np.asarray(image, dtype=np.float32)[None]
    if normalize is not None:
        x = normalize(x)
    logits = scan(fcn, x.astype(dtype))[0]
    if not probabilities:
        return logits, fcn
    z = np.exp(logits - logits.max(axis=0, keepdims=True))
    return z / z.sum(axis=0, keepdims=True), fcn


def scan_file(checkpoint, image_path, out, probabilities: bool = True) -> list[str]:
    """Scan the classifier of run ``checkpoint`` over an image file; write the heat maps to ``out``."""
    cfg = load_run(checkpoint)
    if cfg.get("task", "classify") != "classify":
        raise CheckpointError(f"{checkpoint} holds a {cfg['task']} model; scanning needs a classifier "
                              "(a run of plain `striate train`)")
    model = build_model(cfg)
    load_checkpoint(Path(cfg["out"]) / CHECKPOINT_DIR, model=model,
                    expect_model={"name": cfg["model"], "config": cfg["model_config"]})
    model.eval()
    c, h, w = cfg["input_shape"]
    image = read_image(image_path, c)
    if image.shape[1] < h or image.shape[2] < w:
        raise RunError(f"{image_path} is {image.shape[1]}x{image.shape[2]}, smaller than the classifier's "
                       f"{h}x{w} window")
    try:
        heat, fcn = heat_map(model, image, (c, h, w), Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"]),
                             probabilities)
    except ValueError as exc:
        raise RunError(f"cannot scan with {cfg['model']}: {exc}") from None
    classes = cfg["classes"]
    heat_map_png(image, heat, out, classes, window=fcn.window, stride=fcn.stride,
                 label="probability" if probabilities else "logit",
                 title=f"{cfg['model']} scanned over {Path(image_path).name}: {h}x{w} windows every "
                       f"{fcn.stride[0]}x{fcn.stride[1]} pixels")
    k, i, j = np.unravel_index(int(np.argmax(heat)), heat.shape)
    lines = [f"{image_path}: {image.shape[1]}x{image.shape[2]} pixels scanned by {cfg['model']} as a fully "
             f"convolutional network: {heat.shape[1]}x{heat.shape[2]} windows of {h}x{w}, stride "
             f"{fcn.stride[0]}x{fcn.stride[1]}",
             f"  strongest: {classes[k]} ({heat[k, i, j]:.1%}) in the window at x {j * fcn.stride[1]}.."
             f"{j * fcn.stride[1] + w - 1}, y {i * fcn.stride[0]}..{i * fcn.stride[0] + h - 1}"]
    if not fcn.exact:
        lines.append("  note: this network pads its convolutions, so each window also sees its neighbours' pixels "
                     "where a cropped window would see zeros")
    lines.append(f"wrote {out}")
    return lines
