"""The paper's long-sequence test, stage by stage: is the token count L above 6·D?

For a Transformer block of width D over L tokens, the linear layers cost 24·D²·L FLOPs and
attention 4·D·L², so the quadratic part dominates once L / 6D > 1 (Yu & Wang, MambaOut, §3).
"""
import copy
from dataclasses import dataclass
from typing import List, Tuple

import torch
from mmengine.config import Config
from torch import nn

LONG_SEQUENCE_FACTOR = 6


@dataclass(frozen=True)
class StageSequence:
    """One backbone output: its feature map as a token sequence of width ``channels``."""
    stage: int
    height: int
    width: int
    channels: int

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def threshold(self) -> int:
        return LONG_SEQUENCE_FACTOR * self.channels

    @property
    def ratio(self) -> float:
        return self.tokens / self.threshold

    @property
    def is_long(self) -> bool:
        return self.tokens > self.threshold


def stage_sequences(backbone: nn.Module, height: int, width: int) -> List[StageSequence]:
    """The sequences of every backbone output for one ``height``×``width`` input.

    Shapes come from a forward pass of a copy on the meta device (no data, no arithmetic), so
    they are exactly the backbone's, padding and ceil-rounding strides included.
    """
    shadow = copy.deepcopy(backbone).eval().to('meta')
    with torch.no_grad():
        outputs = shadow(torch.empty(1, 3, height, width, device='meta'))
    return [StageSequence(i, *out.shape[2:], out.shape[1]) for i, out in enumerate(outputs)]


def evaluation_pipeline(cfg: Config) -> list:
    """The test dataloader's pipeline (through dataset wrappers)."""
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset:
        dataset = dataset.dataset
    return dataset.pipeline


def pipeline_input_shape(cfg: Config) -> Tuple[int, int]:
    """(H, W) of the largest landscape image the test pipeline's ``Resize`` produces.

    With ``keep_ratio`` the scale bounds the long and the short side, e.g. COCO's (1333, 800)
    → 800×1333 and ADE20K's (2048, 512) → 512×2048; without it the scale is (W, H).
    """
    resizes = [t for t in evaluation_pipeline(cfg) if t['type'] == 'Resize' and 'scale' in t]
    if not resizes:
        raise ValueError('The test pipeline has no Resize with a scale: give the input size.')
    scale = resizes[0]['scale']
    scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
    if resizes[0].get('keep_ratio', False):
        return min(scale), max(scale)
    return scale[1], scale[0]
