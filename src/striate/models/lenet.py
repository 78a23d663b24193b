"""LeNet-5 (LeCun et al. 1998): two 5x5 convolutions with pooling, then three fully connected layers.

For 28x28 digits the first convolution pads by 2, giving the classic 32x32 receptive field:

    input (N, 1, 28, 28)
    conv1  1 -> 6, 5x5, pad 2   (N, 6, 28, 28)    156 parameters
    pool   2x2                  (N, 6, 14, 14)
    conv2  6 -> 16, 5x5         (N, 16, 10, 10)   2,416
    pool   2x2                  (N, 16, 5, 5)
    fc1    400 -> 120                              48,120
    fc2    120 -> 84                               10,164
    fc3    84 -> 10                                   850     total 61,706

The original used scaled tanh and trainable subsampling; ``activation`` and ``pool`` choose between
that flavour ('tanh', 'avg') and the modern one ('relu', 'max', the default).  Neither changes the
parameter count.
"""

from __future__ import annotations

from .. import nn
from .registry import register_model

__all__ = ["LeNet5", "lenet5"]


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 activation: str = "relu", pool: str = "max"):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        pad = 2 if input_size == 28 else 0  # 28x28 digits are padded to the classic 32x32 field
        act = nn.ReLU if activation == "relu" else nn.Tanh
        Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad)
        self.act1 = act()
        self.pool1 = Pool(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act2 = act()
        self.pool2 = Pool(2)
        side = ((input_size + 2 * pad - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet-5 needs inputs of at least 12x12 (28 is padded to 32), got {input_size}")
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.act3 = act()
        self.fc2 = nn.Linear(120, 84)
        self.act4 = act()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        x = self.act3(self.fc1(self.flatten(x)))
        x = self.act4(self.fc2(x))
        return self.fc3(x)


@register_model("lenet5")
def lenet5(**config) -> LeNet5:
    return LeNet5(**config)
