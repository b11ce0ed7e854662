"""Convolutional stem and downsampling shared by MambaOut and VMamba v2/v3.

Both take NCHW (stem) or NHWC (downsampling) and return NHWC, the layout every block works in.
Convolutions run on channels-last tensors, so the permutes around them are free views, not copies.
"""
import torch
from torch import nn


class ConvStem(nn.Module):
    """Stride 4: 3×3 s2 conv → LN → GELU → 3×3 s2 conv → LN."""

    def __init__(self, in_channels: int, out_channels: int, eps: float):
        super().__init__()
        mid_channels = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, stride=2, padding=1)
        self.norm1 = nn.LayerNorm(mid_channels, eps=eps)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, stride=2, padding=1)
        self.norm2 = nn.LayerNorm(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        x = self.act(self.norm1(x)).permute(0, 3, 1, 2)
        return self.norm2(self.conv2(x).permute(0, 2, 3, 1))


class ConvDownsample(nn.Module):
    """Stride 2 between stages: 3×3 s2 conv → LN, NHWC in and out."""

    def __init__(self, in_channels: int, out_channels: int, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
