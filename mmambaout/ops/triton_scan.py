"""The selective scan as Triton kernels, forward and backward; compiled on first use, no build step.

One program per (batch, group, block of channels) walks time a chunk at a time, with its states
h (channels × n) in registers: a chunk's tiles are loaded whole, its recurrence solved by an
associative scan along time, and its last state carried to the next chunk. The forward also
stores the state before every chunk; the backward walks the chunks from the last, recomputes
their states from those, and solves the adjoint gh_t = C_t·gy_t + a_{t+1}·gh_{t+1} by a reverse
scan. Gradients of what channels share are summed across programs: atomically for B and C (shared
by a group's channels; a buffer per program would be (channels / block) times their size), in torch
for A (per batch).

Importing this module needs triton; ``selective_scan`` imports it only when asked for it. With
``TRITON_INTERPRET=1`` set before triton is imported, the kernels run on CPU tensors (slowly).
"""
import functools
from typing import Callable, Optional, Tuple

import torch
import triton
import triton.language as tl

if not hasattr(triton, 'knobs'):  # the kernels read triton.knobs (Triton >= 3.4)
    raise ImportError(f'triton {triton.__version__} is too old for the triton backend: it needs '
                      'triton >= 3.4 (torch >= 2.8 brings it)')

Tensor = torch.Tensor


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
            chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor, Tuple[Tensor],
                                                        Callable[..., Tuple[Tensor, ...]]]:
    """y = Σ_n C·h (b, d, L), the last state (b, d, n), the state before every chunk, and the
    backward."""
    tiles = _Tiles(u, A, B, chunk_size)
    y = torch.empty_like(u)
    last_state = u.new_empty(u.shape[0], u.shape[1], A.shape[1])
    chunk_states = u.new_empty(*last_state.shape, tiles.num_chunks)
    _forward_kernel[tiles.grid](u, delta, A, B, C, y, last_state, chunk_states, *tiles.args,
                                **tiles.meta)
    return y, last_state, (chunk_states,), functools.partial(backward, chunk_size=chunk_size)


def backward(grad_y: Tensor, grad_last_state: Tensor, u: Tensor, delta: Tensor, A: Tensor,
             B: Tensor, C: Tensor, chunk_states: Tensor,
             chunk_size: Optional[int] = None) -> Tuple[Tensor, ...]:
    """Gradients for (u, delta, A, B, C)."""
    tiles = _Tiles(u, A, B, chunk_size)
    grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
    grad_A = u.new_empty(u.shape[0], *A.shape)  # per batch
    grad_B, grad_C = torch.zeros_like(B), torch.zeros_like(C)  # atomic sums over channels
    _backward_kernel[tiles.grid](u, delta, A, B, C, chunk_states, grad_y, grad_last_state, grad_u,
                                 grad_delta, grad_A, grad_B, grad_C, *tiles.args, **tiles.meta)
    return grad_u, grad_delta, grad_A.sum(0), grad_B, grad_C


class _Tiles:
    """Launch geometry, the same for forward and backward."""

    def __init__(self, u: Tensor, A: Tensor, B: Tensor, chunk_size: Optional[int]):
        if not (u.is_cuda or triton.knobs.runtime.interpret):
            raise ValueError('selective_scan: the triton backend needs CUDA tensors '
                             '(or TRITON_INTERPRET=1 for the CPU interpreter)')
        batch, dim, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        channels = dim // groups
        block_n = triton.next_power_of_2(state)
        # a few channels per program: enough programs to fill a GPU at small batch (untuned)
        block_d = min(triton.next_power_of_2(channels), max(1, 4 // block_n))
        chunk = triton.next_power_of_2(chunk_size or max(16, 1024 // (block_d * block_n)))
        self.num_chunks = triton.cdiv(length, chunk)
        self.grid = (triton.cdiv(channels, block_d), batch * groups)
        self.args = (dim, groups, state, length, self.num_chunks)
        self.meta = dict(BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk)


@triton.jit
def _then(a1, x1, a2, x2):
    """Compose two steps h ↦ a·h + x: first (a1, x1), then (a2, x2)."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _program_channels(A_ptr, dim, groups, state, length, BLOCK_D: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    """This program's (batch, group, block of channels): offsets of its rows of u, delta, y
    (b, d, L) and of B, C (b, g, n, L), of its states (b, d, n), their masks, and its A."""
    channels = dim // groups
    batch, group = tl.program_id(1) // groups, tl.program_id(1) % groups
    d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok, n_ok = d < channels, n < state
    channel = group * channels + d
    row = (batch * dim + channel) * length
    bc_row = ((batch * groups + group) * state + n) * length
    state_at = (batch * dim + channel)[:, None] * state + n[None, :]
    state_ok = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + channel[:, None] * state + n[None, :], mask=state_ok, other=0.)
    return row, bc_row, d_ok, n_ok, state_at, state_ok, A


@triton.jit
def _chunk_states(u_ptr, delta_ptr, B_ptr, row, bc_row, d_ok, n_ok, A, h0, pos, first, length):
    """Load Δ and u (D, T) and B (N, T) at ``pos``, and scan the states hs (D, N, T) from h0;
    also the decays a (D, N, T).

    Outside [first, length) Δ = 0: a = 1, x = 0, so the state carries over unchanged. With
    pos = chunk start + t - 1 and first = chunk start, hs is the state before each step.
    """
    inside = (pos >= first) & (pos < length)
    dt_ok = d_ok[:, None] & inside[None, :]
    bc_ok = n_ok[:, None] & inside[None, :]
    dt = tl.load(delta_ptr + row[:, None] + pos[None, :], mask=dt_ok, other=0.)
    u = tl.load(u_ptr + row[:, None] + pos[None, :], mask=dt_ok, other=0.)
    B = tl.load(B_ptr + bc_row[:, None] + pos[None, :], mask=bc_ok, other=0.)
    a = tl.exp(dt[:, None, :] * A[:, :, None])
    x = (dt * u)[:, None, :] * B[None, :, :]
    decay, drive = tl.associative_scan((a, x), 2, _then)
    return dt_ok, bc_ok, dt, u, B, a, decay * h0[:, :, None] + drive


@triton.jit
def _forward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, y_ptr, last_state_ptr,
                    chunk_states_ptr, dim, groups, state, length, num_chunks,
                    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    row, bc_row, d_ok, n_ok, state_at, state_ok, A = _program_channels(
        A_ptr, dim, groups, state, length, BLOCK_D, BLOCK_N)
    t = tl.arange(0, CHUNK)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(num_chunks):
        pos = c * CHUNK + t
        tl.store(chunk_states_ptr + state_at * num_chunks + c, h, mask=state_ok)
        dt_ok, bc_ok, dt, u, B, a, hs = _chunk_states(u_ptr, delta_ptr, B_ptr, row, bc_row, d_ok,
                                                      n_ok, A, h, pos, c * CHUNK, length)
        C = tl.load(C_ptr + bc_row[:, None] + pos[None, :], mask=bc_ok, other=0.)
        tl.store(y_ptr + row[:, None] + pos[None, :], tl.sum(hs * C[None, :, :], 1), mask=dt_ok)
        h = tl.sum(tl.where(t[None, None, :] == CHUNK - 1, hs, 0.), 2)
    tl.store(last_state_ptr + state_at, h, mask=state_ok)


@triton.jit
def _backward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, chunk_states_ptr, grad_y_ptr,
                     grad_last_state_ptr, grad_u_ptr, grad_delta_ptr, grad_A_ptr, grad_B_ptr,
                     grad_C_ptr, dim, groups, state, length, num_chunks,
                     BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    row, bc_row, d_ok, n_ok, state_at, state_ok, A = _program_channels(
        A_ptr, dim, groups, state, length, BLOCK_D, BLOCK_N)
    t = tl.arange(0, CHUNK)
    grad_A = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    # ∂/∂h at the first step after the chunk (the last state's gradient, after the last one)
    grad_next = tl.load(grad_last_state_ptr + state_at, mask=state_ok, other=0.)
    for i in range(num_chunks):
        c = num_chunks - 1 - i
        pos = c * CHUNK + t
        h0 = tl.load(chunk_states_ptr + state_at * num_chunks + c, mask=state_ok, other=0.)
        dt_ok, bc_ok, dt, u, B, a, hs = _chunk_states(u_ptr, delta_ptr, B_ptr, row, bc_row, d_ok,
                                                      n_ok, A, h0, pos, c * CHUNK, length)
        _, _, _, _, _, _, h_prev = _chunk_states(u_ptr, delta_ptr, B_ptr, row, bc_row, d_ok, n_ok,
                                                 A, h0, pos - 1, c * CHUNK, length)
        gy = tl.load(grad_y_ptr + row[:, None] + pos[None, :], mask=dt_ok, other=0.)
        C = tl.load(C_ptr + bc_row[:, None] + pos[None, :], mask=bc_ok, other=0.)
        next_ok = d_ok[:, None] & (pos + 1 < length)[None, :]
        dt_next = tl.load(delta_ptr + row[:, None] + pos[None, :] + 1, mask=next_ok, other=0.)
        # the adjoint, last step first: gh_t = C_t·gy_t + a_{t+1}·gh_{t+1}
        a_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        decay, drive = tl.associative_scan((a_next, C[None, :, :] * gy[:, None, :]), 2, _then,
                                           reverse=True)
        grad_h = drive + decay * grad_next[:, :, None]
        grad_next = tl.sum(tl.where(t[None, None, :] == 0, grad_h, 0.), 2)

        # ∂/∂(Δ_t·A) = gh_t·a_t·h_{t-1} (not gh_t·(h_t - x_t): that cancels where a_t ≪ 1)
        grad_log_decay = grad_h * a * h_prev
        grad_drive = tl.sum(grad_h * B[None, :, :], 1)  # ∂/∂(Δ_t·u_t)
        grad_dt = tl.sum(grad_log_decay * A[:, :, None], 1) + grad_drive * u
        tl.store(grad_u_ptr + row[:, None] + pos[None, :], grad_drive * dt, mask=dt_ok)
        tl.store(grad_delta_ptr + row[:, None] + pos[None, :], grad_dt, mask=dt_ok)
        grad_A += tl.sum(grad_log_decay * dt[:, None, :], 2)
        tl.atomic_add(grad_B_ptr + bc_row[:, None] + pos[None, :],
                      tl.sum(grad_h * (dt * u)[:, None, :], 0), mask=bc_ok)
        tl.atomic_add(grad_C_ptr + bc_row[:, None] + pos[None, :], tl.sum(hs * gy[:, None, :], 0),
                      mask=bc_ok)
    tl.store(grad_A_ptr + state_at, grad_A, mask=state_ok)
