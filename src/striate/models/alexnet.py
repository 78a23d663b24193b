"""AlexNet (Krizhevsky et al. 2012) in torchvision's single-tower layout.

    features    conv 11x11/4 (64) ReLU maxpool 3/2      conv 5x5 (192) ReLU maxpool 3/2
                conv 3x3 (384) ReLU  conv 3x3 (256) ReLU  conv 3x3 (256) ReLU maxpool 3/2
    avgpool     adaptive average pooling to 6x6
    classifier  Dropout Linear(9216, 4096) ReLU Dropout Linear(4096, 4096) ReLU Linear(4096, classes)

61,100,840 parameters with 1000 classes; key names ``features.0.weight`` ... ``classifier.6.bias``
are torchvision's, so its weights load with :func:`striate.io.load_torch_weights`.  The adaptive
pooling makes the head independent of the input size, but the three max-pools need the feature
map to survive: inputs must be at least 63x63 (224x224 is the usual size).
"""

from __future__ import annotations

from .. import functional as F
from .. import nn
from .registry import register_model

__all__ = ["AlexNet", "alexnet", "ALEXNET_MIN_INPUT"]

#: The smallest input side for which every max-pool still has a 3x3 window to pool.
ALEXNET_MIN_INPUT = 63


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None,
                 dropout: float = 0.5):
        super().__init__()
        if input_size is not None and input_size < ALEXNET_MIN_INPUT:
            raise ValueError(f"AlexNet needs inputs of at least {ALEXNET_MIN_INPUT}x{ALEXNET_MIN_INPUT} "
                             f"(224x224 is usual), got {input_size}; for small images use resnet20 or densenet40")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


@register_model("alexnet")
def alexnet(num_classes: int = 1000, in_channels: int = 3, input_size: int | None = None, **kw) -> AlexNet:
    """AlexNet in torchvision's layout (61,100,840 parameters for 1000 classes)."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)
