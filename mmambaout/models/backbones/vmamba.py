"""VMamba v2 (Liu et al., 2024) as a dense-prediction backbone for mmdet and mmseg."""
from typing import Sequence, Union

from mmengine.model.weight_init import trunc_normal_
from torch import nn

from ...registry import register_model
from ..checkpoint import StateDict, rename_keys
from ..layers import VSSBlock
from .base import HierarchicalBackbone

# Official VMamba v2 key → ours. VMamba ends layers.i with the downsampling into stage i + 1;
# here it starts stage i + 1 (as in MambaOut), hence the shifted index.
VMAMBA_TO_OURS = (
    (r'^patch_embed\.0\.', 'downsample_layers.0.conv1.'),
    (r'^patch_embed\.2\.', 'downsample_layers.0.norm1.'),
    (r'^patch_embed\.5\.', 'downsample_layers.0.conv2.'),
    (r'^patch_embed\.7\.', 'downsample_layers.0.norm2.'),
    (r'^layers\.(\d)\.downsample\.1\.', lambda m: f'downsample_layers.{int(m[1]) + 1}.conv.'),
    (r'^layers\.(\d)\.downsample\.3\.', lambda m: f'downsample_layers.{int(m[1]) + 1}.norm.'),
    (r'^layers\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
    (r'^outnorm(\d)\.', r'norm\1.'),  # VMamba's own detection/segmentation backbones
)


def convert_vmamba_checkpoint(state: StateDict):
    """Official VMamba v2 weights (classification files, or the ``backbone.*`` of VMamba's own
    detectors and segmentors, without that prefix) → this backbone's keys.

    Returns the converted tensors and the names of the classifier tensors dropped on the way.
    """
    return rename_keys(state, VMAMBA_TO_OURS, ignored_prefixes=('classifier.', ))


@register_model
class VMamba(HierarchicalBackbone):
    """VMamba v2 backbone: a ConvStem, then four stages of VSS blocks (strides 4–32).

    Args:
        arch: the released v2 models: 'tiny' ("s1l8", vssm1_tiny_0230s), 'small' and 'base'
            ("s2l15", vssm_small_0229 / vssm_base_0229; VMamba's released Mask R-CNN and UperNet
            use these three), 'tiny_s2l5', 'small_s1l20' and 'base_s1l20' (vssm1_tiny_0230,
            vssm1_small_0229s, vssm1_base_0229s: classification only); or
            ``dict(depths=..., dims=..., ssm_ratio=..., d_state=...)``.
        scan_backend: selective-scan implementation, see :func:`mmambaout.ops.selective_scan`.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH or URL)`` loads official VMamba v2
            weights (``{'model': ...}``), reporting every key left out.

    ``out_indices``, ``frozen_stages``, ``drop_path_rate``, ``with_cp``: see
    :class:`HierarchicalBackbone`.
    """
    arch_settings = {
        'tiny': dict(depths=(2, 2, 8, 2), dims=(96, 192, 384, 768), ssm_ratio=1.0, d_state=1),
        'tiny_s2l5': dict(depths=(2, 2, 5, 2), dims=(96, 192, 384, 768), ssm_ratio=2.0,
                          d_state=1),
        'small': dict(depths=(2, 2, 15, 2), dims=(96, 192, 384, 768), ssm_ratio=2.0, d_state=1),
        'base': dict(depths=(2, 2, 15, 2), dims=(128, 256, 512, 1024), ssm_ratio=2.0, d_state=1),
        'small_s1l20': dict(depths=(2, 2, 20, 2), dims=(96, 192, 384, 768), ssm_ratio=1.0,
                            d_state=1),
        'base_s1l20': dict(depths=(2, 2, 20, 2), dims=(128, 256, 512, 1024), ssm_ratio=1.0,
                           d_state=1),
    }
    eps = 1e-5  # VMamba's LayerNorms keep nn.LayerNorm's default
    convert_checkpoint = staticmethod(convert_vmamba_checkpoint)

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 scan_backend: str = 'auto',
                 init_cfg=None):

        def make_block(arch, dim, drop_path):
            return VSSBlock(dim, arch['ssm_ratio'], arch['d_state'], drop_path=drop_path,
                            scan_backend=scan_backend, eps=self.eps)

        super().__init__(arch, make_block, in_channels, out_indices, frozen_stages,
                         drop_path_rate, with_cp, init_cfg)

    def init_fresh_weights(self):
        # VMamba's: only linear layers are re-initialised; the SSM parameters keep Mamba's init
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
