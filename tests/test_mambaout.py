import functools
import logging
import subprocess
import sys

import pytest
import timm
import torch
from timm.models.mambaout import GatedConvBlock
import torch.nn.functional as F

from mmambaout.models.backbones.mambaout import MambaOut, convert_mambaout_checkpoint
from mmambaout.models.layers import GatedCNNBlock
from helpers import load_tool
from test_selective_scan import assert_close
from test_vmamba import assert_matches_oracle, perturb, vmamba_v2_core


def timm_to_official(state):
    """The documented official ← timm key mapping, written independently of the package."""
    renames = [('stem.', 'downsample_layers.0.')] + [
        (f'stages.{i}.downsample.', f'downsample_layers.{i}.') for i in (1, 2, 3)]
    renames += [('head.pre_logits.fc.', 'head.fc1.'), ('head.pre_logits.norm.', 'head.norm.'),
                ('head.fc.', 'head.fc2.'), ('head.norm.', 'norm.')]
    out = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key.replace('.blocks.', '.')] = value
    return out


def stage_features(model, stages, x):
    """NHWC output of every stage, captured by hooks."""
    feats = []
    hooks = [s.register_forward_hook(lambda m, i, o: feats.append(o)) for s in stages]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return feats


@pytest.fixture(scope='module')
def timm_femto():
    torch.manual_seed(0)
    return timm.create_model('mambaout_femto', pretrained=False).eval()


@pytest.mark.parametrize('fmt', ['timm', 'official', 'official_wrapped'])
def test_pretrained_equals_timm(tmp_path, timm_femto, fmt):
    state = timm_femto.state_dict()
    if fmt != 'timm':
        state = timm_to_official(state)
    if fmt == 'official_wrapped':
        state = {'model': state}
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    ours = MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    ours.init_weights()
    x = torch.randn(1, 3, 70, 100)  # sides not multiples of 32
    theirs = stage_features(timm_femto, [s.blocks for s in timm_femto.stages], x)
    mine = stage_features(ours.eval(), ours.stages, x)
    assert len(mine) == 4
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('arch', ['femto', 'kobe', 'tiny', 'small', 'base'])
def test_param_count_matches_timm(arch):
    ours = MambaOut(arch, out_indices=(3, ))
    theirs = timm.create_model(f'mambaout_{arch}', pretrained=False, num_classes=0)
    n_ours = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith('norm'))
    n_theirs = sum(p.numel() for n, p in theirs.named_parameters() if not n.startswith('head'))
    assert n_ours == n_theirs


@pytest.mark.parametrize('arch,out_indices', [
    ('femto', (0, 1, 2, 3)), ('kobe', (1, 3)), ('tiny', (2, )), ('small', (-1, )),
    ('base', (0, 3)), (dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)), (0, 1, 2, 3))])
def test_output_shapes(arch, out_indices):
    model = MambaOut(arch, out_indices=out_indices).eval()
    dims = model.dims
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 96))
    expected = [(2, dims[i], 64 // 2**(i + 2), 96 // 2**(i + 2))
                for i in (j % 4 for j in out_indices)]
    assert [tuple(o.shape) for o in outs] == expected
    assert all(o.is_contiguous() for o in outs)


def test_odd_input_size():
    outs = MambaOut('femto')(torch.randn(1, 3, 33, 47))
    assert [o.shape[-2:] for o in outs] == [(9, 12), (5, 6), (3, 3), (2, 2)]


def test_bad_arch_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown MambaOut arch 'tinny'.*'femto'.*'tiny'"):
        MambaOut('tinny')
    with pytest.raises(ValueError, match='depths and dims'):
        MambaOut(dict(depths=(1, 1), dims=(8, 16, 32)))


def test_checkpoint_of_other_arch_names_key_and_shapes(tmp_path, timm_femto):
    path = tmp_path / 'femto.pth'
    torch.save(timm_femto.state_dict(), path)
    model = MambaOut('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r"'downsample_layers\.0\.conv1\.weight' has shape "
                       r"\(24, 3, 3, 3\) in the file but \(48, 3, 3, 3\)"):
        model.init_weights()


def test_foreign_checkpoint_refused(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(ValueError, match='not a MambaOut checkpoint: only 0 of'):
        MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_missing_and_truncated_checkpoint(tmp_path, timm_femto):
    with pytest.raises(FileNotFoundError, match="nope.pth' does not exist.*init_cfg=None"):
        MambaOut('femto', init_cfg=dict(type='Pretrained',
                                        checkpoint=str(tmp_path / 'nope.pth'))).init_weights()
    path = tmp_path / 'cut.pth'
    torch.save(timm_femto.state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(RuntimeError, match='cut.pth.*truncated'):
        MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_partial_checkpoint_logs_missing_and_unused(tmp_path, timm_femto, log_text):
    state = timm_to_official(timm_femto.state_dict())
    del state['stages.3.2.fc2.weight']
    state['stages.3.3.fc2.weight'] = torch.zeros(1)
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    text = log_text()
    total = len(MambaOut('femto').state_dict())  # all but the deleted tensor and 4 output norms
    assert f'Loaded {total - 1 - 8}/{total} backbone tensors from {path}' in text
    assert 'MISSING from the checkpoint: 1 keys: stages.3.2.fc2.weight' in text
    assert 'UNUSED (in the checkpoint, not in the model): 1 keys: stages.3.3.fc2.weight' in text
    assert 'norm0.weight' in text and 'head.fc2.weight' in text


@pytest.mark.parametrize('fmt', ['timm', 'official'])
def test_converted_file_gives_timms_features(tmp_path, timm_femto, fmt, monkeypatch, capsys):
    """tools/convert_checkpoint.py; the file it writes, loaded strictly into the backbone,
    gives timm's stage features."""
    state = timm_femto.state_dict()
    src, dst = tmp_path / 'published.pth', tmp_path / 'ours.pth'
    torch.save(state if fmt == 'timm' else {'model': timm_to_official(state)}, src)
    monkeypatch.setattr(sys, 'argv', ['convert_checkpoint.py', str(src), str(dst),
                                      '--arch', 'femto'])
    load_tool('tools/convert_checkpoint.py').main()
    converted = torch.load(dst, weights_only=True)
    ours = MambaOut('femto').eval()
    missing, unused = ours.load_state_dict(converted, strict=False)
    assert unused == [] and set(missing) == {f'norm{i}.{p}' for i in range(4)
                                             for p in ('weight', 'bias')}
    dropped = len(state) - len(converted)  # timm's head, or the official head and norm
    assert (f'Wrote {len(converted)} tensors to {dst} (dropped {dropped} classifier tensors)'
            in capsys.readouterr().out)
    x = torch.randn(1, 3, 70, 100)
    theirs = stage_features(timm_femto, [s.blocks for s in timm_femto.stages], x)
    for a, b in zip(stage_features(ours, ours.stages, x), theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_registered_in_both_toolboxes(scope, tmp_path):
    # a config found from another directory, as a user would write it
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['mmambaout'], allow_failed_imports=False)\n"
                   "model = dict(type='MambaOut', arch='femto', out_indices=(3, ))\n")
    code = (f"from mmengine import Config\nfrom {scope}.registry import MODELS\n"
            f"from {scope}.utils import register_all_modules\nregister_all_modules()\n"
            f"cfg = Config.fromfile('{cfg}')\nm = MODELS.build(cfg.model)\n"
            "print(type(m).__module__, m.dims)")
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert 'mmambaout.models.backbones.mambaout (48, 96, 192, 288)' in out


def test_training_path_matches_timm_gradients():
    """The block has an autograd path and an in-place inference path: both must equal timm."""
    torch.manual_seed(0)
    theirs = timm.create_model('mambaout_femto', pretrained=False)
    ours = MambaOut('femto', out_indices=(3, ))
    ours.load_state_dict(convert_mambaout_checkpoint(theirs.state_dict())[0], strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        inference = ours(x)[0]
    training = ours(x)[0]
    torch.testing.assert_close(training.detach(), inference)
    theirs_feat = theirs.forward_features(x)  # NHWC, before timm's head
    theirs_out = torch.nn.functional.layer_norm(theirs_feat, (288, ), ours.norm3.weight.detach(),
                                                ours.norm3.bias.detach(), 1e-6)
    torch.testing.assert_close(training, theirs_out.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    training.square().sum().backward()
    theirs_out.square().sum().backward()
    for name, p in ours.named_parameters():
        if name.startswith('stages.0.0.'):
            theirs_grad = theirs.get_parameter(
                name.replace('stages.0.0.', 'stages.0.blocks.0.')).grad
            torch.testing.assert_close(p.grad, theirs_grad, rtol=1e-4, atol=1e-5)


def test_from_scratch_gradients_stay_bounded_on_padded_input():
    """Zero padding (as in every detection batch) must not blow up gradients at random init."""
    torch.manual_seed(0)
    model = MambaOut('femto')
    model.init_weights()
    x = torch.zeros(1, 3, 96, 96)
    x[..., :64, :48] = torch.randn(1, 3, 64, 48)  # the image; the rest is padding
    sum(o[..., :o.shape[-2] * 2 // 3, :o.shape[-1] // 2].sum() for o in model(x)).backward()
    worst = max(p.grad.norm().item() for p in model.parameters())
    assert worst < 1e4, worst  # zero biases give ~4e5 here


def test_ss2d_twin_differs_only_by_the_ssm():
    plain = MambaOut('femto')
    twin = MambaOut('femto', token_mixer='gated_cnn_ss2d', scan_backend='chunked')
    plain_shapes = {k: v.shape for k, v in plain.state_dict().items()}
    twin_shapes = {k: v.shape for k, v in twin.state_dict().items() if '.ssm.' not in k}
    assert twin_shapes == plain_shapes
    assert all(block.ssm is not None for stage in twin.stages for block in stage)
    twin.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    outs = twin(x)
    assert [o.shape for o in outs] == [o.shape for o in plain(x)]
    assert not torch.allclose(outs[0], plain(x)[0])  # the scan really mixes tokens
    sum(o.sum() for o in outs).backward()
    assert twin.stages[0][0].ssm.A_logs.grad is not None


def test_block_with_conv_ratio_and_kernel_size_equals_timm():
    """Half the channels convolved (conv_ratio 0.5: 8 of 42) by a 5×5 kernel: timm's block with
    the same weights, on both paths (autograd, in-place inference)."""
    torch.manual_seed(0)
    theirs = GatedConvBlock(16, kernel_size=5, conv_ratio=0.5)
    ours = GatedCNNBlock(16, kernel_size=5, conv_ratio=0.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x), theirs(x))
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs.get_parameter(name).grad, msg=name)


def gated_cnn_ss2d_block(p, x, conv_channels, kernel_size):
    """The twin's block written out (NHWC): with g, i, c the split of fc1(norm(x)),
    fc2(gelu(g)·[i, SS2D core(silu(conv c))]) + x, the core as VMamba v2 has it but for its
    out_norm's eps: MambaOut's 1e-6, as every LayerNorm of the block (VMamba's is 1e-5)."""
    hidden = p['fc1.weight'].shape[0] // 2
    h = F.layer_norm(x, x.shape[-1:], p['norm.weight'], p['norm.bias'], 1e-6)
    g, i, c = F.linear(h, p['fc1.weight'], p['fc1.bias']).split(
        (hidden, hidden - conv_channels, conv_channels), -1)
    c = F.conv2d(c.permute(0, 3, 1, 2), p['conv.weight'], p['conv.bias'],
                 padding=kernel_size // 2, groups=conv_channels)
    mixed = vmamba_v2_core({k[len('ssm.'):]: v for k, v in p.items() if k.startswith('ssm.')},
                           F.silu(c), eps=1e-6)
    return F.linear(F.gelu(g) * torch.cat((i, mixed), -1), p['fc2.weight'], p['fc2.bias']) + x


@pytest.mark.parametrize('backend', ['reference', 'chunked'])
def test_ss2d_twin_block_equals_its_maths(backend):
    """Half the channels convolved (conv_ratio 0.5: 8 of 42), a 5×5 kernel, H != W."""
    torch.manual_seed(0)
    block = perturb(GatedCNNBlock(16, kernel_size=5, conv_ratio=0.5, ssm_d_state=2,
                                  scan_backend=backend))
    oracle = functools.partial(gated_cnn_ss2d_block, conv_channels=8, kernel_size=5)
    x = torch.randn(2, 3, 4, 16)
    assert_matches_oracle(block, x, oracle)
    with torch.no_grad():  # the in-place inference path
        params = {name: p.double() for name, p in block.named_parameters()}
        assert_close(dict(out=block(x)), dict(out=oracle(params, x.double()).float()), 1e-4)


def test_unknown_token_mixer():
    with pytest.raises(ValueError, match="token_mixer 'ssm'.*gated_cnn_ss2d"):
        MambaOut('femto', token_mixer='ssm')


def test_pickled_objects_in_pretrained_file_are_refused(tmp_path, timm_femto):
    path = tmp_path / 'pickled.pth'
    torch.save({'model': timm_femto.state_dict(), 'config': logging.Formatter()}, path)
    with pytest.raises(RuntimeError, match=r"pickled.pth' weights-only: it holds logging\.Formatter"
                       r'.*convert_checkpoint.py --trust-pickle'):
        MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
