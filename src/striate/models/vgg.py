"""VGG (Simonyan & Zisserman 2015): stacks of 3x3 convolutions, in torchvision's layout.

Configurations (numbers are output channels of 3x3 convolutions with padding 1, ``M`` a 2x2
max-pool with stride 2)::

    vgg11  64 M 128 M 256 256 M 512 512 M 512 512 M                         (A)
    vgg13  64 64 M 128 128 M 256 256 M 512 512 M 512 512 M                   (B)
    vgg16  64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M       (D)
    vgg19  64 64 M 128 128 M 256 x4 M 512 x4 M 512 x4 M                      (E)

``features`` holds ``Conv2d, ReLU`` (or ``Conv2d, BatchNorm2d, ReLU`` for the ``_bn`` variants)
and the pools, numbered as torchvision numbers them; ``avgpool`` adapts the map to 7x7;
``classifier`` is ``Linear(25088, 4096) ReLU Dropout Linear(4096, 4096) ReLU Dropout
Linear(4096, classes)``.  VGG-16 has 138,357,544 parameters with 1000 classes.  The five pools
need inputs of at least 32x32.  Initialisation is torchvision's: He-normal (fan-out) convolutions
with zero bias, N(0, 0.01) linear weights with zero bias.
"""

from __future__ import annotations

from .. import functional as F
from .. import nn
from ..nn import init
from .registry import register_model

__all__ = ["VGG", "make_layers", "CFGS", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
           "vgg19", "vgg19_bn"]

CFGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

#: Five 2x2 pools: the smallest input that leaves a 1x1 map.
VGG_MIN_INPUT = 32


def make_layers(cfg, batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    """The ``features`` Sequential of a configuration (torchvision's ``make_layers``)."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    init.ones_(m.weight)
                    init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    init.normal_(m.weight, 0.0, 0.01)
                    init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


def _vgg(name: str, cfg: str, batch_norm: bool):
    def build(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None, **kw) -> VGG:
        if input_size is not None and input_size < VGG_MIN_INPUT:
            raise ValueError(f"{name} needs inputs of at least {VGG_MIN_INPUT}x{VGG_MIN_INPUT} (five 2x2 max-pools), "
                             f"got {input_size}; for small images use resnet20 or densenet40")
        return VGG(make_layers(CFGS[cfg], batch_norm, in_channels), num_classes=num_classes, **kw)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"VGG configuration {cfg}{' with batch norm' if batch_norm else ''} in torchvision's layout."
    return register_model(name)(build)


vgg11 = _vgg("vgg11", "A", False)
vgg11_bn = _vgg("vgg11_bn", "A", True)
vgg13 = _vgg("vgg13", "B", False)
vgg13_bn = _vgg("vgg13_bn", "B", True)
vgg16 = _vgg("vgg16", "D", False)
vgg16_bn = _vgg("vgg16_bn", "D", True)
vgg19 = _vgg("vgg19", "E", False)
vgg19_bn = _vgg("vgg19_bn", "E", True)
