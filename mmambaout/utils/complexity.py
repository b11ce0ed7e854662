"""Parameters and FLOPs of a detector or segmentor built from its config, per top-level part.

As mmdet's and mmseg's get_flops tools: a random image goes through the model's data
preprocessor, then the tensor forward (``_forward``) is traced by mmengine's ``FlopAnalyzer``;
for detectors that is backbone, neck, RPN and RoI heads on the RPN's proposals. The auxiliary
head of a segmentor is removed first (it only runs in training), as mmseg's tool does.
mmengine counts one multiply-add as one FLOP and skips operators it has no rule for; those are
reported in ``uncounted_ops``.
"""
import importlib
from functools import partial
from typing import Dict, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.structures import BaseDataElement

from ..ops import scan_flop_handles
from .runtime import toolbox_of

# Input (H, W) of the MambaOut paper's tables: COCO Mask R-CNN, ADE20K UperNet.
PAPER_SHAPES = {'mmdet': (800, 1280), 'mmseg': (512, 2048)}


def build_eval_model(cfg: Config) -> torch.nn.Module:
    """The config's model in eval mode, without pretrained loading or training-only parts."""
    toolbox = toolbox_of(cfg)
    importlib.import_module(f'{toolbox}.utils').register_all_modules(init_default_scope=True)
    model = importlib.import_module(f'{toolbox}.registry').MODELS.build(cfg.model)
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None
    return revert_sync_batchnorm(model).eval()


def preprocessed_image(model: torch.nn.Module, height: int, width: int) -> dict:
    """A random ``height``×``width`` image through the model's data preprocessor (which may pad
    it), with the metadata the heads read."""
    shape = (height, width)
    sample = BaseDataElement(metainfo=dict(
        img_shape=shape, ori_shape=shape, pad_shape=shape, scale_factor=(1., 1.)))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    return model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), False)


def model_complexity(cfg: Config, height: int, width: int) -> dict:
    """Returns ``input_shape`` (as fed, after padding), ``parts`` ({name: (params, flops)} for
    every top-level part with parameters, and 'total'), and ``uncounted_ops`` ({op: calls})."""
    model = build_eval_model(cfg)
    data = preprocessed_image(model, height, width)
    # Trace the tensor forward with the samples bound, as mmdet's get_flops does.
    model.forward = partial(model.forward, data_samples=data['data_samples'], mode='tensor')
    analyzer = FlopAnalyzer(model, (data['inputs'], ))
    analyzer.set_op_handle(**scan_flop_handles())  # else the selective scan counts as 0
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    with torch.no_grad():
        flops = analyzer.by_module()
    params = parameter_count(model)
    parts: Dict[str, Tuple[int, int]] = {
        name: (params[name], flops.get(name, 0))
        for name, _ in model.named_children() if params.get(name)}
    parts['total'] = (params[''], flops[''])
    return dict(input_shape=tuple(data['inputs'].shape), parts=parts,
                uncounted_ops=dict(analyzer.unsupported_ops()))
