"""PyTorch twins of striate's benchmark models, written out by hand (no torchvision).

Each twin has the same layers, parameter shapes and ``state_dict`` key names as the striate
model registered under the same name, so ``twin.load_state_dict(striate_model.state_dict())``
gives the very same network (the benchmark checks that the parameter counts agree).

* ``lenet5``: LeNet-5 for 28x28 digits (conv 5x5 pad 2 -> ReLU -> max-pool, conv 5x5 -> ReLU ->
  max-pool, three linear layers), striate's default flavour.
* ``resnet20``: He et al.'s CIFAR ResNet-20 with option-A shortcuts (stride-2 subsampling and
  zero channels, no parameters); 272,474 parameters.
* ``densenet_bc40``: DenseNet-BC (L = 40, k = 12): a 3x3 stem of 2k channels, three dense
  blocks of six bottleneck layers (BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k)), transitions
  BN-ReLU-Conv1x1-AvgPool2x2 with compression 0.5, then BN-ReLU-global pool-linear.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.act3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.act4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        x = self.act3(self.fc1(self.flatten(x)))
        x = self.act4(self.fc2(x))
        return self.fc3(x)


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class ShortcutA(nn.Module):
    def __init__(self, stride, pad):
        super().__init__()
        self.stride, self.pad = stride, pad

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class CifarBasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or cin != planes:
            self.shortcut = ShortcutA(stride, (planes - cin) // 2)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth=20, num_classes=10, in_channels=3, widths=(16, 32, 64)):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.in_planes = widths[0]
        self.layer1 = self._make_layer(widths[0], n, 1)
        self.layer2 = self._make_layer(widths[1], n, 2)
        self.layer3 = self._make_layer(widths[2], n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[2], num_classes)

    def _make_layer(self, planes, blocks, stride):
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size=4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.Module):
    def __init__(self, layers, cin, growth):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth))

    def forward(self, x):
        for layer in self.children():
            x = torch.cat([x, layer(x)], 1)
        return x


def _transition(cin, cout):
    return nn.Sequential(OrderedDict([
        ("norm", nn.BatchNorm2d(cin)),
        ("relu", nn.ReLU(inplace=True)),
        ("conv", nn.Conv2d(cin, cout, 1, bias=False)),
        ("pool", nn.AvgPool2d(2, 2)),
    ]))


class DenseNetBC(nn.Module):
    def __init__(self, depth=40, growth=12, num_classes=10, in_channels=3):
        super().__init__()
        per = (depth - 4) // 6
        c = 2 * growth
        self.features = nn.Sequential(OrderedDict([("conv0", nn.Conv2d(in_channels, c, 3, padding=1, bias=False))]))
        for i in range(3):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(per, c, growth))
            c += per * growth
            if i != 2:
                self.features.add_module(f"transition{i + 1}", _transition(c, c // 2))
                c //= 2
        self.features.add_module("norm4", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        out = F.relu(self.features(x))
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


TWINS = {
    "lenet5": lambda: LeNet5(),
    "resnet20": lambda: CifarResNet(20),
    "densenet_bc40": lambda: DenseNetBC(40, 12),
}

# (batch, channels, height, width) of each model's benchmark input
INPUTS = {
    "lenet5": (128, 1, 28, 28),
    "resnet20": (128, 3, 32, 32),
    "densenet_bc40": (64, 3, 32, 32),
}
