"""Write generated images (and their masks and boxes) as files: ``striate synth``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..io.safetensors import atomic_write_bytes
from .common import load_task_data
from .draw import save_png, to_rgb

__all__ = ["write_samples"]


def write_samples(spec: str, out_dir, count: int = 8, seed: int = 0, split: str = "held") -> list[Path]:
    """Write ``count`` images of a task data spec (``shapes``, ``digits-canvas:...``) into ``out_dir``.

    Files: ``NAME-0000.png`` (the image), ``NAME-0000-mask.png`` (mask values as gray levels) and
    ``boxes.csv`` (file, object, class, x0, y0, x1, y1).  ``split`` picks the training or the
    held-out part of the run that ``--data spec --seed seed`` would train on, so images from
    ``held`` were never seen in training.  Returns the image paths.
    """
    if split not in ("train", "held"):
        raise ValueError(f"split must be 'train' or 'held', got {split!r}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    train, held = load_task_data(spec, seed)
    data = held if split == "held" else train
    if count > len(data):
        raise ValueError(f"the {split} part of {spec!r} has {len(data)} images; asked for {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = str(spec).split(":", 1)[0]
    rows, paths = [["file", "object", "class", "x0", "y0", "x1", "y1"]], []
    for i in range(count):
        path = out / f"{name}-{i:04d}.png"
        save_png(to_rgb(data.images[i]) if data.images.shape[1] == 3 else to_rgb(data.images[i])[..., 0], path)
        save_png(np.asarray(data.masks[i], dtype=np.uint8), out / f"{name}-{i:04d}-mask.png")
        for k, (box, label) in enumerate(zip(data.boxes[i], data.box_labels[i])):
            if label >= 0:
                rows.append([path.name, k, data.classes[label], *(int(v) for v in box)])
        paths.append(path)
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    atomic_write_bytes(out / "boxes.csv", buf.getvalue().encode())
    return paths
