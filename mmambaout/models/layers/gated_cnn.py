"""The Gated CNN block: a Mamba block without its state-space model (or with it, for the
controlled ablation)."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import nn

from .ss2d import CrossSelectiveScan


class GatedCNNBlock(nn.Module):
    """LN → fc1 → split (gate g, identity i, conv c) → depthwise conv on c → fc2(act(g)·[i, c]).

    Works on NHWC tensors. Only ``conv_ratio·dim`` channels are convolved (the paper's choice for
    speed); the rest pass through unchanged and are gated all the same.

    Args:
        ssm_d_state: None for MambaOut. A state size puts the SSM back, as in a Mamba block:
            the convolved channels then go through SiLU and VMamba's four-direction selective
            scan (``ssm``), with everything else unchanged.
    """

    def __init__(self, dim: int, expansion_ratio: float = 8 / 3, kernel_size: int = 7,
                 conv_ratio: float = 1.0, drop_path: float = 0., eps: float = 1e-6,
                 ssm_d_state: Optional[int] = None, scan_backend: str = 'auto'):
        super().__init__()
        hidden = int(expansion_ratio * dim)
        conv_channels = int(conv_ratio * dim)
        self.hidden = hidden
        self.identity_channels, self.conv_channels = hidden - conv_channels, conv_channels
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(conv_channels, conv_channels, kernel_size,
                              padding=kernel_size // 2, groups=conv_channels)
        self.ssm = None if ssm_d_state is None else CrossSelectiveScan(
            conv_channels, ssm_d_state, math.ceil(dim / 16), scan_backend, eps)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def mix_tokens(self, c: torch.Tensor) -> torch.Tensor:
        """The convolved branch, NHWC in and out."""
        c = self.conv(c.permute(0, 3, 1, 2))
        return c.permute(0, 2, 3, 1) if self.ssm is None else self.ssm(F.silu(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.norm(x))
        if torch.is_grad_enabled():
            # as timm: one split and one cat, whose backwards are a cat and a split (slicing c
            # out of (i, c) would cost a zero-filled gradient per slice), and no in-place
            # product (autograd would keep a copy of act(g) for it)
            g, i, c = torch.split(h, (self.hidden, self.identity_channels, self.conv_channels),
                                  dim=-1)
            gated = self.act(g) * torch.cat((i, self.mix_tokens(c)), dim=-1)
            return self.drop_path(self.fc2(gated)) + x
        # inference: write the mixed channels back in place, saving a full-size concat
        g, ic = torch.split(h, self.hidden, dim=-1)
        c = ic[..., self.identity_channels:]
        c.copy_(self.mix_tokens(c))
        return self.drop_path(self.fc2(self.act(g).mul_(ic))).add_(x)
