#!/usr/bin/env python
"""Seconds per training epoch of one model in striate and in PyTorch, same data, same process.

    python tools/bench_epoch.py --model resnet20
    python tools/bench_epoch.py --model densenet40 --striate-steps 10     # extrapolate striate
    python tools/bench_epoch.py --model densenet40 --framework torch --epochs 5   # a quick pilot

Both sides train the same architecture (striate's model and its PyTorch twin from
``tests/test_models.py``, starting from the same weights) on the same MNIST-5k training split
that ``striate train`` uses (4,000 images, standardised with the training statistics), with the
same batch order, AdamW (``--lr``, weight decay 0.05), batch size ``--batch-size``, no
augmentation and no held-out evaluation inside the timed loop.  Held-out accuracy is printed
after each epoch for orientation.  ``--striate-steps N`` times only the first N steps of each
striate epoch and scales to a full epoch (marked "extrapolated").

Threads: striate uses NumPy's BLAS as configured by the environment (``OPENBLAS_NUM_THREADS``);
PyTorch uses ``--torch-threads`` (default: the number of CPUs).  The machine's load average is
printed before and after, since timings on a shared machine mean little without it.
torch is needed (it is the comparison); this is a development tool, not part of the library.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        return "n/a"


def _data(seed: int):
    from striate.train.run import build_data

    cfg = {"data": "mnist5k", "val_fraction": 0.2, "seed": seed}
    train, held, raw_train, raw_held = build_data(cfg)
    x = train.transform(raw_train.images).astype(np.float32)
    xv = held.transform(raw_held.images).astype(np.float32)
    return x, np.asarray(raw_train.labels, np.int64), xv, np.asarray(raw_held.labels, np.int64)


def _striate_epoch(model, opt, x, y, order, bs, max_steps):
    import striate
    import striate.functional as F

    model.train()
    steps = math.ceil(len(order) / bs)
    run = steps if not max_steps else min(max_steps, steps)
    t0 = time.perf_counter()
    loss_sum = 0.0
    for s in range(run):
        idx = order[s * bs:(s + 1) * bs]
        loss = F.cross_entropy(model(striate.tensor(x[idx])), striate.tensor(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item()
    dt = time.perf_counter() - t0
    return dt * steps / run, loss_sum / run, run < steps


def _striate_accuracy(model, x, y):
    import striate

    model.eval()
    correct = 0
    with striate.no_grad():
        for i in range(0, len(x), 500):
            correct += int((model(striate.tensor(x[i:i + 500])).data.argmax(1) == y[i:i + 500]).sum())
    return correct / len(x)


def _torch_epoch(torch, twin, opt, x, y, order, bs):
    f = torch.nn.functional
    twin.train()
    t0 = time.perf_counter()
    loss_sum, steps = 0.0, 0
    for s in range(0, len(order), bs):
        idx = order[s:s + bs]
        loss = f.cross_entropy(twin(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item()
        steps += 1
    return time.perf_counter() - t0, loss_sum / steps


def _torch_accuracy(torch, twin, x, y):
    twin.eval()
    with torch.no_grad():
        return float((twin(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--framework", choices=("both", "striate", "torch"), default="both")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--striate-steps", type=int, default=0, help="time only this many striate steps per epoch")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from test_models import copy_to_twin, torch_twin  # the PyTorch twins of the test-suite

    import striate
    from striate import optim
    from striate.models import get_model

    torch.set_num_threads(args.torch_threads)  # (importing the tests' harness set it to 1)
    x, y, xv, yv = _data(args.seed)
    print(f"{args.model}: {len(x)} train / {len(xv)} held-out MNIST-5k images, batch {args.batch_size}, "
          f"AdamW lr {args.lr}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; load {_load()}")

    striate.manual_seed(args.seed)
    model = get_model(args.model, num_classes=10, in_channels=1, input_size=28)
    twin = copy_to_twin(model, torch_twin(args.model, 10, 1), np.float32)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    topt = torch.optim.AdamW(twin.parameters(), lr=args.lr, weight_decay=0.05)
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x))
        if args.framework in ("both", "torch"):
            dt, loss = _torch_epoch(torch, twin, topt, x, y, order, args.batch_size)
            acc = _torch_accuracy(torch, twin, xv, yv)
            print(f"epoch {epoch} pytorch: {dt:7.1f} s/epoch  train loss {loss:.4f}  held-out acc {acc:.4f}  "
                  f"(load {_load()})", flush=True)
        if args.framework in ("both", "striate"):
            dt, loss, partial = _striate_epoch(model, opt, x, y, order, args.batch_size, args.striate_steps)
            acc = _striate_accuracy(model, xv, yv) if not partial else float("nan")
            print(f"epoch {epoch} striate: {dt:7.1f} s/epoch{' (extrapolated)' if partial else ''}  train loss "
                  f"{loss:.4f}  held-out acc {acc:.4f}  (load {_load()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
