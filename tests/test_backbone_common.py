"""What MambaOut and VMamba share through HierarchicalBackbone: freezing, activation
checkpointing, stochastic depth and argument checks, tested once for both."""

import pytest
import torch
from timm.models.mambaout import GatedConvBlock

from mmambaout.models.backbones import MambaOut, VMamba
from mmambaout.models.layers import VSSBlock
from test_vmamba import perturb

SMALL_ARCHS = {
    MambaOut: dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32)),
    VMamba: dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32), ssm_ratio=2.0, d_state=2),
}
backbones = pytest.mark.parametrize('backbone', list(SMALL_ARCHS), ids=lambda c: c.__name__)


def build(backbone, **kwargs):
    return backbone(SMALL_ARCHS[backbone], **kwargs)


@backbones
@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages(backbone, frozen):
    model = build(backbone, frozen_stages=frozen)
    model.train()
    frozen_modules = [model.downsample_layers[0]]
    frozen_modules += [m for i in range(frozen) for m in
                       (model.downsample_layers[i], model.stages[i], getattr(model, f'norm{i}'))]
    frozen_ids = {id(p) for m in frozen_modules for p in m.parameters()}
    for m in frozen_modules:
        assert not m.training
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen_ids)
    # gradients never reach frozen weights, and do reach the rest
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for p in model.downsample_layers[0].parameters())
    assert all(p.grad is not None for p in model.stages[3].parameters())


def count_block_calls(model) -> dict:
    """{block: how often its forward started}, kept up to date by pre-hooks (a checkpoint's
    recomputation may stop before the block's forward ends)."""
    calls = {}
    for block in (b for stage in model.stages for b in stage):
        calls[block] = 0
        block.register_forward_pre_hook(lambda b, args: calls.__setitem__(b, calls[b] + 1))
    return calls


@backbones
def test_with_cp_recomputes_every_block_and_matches_plain(backbone):
    torch.manual_seed(0)
    plain = build(backbone)
    ckpt = build(backbone, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    calls = {}
    for m in (plain, ckpt):
        calls[m] = count_block_calls(m)
        sum(o.sum() for o in m(x)).backward()
    # checkpointed blocks keep no activations: each runs again in the backward pass
    assert list(calls[plain].values()) == [1] * 5 and list(calls[ckpt].values()) == [2] * 5
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


@backbones
def test_drop_path_rates_rise_linearly(backbone):
    """Block i of the N = 5 gets drop_path_rate·i/(N-1): 0 (no DropPath at all) to 0.3."""
    blocks = [b for stage in build(backbone, drop_path_rate=0.3).stages for b in stage]
    assert isinstance(blocks[0].drop_path, torch.nn.Identity)
    assert [b.drop_path.drop_prob for b in blocks[1:]] == pytest.approx([0.075, 0.15, 0.225, 0.3])


def residual_branches(block):
    """The block's residual branches in order, as functions apart from its forward: VMamba's
    SS2D(norm(x)) and MLP(norm2(x)) from its own modules (each checked against VMamba v2's
    equations in test_vmamba.py), MambaOut's from timm's Gated CNN block (its output less its
    input: ours computes the branch inside its forward)."""
    if isinstance(block, VSSBlock):
        return [lambda x: block.op(block.norm(x)), lambda x: block.mlp(block.norm2(x))]
    timm_block = GatedConvBlock(block.fc2.out_features).eval()
    timm_block.load_state_dict(block.state_dict())
    return [lambda x: timm_block(x) - x]


def residual_outcomes(x, branches, scale):
    """{keeps: output} for x through the residual branches in turn, for every pattern of kept (1)
    and dropped (0) branches, each kept branch's output scaled by ``scale``."""
    outcomes = {(): x}
    for branch in branches:
        outcomes = {keeps + (keep, ): h + keep * scale * added
                    for keeps, h in outcomes.items() for added in [branch(h)] for keep in (0, 1)}
    return outcomes


@backbones
def test_drop_path_drops_whole_branches_per_sample(backbone):
    """The last block (drop probability p = drop_path_rate = 0.4), on 1000 samples: in training
    each residual branch of each sample is dropped (adds 0) with probability p, one draw per
    branch, or kept and scaled by 1/(1 - p); in evaluation every branch is kept, unscaled."""
    torch.manual_seed(0)
    block = perturb(build(backbone, drop_path_rate=0.4).stages[3][-1])
    branches, p = residual_branches(block), 0.4
    x = torch.randn(1000, 1, 2, 32)
    with torch.no_grad():
        kept_unscaled = residual_outcomes(x[:100], branches, 1.)[(1, ) * len(branches)]
        torch.testing.assert_close(block.eval()(x[:100]), kept_unscaled)
        outcomes = residual_outcomes(x, branches, 1 / (1 - p))
        out = block.train()(x)
    errors = torch.stack([(out - h).abs().flatten(1).amax(1) for h in outcomes.values()])
    error, match = errors.min(0)
    assert (error < 1e-4).all(), f'{(error >= 1e-4).sum()} samples are no pattern of dropped and ' \
        f'kept-and-rescaled branches (off by up to {error.max():.3g})'
    assert errors.kthvalue(2, 0).values.min() > 1e-2  # and each just one
    dropped = 1 - torch.tensor(list(outcomes))[match].float()  # (sample, branch)
    assert (dropped.mean(0) - p).abs().max() < 0.07, dropped.mean(0)  # 4.5 standard deviations
    if len(branches) == 2:  # one draw per branch: both dropped with probability p²
        assert (dropped.prod(1).mean() - p**2).abs() < 0.05, dropped.prod(1).mean()


@backbones
@pytest.mark.parametrize('bad', [(4, ), (0, 0), (2, 1), (), (-5, )])
def test_bad_out_indices(backbone, bad):
    with pytest.raises(ValueError, match='out_indices'):
        build(backbone, out_indices=bad)


@backbones
@pytest.mark.parametrize('bad', [-2, 5])
def test_bad_frozen_stages(backbone, bad):
    with pytest.raises(ValueError, match=r'frozen_stages must be in \[-1, 4\]'):
        build(backbone, frozen_stages=bad)
