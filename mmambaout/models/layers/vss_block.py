"""The VSS block of VMamba v2: a pre-norm SS2D mixer and a pre-norm MLP, each residual."""
import torch
from mmcv.cnn.bricks import DropPath
from torch import nn

from .ss2d import SS2D


class Mlp(nn.Sequential):
    """fc1 → GELU → fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)


class VSSBlock(nn.Module):
    """x + drop_path(SS2D(LN(x))), then x + drop_path(MLP(LN(x))); NHWC in and out."""

    def __init__(self, dim: int, ssm_ratio: float = 1.0, d_state: int = 1,
                 mlp_ratio: float = 4.0, drop_path: float = 0., scan_backend: str = 'auto',
                 eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.op = SS2D(dim, ssm_ratio, d_state, scan_backend, eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
