"""A backbone's FLOPs split into token mixing and channel mixing.

Token mixing is the work that moves information between positions, with the projections that
belong to the mixer: depthwise convolutions (MambaOut's 7×7, SS2D's 3×3), the selective scan
modules (VMamba's whole SS2D, in_proj and out_proj included; the scan of MambaOut's SS2D twin)
and global attention (qkv, proj and the attention itself). Channel mixing is every other linear
layer: the Gated CNN block's fc1 and fc2, the MLPs. "Other" is the remaining leaf modules (stem
and downsampling convolutions, norms); "unattributed" the FLOPs of ops a container runs in its
own forward, outside any child module (a scan called as ``module.scan(x)`` rather than
``module(x)`` lands there), so that the four parts always sum to the total.

FLOPs are mmengine's count (one multiply-add = one FLOP), with the selective scan and
scaled-dot-product attention counted by this package's handles.
"""
from typing import Dict

import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

from ..models.layers import CrossSelectiveScan
from ..ops import scan_flop_handles
from .vit_reference import GlobalAttention, attention_flop_handles

PARTS = ('token mixing', 'channel mixing', 'other', 'unattributed')
TOKEN_MIXER_TYPES = (CrossSelectiveScan, GlobalAttention, nn.MultiheadAttention)


def is_token_mixer(module: nn.Module) -> bool:
    depthwise = (isinstance(module, nn.Conv2d) and module.groups > 1
                 and module.groups == module.in_channels)
    return depthwise or isinstance(module, TOKEN_MIXER_TYPES)


def flops_by_module(model: nn.Module, inputs: torch.Tensor) -> Dict[str, int]:
    """mmengine's FLOPs of every module (``''`` is the whole model) for one forward."""
    analyzer = FlopAnalyzer(model, (inputs, ))
    analyzer.set_op_handle(**scan_flop_handles(), **attention_flop_handles())
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    with torch.no_grad():
        return dict(analyzer.by_module())


def split_by_mixing(module: nn.Module, flops: Dict[str, int], name: str = '') -> Dict[str, int]:
    """``{part: FLOPs}`` of ``module`` (named ``name`` in ``flops``) for every part in PARTS."""
    parts = dict.fromkeys(PARTS, 0)
    own = flops.get(name, 0)
    children = list(module.named_children())
    if is_token_mixer(module):
        parts['token mixing'] = own
    elif isinstance(module, nn.Linear):
        parts['channel mixing'] = own
    elif not children:
        parts['other'] = own
    else:
        for child_name, child in children:
            path = f'{name}.{child_name}' if name else child_name
            for part, value in split_by_mixing(child, flops, path).items():
                parts[part] += value
        parts['unattributed'] += own - sum(parts.values())
    return parts


def mixing_flops(backbone: nn.Module, inputs: torch.Tensor) -> Dict[str, int]:
    """``{part: FLOPs}`` of one backbone forward for every part in PARTS, and ``'total'``."""
    flops = flops_by_module(backbone.eval(), inputs)
    return dict(split_by_mixing(backbone, flops), total=flops[''])
