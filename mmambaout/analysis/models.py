"""Detectors and segmentors built from configs for measurement: random weights, no downloads,
and synthetic batches for them."""
import copy
import importlib

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from torch import nn

from ..utils.runtime import toolbox_of

# The ResNet-50 models each toolbox ships for the same task: the reference of a benchmark.
REFERENCE_CONFIGS = {
    'mmdet': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'mmseg': 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
}


def load_reference_config(toolbox: str) -> Config:
    """The toolbox's ResNet-50 Mask R-CNN (mmdet) or UperNet (mmseg) config."""
    return get_config(REFERENCE_CONFIGS[toolbox])


def drop_pretrained(node) -> None:
    """Remove every pretrained checkpoint from a model config, in place: each ``init_cfg`` of
    type Pretrained and mmseg's ``pretrained`` become None."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'pretrained' or (key == 'init_cfg' and isinstance(value, dict)
                                       and value.get('type') == 'Pretrained'):
                node[key] = None
            else:
                drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            drop_pretrained(value)


def build_model(cfg: Config) -> nn.Module:
    """The config's model with PyTorch's default random weights (``init_weights`` is not
    called: it would log every parameter) and BN for SyncBN."""
    toolbox = toolbox_of(cfg)
    importlib.import_module(f'{toolbox}.utils').register_all_modules(init_default_scope=True)
    model_cfg = copy.deepcopy(cfg.model)
    drop_pretrained(model_cfg)
    model = importlib.import_module(f'{toolbox}.registry').MODELS.build(model_cfg)
    return revert_sync_batchnorm(model)


def synthetic_batch(toolbox: str, height: int, width: int, size: int = 1) -> dict:
    """``size`` random ``height``×``width`` images as a dataloader yields them (before the data
    preprocessor), with ground truth for a training step: a few boxes and masks of class 1
    (mmdet), or labels 0 and 1 per pixel (mmseg)."""
    shape = (height, width)
    if toolbox == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        batch = demo_mm_inputs(size, [(3, *shape)] * size, num_items=[4] * size, num_classes=2,
                               with_mask=True)
        for sample in batch['data_samples']:
            sample.set_metainfo(dict(scale_factor=(1., 1.)))
        return batch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = [SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape),
                             gt_sem_seg=PixelData(data=torch.randint(0, 2, (1, *shape))))
               for _ in range(size)]
    images = [torch.randint(0, 256, (3, *shape), dtype=torch.uint8) for _ in range(size)]
    return dict(inputs=images, data_samples=samples)
