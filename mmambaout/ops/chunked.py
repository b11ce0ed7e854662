"""The selective scan in plain PyTorch, vectorised across chunks of time: CPU and GPU, any length.

Two exact algorithms, chosen per call:

* **log-space** (the fast one). Within a chunk of T steps the decays are cumulated as
  E_t = exp(Σ_{s≤t} Δ_s·A), so the chunk's states from a zero start are E_t·cumsum(x_s / E_s): a
  few whole-tensor ops and two within-chunk cumulative sums (GEMMs with a triangular matrix) in
  the inputs' own (b, d, L) layout, with no transposes and no Python loop over time. The chunks
  are then linked by a scan over their ends (``_scan_``, below, on tensors T times smaller).
  This is exact while 1/E stays well inside float32, i.e. while no chunk's decays multiply to
  less than e^-40 (or more than e^40): with chunks of 16, while Δ·A > -2.5 per step on average
  (states keep more than 8 % of themselves per step). Beyond that, chunks a quarter as long
  take 4x the decay, and beyond that (every step forgets almost all), the other algorithm:
* **multiply-only** (the safe one). The recurrence h_t = a_t·h_{t-1} + x_t is solved a chunk
  position at a time, each step one op on that position of every chunk at once, with decays
  a_t = exp(Δ_t·A) only multiplied, so huge Δ underflow to 0 instead of overflowing to inf.
  Steps are slices of time-major copies, (L, b, g, d/g, n), made contiguous by PyTorch's blocked
  2-d transpose, and time is cut into blocks of at most ``_BLOCK_STATES`` states to bound memory.

Both backwards are hand-written: the adjoint gh_t = C_t·gy_t + a_{t+1}·gh_{t+1} is the same scan
run backwards. The log-space forward keeps its states and cumulated decays (twice the memory of
the states); the multiply-only one keeps only each block's first state and recomputes the rest,
as mamba-ssm does.
"""
import functools
from typing import Callable, List, Optional, Tuple

import torch

Tensor = torch.Tensor

_BLOCK_STATES = 1 << 22  # multiply-only: fp32 states per time block, 16 MiB per buffer
_CHUNK = 16  # 32 is ~7 % faster on CPU, but takes only half the Δ·A per step in log space
_MAX_LOG_DECAY = 40.  # log-space: |Σ Δ·A| within a chunk; e^40 leaves float32 1e21 of headroom


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
            chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...],
                                                        Callable[..., Tuple[Tensor, ...]]]:
    """y = Σ_n C·h (b, d, L), the last state (b, d, n), what the backward needs, and the backward.

    Takes what ``SelectiveScan`` gets: fp32, B and C grouped (b, g, n, L), Δ already discretised.
    """
    chunk = chunk_size or _CHUNK
    for log_space_chunk in dict.fromkeys((chunk, max(2, chunk // 4))):  # 4x the Δ·A, ~1.5x time
        result = _log_space_forward(u, delta, A, B, C, log_space_chunk)
        if result is not None:
            return (*result, functools.partial(_log_space_backward, chunk=log_space_chunk))
    result = _multiply_only_forward(u, delta, A, B, C, chunk)
    return (*result, functools.partial(_multiply_only_backward, chunk=chunk))


class _ChunkLayout:
    """(b, d, L) tensors as (b, g, d/g, n, L'), L' = L padded to whole chunks."""

    def __init__(self, u: Tensor, A: Tensor, B: Tensor, chunk: int):
        self.batch, dim, self.length = u.shape
        self.groups, self.state, self.chunk = B.shape[1], A.shape[1], chunk
        self.chunks = -(-self.length // chunk)
        self.shape = (self.batch, self.groups, dim // self.groups, self.state,
                      self.chunks * chunk)
        self.upper = u.new_ones(chunk, chunk).triu_()

    def channels(self, x: Tensor) -> Tensor:
        """(b, d, L) → (b, g, d/g, 1, L)."""
        return x.view(self.batch, self.groups, -1, 1, self.length)

    def per_state(self, A: Tensor) -> Tensor:
        """A, (d, n) → (g, d/g, n, 1)."""
        return A.view(self.groups, -1, self.state, 1)

    def padded_product(self, x: Tensor, y: Tensor, z: Optional[Tensor] = None,
                       out: Optional[Tensor] = None) -> Tensor:
        """x·y(·z), broadcast to a (b, g, d/g, n, L') tensor (new, or ``out``), zeros after L."""
        out = x.new_empty(self.shape) if out is None else out.view(self.shape)
        if z is None:
            torch.mul(x, y, out=out[..., :self.length])
        elif self.state == 1:  # x·y fits the output: no temporary
            torch.mul(x, y, out=out[..., :self.length]).mul_(z)
        else:
            torch.mul(x * y, z, out=out[..., :self.length])
        out[..., self.length:] = 0
        return out

    def chunked(self, x: Tensor) -> Tensor:
        """(…, L') → (…, chunks, T)."""
        return x.view(*self.shape[:-1], self.chunks, self.chunk)

    def cumsum(self, x: Tensor, reverse: bool = False) -> Tensor:
        """A new tensor of the sums of x within chunks from each chunk's start to t (``reverse``:
        from t to the chunk's end).

        One GEMM with a triangular matrix of ones, as a 2-d ``mm`` (``matmul`` on the n-d view
        copies its output once more): faster than ``cumsum``'s scalar loop on CPU.
        """
        upper = self.upper.t() if reverse else self.upper
        return torch.mm(x.reshape(-1, self.chunk), upper).view(x.shape)

    def sum_states(self, x: Tensor, y: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """Σ_n x·y, n kept as a size-1 dim (``_sum_states`` does it for the time-major layout,
        where an ``einsum`` is faster; here ``sum`` with ``out`` is)."""
        if self.state == 1:
            return torch.mul(x, y, out=out)
        return torch.sum(x * y, 3, keepdim=True, out=out)

    def scan_chunks(self, decays_t: Tensor, x: Tensor, reverse: bool = False) -> Tensor:
        """``_scan_`` over the chunk dim of a (…, chunks) tensor; ``decays_t`` is time-major."""
        x_t = torch.movedim(x, -1, 0).clone(memory_format=torch.contiguous_format)
        _scan_(decays_t, x_t, self.chunk, reverse)
        return torch.movedim(x_t, 0, -1)


def _log_space_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       chunk: int) -> Optional[Tuple[Tensor, Tensor, Tuple[Tensor, ...]]]:
    """y, the last state, and what the backward needs; None where some |Σ Δ·A| > 40."""
    layout = _ChunkLayout(u, A, B, chunk)
    dt, u_c = layout.channels(delta), layout.channels(u)
    log_decay = layout.chunked(layout.padded_product(dt, layout.per_state(A)))
    decayed = layout.cumsum(log_decay)  # Σ Δ·A from the chunk's start through t
    low, high = torch.aminmax(decayed)
    # meta tensors (shape analysis) have no values; both algorithms give the same shapes
    if not decayed.is_meta and max(-low.item(), high.item()) > _MAX_LOG_DECAY:
        return None
    decayed.exp_()  # E_t
    totals = torch.movedim(decayed[..., -1], -1, 0).clone(memory_format=torch.contiguous_format)
    drive = layout.padded_product(dt, u_c, B.unsqueeze(2), out=log_decay)  # x_t = Δ_t·u_t·B_t
    h = layout.cumsum(layout.chunked(drive).div_(decayed)).mul_(decayed)
    ends = layout.scan_chunks(totals, h[..., -1])  # the state each chunk really ends in
    h[..., 1:, :].addcmul_(decayed[..., 1:, :], ends[..., :-1, None])
    h = h.view(layout.shape)[..., :layout.length]
    y = torch.empty_like(u)  # a new tensor, not a view: the caller adds D·u in place
    layout.sum_states(h, C.unsqueeze(2), out=layout.channels(y))
    last_state = h[..., -1].clone(memory_format=torch.contiguous_format)
    return y, last_state.view(layout.batch, -1, layout.state), (h, decayed, totals)


def _log_space_backward(grad_y: Tensor, grad_last_state: Tensor, u: Tensor, delta: Tensor,
                        A: Tensor, B: Tensor, C: Tensor, h: Tensor, decayed: Tensor,
                        totals: Tensor, chunk: int) -> Tuple[Tensor, ...]:
    """Gradients for (u, delta, A, B, C): the adjoint by the forward's method, reversed."""
    layout = _ChunkLayout(u, A, B, chunk)
    dt, u_c, gy = layout.channels(delta), layout.channels(u), layout.channels(grad_y)
    scratch = layout.padded_product(gy, C.unsqueeze(2))  # g_t = ∂/∂h_t through y_t
    scratch[..., layout.length - 1] += grad_last_state.view(scratch.shape[:-1])
    # from a zero end, E_t·gh_t = Σ_{s≥t} E_s·g_s: a reversed cumsum
    grad_h = layout.cumsum(layout.chunked(scratch).mul_(decayed), reverse=True)
    # each chunk's E_c,0·gh_c,0 =: K_c = R_c + E_c,T-1·K_c+1 links it to the chunks after it
    later = layout.scan_chunks(totals, grad_h[..., 0], reverse=True)
    grad_h[..., :-1, :].add_(torch.movedim(totals, 0, -1)[..., :-1, None] * later[..., 1:, None])
    grad_h = grad_h.div_(decayed).view(layout.shape)[..., :layout.length]
    scratch = scratch[..., :layout.length]  # free again: g_t is in grad_h now
    grad_C = torch.mul(h, gy, out=scratch).sum(2)
    # ∂/∂(Δ_t·A) = gh_t·a_t·h_{t-1}, a_t = exp(Δ_t·A) (not h_t - x_t: that cancels where a_t ≪ 1)
    grad_log_decay = torch.mul(dt, layout.per_state(A), out=scratch).exp_().mul_(grad_h)
    grad_log_decay[..., 1:].mul_(h[..., :-1])
    grad_log_decay[..., 0] = 0
    grad_A = torch.einsum('bgdnl,bgdxl->gdn', grad_log_decay, dt).reshape(A.shape)
    grad_drive = layout.sum_states(grad_h, B.unsqueeze(2))  # ∂/∂(Δ_t·u_t)
    grad_delta = layout.sum_states(grad_log_decay, layout.per_state(A))
    grad_delta.addcmul_(grad_drive, u_c)
    drive = dt * u_c  # Δ_t·u_t: ∂/∂B_t = Σ_channels gh_t·Δ_t·u_t
    grad_u = grad_drive.mul_(dt)
    grad_B = (drive.mul_(grad_h) if layout.state == 1 else grad_h * drive).sum(2)
    return grad_u.view(u.shape), grad_delta.view(u.shape), grad_A, grad_B, grad_C


def _multiply_only_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           chunk: int) -> Tuple[Tensor, Tensor, Tuple[Tensor]]:
    """y, the last state and each block's first state, by multiplications only."""
    groups = B.shape[1]
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
    return _batch_major(y, u.shape), last_state, (torch.stack(first_states),)


def _multiply_only_backward(grad_y: Tensor, grad_last_state: Tensor, u: Tensor, delta: Tensor,
                            A: Tensor, B: Tensor, C: Tensor, first_states: Tensor,
                            chunk: int) -> Tuple[Tensor, ...]:
    """Gradients for (u, delta, A, B, C), block by block from the last."""
    groups = B.shape[1]
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
