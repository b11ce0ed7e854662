"""One registration helper for both toolboxes.

A class registered only in mmseg is invisible from mmdet's default scope (and vice versa), so
every model part of this package is registered in both registries under the same name.
"""
from mmdet.registry import MODELS as MMDET_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS

TOOLBOX_MODEL_REGISTRIES = (MMDET_MODELS, MMSEG_MODELS)


def register_model(cls):
    """Class decorator: register ``cls`` in mmdet's and mmseg's ``MODELS``."""
    for registry in TOOLBOX_MODEL_REGISTRIES:
        registry.register_module(module=cls)
    return cls
