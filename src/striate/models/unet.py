"""U-Net (Ronneberger et al. 2015), scaled down: an encoder/decoder whose decoder concatenates skips.

Every level of the encoder is two 3x3 convolutions (padding 1, so the size is kept) each followed
by batch normalisation and ReLU; a 2x2 max pool halves the size between levels and the width
doubles.  The decoder mirrors it: upsample by 2 (a 2x2 transposed convolution with stride 2, or
nearest-neighbour upsampling followed by a 3x3 convolution), concatenate the encoder's map of the
same size along the channel axis, two 3x3 convolutions.  A 1x1 convolution gives per-pixel class
logits of the input's size.  With ``base=8, depth=2`` on 3x32x32 inputs::

    enc0   3 -> 8     (N, 8, 32, 32)        dec1  up 32 -> 16, cat 16 -> 32 -> 16   (N, 16, 16, 16)
    enc1   8 -> 16    (N, 16, 16, 16)       dec0  up 16 -> 8,  cat 8 + 8 -> 8       (N, 8, 32, 32)
    mid    16 -> 32   (N, 32, 8, 8)         head  1x1, 8 -> num_classes             (N, K, 32, 32)

The input's height and width must be multiples of ``2**depth``.
"""

from __future__ import annotations

from .. import functional as F
from .. import nn
from .registry import register_model

__all__ = ["UNet", "unet", "conv_block"]


def conv_block(in_channels: int, out_channels: int, batch_norm: bool = True) -> nn.Sequential:
    """Two (3x3 conv, padding 1 -> [batch norm] -> ReLU) stages; the size is unchanged."""
    layers = []
    for c_in in (in_channels, out_channels):
        layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Up(nn.Module):
    """Upsample by 2 and halve the width: a stride-2 transposed convolution, or nearest + 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, mode: str):
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(in_channels, out_channels, 3, padding=1))

    def forward(self, x):
        return self.up(x)


class UNet(nn.Module):
    def __init__(self, num_classes: int = 4, in_channels: int = 3, base: int = 8, depth: int = 2,
                 upsample: str = "transpose", batch_norm: bool = True, input_size: int | None = None):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(f"base, num_classes and in_channels must be positive, got {base}, {num_classes}, "
                             f"{in_channels}")
        if upsample not in ("transpose", "nearest"):
            raise ValueError(f"upsample must be 'transpose' or 'nearest', got {upsample!r}")
        if input_size is not None and input_size % (2 ** depth):
            raise ValueError(f"U-Net of depth {depth} needs sizes divisible by {2 ** depth}, got {input_size}")
        self.num_classes, self.depth = num_classes, depth
        widths = [base * 2 ** k for k in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [conv_block(in_channels if k == 0 else widths[k - 1], widths[k], batch_norm) for k in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.middle = conv_block(widths[depth - 1], widths[depth], batch_norm)
        # decoder k takes width[k+1] up to width[k], concatenates the skip (width[k]), back to width[k]
        self.ups = nn.ModuleList([_Up(widths[k + 1], widths[k], upsample) for k in reversed(range(depth))])
        self.decoders = nn.ModuleList([conv_block(2 * widths[k], widths[k], batch_norm)
                                       for k in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    @property
    def size_multiple(self) -> int:
        """Input heights and widths must be multiples of this (``2**depth``)."""
        return 2 ** self.depth

    def forward(self, x):
        h, w = x.shape[-2:]
        m = 2 ** self.depth
        if x.ndim != 4 or h % m or w % m:
            raise ValueError(f"U-Net of depth {self.depth} expects (N, C, H, W) with H and W divisible by {m}, "
                             f"got shape {tuple(x.shape)}")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.middle(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(F.cat([up(x), skip], dim=1))  # skip concatenation: fine detail from the encoder
        return self.head(x)


@register_model("unet")
def unet(**config) -> UNet:
    return UNet(**config)
