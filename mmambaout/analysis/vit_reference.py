"""The quadratic reference: a ViT-S/16-style stack of global-attention blocks.

Per block and token, the linear layers (qkv, proj, a 4× MLP) cost 12·D² multiply-adds and
attention (QKᵀ and AV) 2·L·D, so attention outgrows the rest once L > 6·D: the paper's
long-sequence threshold. No class token and no position embedding (a ViT at a new size
interpolates its embedding: negligible cost), so any input size a multiple of the patch runs.
"""
import math
from typing import Any, Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers.vss_block import Mlp
from ..registry import register_model


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all tokens, by ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) → (B, L, D)."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, D // self.num_heads).permute(
            2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, D / heads)
        return self.proj(x.transpose(1, 2).reshape(B, L, D))


class AttentionBlock(nn.Module):
    """x + attn(LN(x)), then x + MLP(LN(x)): a pre-norm ViT block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = GlobalAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_model
class ViTReference(nn.Module):
    """Patch embedding, ``depth`` global-attention blocks, LayerNorm; NCHW in, one NCHW map at
    stride ``patch_size`` out (a tuple, as the hierarchical backbones return).

    Defaults are ViT-S/16: D = 384, 6 heads, 12 blocks, threshold 6·D = 2304 tokens.
    """

    def __init__(self, dim: int = 384, depth: int = 12, num_heads: int = 6,
                 patch_size: int = 16, mlp_ratio: float = 4.):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.blocks = nn.Sequential(
            *[AttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor):
        x = self.patch_embed(x)
        height, width = x.shape[-2:]
        x = self.norm(self.blocks(x.flatten(2).transpose(1, 2)))
        return (x.transpose(1, 2).unflatten(2, (height, width)), )


def attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine op handle for ``aten::scaled_dot_product_attention``: the multiply-adds of QKᵀ
    and AV, 2·B·heads·L_q·L_k·d (mmengine has no rule for it and would count 0)."""
    from mmengine.analysis.jit_handles import get_shape

    *batch, queries, head_dim = get_shape(inputs[0])
    keys = get_shape(inputs[1])[-2]
    return 2 * math.prod(batch) * queries * keys * head_dim


def attention_flop_handles() -> Dict[str, Callable]:
    """``{op name: handle}`` for ``FlopAnalyzer.set_op_handle(**attention_flop_handles())``."""
    return {'aten::scaled_dot_product_attention': attention_flop_jit}
