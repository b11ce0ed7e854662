"""What MambaOut and VMamba share: a ConvStem, four stages of NHWC blocks with a ConvDownsample
in front of stages 1–3, a LayerNorm on every output, freezing, checkpointing and loading."""
from typing import Callable, Sequence, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import nn

from ..checkpoint import load_pretrained
from ..layers import ConvDownsample, ConvStem
from .utils import check_arch, check_out_indices

# (arch settings, width, drop-path rate) → one block
BlockFactory = Callable[[dict, int, float], nn.Module]


class HierarchicalBackbone(BaseModule):
    """Strides 4/8/16/32, NCHW outputs. Subclasses set ``arch_settings`` (each with ``depths``
    and ``dims``), ``eps``, ``convert_checkpoint`` and ``init_fresh_weights``, and pass the
    factory of their block.

    Args:
        out_indices: stages whose features are returned (0–3), each through its own LayerNorm
            as in the authors' detection and segmentation models.
        frozen_stages: -1 trains everything; 0 freezes the stem; k ≥ 1 freezes the stem and
            stages 0..k-1 (parameters fixed, modules kept in eval mode).
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        with_cp: activation checkpointing per block (saves memory, costs a second forward).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads a published checkpoint
            through ``convert_checkpoint``, reporting every key left out.
    """
    arch_settings: dict
    eps: float

    def __init__(self, arch: Union[str, dict], make_block: BlockFactory, in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 drop_path_rate: float = 0., with_cp: bool = False, init_cfg=None):
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
        drop_rates = iter(torch.linspace(0, drop_path_rate, sum(depths)).tolist())
        self.stages = nn.ModuleList(
            nn.Sequential(*[make_block(arch, dim, next(drop_rates)) for _ in range(depth)])
            for depth, dim in zip(depths, dims))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i], eps=self.eps))
        self._freeze_stages()

    @staticmethod
    def convert_checkpoint(state):
        """Published checkpoint keys → ours: ``(converted state, ignored keys)``."""
        raise NotImplementedError

    def init_fresh_weights(self):
        """Initialisation for training from scratch."""
        raise NotImplementedError

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, self.init_cfg['checkpoint'], self.convert_checkpoint,
                            expected_missing=tuple(f'norm{i}.' for i in self.out_indices))
            return
        self.init_fresh_weights()
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
