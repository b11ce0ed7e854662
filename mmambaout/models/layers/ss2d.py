"""SS2D, VMamba v2's token mixer: a selective scan over an image in four directions.

The image is read as four sequences (row-major, column-major, and both reversed), each direction
has its own input-dependent SSM parameters, one grouped selective scan runs all four at once, and
the four outputs are summed back in row-major order. Parameter names and shapes are VMamba's
(``forward_type='v05_noz'``), so its checkpoints load value for value.
"""
import math

import torch
from torch import nn

from ...ops import selective_scan

NUM_DIRECTIONS = 4


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) → (B, 4, D, H·W): row-major, column-major, and both of them reversed."""
    B, D, H, W = x.shape
    # written in place: half the memory traffic of stacking flattened copies
    xs = x.new_empty(B, 4, D, H * W)
    xs[:, 0].view(B, D, H, W).copy_(x)
    xs[:, 1].view(B, D, W, H).copy_(x.transpose(2, 3))
    xs[:, 2:] = xs[:, :2].flip(-1)
    return xs


def cross_merge(ys: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, 4, D, H·W) from ``cross_scan`` order → (B, D, H·W) row-major: the sum of the four."""
    B, _, D, _ = ys.shape
    ys = ys[:, :2] + ys[:, 2:].flip(-1)  # undo the reversals
    return (ys[:, 0].view(B, D, H, W) + ys[:, 1].view(B, D, W, H).transpose(2, 3)).flatten(2)


class CrossSelectiveScan(nn.Module):
    """SS2D's core: NCHW features → four-direction selective scan → LayerNorm → NHWC.

    Holds only the SSM parameters (``x_proj_weight``, ``dt_projs_*``, ``A_logs``, ``Ds``) and
    ``out_norm``, so it can follow any convolution, e.g. a Gated CNN block's convolved branch.

    Args:
        channels: channels of the scanned features (SS2D's ``d_inner``).
        d_state: SSM state size per channel.
        dt_rank: rank of the per-token step-size projection.
        scan_backend: passed to :func:`mmambaout.ops.selective_scan`.
    """

    def __init__(self, channels: int, d_state: int, dt_rank: int, scan_backend: str = 'auto',
                 eps: float = 1e-5):
        super().__init__()
        self.d_state, self.dt_rank, self.scan_backend = d_state, dt_rank, scan_backend
        K = NUM_DIRECTIONS
        # per direction: token → (step-size rank, B, C); step-size rank → per-channel step size
        self.x_proj_weight = nn.Parameter(torch.empty(K, dt_rank + 2 * d_state, channels))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, channels, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, channels))
        self.A_logs = nn.Parameter(torch.empty(K * channels, d_state))
        self.Ds = nn.Parameter(torch.empty(K * channels))
        self.out_norm = nn.LayerNorm(channels, eps=eps)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 1e-1,
                             dt_floor: float = 1e-4):
        """Mamba's initialisation (as VMamba's ``initialize='v0'``)."""
        channels = self.x_proj_weight.shape[-1]
        nn.init.uniform_(self.x_proj_weight, -channels**-0.5, channels**-0.5)  # nn.Linear's
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        # step sizes log-uniform in [dt_min, dt_max]; the bias is their inverse softplus
        dt = torch.exp(torch.rand_like(self.dt_projs_bias) * math.log(dt_max / dt_min)
                       + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., d_state) for every channel
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(A.log().expand_as(self.A_logs))
        nn.init.ones_(self.Ds)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) → (B, H, W, D)."""
        B, D, H, W = x.shape
        R, N = self.dt_rank, self.d_state
        xs = cross_scan(x)  # (B, K, D, L)
        # all four directions' projections in one batched matmul each
        dts, Bs, Cs = torch.einsum('bkdl,kcd->bkcl', xs, self.x_proj_weight).split((R, N, N), 2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, self.dt_projs_weight)
        # one grouped scan: channel k·D + d reads direction k's B and C
        ys = selective_scan(
            xs.flatten(1, 2), dts.flatten(1, 2), -self.A_logs.float().exp(), Bs, Cs,
            D=self.Ds.float(), delta_bias=self.dt_projs_bias.flatten().float(),
            delta_softplus=True, backend=self.scan_backend)
        y = cross_merge(ys.unflatten(1, (NUM_DIRECTIONS, D)), H, W)  # (B, D, L)
        return self.out_norm(y.transpose(1, 2).reshape(B, H, W, D))

    forward = scan


class SS2D(CrossSelectiveScan):
    """in_proj → depthwise 3×3 conv → SiLU → :meth:`scan` → out_proj; NHWC in and out.

    Args:
        dim: input and output channels.
        ssm_ratio: inner channels ``d_inner = ssm_ratio·dim``.
        d_state: SSM state size; VMamba v2 uses 1.
        scan_backend: passed to :func:`mmambaout.ops.selective_scan`.
    """

    def __init__(self, dim: int, ssm_ratio: float = 1.0, d_state: int = 1,
                 scan_backend: str = 'auto', eps: float = 1e-5):
        d_inner = int(ssm_ratio * dim)
        super().__init__(d_inner, d_state, math.ceil(dim / 16), scan_backend, eps=eps)
        self.in_proj = nn.Linear(dim, d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=False)
        self.act = nn.SiLU()
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2d(self.in_proj(x).permute(0, 3, 1, 2)))
        return self.out_proj(self.scan(x))
