"""The selective scan as a plain loop over time: the oracle the fast backends are tested against."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                             B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor] = None,
                             z: Optional[torch.Tensor] = None,
                             delta_bias: Optional[torch.Tensor] = None,
                             delta_softplus: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """mamba-ssm's ``selective_scan_ref``, step by step; autograd works by construction.

    Takes what the dispatcher hands every backend: float32 tensors, B and C grouped as
    (b, g, n, L). Returns the output (b, d, L) and the last state (b, d, n).
    """
    batch, dim, _ = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # (b, d, n, L): channel c reads group c // (d/g)
    B = B.repeat_interleave(dim // B.shape[1], dim=1)
    C = C.repeat_interleave(dim // C.shape[1], dim=1)
    decay = torch.exp(delta[:, :, None, :] * A[:, :, None])
    drive = (delta * u)[:, :, None, :] * B
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind, not indexing: the backward of L index ops would write L full-size gradients.
    for decay_t, drive_t, c_t in zip(decay.unbind(-1), drive.unbind(-1), C.unbind(-1)):
        h = decay_t * h + drive_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y, h
