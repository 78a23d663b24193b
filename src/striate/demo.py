"""A self-contained first run: train a tiny CNN on generated bar images and watch the loss fall.

The data are 12x12 images of a horizontal, a vertical or a diagonal bar at a random position, with
noise; the network is conv(1->4, 3x3) -> ReLU -> 2x2 max-pool -> linear(100 -> 3), trained by plain
gradient descent on the batch-averaged cross-entropy.  Every gradient comes from striate's own
backward passes.
"""

from __future__ import annotations

import numpy as np

from . import functional as F
from .autograd import Tensor, no_grad

__all__ = ["make_bars", "run_demo"]

CLASSES = ("horizontal", "vertical", "diagonal")


def make_bars(n: int, size: int = 12, noise: float = 0.3, seed: int = 0):
    """``n`` noisy (1, size, size) images of bars and their labels 0/1/2, float32/int64."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = noise * rng.standard_normal((n, 1, size, size)).astype(np.float32)
    pos = rng.integers(2, size - 2, size=n)
    rows = np.arange(size)
    for k, (label, p) in enumerate(zip(labels, pos)):  # building data, not a kernel
        if label == 0:
            images[k, 0, p, :] += 1.0
        elif label == 1:
            images[k, 0, :, p] += 1.0
        else:
            images[k, 0, rows, (rows + p) % size] += 1.0
    return images, labels.astype(np.int64)


def run_demo(epochs: int = 8, lr: float = 0.1, batch_size: int = 32, seed: int = 0, print_fn=print):
    """Train the tiny CNN; returns the list of per-epoch mean losses (also printed)."""
    x_train, y_train = make_bars(512, seed=seed)
    x_test, y_test = make_bars(256, seed=seed + 1)
    rng = np.random.default_rng(seed)
    w1 = Tensor(rng.normal(0, np.sqrt(2 / 9), (4, 1, 3, 3)).astype(np.float32), requires_grad=True)
    b1 = Tensor(np.zeros(4, np.float32), requires_grad=True)
    w2 = Tensor(rng.normal(0, np.sqrt(1 / 100), (3, 100)).astype(np.float32), requires_grad=True)
    b2 = Tensor(np.zeros(3, np.float32), requires_grad=True)
    params = [w1, b1, w2, b2]

    def forward(x):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1)), 2)  # (N, 4, 5, 5)
        return F.linear(F.flatten(h, 1), w2, b2)

    losses = []
    print_fn(f"striate demo: tiny CNN on {len(x_train)} generated bar images ({', '.join(CLASSES)})")
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(forward(Tensor(x_train[idx])), Tensor(y_train[idx]))
            for p in params:
                p.grad = None
            loss.backward()
            with no_grad():
                for p in params:
                    p.data -= lr * p.grad.data
            total += loss.item() * len(idx)
        losses.append(total / len(x_train))
        with no_grad():
            acc = float((forward(Tensor(x_test)).data.argmax(1) == y_test).mean())
        print_fn(f"epoch {epoch + 1:2d}  loss {losses[-1]:.4f}  test accuracy {acc:.1%}")
    return losses
