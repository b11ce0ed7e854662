"""The selective scan in plain PyTorch, vectorised across chunks of time: CPU and GPU, any length.

The recurrence h_t = a_t·h_{t-1} + x_t is solved a chunk position at a time, each step one op on
that position of every chunk at once; the chunks are then linked by the same scan over their ends,
recursively (``_scan_``). Nothing is exponentiated there: decays a_t = exp(Δ_t·A) are only
multiplied, so huge Δ underflow to 0 instead of overflowing to inf.

Everything is memory-bound, so the layout is chosen for it: states are time-major,
(L, b, g, d/g, n), which makes a step's slice contiguous, and inputs and outputs are transposed
once, whole, by PyTorch's blocked 2-d transpose. Time is cut into blocks of at most
``_BLOCK_STATES`` states to bound memory at any L and n. The backward is hand-written: the adjoint
gh_t = C_t·gy_t + a_{t+1}·gh_{t+1} is the same scan run backwards, over states recomputed from
each block's first state (kept by the forward) rather than stored, as mamba-ssm does.
"""
from typing import List, Optional, Tuple

import torch

Tensor = torch.Tensor

_BLOCK_STATES = 1 << 22  # fp32 states per time block: 16 MiB per buffer
_CHUNK = 16  # default chunk: CPU time is flat from 4 to 64 at L = 4096; 16 keeps slices in L2


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
            chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """y = Σ_n C·h (b, d, L), the last state (b, d, n), and each block's first state.

    Takes what ``SelectiveScan`` gets: fp32, B and C grouped (b, g, n, L), Δ already discretised.
    """
    groups, chunk = B.shape[1], chunk_size or _CHUNK
    u_t, dt = _time_major(u, groups), _time_major(delta, groups)
    B_t, C_t = _time_major(B), _time_major(C)
    A = A.view(groups, -1, A.shape[1])
    y = torch.empty_like(u_t)
    h = u.new_zeros(u.shape[0], groups, u.shape[1] // groups, A.shape[-1])
    first_states = []
    for block in _blocks(u_t.shape[0], h.numel()):
        first_states.append(h)
        _, states = _block_states(u_t[block], dt[block], A, B_t[block], h, chunk)
        _sum_states(states[1:], C_t[block], out=y[block])
        h = states[-1].clone()
    last_state = h.view(u.shape[0], -1, A.shape[-1]).clone()  # not a view: callers may modify it
    return _batch_major(y, u.shape), last_state, torch.stack(first_states)


def backward(grad_y: Tensor, grad_last_state: Tensor, u: Tensor, delta: Tensor, A: Tensor,
             B: Tensor, C: Tensor, first_states: Tensor,
             chunk_size: Optional[int] = None) -> Tuple[Tensor, ...]:
    """Gradients for (u, delta, A, B, C), block by block from the last."""
    groups, chunk = B.shape[1], chunk_size or _CHUNK
    u_t, dt, gy = (_time_major(x, groups) for x in (u, delta, grad_y))
    B_t, C_t = _time_major(B), _time_major(C)
    A_g = A.view(groups, -1, A.shape[1])
    grad_u, grad_delta, grad_B, grad_C = (torch.empty_like(x) for x in (u_t, dt, B_t, C_t))
    grad_A = torch.zeros_like(A_g)
    grad_end = grad_last_state.view(first_states.shape[1:])  # ∂/∂(state a block ends in)
    for block, first_state in zip(reversed(_blocks(u_t.shape[0], grad_end.numel())),
                                  first_states.flip(0)):
        decays, states = _block_states(u_t[block], dt[block], A_g, B_t[block], first_state, chunk)
        h_prev, h = states[:-1], states[1:]
        grad_h = torch.mul(gy[block], C_t[block], out=torch.empty_like(h))
        grad_h[-1] += grad_end
        _scan_(decays[1:], grad_h, chunk, reverse=True)  # a_{t+1} carries gh_{t+1} back to t
        grad_end = grad_h[0] * decays[0]
        _sum_channels(gy[block], h, out=grad_C[block])
        # ∂/∂(Δ_t·A) = gh_t·h_{t-1}·a_t as a_t = exp(Δ_t·A); in place: h is not needed again
        grad_log_decay = h_prev.mul_(grad_h).mul_(decays[:-1])
        grad_drive = _sum_states(grad_h, B_t[block])  # ∂/∂(Δ_t·u_t), as x_t = Δ_t·u_t·B_t
        torch.mul(grad_drive, dt[block], out=grad_u[block])
        _sum_states(grad_log_decay, A_g, out=grad_delta[block]).addcmul_(grad_drive, u_t[block])
        _sum_channels(dt[block] * u_t[block], grad_h, out=grad_B[block])
        grad_A += grad_log_decay.mul_(dt[block]).sum((0, 1))
    return (_batch_major(grad_u, u.shape), _batch_major(grad_delta, u.shape), grad_A.view(A.shape),
            _batch_major(grad_B, B.shape), _batch_major(grad_C, C.shape))


def _scan_(a: Tensor, x: Tensor, chunk: int, reverse: bool = False) -> None:
    """Solve x_t ← a_t·x_{t-1} + x_t in place along dim 0 (``reverse``: a_t·x_{t+1} + x_t)."""
    step = 1 if reverse else -1  # offset from t to the element scanned just before it
    order = range(x.shape[0])[::-step]
    num_chunks = len(order) // chunk
    if num_chunks < 2:
        for t in order[1:]:
            x[t].addcmul_(a[t], x[t + step])
        return
    start = min(order[0], order[num_chunks * chunk - 1])
    body = slice(start, start + num_chunks * chunk)
    a_at = a[body].unflatten(0, (num_chunks, chunk)).unbind(1)  # a_at[t]: position t of every chunk
    x_at = x[body].unflatten(0, (num_chunks, chunk)).unbind(1)
    first, *rest = range(chunk)[::-step]
    # 1. the state each chunk would end in from a zero start, and the chunk's total decay
    end, decay = x_at[first].clone(), a_at[first].clone()
    for t in rest:
        torch.addcmul(x_at[t], a_at[t], end, out=end)
        decay.mul_(a_at[t])
    # 2. the state each chunk really ends in: the same scan, over chunks
    _scan_(decay, end, chunk, reverse)
    # 3. every chunk again, from the state the chunk before it ended in
    later, earlier = slice(1, None), slice(None, -1)  # chunks but the first / the last
    if reverse:
        later, earlier = earlier, later
    x_at[first][later].addcmul_(a_at[first][later], end[earlier])
    for t in rest:
        x_at[t].addcmul_(a_at[t], x_at[t + step])
    # 4. the steps that fill no whole chunk
    for t in order[num_chunks * chunk:]:
        x[t].addcmul_(a[t], x[t + step])


def _block_states(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, first_state: Tensor,
                  chunk: int) -> Tuple[Tensor, Tensor]:
    """Decays a_t and states h_t of one block, each with an extra row (time-major, T+1 rows).

    states[0] is the state before the block, so states[:-1] is h_{t-1}; decays[1:] is a_{t+1}
    (its last row, padding, is never read).
    """
    shape = (dt.shape[0] + 1, *first_state.shape)
    decays = dt.new_empty(shape)
    torch.mul(dt, A, out=decays[:-1]).exp_()
    decays[-1] = 1
    states = dt.new_empty(shape)
    states[0] = first_state
    torch.mul(dt, B, out=states[1:]).mul_(u)  # x_t = Δ_t·B_t·u_t
    states[1].addcmul_(decays[0], first_state)
    _scan_(decays[:-1], states[1:], chunk)
    return decays, states


def _blocks(length: int, states_per_step: int) -> List[slice]:
    steps = max(1, _BLOCK_STATES // states_per_step)
    return [slice(start, min(start + steps, length)) for start in range(0, length, steps)]


def _time_major(x: Tensor, groups: Optional[int] = None) -> Tensor:
    """A time-major copy in state layout: (b, d, L) → (L, b, g, d/g, 1) given ``groups``,
    (b, g, n, L) → (L, b, g, 1, n) without."""
    length = x.shape[-1]
    batch = x.shape[0]
    shape = (batch, x.shape[1], 1, x.shape[2]) if groups is None else (batch, groups, -1, 1)
    x_t = x.reshape(-1, length).t().contiguous()  # the blocked 2-d transpose, not a strided copy
    return x_t.view(length, *shape)


def _batch_major(x_t: Tensor, shape: torch.Size) -> Tensor:
    """Back from ``_time_major``: a new tensor of ``shape``, time last (not a view: callers may
    modify it in place)."""
    x = x_t.new_empty(shape)
    x.view(-1, shape[-1]).copy_(x_t.view(shape[-1], -1).t())
    return x


def _sum_states(x: Tensor, y: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """Σ_n x·y, broadcasting, n kept as a size-1 dim (for n = 1 a plain product)."""
    if x.shape[-1] == 1:
        return torch.mul(x, y, out=out)
    product = torch.einsum('...n,...n->...', x, y).unsqueeze(-1)
    return product if out is None else out.copy_(product)


def _sum_channels(x: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """Σ over a group's channels of x·y: (..., d/g, 1) with (..., d/g, n) → (..., 1, n)."""
    return out.copy_(torch.einsum('...dx,...dn->...xn', x, y))
