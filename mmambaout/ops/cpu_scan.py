"""The selective scan as a fused C++ kernel for CPUs (``csrc/selective_scan_cpu.cpp``), forward and
backward, compiled by ``setup.py`` (``pip install --no-build-isolation --no-deps -e .``).

Unlike the chunked and triton backends (``FUSED = False`` there) it takes delta as given with
delta_bias, softplus and D, and applies them in the kernel while it reads delta and writes y: on
CPU the separate whole-tensor passes for Δ = softplus(delta + bias) and D·u cost as much as the
scan itself. Its backward returns the gradients of D and delta_bias too.

Importing this module raises ImportError when the kernel is not built; ``selective_scan`` then
falls back to the chunked backend for 'auto' and refuses ``backend='cpu'``.
"""
import functools
from typing import Callable, Optional, Tuple

import torch

from . import _selective_scan_cpu

Tensor = torch.Tensor
FUSED = True
_CHUNK = 512  # time steps per buffer: long runs of each row for the prefetchers, and a block's
# buffers (160 KiB at n = 1) still in L2; 64 and 1024 were 1.5x and 2x slower (one thread)


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
            delta_bias: Optional[Tensor], delta_softplus: bool,
            chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor, Tuple[Tensor],
                                                        Callable[..., Tuple[Tensor, ...]]]:
    """y = Σ_n C·h + D·u (b, d, L), the last state (b, d, n), the state before every chunk, and
    the backward. Takes fp32 contiguous CPU tensors, B and C grouped (b, g, n, L), delta raw."""
    chunk = chunk_size or _CHUNK
    y, last_state, chunk_states = _selective_scan_cpu.forward(u, delta, A, B, C, D, delta_bias,
                                                             delta_softplus, chunk)
    return y, last_state, (chunk_states,), functools.partial(
        backward, delta_softplus=delta_softplus, chunk=chunk)


def backward(grad_y: Tensor, grad_last_state: Tensor, u: Tensor, delta: Tensor, A: Tensor,
             B: Tensor, C: Tensor, D: Optional[Tensor], delta_bias: Optional[Tensor],
             chunk_states: Tensor, *, delta_softplus: bool, chunk: int) -> Tuple[Tensor, ...]:
    """Gradients for (u, delta, A, B, C, D, delta_bias); None for D and delta_bias when absent."""
    return tuple(_selective_scan_cpu.backward(grad_y, grad_last_state, u, delta, A, B, C, D,
                                              delta_bias, delta_softplus, chunk_states, chunk))
