"""What MambaOut and VMamba share through HierarchicalBackbone: freezing, activation
checkpointing, stochastic depth and argument checks, tested once for both."""
import pytest
import torch

from mmambaout.models.backbones import MambaOut, VMamba

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
