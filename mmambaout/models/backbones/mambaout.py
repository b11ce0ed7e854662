"""MambaOut (Yu & Wang, 2024) as a dense-prediction backbone for mmdet and mmseg."""
from typing import Sequence, Union

from mmengine.model.weight_init import trunc_normal_
from torch import nn

from ...registry import register_model
from ..checkpoint import StateDict, rename_keys
from ..layers import GatedCNNBlock
from .base import HierarchicalBackbone


# timm's MambaOut keys → the official layout, which is ours
TIMM_TO_OURS = (
    (r'^stem\.', 'downsample_layers.0.'),
    (r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
)


def convert_mambaout_checkpoint(state: StateDict):
    """Official MambaOut or timm MambaOut weights → this backbone's keys (official layout).

    Returns the converted tensors and the names of the classifier tensors dropped on the way
    (official ``head.*`` and ``norm.*``, timm ``head.*``).
    """
    return rename_keys(state, TIMM_TO_OURS, ignored_prefixes=('head.', 'norm.'))


@register_model
class MambaOut(HierarchicalBackbone):
    """MambaOut backbone: a ConvStem, then four stages of Gated CNN blocks (strides 4–32).

    Args:
        arch: 'femto', 'kobe', 'tiny', 'small', 'base', or ``dict(depths=..., dims=...)``.
        token_mixer: 'gated_cnn' (MambaOut) or 'gated_cnn_ss2d', the controlled ablation in
            which every block also runs VMamba's four-direction selective scan (SS2D, state
            size ``ssm_d_state``) on its convolved channels — the SSM put back, nothing else.
        kernel_size, conv_ratio, expansion_ratio: Gated CNN block settings (7, 1.0, 8/3).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads official MambaOut or timm
            MambaOut weights (detected from the keys), reporting every key left out.

    ``out_indices``, ``frozen_stages``, ``drop_path_rate``, ``with_cp``: see
    :class:`HierarchicalBackbone`.
    """
    arch_settings = {
        'femto': dict(depths=(3, 3, 9, 3), dims=(48, 96, 192, 288)),
        'kobe': dict(depths=(3, 3, 15, 3), dims=(48, 96, 192, 288)),
        'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 576)),
        'small': dict(depths=(3, 4, 27, 3), dims=(96, 192, 384, 576)),
        'base': dict(depths=(3, 4, 27, 3), dims=(128, 256, 512, 768)),
    }
    token_mixers = ('gated_cnn', 'gated_cnn_ss2d')
    eps = 1e-6
    convert_checkpoint = staticmethod(convert_mambaout_checkpoint)

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
                 token_mixer: str = 'gated_cnn',
                 ssm_d_state: int = 1,
                 scan_backend: str = 'auto',
                 init_cfg=None):
        if token_mixer not in self.token_mixers:
            raise ValueError(f"Unknown MambaOut token_mixer '{token_mixer}'. Valid: "
                             f'{self.token_mixers}.')
        with_ssm = token_mixer == 'gated_cnn_ss2d'

        def make_block(arch, dim, drop_path):
            return GatedCNNBlock(dim, expansion_ratio, kernel_size, conv_ratio, drop_path,
                                 self.eps, ssm_d_state if with_ssm else None, scan_backend)

        super().__init__(arch, make_block, in_channels, out_indices, frozen_stages,
                         drop_path_rate, with_cp, init_cfg)
        self.token_mixer = token_mixer

    def init_fresh_weights(self):
        # Random (not zero) biases: in the zero padding of a detection batch, zero biases make
        # every LayerNorm see a zero-variance vector, and its gradient there grows by
        # 1/sqrt(eps) = 1000x per norm (gradient norms of 1e12 when training from scratch).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                trunc_normal_(m.weight, std=.02)
                trunc_normal_(m.bias, std=.02)
