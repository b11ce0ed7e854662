import argparse
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmambaout.analysis.models import build_model
from mmambaout.models.backbones.vmamba import VMamba
from mmambaout.models.layers import SS2D, CrossSelectiveScan, VSSBlock, cross_merge, cross_scan
from helpers import load_tool
from test_selective_scan import assert_close

# VMamba v2's published classification configs: depths, stem width, ssm_ratio, d_state
PUBLISHED = {
    'tiny': ((2, 2, 8, 2), 96, 1.0, 1),
    'tiny_s2l5': ((2, 2, 5, 2), 96, 2.0, 1),
    'small': ((2, 2, 15, 2), 96, 2.0, 1),
    'base': ((2, 2, 15, 2), 128, 2.0, 1),
    'small_s1l20': ((2, 2, 20, 2), 96, 1.0, 1),
    'base_s1l20': ((2, 2, 20, 2), 128, 1.0, 1),
}
CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
TINY_DIMS = dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32), ssm_ratio=2.0, d_state=2)


def official_state(depths, width, ssm_ratio, d_state, device='cpu'):
    """Tensors named and shaped as an official VMamba v2 file (checkpoint_formats.md)."""
    dims = [width * 2**i for i in range(len(depths))]
    state = {}

    def add(name, *shape):
        state[name] = torch.randn(shape, device=device)

    half = width // 2
    add('patch_embed.0.weight', half, 3, 3, 3), add('patch_embed.0.bias', half)
    add('patch_embed.2.weight', half), add('patch_embed.2.bias', half)
    add('patch_embed.5.weight', width, half, 3, 3), add('patch_embed.5.bias', width)
    add('patch_embed.7.weight', width), add('patch_embed.7.bias', width)
    for i, (depth, C) in enumerate(zip(depths, dims)):
        d_inner, rank = int(ssm_ratio * C), math.ceil(C / 16)
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            add(p + 'norm.weight', C), add(p + 'norm.bias', C)
            add(p + 'op.in_proj.weight', d_inner, C)
            add(p + 'op.conv2d.weight', d_inner, 1, 3, 3)
            add(p + 'op.x_proj_weight', 4, rank + 2 * d_state, d_inner)
            add(p + 'op.dt_projs_weight', 4, d_inner, rank)
            add(p + 'op.dt_projs_bias', 4, d_inner)
            add(p + 'op.A_logs', 4 * d_inner, d_state), add(p + 'op.Ds', 4 * d_inner)
            add(p + 'op.out_norm.weight', d_inner), add(p + 'op.out_norm.bias', d_inner)
            add(p + 'op.out_proj.weight', C, d_inner)
            add(p + 'norm2.weight', C), add(p + 'norm2.bias', C)
            add(p + 'mlp.fc1.weight', 4 * C, C), add(p + 'mlp.fc1.bias', 4 * C)
            add(p + 'mlp.fc2.weight', C, 4 * C), add(p + 'mlp.fc2.bias', C)
        if i + 1 < len(depths):
            add(f'layers.{i}.downsample.1.weight', 2 * C, C, 3, 3)
            add(f'layers.{i}.downsample.1.bias', 2 * C)
            add(f'layers.{i}.downsample.3.weight', 2 * C)
            add(f'layers.{i}.downsample.3.bias', 2 * C)
    return state


def classifier_state(channels, num_classes=1000, device='cpu'):
    return {'classifier.norm.weight': torch.randn(channels, device=device),
            'classifier.norm.bias': torch.randn(channels, device=device),
            'classifier.head.weight': torch.randn(num_classes, channels, device=device),
            'classifier.head.bias': torch.randn(num_classes, device=device)}


def official_to_ours(key):
    """The documented official → ours key mapping, written independently of the package."""
    parts = key.split('.')
    if parts[0] == 'patch_embed':
        name = {'0': 'conv1', '2': 'norm1', '5': 'conv2', '7': 'norm2'}[parts[1]]
        return f'downsample_layers.0.{name}.{parts[2]}'
    stage = int(parts[1])
    if parts[2] == 'downsample':  # ends stage i in VMamba, starts stage i + 1 here
        return f'downsample_layers.{stage + 1}.{ {"1": "conv", "3": "norm"}[parts[3]] }.{parts[4]}'
    return f'stages.{stage}.{parts[3]}.' + '.'.join(parts[4:])


# ---------------------------------------------------------------- cross scan / merge

def test_cross_scan_known_values():
    x = torch.arange(6.).view(1, 1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    expected = torch.tensor([[0, 1, 2, 3, 4, 5],   # row-major
                             [0, 3, 1, 4, 2, 5],   # column-major
                             [5, 4, 3, 2, 1, 0],   # row-major reversed
                             [5, 2, 4, 1, 3, 0]])  # column-major reversed
    assert torch.equal(cross_scan(x), expected.view(1, 4, 1, 6).float())


def test_cross_scan_keeps_batch_and_channels_apart():
    x = torch.arange(2 * 3 * 2 * 3.).view(2, 3, 2, 3)
    xs = cross_scan(x)
    assert xs.shape == (2, 4, 3, 6)
    for b in range(2):
        for c in range(3):
            offset = 6 * (3 * b + c)
            assert torch.equal(xs[b, :, c] - offset, cross_scan(torch.arange(6.).view(
                1, 1, 2, 3))[0, :, 0])


def test_cross_merge_inverts_each_direction():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(cross_merge(cross_scan(x), 4, 5), 4 * x.flatten(2))
    # distinct weights per direction: a direction mapped back to the wrong place shows up
    weights = torch.tensor([1., 10., 100., 1000.]).view(1, 4, 1, 1)
    torch.testing.assert_close(cross_merge(cross_scan(x) * weights, 4, 5), 1111 * x.flatten(2))


# ---------------------------------------------------------------- SS2D

# VMamba v2's SS2D (forward_type='v05_noz'), written from its published code for these tests
# (MzeroMiko/VMamba: classification/models/vmamba.py SS2Dv2.forwardv2 and forward_corev2,
# csm_triton.py cross_scan_fwd / cross_merge_fwd, csms6s.py selective_scan_torch), in float64,
# independently of the package:
#   in_proj (no bias) → 3×3 depthwise conv (no bias) → SiLU → the four-direction scan →
#   out_norm (LayerNorm) → out_proj, no z gate ("noz");
#   direction k reads the pixels in its own order (0: row by row, 1: column by column, 2 and 3:
#   those reversed) and has its own x_proj_weight[k], dt_projs_weight[k], dt_projs_bias[k] and
#   channels k·D … (k+1)·D of A_logs and Ds; its outputs go back to the pixels they were read
#   from, summed over the four directions.

def scan_orders(H, W):
    """The pixel (index h·W + w) each of VMamba's four directions reads at each step."""
    rows = torch.tensor([h * W + w for h in range(H) for w in range(W)])
    columns = torch.tensor([h * W + w for w in range(W) for h in range(H)])
    return rows, columns, rows.flip(0), columns.flip(0)


def vmamba_v2_core(p, x, eps=1e-5):
    """Scan, merge and out_norm: x (b, D, H, W) → (b, H, W, D); p: parameters by name."""
    b, D, H, W = x.shape
    rank, N = p['dt_projs_weight'].shape[-1], p['A_logs'].shape[-1]
    pixels = x.flatten(2)
    merged = torch.zeros_like(pixels)
    for k, order in enumerate(scan_orders(H, W)):
        seq = pixels[..., order]  # (b, D, L)
        dt, Bk, Ck = torch.einsum('cd,bdl->bcl', p['x_proj_weight'][k], seq).split((rank, N, N), 1)
        delta = F.softplus(torch.einsum('dr,brl->bdl', p['dt_projs_weight'][k], dt)
                           + p['dt_projs_bias'][k][:, None])
        A, Dk = -p['A_logs'][k * D:(k + 1) * D].exp(), p['Ds'][k * D:(k + 1) * D]
        h, ys = seq.new_zeros(b, D, N), []
        for t in range(H * W):
            drive = (delta[..., t] * seq[..., t])[..., None] * Bk[:, None, :, t]
            h = torch.exp(delta[..., t, None] * A) * h + drive
            ys.append((h * Ck[:, None, :, t]).sum(-1) + Dk * seq[..., t])
        merged = merged.index_add(2, order, torch.stack(ys, -1))  # step t → pixel order[t]
    y = merged.view(b, D, H, W).permute(0, 2, 3, 1)
    return F.layer_norm(y, (D, ), p['out_norm.weight'], p['out_norm.bias'], eps)


def vmamba_v2_ss2d(p, x):
    """SS2D: x (b, H, W, C) → (b, H, W, C)."""
    u = F.linear(x, p['in_proj.weight']).permute(0, 3, 1, 2)
    u = F.silu(F.conv2d(u, p['conv2d.weight'], padding=1, groups=u.shape[1]))
    return F.linear(vmamba_v2_core(p, u), p['out_proj.weight'])


def vmamba_v2_vss_branches(p):
    """VSSBlock's residual branches, in order: SS2D(norm(x)) and MLP(norm2(x))."""
    C = p['norm.weight'].shape[0]
    op = {k[len('op.'):]: v for k, v in p.items() if k.startswith('op.')}

    def mixer(x):
        return vmamba_v2_ss2d(op, F.layer_norm(x, (C, ), p['norm.weight'], p['norm.bias'], 1e-5))

    def mlp(x):
        h = F.layer_norm(x, (C, ), p['norm2.weight'], p['norm2.bias'], 1e-5)
        h = F.gelu(F.linear(h, p['mlp.fc1.weight'], p['mlp.fc1.bias']))
        return F.linear(h, p['mlp.fc2.weight'], p['mlp.fc2.bias'])

    return mixer, mlp


def vmamba_v2_vss_block(p, x):
    """VSSBlock._forward without drop path: x + SS2D(norm(x)), then x + MLP(norm2(x))."""
    for branch in vmamba_v2_vss_branches(p):
        x = x + branch(x)
    return x


def perturb(module):
    """Move every parameter off its (often symmetric) initial value."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def assert_matches_oracle(module, x, oracle):
    """module(x) and its gradients (input and every parameter) against ``oracle(parameters,
    x)`` in float64."""
    params = {name: p.detach().double().requires_grad_() for name, p in module.named_parameters()}
    x64 = x.double().requires_grad_()
    expected = oracle(params, x64)
    x = x.clone().requires_grad_()
    actual = module(x)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (actual * weights.float()).sum().backward()
    actual = dict(out=actual, grad_input=x.grad,
                  **{f'grad_{name}': p.grad for name, p in module.named_parameters()})
    expected = dict(out=expected, grad_input=x64.grad,
                    **{f'grad_{name}': p.grad for name, p in params.items()})
    assert_close(actual, {name: value.float() for name, value in expected.items()}, 1e-4)


@pytest.mark.parametrize('backend', ['reference', 'chunked'])
def test_ss2d_equals_vmamba_v2(backend):
    torch.manual_seed(0)
    m = perturb(SS2D(20, ssm_ratio=1.5, d_state=2, scan_backend=backend))  # dt_rank 2, D 30
    assert_matches_oracle(m, torch.randn(2, 3, 4, 20), vmamba_v2_ss2d)  # H != W


@pytest.mark.parametrize('backend', ['reference', 'chunked'])
def test_vss_block_equals_vmamba_v2(backend):
    torch.manual_seed(0)
    block = perturb(VSSBlock(16, ssm_ratio=2.0, d_state=1, scan_backend=backend))
    assert_matches_oracle(block, torch.randn(1, 4, 3, 16), vmamba_v2_vss_block)


def test_ss2d_parameters_are_vmambas():
    m = SS2D(96, ssm_ratio=2.0, d_state=1)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        'x_proj_weight': (4, 6 + 2, 192), 'dt_projs_weight': (4, 192, 6),
        'dt_projs_bias': (4, 192), 'A_logs': (768, 1), 'Ds': (768, ),
        'out_norm.weight': (192, ), 'out_norm.bias': (192, ), 'in_proj.weight': (192, 96),
        'conv2d.weight': (192, 1, 3, 3), 'out_proj.weight': (96, 192)}


def test_ssm_initialisation_is_mambas():
    torch.manual_seed(0)
    m = SS2D(64, ssm_ratio=2.0, d_state=4)
    dt = F.softplus(m.dt_projs_bias)
    assert 1e-3 * 0.999 <= dt.min() and dt.max() <= 1e-1 * 1.001
    torch.testing.assert_close(m.A_logs, torch.arange(1., 5.).log().expand(512, 4))
    assert torch.equal(m.Ds, torch.ones(512))
    assert m.dt_projs_weight.abs().max() <= 4**-0.5


def test_scan_core_alone_on_nchw():
    core = CrossSelectiveScan(12, d_state=1, dt_rank=1, scan_backend='reference')
    assert {n for n, _ in core.named_parameters()} == {
        'x_proj_weight', 'dt_projs_weight', 'dt_projs_bias', 'A_logs', 'Ds',
        'out_norm.weight', 'out_norm.bias'}
    assert core(torch.randn(2, 12, 3, 5)).shape == (2, 3, 5, 12)


# ---------------------------------------------------------------- backbone

@pytest.mark.parametrize('arch', list(PUBLISHED))
def test_named_arch_matches_official_layout(arch):
    depths, width, ratio, d_state = PUBLISHED[arch]
    model = VMamba(arch, out_indices=(3, ))
    official = official_state(depths, width, ratio, d_state, device='meta')
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()
           if not k.startswith('norm3.')}
    assert {official_to_ours(k): tuple(v.shape) for k, v in official.items()} == own
    backbone = sum(v.numel() for v in official.values())
    full = backbone + sum(v.numel() for v in classifier_state(8 * width, device='meta').values())
    # checkpoint_formats.md: tiny backbone ≈ 29.5M; paper: T 31M, S 50M, B 89M with classifier
    if arch == 'tiny':
        assert backbone == pytest.approx(29.5e6, rel=0.01)
    published = {'tiny': 31e6, 'small': 50e6, 'base': 89e6}.get(arch)
    if published:
        assert full == pytest.approx(published, rel=0.04)


@pytest.mark.parametrize('arch', list(PUBLISHED))
@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, -1)])
def test_output_shapes(arch, out_indices):
    depths, _, ratio, d_state = PUBLISHED[arch]  # published depths and ratios, small widths
    model = VMamba(dict(depths=depths, dims=(8, 16, 24, 32), ssm_ratio=ratio, d_state=d_state),
                   out_indices=out_indices).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 32, 64))
    expected = [(2, model.dims[i], 32 // 2**(i + 2), 64 // 2**(i + 2))
                for i in (j % 4 for j in out_indices)]
    assert [tuple(o.shape) for o in outs] == expected
    assert all(o.is_contiguous() for o in outs)


def test_odd_input_size():
    with torch.no_grad():
        outs = VMamba(TINY_DIMS)(torch.randn(1, 3, 33, 47))
    assert [o.shape[-2:] for o in outs] == [(9, 12), (5, 6), (3, 3), (2, 2)]


@pytest.mark.parametrize('wrapping', ['official', 'vmamba_detector'])
def test_official_checkpoint_loads_value_for_value(tmp_path, log_text, wrapping):
    torch.manual_seed(0)
    arch = dict(depths=(1, 2, 1, 1), dims=(16, 32, 64, 128), ssm_ratio=2.0, d_state=1)
    official = official_state(arch['depths'], 16, 2.0, 1)
    if wrapping == 'official':
        checkpoint = {'model': {**official, **classifier_state(128)}, 'epoch': 264}
    else:  # VMamba's own Mask R-CNN: backbone.*, with outnorm{i} on the outputs
        outnorms = {f'outnorm{i}.{p}': torch.randn(16 * 2**i) for i in range(4)
                    for p in ('weight', 'bias')}
        checkpoint = {'state_dict': {'backbone.' + k: v for k, v in {**official,
                                                                     **outnorms}.items()}}
        checkpoint['state_dict']['neck.lateral_convs.0.conv.weight'] = torch.randn(4, 4, 1, 1)
    path = tmp_path / 'vssm.pth'
    torch.save(checkpoint, path)
    model = VMamba(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    text = log_text()
    own = model.state_dict()
    for key, value in official.items():
        assert torch.equal(own[official_to_ours(key)], value), key
    loaded = {official_to_ours(k) for k in official}
    assert set(own) - loaded == {f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    if wrapping == 'official':
        assert ('ignored (classifier head): 4 keys: classifier.head.bias, '
                'classifier.head.weight, classifier.norm.bias, classifier.norm.weight'
                in text)
        assert 'initialised fresh' in text and 'norm0.weight' in text
    else:
        for i in range(4):
            assert torch.equal(own[f'norm{i}.weight'],
                               checkpoint['state_dict'][f'backbone.outnorm{i}.weight'])
    assert 'MISSING' not in text and 'UNUSED' not in text


def test_convert_tool(tmp_path, monkeypatch):
    """tools/convert_checkpoint.py --backbone VMamba, value for value by the mapping above; a
    training checkpoint that holds a config object (as VMamba's do) needs --trust-pickle."""
    torch.manual_seed(0)
    official = official_state((1, 2, 1, 1), 16, 2.0, 1)
    src, dst = tmp_path / 'vssm.pth', tmp_path / 'ours.pth'
    torch.save({'model': {**official, **classifier_state(128)}, 'epoch': 264,
                'config': argparse.Namespace(MODEL='vssm')}, src)
    convert = load_tool('tools/convert_checkpoint.py').main
    argv = ['convert_checkpoint.py', str(src), str(dst), '--backbone', 'VMamba']
    monkeypatch.setattr(sys, 'argv', argv)
    with pytest.raises(RuntimeError, match=r'argparse\.Namespace.*--trust-pickle'):
        convert()
    assert not dst.exists()
    monkeypatch.setattr(sys, 'argv', argv + ['--trust-pickle'])
    convert()
    converted = torch.load(dst, weights_only=True)
    assert converted.keys() == {official_to_ours(k) for k in official}
    for key, value in official.items():
        assert torch.equal(converted[official_to_ours(key)], value), key
    model = VMamba(dict(depths=(1, 2, 1, 1), dims=(16, 32, 64, 128), ssm_ratio=2.0, d_state=1))
    missing, unused = model.load_state_dict(converted, strict=False)
    assert unused == [] and set(missing) == {f'norm{i}.{p}' for i in range(4)
                                             for p in ('weight', 'bias')}


def test_checkpoint_of_other_arch_names_key_and_shapes(tmp_path):
    path = tmp_path / 'ratio2.pth'
    torch.save({'model': official_state((1, 2, 1, 1), 8, 2.0, 2)}, path)
    model = VMamba(dict(TINY_DIMS, ssm_ratio=1.0),
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r"'stages\.0\.0\.op\.in_proj\.weight' has shape "
                       r"\(16, 8\) in the file but \(8, 8\)"):
        model.init_weights()


def test_layer_norms_use_vmambas_eps():
    model = VMamba(TINY_DIMS)
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-5}  # nn.LayerNorm's default, as in VMamba


def test_fresh_init_keeps_ssm_init():
    torch.manual_seed(0)
    model = VMamba(TINY_DIMS)
    model.init_weights()
    op = model.stages[0][0].op
    assert op.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert torch.equal(op.Ds, torch.ones_like(op.Ds))
    assert torch.equal(op.A_logs, torch.tensor([1., 2.]).log().expand_as(op.A_logs))


def test_bf16_autocast_training_step():
    torch.manual_seed(0)
    model = VMamba(TINY_DIMS, drop_path_rate=0.1).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
        loss = sum(o.float().pow(2).mean() for o in outs)
    assert outs[0].dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.stages[0][0].op.A_logs.grad.abs().sum() > 0


def test_bad_arch_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown VMamba arch 'tiny_s1l8'.*'base'.*'small'"
                       r".*'tiny'.*'tiny_s2l5'"):
        VMamba('tiny_s1l8')
    with pytest.raises(ValueError, match='ssm_ratio'):
        VMamba(dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_registered_in_both_toolboxes(scope):
    import importlib
    MODELS = importlib.import_module(f'{scope}.registry').MODELS
    model = MODELS.build(dict(type='VMamba', arch=TINY_DIMS, scan_backend='reference'))
    assert isinstance(model, VMamba)
    assert model.stages[0][0].op.scan_backend == 'reference'


# ---------------------------------------------------------------- configs

def test_detection_configs_follow_vmambas_recipe():
    cfgs = {size: Config.fromfile(CONFIG_DIR / f'mask_rcnn_vmamba_{size}_coco.py')
            for size in ('tiny', 'small', 'base')}
    for size, cfg in cfgs.items():
        backbone = cfg.model.backbone
        assert (backbone.type, backbone.arch) == ('VMamba', size)
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained)
        width = PUBLISHED[size][1]
        assert cfg.model.neck.in_channels == [width, 2 * width, 4 * width, 8 * width]
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                                   weight_decay=0.05)
        warmup, steps = cfg.param_scheduler
        assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False, 1000)
        assert (steps.milestones, cfg.train_cfg.max_epochs) == ([8, 11], 12)
    assert {size: c.model.backbone.drop_path_rate for size, c in cfgs.items()} == dict(
        tiny=0.2, small=0.3, base=0.6)


def test_segmentation_configs_follow_vmambas_recipe():
    cfgs = {size: Config.fromfile(CONFIG_DIR / f'upernet_vmamba_{size}_ade20k.py')
            for size in ('tiny', 'small', 'base')}
    for size, cfg in cfgs.items():
        backbone = cfg.model.backbone
        assert (backbone.type, backbone.arch) == ('VMamba', size)
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained)
        width = PUBLISHED[size][1]
        assert cfg.model.decode_head.in_channels == [width, 2 * width, 4 * width, 8 * width]
        assert cfg.model.auxiliary_head.in_channels == 4 * width
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                                                   weight_decay=0.01)
        warmup, poly = cfg.param_scheduler
        assert (warmup.type, warmup.end, poly.type, poly.power, poly.begin, poly.end) == (
            'LinearLR', 1500, 'PolyLR', 1., 1500, 160000)
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.crop_size == cfg.model.data_preprocessor.size == (512, 512)
    assert {size: c.model.backbone.drop_path_rate for size, c in cfgs.items()} == dict(
        tiny=0.2, small=0.3, base=0.6)


@pytest.mark.parametrize('name,published', [('mask_rcnn_vmamba_tiny_coco.py', 50e6),
                                            ('upernet_vmamba_tiny_ade20k.py', 62e6)])
def test_tiny_model_sizes_match_published(name, published):
    model = build_model(Config.fromfile(CONFIG_DIR / name))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(published, rel=0.02)


@pytest.mark.slow
def test_upernet_vmamba_trains():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = build_model(Config.fromfile(CONFIG_DIR / 'upernet_vmamba_tiny_ade20k.py')).train()
    model.data_preprocessor.size = (32, 32)  # not the config's 512x512 crop: a CPU test
    inputs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)] * 2
    samples = [SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 150, (1, 32, 32))),
                             metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
               for _ in inputs]
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = losses['decode.loss_ce'] + losses['aux.loss_ce']
    total.backward()
    assert torch.isfinite(total)
    assert all(p.grad is not None for p in model.backbone.parameters())
