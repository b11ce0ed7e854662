"""The theoretical receptive field of a network without a global path, along one axis.

A convolution with kernel k, stride s, padding p and dilation d maps output index o to inputs
o·s − p … o·s − p + (k − 1)·d. Composed over a chain of convolutions, output index i of the
last one sees the input columns ``start + i·jump`` … ``start + i·jump + size − 1``. Pointwise
layers (linear layers, norms acting per position, activations, gating) and residual branches
that skip a convolution add nothing, so for a network whose convolutions form a chain (each
reads what the previous one wrote, as in MambaOut's blocks, stem, downsampling layers and an
FCN head) the chain's window is the network's. A model with a module that mixes beyond a
window (a selective scan, attention, pooling) has no such bound and is refused.

mmseg upsamples the logits to the input bilinearly: an output pixel then sees the windows of
the two logits it is interpolated from (:func:`pixel_reach`).
"""
import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import nn

from ..models.layers import CrossSelectiveScan
from .vit_reference import GlobalAttention

UNBOUNDED = (CrossSelectiveScan, GlobalAttention, nn.MultiheadAttention, nn.Upsample,
             nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
             nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)


@dataclass(frozen=True)
class Window:
    """Output index i sees input columns ``start + i·jump`` … ``start + i·jump + size − 1``."""
    size: int = 1
    jump: int = 1
    start: int = 0

    def then(self, kernel: int, stride: int, padding: int, dilation: int) -> 'Window':
        """The window after one more convolution."""
        return Window(self.size + (kernel - 1) * dilation * self.jump, self.jump * stride,
                      self.start - padding * self.jump)

    def columns(self, index: int) -> Tuple[int, int]:
        """First and last input column seen by output ``index``."""
        first = self.start + index * self.jump
        return first, first + self.size - 1


def convolutions_in_order(model: nn.Module, inputs: torch.Tensor) -> List[nn.Conv2d]:
    """The model's 2-D convolutions in the order one forward pass calls them."""
    bounded = [name for name, m in model.named_modules() if isinstance(m, UNBOUNDED)]
    if bounded:
        raise ValueError(f'{type(model).__name__} mixes beyond any window ({bounded[0]} is a '
                         f'{type(model.get_submodule(bounded[0])).__name__}): its receptive '
                         'field is the whole input.')
    called = []
    hooks = [m.register_forward_hook(lambda m, args, out: called.append(m))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return called


def receptive_field(model: nn.Module, inputs: torch.Tensor, axis: int = -1) -> Window:
    """The window of ``model``'s output along ``axis`` (-1: columns, -2: rows), from the
    convolutions one forward pass on ``inputs`` calls (which must form a chain, see above)."""
    window = Window()
    for conv in convolutions_in_order(model, inputs):
        if isinstance(conv.padding, str):
            raise ValueError(f"{conv}: padding '{conv.padding}' is not supported; give numbers.")
        window = window.then(conv.kernel_size[axis], conv.stride[axis], conv.padding[axis],
                             conv.dilation[axis])
    return window


def interpolated_from(column: int, stride: int) -> List[int]:
    """The logits (by index) that bilinear upsampling by ``stride`` (align_corners False, as
    mmseg's ``resize``) mixes into output ``column``, ignoring the image's ends."""
    coordinate = (column + 0.5) / stride - 0.5
    below = math.floor(coordinate)
    return [below] if coordinate == below else [below, below + 1]


def pixel_reach(window: Window) -> Tuple[int, int]:
    """(least, most) columns an output pixel sees to one side, over all pixels and both sides,
    once the logits are upsampled to the input: a marker at most ``least`` columns away is
    within every target pixel's view, one more than ``most`` away within none."""
    reaches = []
    for column in range(window.jump):  # the pattern repeats with the logits' stride
        seen = [window.columns(i) for i in interpolated_from(column, window.jump)]
        reaches += [column - min(first for first, _ in seen),
                    max(last for _, last in seen) - column]
    return min(reaches), max(reaches)
