"""Densely connected networks (Huang et al. 2017): every layer sees all earlier outputs.

Inside a dense block, layer ``l`` receives the channel-wise concatenation ``[x_0, x_1, ..., x_{l-1}]``
of the block input and every earlier layer's output, and adds ``k`` (the *growth rate*) new
channels of its own.  A block of ``n`` layers thus maps ``C`` channels to ``C + n k``.  Layers are
pre-activation: ``BN-ReLU-Conv3x3(k)``, or with the *bottleneck* (the "B" in DenseNet-BC)
``BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k)``.  Between blocks a *transition* ``BN-ReLU-Conv1x1-
AvgPool2x2`` halves the resolution and, with *compression* 0.5 (the "C"), halves the channels.
After the last block: BN, ReLU, global average pooling and one linear layer.

Registered models:

==================  ======  ===========  ==========  ========  =====================================
name                 k      layers/block  bottleneck  compress  parameters (10 / 1000 classes)
==================  ======  ===========  ==========  ========  =====================================
``densenet40``       12     12, 12, 12    no          1         1,019,722 (paper: 1.0M); 16-ch 3x3 stem
``densenet_bc100``   12     16, 16, 16    yes         0.5       769,162 (paper: 0.8M); 24-ch 3x3 stem
``densenet_bc40``    12     6, 6, 6       yes         0.5       small BC net for benchmarks
``densenet121``      32     6, 12, 24, 16 yes         0.5       7,978,856 (1000 classes, torchvision)
==================  ======  ===========  ==========  ========  =====================================

The CIFAR variants start with one 3x3 convolution (``2k`` channels for BC, 16 otherwise) and keep
full resolution into the first block; DenseNet-121 has torchvision's ImageNet stem (7x7/2
convolution, BN, ReLU, 3x3/2 max-pool).  Every variant ends in global average pooling, so the
CIFAR models train unchanged on 28x28 digits (28 -> 14 -> 7 -> pool).

Key names follow torchvision (``features.conv0.weight``, ``features.denseblock1.denselayer1.
norm1.weight``, ``features.transition1.conv.weight``, ``features.norm5.running_var``,
``classifier.weight``), so torchvision's DenseNet-121 weights load unchanged.  A layer without a
bottleneck has only ``norm1``, ``relu1`` and ``conv1`` (its 3x3 convolution).
"""

from __future__ import annotations

from collections import OrderedDict

from .. import functional as F
from .. import nn
from ..nn import init
from .registry import register_model

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet", "densenet40", "densenet_bc100", "densenet_bc40",
           "densenet121"]


class DenseLayer(nn.Module):
    """One layer of a dense block: the concatenated input in, ``growth_rate`` new channels out.

    ``bn_size`` set: BN-ReLU-Conv1x1(bn_size * k)-BN-ReLU-Conv3x3(k) (the bottleneck form);
    ``bn_size=None``: BN-ReLU-Conv3x3(k).
    """

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int | None = 4, drop_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        if bn_size:
            self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
            self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(num_input_features, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.bottleneck = bool(bn_size)
        self.drop_rate = float(drop_rate)

    def forward(self, x):
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.Module):
    """``num_layers`` dense layers ``denselayer1 ...``; layer l sees the input plus l - 1 earlier outputs.

    (N, C, H, W) -> (N, C + num_layers * growth_rate, H, W).  The running concatenation is grown
    by one ``cat`` per layer, which equals concatenating the whole list each time.
    """

    def __init__(self, num_layers: int, num_input_features: int, growth_rate: int, bn_size: int | None = 4,
                 drop_rate: float = 0.0):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate))

    def forward(self, x):
        for layer in self.children():
            x = F.cat([x, layer(x)], 1)
        return x


def Transition(num_input_features: int, num_output_features: int) -> nn.Sequential:
    """BN-ReLU-Conv1x1-AvgPool2x2 between blocks (keys ``norm``, ``conv``)."""
    return nn.Sequential(OrderedDict([
        ("norm", nn.BatchNorm2d(num_input_features)),
        ("relu", nn.ReLU(inplace=True)),
        ("conv", nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)),
        ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
    ]))


class DenseNet(nn.Module):
    """A DenseNet: stem, dense blocks with transitions, BN-ReLU, global average pooling, linear head.

    ``stem='imagenet'``: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool (torchvision); ``stem='cifar'``: one
    3x3 convolution.  ``bn_size=None`` drops the bottleneck; ``compression`` is the fraction of
    channels a transition keeps (``floor(compression * C)``).
    """

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int | None = 4, compression: float = 0.5, drop_rate: float = 0.0, num_classes: int = 1000,
                 in_channels: int = 3, stem: str = "imagenet"):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must lie in (0, 1], got {compression}")
        if stem == "imagenet":
            layers = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        else:
            layers = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=3, padding=1, bias=False))]
        self.features = nn.Sequential(OrderedDict(layers))
        c = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c, growth_rate, bn_size, drop_rate))
            c += n * growth_rate
            if i != len(block_config) - 1:
                out = int(c * compression)
                self.features.add_module(f"transition{i + 1}", Transition(c, out))
                c = out
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, num_classes)
        self.num_features = c
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init.zeros_(m.bias)

    def forward(self, x):
        out = F.relu(self.features(x))
        out = F.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


def _cifar_blocks(depth: int, bottleneck: bool) -> tuple[int, int, int]:
    # depth counts every convolution plus the first one, the two transitions and the classifier
    per = (depth - 4) // (6 if bottleneck else 3)
    if per < 1 or (depth - 4) % (6 if bottleneck else 3):
        kind = "6n + 4 (BC)" if bottleneck else "3n + 4"
        raise ValueError(f"a CIFAR DenseNet{'-BC' if bottleneck else ''} has depth {kind}, got {depth}")
    return (per, per, per)


def cifar_densenet(depth: int = 40, growth_rate: int = 12, bottleneck: bool = False, num_classes: int = 10,
                   in_channels: int = 3, drop_rate: float = 0.0) -> DenseNet:
    """Huang et al.'s CIFAR DenseNet (3 blocks) or DenseNet-BC (bottlenecks, compression 0.5)."""
    return DenseNet(growth_rate=growth_rate, block_config=_cifar_blocks(depth, bottleneck),
                    num_init_features=2 * growth_rate if bottleneck else 16, bn_size=4 if bottleneck else None,
                    compression=0.5 if bottleneck else 1.0, drop_rate=drop_rate, num_classes=num_classes,
                    in_channels=in_channels, stem="cifar")


@register_model("densenet40")
def densenet40(num_classes: int = 10, in_channels: int = 3, input_size: int | None = None, **kw) -> DenseNet:
    """DenseNet (L = 40, k = 12) for small images: 1.0M parameters."""
    return cifar_densenet(40, 12, False, num_classes=num_classes, in_channels=in_channels, **kw)


@register_model("densenet_bc100")
def densenet_bc100(num_classes: int = 10, in_channels: int = 3, input_size: int | None = None, **kw) -> DenseNet:
    """DenseNet-BC (L = 100, k = 12) for small images: 0.8M parameters."""
    return cifar_densenet(100, 12, True, num_classes=num_classes, in_channels=in_channels, **kw)


@register_model("densenet_bc40")
def densenet_bc40(num_classes: int = 10, in_channels: int = 3, input_size: int | None = None, **kw) -> DenseNet:
    """DenseNet-BC (L = 40, k = 12): a small bottleneck-compression net (benchmarks, quick runs)."""
    return cifar_densenet(40, 12, True, num_classes=num_classes, in_channels=in_channels, **kw)


@register_model("densenet121")
def densenet121(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None, **kw) -> DenseNet:
    """DenseNet-121 in torchvision's layout (k = 32, blocks 6/12/24/16): 7,978,856 parameters."""
    return DenseNet(32, (6, 12, 24, 16), 64, bn_size=4, compression=0.5, num_classes=num_classes,
                    in_channels=in_channels, stem="imagenet", **kw)
