import logging
import subprocess
import sys

import pytest
import timm
import torch
from mmengine.logging import MMLogger

from mmambaout.models.backbones.mambaout import MambaOut, convert_mambaout_checkpoint


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


def test_partial_checkpoint_logs_missing_and_unused(tmp_path, timm_femto):
    state = timm_to_official(timm_femto.state_dict())
    del state['stages.3.2.fc2.weight']
    state['stages.3.3.fc2.weight'] = torch.zeros(1)
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    finally:
        logger.removeHandler(handler)
    text = '\n'.join(records)
    assert 'MISSING from the checkpoint: 1 keys: stages.3.2.fc2.weight' in text
    assert 'UNUSED (in the checkpoint, not in the model): 1 keys: stages.3.3.fc2.weight' in text
    assert 'norm0.weight' in text and 'head.fc2.weight' in text


def test_convert_tool_round_trip(tmp_path, timm_femto):
    src, dst = tmp_path / 'timm.pth', tmp_path / 'ours.pth'
    torch.save(timm_femto.state_dict(), src)
    subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(src), str(dst),
                    '--arch', 'femto'], check=True)
    converted = torch.load(dst, weights_only=True)
    assert 'downsample_layers.0.conv1.weight' in converted and 'head.fc.weight' not in converted
    expected, _ = convert_mambaout_checkpoint(timm_to_official(timm_femto.state_dict()))
    assert converted.keys() == expected.keys()


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


def test_unknown_token_mixer():
    with pytest.raises(ValueError, match="token_mixer 'ssm'.*gated_cnn_ss2d"):
        MambaOut('femto', token_mixer='ssm')


def test_pickled_objects_in_pretrained_file_are_refused(tmp_path, timm_femto):
    path = tmp_path / 'pickled.pth'
    torch.save({'model': timm_femto.state_dict(), 'config': logging.Formatter()}, path)
    with pytest.raises(RuntimeError, match=r"pickled.pth' weights-only: it holds logging\.Formatter"
                       r'.*convert_checkpoint.py --trust-pickle'):
        MambaOut('femto', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
