"""A localizer: one convolutional backbone, a class head and a bounding-box head.

The backbone is ``stages`` blocks of (3x3 conv, batch norm, ReLU, 2x2 max pool); a shared fully
connected layer follows, then two heads: ``num_classes`` class logits and 4 box numbers, the
box's corners ``(x0, y0, x1, y1)`` divided by the image width/height (so in [0, 1]).  The forward
pass returns one ``(N, num_classes + 4)`` tensor -- logits first, box last -- so it flows through
the usual tools; :func:`split_outputs` separates the two.  With the defaults on 1x64x64 canvases::

    stage1  1 -> 16   (N, 16, 32, 32)      fc      1024 -> 128
    stage2  16 -> 32  (N, 32, 16, 16)      class   128 -> num_classes
    stage3  32 -> 32  (N, 32, 8, 8)        box     128 -> 4
    stage4  32 -> 64  (N, 64, 4, 4)        out     cat -> (N, num_classes + 4)
"""

from __future__ import annotations

from .. import functional as F
from .. import nn
from .registry import register_model

__all__ = ["Localizer", "localizer", "split_outputs"]


def split_outputs(outputs, num_classes: int):
    """``(class_logits (N, K), boxes (N, 4))`` from a localizer's ``(N, K + 4)`` output (Tensor or array)."""
    if outputs.ndim != 2 or outputs.shape[1] != num_classes + 4:
        raise ValueError(f"localizer outputs must be (N, {num_classes} + 4), got shape {tuple(outputs.shape)}")
    return outputs[:, :num_classes], outputs[:, num_classes:]


class Localizer(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 64,
                 widths=(16, 32, 32, 64), hidden: int = 128):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        side = input_size
        for _ in widths:
            side //= 2
        if side < 1:
            raise ValueError(f"{len(widths)} pooling stages need inputs of at least {2 ** len(widths)} pixels, "
                             f"got {input_size}")
        self.num_classes, self.input_size = num_classes, input_size
        layers = []
        c_in = in_channels
        for c in widths:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.backbone = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in * side * side, hidden)
        self.act = nn.ReLU()
        self.classifier = nn.Linear(hidden, num_classes)
        self.box = nn.Linear(hidden, 4)

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"Localizer expects (N, C, {self.input_size}, {self.input_size}), "
                             f"got shape {tuple(x.shape)}")
        h = self.act(self.fc(self.flatten(self.backbone(x))))
        return F.cat([self.classifier(h), self.box(h)], dim=1)


@register_model("localizer")
def localizer(**config) -> Localizer:
    return Localizer(**config)
