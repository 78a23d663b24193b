"""Residual networks (He et al. 2016): the CIFAR family and torchvision's ImageNet family.

A residual block learns a correction ``F(x)`` to its input and outputs ``relu(F(x) + shortcut(x))``.
Because the identity path carries the signal (and its gradient) through unchanged, very deep stacks
stay trainable.

CIFAR ResNets (paper section 4.2): ``resnet20/32/44/56/110``, depth ``6n + 2``::

    conv1  3x3, 16 channels, BN, ReLU                      (N, 16, H, W)
    layer1 n basic blocks, 16 channels                     (N, 16, H, W)
    layer2 n basic blocks, 32 channels, first stride 2     (N, 32, H/2, W/2)
    layer3 n basic blocks, 64 channels, first stride 2     (N, 64, H/4, W/4)
    avgpool global average, fc 64 -> num_classes

A basic block is ``conv3x3-BN-ReLU-conv3x3-BN`` plus the shortcut, then ReLU.  Where a block halves
the resolution and doubles the channels, the shortcut is the paper's **option A**: the identity,
subsampled with stride 2 (``x[:, :, ::2, ::2]``) and zero-padded with ``planes // 4`` empty
channels on each side so that ``C -> 2C``.  It has no parameters, which is why the parameter
counts are the paper's 0.27M (ResNet-20: 269,722), 0.46M, 0.66M, 0.85M and 1.7M (ResNet-110:
1,727,962) for 10 classes and 3 input channels.  The head is global average pooling, so any input of at least 4x4 works
(28x28 digits: 28 -> 14 -> 7 -> pool).

ImageNet ResNets (torchvision's layout, key names and initialisation): ``resnet18/34`` (basic
blocks) and ``resnet50/101/152`` (bottleneck blocks ``1x1 -> 3x3 -> 1x1`` with expansion 4, the
stride on the 3x3 as in torchvision's "v1.5").  Downsampling shortcuts are option B: a strided
1x1 convolution and BN stored as ``layerK.0.downsample.0/1``.  ResNet-18 has 11,689,512 and
ResNet-50 25,557,032 parameters with 1000 classes; weights saved from torchvision load unchanged
(see :func:`striate.io.load_torch_weights`).
"""

from __future__ import annotations

from .. import functional as F
from .. import nn
from ..nn import init
from .registry import register_model

__all__ = [
    "BasicBlock", "Bottleneck", "CifarBasicBlock", "CifarResNet", "ResNet",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (the following BN supplies the shift)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


# ---------------------------------------------------------------------- CIFAR (option A)


class ShortcutA(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel and zero-pad the channel axis.

    ``(N, C, H, W) -> (N, C + 2 * pad, ceil(H / stride), ceil(W / stride))``; no parameters.  The
    gradient flows back to the kept pixels of the original channels only.
    """

    def __init__(self, stride: int, pad: int):
        super().__init__()
        self.stride, self.pad = stride, pad

    def forward(self, x):
        s = self.stride
        if s != 1:
            x = x[:, :, ::s, ::s]
        # F.pad's amounts run from the last axis backwards: (W lo, W hi, H lo, H hi, C lo, C hi)
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the identity (option A where the shape changes), then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            if planes < in_planes or (planes - in_planes) % 2:
                raise ValueError(
                    f"an option-A shortcut zero-pads channels evenly: cannot go from {in_planes} to {planes}")
            self.shortcut = ShortcutA(stride, (planes - in_planes) // 2)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: three stages of ``n`` basic blocks, 16/32/64 channels."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, input_size: int | None = None,
                 widths=(16, 32, 64)):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        if input_size is not None and input_size < 4:
            raise ValueError(f"a CIFAR ResNet needs inputs of at least 4x4, got {input_size}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.in_planes = widths[0]
        self.layer1 = self._make_layer(widths[0], n, 1)
        self.layer2 = self._make_layer(widths[1], n, 2)
        self.layer3 = self._make_layer(widths[2], n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[2], num_classes)
        for m in self.modules():  # He et al.'s initialisation for the convolutions
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _cifar(depth):
    def build(num_classes: int = 10, in_channels: int = 3, input_size: int | None = None, **kw) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} for CIFAR-sized inputs (He et al. 2016, section 4.2; option-A shortcuts)."
    return register_model(f"resnet{depth}")(build)


resnet20 = _cifar(20)
resnet32 = _cifar(32)
resnet44 = _cifar(44)
resnet56 = _cifar(56)
resnet110 = _cifar(110)


# ---------------------------------------------------------------------- ImageNet (torchvision)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions; ``downsample`` (1x1 conv + BN) where shapes change."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages (64/128/256/512), global pool, fc."""

    def __init__(self, block, layers, num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None,
                 zero_init_residual: bool = False):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must list the blocks of 4 stages, got {layers}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
        if zero_init_residual:  # each residual branch starts as zero: every block begins as the identity
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.flatten(self.avgpool(x), 1)
        return self.fc(x)


_IMAGENET = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def _imagenet(depth):
    block, layers = _IMAGENET[depth]

    def build(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None, **kw) -> ResNet:
        return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} in torchvision's layout ({block.__name__} blocks {layers})."
    return register_model(f"resnet{depth}")(build)


resnet18 = _imagenet(18)
resnet34 = _imagenet(34)
resnet50 = _imagenet(50)
resnet101 = _imagenet(101)
resnet152 = _imagenet(152)
