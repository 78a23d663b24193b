"""A small fully convolutional network for segmentation (after Long, Shelhamer & Darrell's FCN-8s).

A backbone of three stages (two 3x3 convolutions with batch norm and ReLU, then a 2x2 max pool)
gives feature maps at strides 2, 4 and 8.  A 1x1 convolution ("classifier") scores the classes on
each of them.  The coarsest scores are upsampled by 2 with a learned transposed convolution
(kernel 4, stride 2, padding 1, which exactly doubles the size), added to the next finer scores
(the skip connection), upsampled again, added to the finest, and upsampled once more to the input
size.  With ``base=16`` on 3x32x32 inputs::

    stage1  3 -> 16    (N, 16, 16, 16)   score2  1x1 -> K    (N, K, 16, 16)
    stage2  16 -> 32   (N, 32, 8, 8)     score4  1x1 -> K    (N, K, 8, 8)
    stage3  32 -> 64   (N, 64, 4, 4)     score8  1x1 -> K    (N, K, 4, 4)
    up(score8) + score4 -> up -> + score2 -> up             (N, K, 32, 32)

Inputs need sizes divisible by 8.
"""

from __future__ import annotations

from .. import nn
from .registry import register_model
from .unet import conv_block

__all__ = ["FCN", "fcn"]


class FCN(nn.Module):
    def __init__(self, num_classes: int = 4, in_channels: int = 3, base: int = 16, batch_norm: bool = True,
                 input_size: int | None = None):
        super().__init__()
        if base < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(f"base, num_classes and in_channels must be positive, got {base}, {num_classes}, "
                             f"{in_channels}")
        if input_size is not None and input_size % 8:
            raise ValueError(f"FCN needs sizes divisible by 8, got {input_size}")
        self.num_classes = num_classes
        widths = (base, 2 * base, 4 * base)
        self.stage1 = conv_block(in_channels, widths[0], batch_norm)
        self.stage2 = conv_block(widths[0], widths[1], batch_norm)
        self.stage3 = conv_block(widths[1], widths[2], batch_norm)
        self.pool = nn.MaxPool2d(2)
        self.score2 = nn.Conv2d(widths[0], num_classes, 1)
        self.score4 = nn.Conv2d(widths[1], num_classes, 1)
        self.score8 = nn.Conv2d(widths[2], num_classes, 1)
        # kernel 4, stride 2, padding 1: output size (H - 1) * 2 - 2 + 4 = 2H
        self.up8 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1)
        self.up4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1)

    size_multiple = 8  # input heights and widths must be multiples of this

    def forward(self, x):
        h, w = x.shape[-2:]
        if x.ndim != 4 or h % 8 or w % 8:
            raise ValueError(f"FCN expects (N, C, H, W) with H and W divisible by 8, got shape {tuple(x.shape)}")
        f2 = self.pool(self.stage1(x))  # stride 2
        f4 = self.pool(self.stage2(f2))  # stride 4
        f8 = self.pool(self.stage3(f4))  # stride 8
        s = self.up8(self.score8(f8)) + self.score4(f4)
        s = self.up4(s) + self.score2(f2)
        return self.up2(s)


@register_model("fcn")
def fcn(**config) -> FCN:
    return FCN(**config)
