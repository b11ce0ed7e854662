"""Deterministic generators of small synthetic datasets in real formats, for demos and tests.

Only numpy and Pillow are needed to generate them; nothing here imports mmdet or mmseg.
"""
from .toy_ade import TOY_ADE_CLASSES, TOY_ADE_LABEL_IDS, ensure_toy_ade, make_toy_ade
from .toy_coco import TOY_COCO_CLASSES, ensure_toy_coco, make_toy_coco
from .toy_longrange import TOY_LONGRANGE_CLASSES, ensure_toy_longrange, make_toy_longrange

__all__ = [
    'TOY_ADE_CLASSES', 'TOY_ADE_LABEL_IDS', 'TOY_COCO_CLASSES', 'TOY_LONGRANGE_CLASSES',
    'ensure_toy_ade', 'ensure_toy_coco', 'ensure_toy_longrange',
    'make_toy_ade', 'make_toy_coco', 'make_toy_longrange',
]
