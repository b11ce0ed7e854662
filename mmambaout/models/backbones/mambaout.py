"""MambaOut (Yu & Wang, 2024) as a dense-prediction backbone for mmdet and mmseg."""
import re
from typing import Sequence, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn

from ...registry import register_model
from ..checkpoint import StateDict, load_pretrained
from ..layers import ConvDownsample, ConvStem, GatedCNNBlock
from .utils import check_arch, check_out_indices


def convert_mambaout_checkpoint(state: StateDict):
    """Official MambaOut or timm MambaOut weights → this backbone's keys (official layout).

    Returns the converted tensors and the names of the classifier tensors dropped on the way.
    """
    timm_to_official = (
        (r'^stem\.', 'downsample_layers.0.'),
        (r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.'),
        (r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
    )
    converted, ignored = {}, []
    for key, value in state.items():
        if key.startswith(('head.', 'norm.')):  # classifier (official `norm.`, timm `head.norm.`)
            ignored.append(key)
            continue
        for pattern, replacement in timm_to_official:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted, ignored


@register_model
class MambaOut(BaseModule):
    """MambaOut backbone: a ConvStem, then four stages of Gated CNN blocks (strides 4–32).

    Args:
        arch: 'femto', 'kobe', 'tiny', 'small', 'base', or ``dict(depths=..., dims=...)``.
        out_indices: stages whose features are returned (0–3), each through its own LayerNorm
            as in the authors' detection and segmentation models; outputs are NCHW.
        frozen_stages: -1 trains everything; 0 freezes the stem; k ≥ 1 freezes the stem and
            stages 0..k-1 (parameters fixed, modules kept in eval mode).
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        with_cp: activation checkpointing per block (saves memory, costs a second forward).
        kernel_size, conv_ratio, expansion_ratio: Gated CNN block settings (7, 1.0, 8/3).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads official MambaOut or timm
            MambaOut weights (detected from the keys), reporting every key left out.
    """
    arch_settings = {
        'femto': dict(depths=(3, 3, 9, 3), dims=(48, 96, 192, 288)),
        'kobe': dict(depths=(3, 3, 15, 3), dims=(48, 96, 192, 288)),
        'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 576)),
        'small': dict(depths=(3, 4, 27, 3), dims=(96, 192, 384, 576)),
        'base': dict(depths=(3, 4, 27, 3), dims=(128, 256, 512, 768)),
    }
    eps = 1e-6

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 kernel_size: int = 7,
                 conv_ratio: float = 1.0,
                 expansion_ratio: float = 8 / 3,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = check_arch(arch, self.arch_settings, type(self).__name__)
        depths, dims = arch['depths'], arch['dims']
        self.dims = tuple(dims)
        self.out_indices = check_out_indices(out_indices, len(depths))
        if not -1 <= frozen_stages <= len(depths):
            raise ValueError(f'frozen_stages must be in [-1, {len(depths)}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        self.downsample_layers = nn.ModuleList(
            [ConvStem(in_channels, dims[0], self.eps)] +
            [ConvDownsample(dims[i - 1], dims[i], self.eps) for i in range(1, len(dims))])
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            first = sum(depths[:i])
            self.stages.append(nn.Sequential(*[
                GatedCNNBlock(dim, expansion_ratio, kernel_size, conv_ratio,
                              drop_rates[first + j], self.eps) for j in range(depth)]))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i], eps=self.eps))
        self._freeze_stages()

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, self.init_cfg['checkpoint'], convert_mambaout_checkpoint,
                            expected_missing=tuple(f'norm{i}.' for i in self.out_indices))
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
        super().init_weights()

    def _frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        modules = [self.downsample_layers[0]]
        for i in range(self.frozen_stages):
            modules += [self.downsample_layers[i], self.stages[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if not (self.with_cp and x.requires_grad):
            return stage(x)
        for block in stage:
            x = cp.checkpoint(block, x, use_reentrant=False)
        return x

    def forward(self, x: torch.Tensor):
        outs = []
        for i, (downsample, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = self._run_stage(stage, downsample(x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
