"""``selective_scan``: mamba-ssm's ``selective_scan_fn``, one function over several backends."""
import functools
import importlib
import math
import warnings
from types import ModuleType
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import chunked
from .reference import selective_scan_reference

Tensor = torch.Tensor
BACKENDS = ('auto', 'reference', 'chunked', 'triton', 'cpu')
BUILD_HINT = ('build it with `pip install --no-build-isolation --use-pep517 --no-deps -e .` in the '
              'mmambaout checkout, as `make install` does (needs a C++ compiler)')


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
            'triton' (GPU kernels), 'cpu' (a fused C++ kernel compiled at install time, CPU
            tensors), or 'auto': triton for CUDA tensors when it imports, cpu for CPU tensors
            when it is built (else, with a warning, chunked), chunked for other devices.
        chunk_size: chunk length of the chunked, triton and cpu backends, at least 2 (None: their
            default; triton rounds it up to a power of two).

    Computes in float32 whatever the inputs (bf16/fp16 would overflow), returns u's dtype.
    """
    B, C = _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 2):
        raise ValueError(f'selective_scan: chunk_size must be an int >= 2, got {chunk_size!r}')
    kernel = _kernel(backend, u)
    dtype = u.dtype
    # a kernel with NATIVE_DTYPES reads half inputs as they are and writes y in u's dtype;
    # with a gate, y stays float32 until gated, so that it is rounded once
    native = getattr(kernel, 'NATIVE_DTYPES', False) and z is None
    u, delta, B, C = (t.contiguous() if native else t.float().contiguous()
                      for t in (u, delta, B, C))
    A, D, z, delta_bias = (None if t is None else t.float().contiguous()
                           for t in (A, D, z, delta_bias))
    if kernel is None:
        out, last_state = selective_scan_reference(u, delta, A, B, C, D, z, delta_bias,
                                                   delta_softplus)
    else:
        if not getattr(kernel, 'FUSED', False):  # the kernel takes Δ, made here
            if delta_bias is not None:
                delta = delta + delta_bias[:, None]
            if delta_softplus:
                delta = F.softplus(delta)
            delta_bias, delta_softplus = None, False
        out, last_state = SelectiveScan.apply(u, delta, A, B, C, D, delta_bias, delta_softplus,
                                              kernel, chunk_size)
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
    and its forward says which backward undoes it. A module with ``FUSED = True`` (cpu_scan,
    triton_scan) takes more: ``forward(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk_size)`` with delta not
    yet discretised, adds D·u itself, and its backward, given D and delta_bias after C, also
    returns their gradients; ``selective_scan`` discretises Δ for the other modules and passes no
    delta_bias here. A module with ``NATIVE_DTYPES = True`` (triton_scan) gets u, delta, B and C
    in their own dtypes (it computes in float32) and returns y in u's. Whatever the backend, a jit trace shows one ``prim::PythonOp.SelectiveScan``
    node, which ``flops.py`` counts.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D: Optional[Tensor], delta_bias: Optional[Tensor],
                delta_softplus: bool, kernel: ModuleType, chunk_size: Optional[int]):
        ctx.fused = getattr(kernel, 'FUSED', False)
        if ctx.fused:
            y, last_state, residuals, ctx.kernel_backward = kernel.forward(
                u, delta, A, B, C, D, delta_bias, delta_softplus, chunk_size)
        else:
            y, last_state, residuals, ctx.kernel_backward = kernel.forward(u, delta, A, B, C,
                                                                            chunk_size)
            if D is not None:
                y.addcmul_(u, D[:, None])
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, *residuals)
        return y, last_state

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_last_state):
        u, delta, A, B, C, D, delta_bias, *residuals = ctx.saved_tensors
        grad_y, grad_last_state = grad_y.contiguous(), grad_last_state.contiguous()
        if ctx.fused:
            grads = ctx.kernel_backward(grad_y, grad_last_state, u, delta, A, B, C, D, delta_bias,
                                        *residuals)
            return (*grads, None, None, None)
        grad_u, *grads = ctx.kernel_backward(grad_y, grad_last_state, u, delta, A, B, C,
                                             *residuals)
        grad_D = None
        if D is not None:
            grad_u.addcmul_(grad_y, D[:, None])
            grad_D = torch.einsum('bdl,bdl->d', grad_y, u)
        return (grad_u, *grads, grad_D, None, None, None, None)


def _kernel(backend: str, u: Tensor) -> Optional[ModuleType]:
    """The backend module SelectiveScan runs, or None for the reference."""
    if backend not in BACKENDS:
        raise ValueError(f'selective_scan: backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'reference':
        return None
    if backend == 'cpu' or (backend == 'auto' and u.device.type == 'cpu'):
        if u.device.type != 'cpu':
            raise ValueError(f"selective_scan: backend='cpu' needs CPU tensors, got {u.device}; "
                             "use 'auto', 'chunked' or 'triton'")
        return _optional_kernel('cpu', backend)
    if backend == 'chunked' or (backend == 'auto' and not u.is_cuda):
        return chunked
    return _optional_kernel('triton', backend)


# backend → (its module, what it needs, the tensors 'auto' gives it, how to get it)
OPTIONAL_BACKENDS = {
    'cpu': ('cpu_scan', 'the compiled CPU kernel', 'CPU', BUILD_HINT),
    'triton': ('triton_scan', 'triton >= 3.4', 'CUDA',
               'install triton >= 3.4 (torch >= 2.8 brings it)'),
}


def _optional_kernel(name: str, backend: str) -> ModuleType:
    """Backend ``name``'s module; where it fails to import, an error if it was asked for by
    name, else (for 'auto') chunked, with a warning, once."""
    module, needs, tensors, fix = OPTIONAL_BACKENDS[name]
    kernel = _import_backend(module)
    if not isinstance(kernel, ImportError):
        return kernel
    if backend == name:
        raise ValueError(f"selective_scan: backend='{name}' needs {needs}, which failed to "
                         f'import ({kernel}); {fix}')
    _warn_once(f'selective_scan: {needs} failed to import ({kernel}), so {tensors} tensors '
               f'take the slower chunked backend; {fix}')
    return chunked


@functools.lru_cache(maxsize=None)
def _import_backend(name: str) -> Union[ModuleType, ImportError]:
    """The backend module ``mmambaout.ops.<name>``, or why it failed to import."""
    try:
        return importlib.import_module(f'.{name}', __package__)
    except ImportError as error:
        return error


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=5)


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                  z: Optional[Tensor], delta_bias: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Raise a ValueError naming the first bad argument; return B and C as (b, g, n, L), both
    with the same g."""
    inputs = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    for name, tensor in inputs.items():  # the backends compute in float32: no ints, no complex
        if tensor is not None and not tensor.is_floating_point():
            raise ValueError(f'selective_scan: {name} must be a real floating-point tensor, got '
                             f'{tensor.dtype}')
    if u.dim() != 3 or 0 in u.shape:  # empty sizes: the chunked backend cannot view them
        raise ValueError(f'selective_scan: u must be (b, d, L), each at least 1, got shape '
                         f'{tuple(u.shape)}')
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim or A.shape[1] == 0:
        raise ValueError(f'selective_scan: A must be (d, n) = ({dim}, n), n at least 1, got '
                         f'shape {tuple(A.shape)}')
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
                != (batch, state, length) or tensor.shape[1] == 0 or dim % tensor.shape[1]):
            raise ValueError(
                f'selective_scan: {name} must be (b, n, L) = {(batch, state, length)} or '
                f'(b, g, n, L) = ({batch}, g, {state}, {length}) with g dividing d = {dim}, '
                f'got shape {tuple(given.shape)}')
        grouped.append(tensor)
    # B and C may have group counts of their own (as in mamba-ssm); the backends read one count,
    # so both are split into lcm(g_B, g_C) groups, which still divides d: group j of B's new
    # set is its old group j // (g / g_B), and a channel reads the same values as before.
    groups = math.lcm(*(tensor.shape[1] for tensor in grouped))
    return tuple(tensor if tensor.shape[1] == groups
                 else tensor.repeat_interleave(groups // tensor.shape[1], dim=1)
                 for tensor in grouped)
