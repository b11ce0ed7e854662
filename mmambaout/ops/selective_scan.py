"""``selective_scan``: mamba-ssm's ``selective_scan_fn``, one function over several backends."""
import functools
from types import ModuleType
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import chunked
from .reference import selective_scan_reference

Tensor = torch.Tensor
BACKENDS = ('auto', 'reference', 'chunked', 'triton')


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                   return_last_state: bool = False, *, backend: str = 'auto',
                   chunk_size: Optional[int] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """The selective scan of Mamba, with mamba-ssm's ``selective_scan_fn`` signature and maths.

    For every batch b, channel c and state n::

        Δ = softplus(delta + delta_bias) (softplus only with ``delta_softplus``)
        h_t = exp(Δ_t·A) · h_{t-1} + Δ_t·B_t·u_t,   h_{-1} = 0
        y_t = Σ_n C_t·h_t + D·u_t,   out = y · silu(z)

    Args:
        u, delta: (b, d, L). A: (d, n), real. B, C: (b, n, L), shared by all channels, or
            (b, g, n, L) in g groups, channel c using group c // (d/g).
        D, delta_bias: (d,). z: (b, d, L), a gate.
        return_last_state: also return h_{L-1}, (b, d, n) in float32.
        backend: 'reference' (a loop over L, the tests' oracle), 'chunked' (PyTorch, CPU/GPU),
            'triton' (GPU kernels), or 'auto': triton for CUDA tensors when it imports, else
            chunked.
        chunk_size: chunk length of the chunked and triton backends, at least 2 (None: their
            default; triton rounds it up to a power of two).

    Computes in float32 whatever the inputs (bf16/fp16 would overflow), returns u's dtype.
    """
    B, C = _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 2):
        raise ValueError(f'selective_scan: chunk_size must be an int >= 2, got {chunk_size!r}')
    kernel = _kernel(backend, u)
    dtype = u.dtype
    u, delta, A, B, C, D, z, delta_bias = (None if t is None else t.float().contiguous()
                                           for t in (u, delta, A, B, C, D, z, delta_bias))
    if kernel is None:
        out, last_state = selective_scan_reference(u, delta, A, B, C, D, z, delta_bias,
                                                   delta_softplus)
    else:
        if delta_bias is not None:
            delta = delta + delta_bias[:, None]
        if delta_softplus:
            delta = F.softplus(delta)
        out, last_state = SelectiveScan.apply(u, delta, A, B, C, D, kernel, chunk_size)
        if z is not None:
            out = out * F.silu(z)
    out = out.to(dtype)
    return (out, last_state) if return_last_state else out


class SelectiveScan(torch.autograd.Function):
    """y_t = Σ_n C_t·h_t + D·u_t with h_t = exp(Δ_t·A)·h_{t-1} + Δ_t·B_t·u_t, as one autograd
    node (D inside: its terms are added in place to the kernel's fresh y and ∂u, which saves two
    whole-tensor passes and two allocations).

    ``kernel`` is a backend module with ``forward(u, delta, A, B, C, chunk_size)`` returning
    (y, last state, residuals, backward), where ``backward(grad_y, grad_last_state, u, delta, A, B,
    C, *residuals)`` returns the five gradients: a backend may solve a call one of several ways,
    and its forward says which backward undoes it. Whatever the backend, a jit trace shows one
    ``prim::PythonOp.SelectiveScan`` node, which ``flops.py`` counts.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D: Optional[Tensor], kernel: ModuleType,
                chunk_size: Optional[int]):
        y, last_state, residuals, ctx.kernel_backward = kernel.forward(u, delta, A, B, C,
                                                                        chunk_size)
        if D is not None:
            y.addcmul_(u, D[:, None])
        ctx.save_for_backward(u, delta, A, B, C, D, *residuals)
        return y, last_state

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_last_state):
        u, delta, A, B, C, D, *residuals = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        grad_u, *grads = ctx.kernel_backward(grad_y, grad_last_state.contiguous(), u, delta, A, B,
                                             C, *residuals)
        grad_D = None
        if D is not None:
            grad_u.addcmul_(grad_y, D[:, None])
            grad_D = torch.einsum('bdl,bdl->d', grad_y, u)
        return (grad_u, *grads, grad_D, None, None)


def _kernel(backend: str, u: Tensor) -> Optional[ModuleType]:
    """The backend module SelectiveScan runs, or None for the reference."""
    if backend not in BACKENDS:
        raise ValueError(f'selective_scan: backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'reference':
        return None
    if backend == 'chunked' or (backend == 'auto' and not u.is_cuda):
        return chunked
    triton_kernel = _triton_kernel()
    if triton_kernel is None and backend == 'triton':
        raise ValueError("selective_scan: backend='triton' needs triton, which failed to import")
    return triton_kernel or chunked


@functools.lru_cache(maxsize=None)
def _triton_kernel() -> Optional[ModuleType]:
    try:
        from . import triton_scan
    except ImportError:
        return None
    return triton_scan


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                  z: Optional[Tensor], delta_bias: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Raise a ValueError naming the first bad argument; return B and C as (b, g, n, L)."""
    if u.dim() != 3:
        raise ValueError(f'selective_scan: u must be (b, d, L), got shape {tuple(u.shape)}')
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f'selective_scan: A must be real (d, n) = ({dim}, n), got shape '
                         f'{tuple(A.shape)}{" complex" if A.is_complex() else ""}')
    state = A.shape[1]
    expected = {'delta': (delta, (batch, dim, length)), 'z': (z, (batch, dim, length)),
                'D': (D, (dim,)), 'delta_bias': (delta_bias, (dim,))}
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f'selective_scan: {name} must have shape {shape} like u, '
                             f'got {tuple(tensor.shape)}')
    grouped = []
    for name, given in (('B', B), ('C', C)):
        tensor = given.unsqueeze(1) if given.dim() == 3 else given
        if (tensor.dim() != 4 or (tensor.shape[0], tensor.shape[2], tensor.shape[3])
                != (batch, state, length) or dim % tensor.shape[1]):
            raise ValueError(
                f'selective_scan: {name} must be (b, n, L) = {(batch, state, length)} or '
                f'(b, g, n, L) = ({batch}, g, {state}, {length}) with g dividing d = {dim}, '
                f'got shape {tuple(given.shape)}')
        grouped.append(tensor)
    return tuple(grouped)
