"""The selective scan as a fused C++ kernel for CPUs (``csrc/selective_scan_cpu.cpp``), forward and
backward, compiled by ``setup.py`` (``pip install --no-build-isolation --no-deps -e .``).

Unlike the chunked backend (``FUSED = False`` there) it takes delta as given with
delta_bias, softplus and D, and applies them in the kernel while it reads delta and writes y: on
CPU the separate whole-tensor passes for Δ = softplus(delta + bias) and D·u cost as much as the
scan itself. Its backward returns the gradients of D and delta_bias too.

Its hot functions are compiled for several instruction sets (on x86-64: 'avx512', 'avx2',
'baseline'); the best one the CPU runs is used unless the environment variable
``MMAMBAOUT_CPU_SCAN_ISA`` names another when this module is imported, or
:func:`use_instruction_set` does later. Results are the same bits from run to run and at every
thread count (for one instruction set: they differ in rounding between sets).

Importing this module raises ImportError when the kernel is not built; ``selective_scan`` then
falls back to the chunked backend for 'auto' and refuses ``backend='cpu'``.
"""
import functools
import os
from typing import Callable, Optional, Tuple

import torch

from . import _selective_scan_cpu

Tensor = torch.Tensor
ISA_VARIABLE = 'MMAMBAOUT_CPU_SCAN_ISA'
# every instruction set compiled into this build, best first: whether this CPU runs it
INSTRUCTION_SETS = dict(_selective_scan_cpu.instruction_sets())
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


def use_instruction_set(name: str) -> None:
    """Run the kernel's copy compiled for ``name`` from now on, in this process."""
    if name not in INSTRUCTION_SETS:
        raise ValueError(f'selective_scan cpu kernel: no instruction set {name!r}; this build has '
                         f'{", ".join(INSTRUCTION_SETS)}')
    if not INSTRUCTION_SETS[name]:
        raise ValueError(f'selective_scan cpu kernel: this CPU cannot run instruction set '
                         f'{name!r}; it runs {", ".join(_runnable())}')
    _selective_scan_cpu.use_instruction_set(name)


def instruction_set() -> str:
    """The instruction set whose copy of the kernel runs."""
    return _selective_scan_cpu.instruction_set()


def _runnable() -> list:
    return [name for name, runs in INSTRUCTION_SETS.items() if runs]


def _use_requested_instruction_set() -> None:
    """The one ``MMAMBAOUT_CPU_SCAN_ISA`` names, else the best this CPU runs."""
    name = os.environ.get(ISA_VARIABLE) or _runnable()[0]
    try:
        use_instruction_set(name)
    except ValueError as error:
        raise ValueError(f'{error} (asked for by {ISA_VARIABLE}={name})') from None


_use_requested_instruction_set()
