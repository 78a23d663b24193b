"""Resampling layers: Upsample (nearest, bilinear, and the lecture's zero insertion) and Downsample."""

from __future__ import annotations

from .. import functional as F
from .module import Module

__all__ = ["Upsample", "Downsample"]


class Upsample(Module):
    """``mode`` 'nearest' | 'nearest-exact' | 'linear' | 'bilinear' as PyTorch, or 'zeros': insert
    S-1 zeros between neighbours (S = ``scale_factor``, an int)."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor
        if mode == "zeros" and (scale_factor is None or size is not None):
            raise ValueError("Upsample(mode='zeros') needs an integer scale_factor and no size")

    def forward(self, input):
        if self.mode == "zeros":
            return F.upsample_zeros(input, self.scale_factor)
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class Downsample(Module):
    """Keep every S-th row/column (drop S-1 of every S): the lecture's downsampling layer."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, input):
        return F.downsample(input, self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
