"""Released weights: pretrained backbones named by URL (downloaded once through a real HTTP server
on 127.0.0.1 into torch.hub's cache, then read offline and weights-only), the shipped configs'
release files, and whole published detectors / segmentors in VMamba's key layout (backbone
converted, neck and heads kept). The runs of tools/test.py and tools/train.py on such files are
in test_released_weights_e2e.py."""
import argparse
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import CheckpointLoader

from helpers import REPO, SMALL_VMAMBA, in_vmamba_layout, load_tool, toy_vmamba_config
from mmambaout.analysis.models import build_model
from mmambaout.models.backbones import MambaOut, VMamba
from mmambaout.models.checkpoint import convert_backbone_keys
from mmambaout.utils import runtime
from mmambaout.utils.checkpoint_io import CheckpointDownloadError, use_checkpoint_loader
from test_analysis import COCO_KEYS, write_run

SMALL_MAMBAOUT = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))
SCRATCH = '--cfg-options model.backbone.init_cfg=None'


def cache_files(cache: Path) -> list:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def pretrained(url: str) -> dict:
    return dict(type='Pretrained', checkpoint=url)


# ---------------------------------------------------------------- pretrained backbones by URL

def test_url_is_downloaded_at_start_up_once_then_read_from_the_cache(server, cache, log_text):
    torch.manual_seed(0)
    released = MambaOut(SMALL_MAMBAOUT).state_dict()  # the official layout is ours
    released = {k: v for k, v in released.items() if not k.startswith('norm')}
    url = server.serve('mambaout_small.pth', {**released, 'head.fc2.weight': torch.ones(3, 2)})

    runtime.check_pretrained_files(dict(backbone=dict(init_cfg=pretrained(url))))
    assert cache_files(cache) == ['mambaout_small.pth']
    assert (cache / 'mambaout_small.pth').read_bytes() == server.files['mambaout_small.pth']

    model = MambaOut(SMALL_MAMBAOUT, init_cfg=pretrained(url))
    model.init_weights()
    for key, value in released.items():
        assert torch.equal(model.state_dict()[key], value), key
    text = log_text()
    assert f'Loaded {len(released)}/{len(released) + 8} backbone tensors from {url}' in text
    assert 'ignored (classifier head): 1 keys: head.fc2.weight' in text
    assert server.requests == ['mambaout_small.pth']  # the backbone read the cached copy

    server.stop()
    offline = MambaOut(SMALL_MAMBAOUT, init_cfg=pretrained(url))
    offline.init_weights()
    runtime.check_pretrained_files(dict(backbone=dict(init_cfg=pretrained(url))))
    for key, value in released.items():
        assert torch.equal(offline.state_dict()[key], value), key


@pytest.mark.parametrize('failure', ['missing', 'cut'])
def test_failed_download_names_url_cache_path_and_scratch_option_and_leaves_no_file(
        failure, server, cache, tmp_path):
    url = server.serve('mambaout_small.pth', MambaOut(SMALL_MAMBAOUT).state_dict(),
                       cut=failure == 'cut')
    if failure == 'missing':
        url = url.replace('mambaout_small', 'mambaout_smaller')
    else:  # torch.hub's downloader alone keeps the half file: no error reaches it
        torch.hub.download_url_to_file(url, str(tmp_path / 'plain.pth'), progress=False)
        sent = len(server.files['mambaout_small.pth']) // 2
        assert (tmp_path / 'plain.pth').stat().st_size == sent

    cached = cache / url.rsplit('/', 1)[1]
    with pytest.raises(CheckpointDownloadError) as error:
        runtime.check_pretrained_files(dict(backbone=dict(init_cfg=pretrained(url))))
    message = str(error.value)
    assert f"Cannot download checkpoint '{url}'" in message
    assert f"put it at '{cached}'" in message and SCRATCH in message
    assert ('HTTP Error 404' if failure == 'missing' else 'not a whole checkpoint') in message
    assert cache_files(cache) == []

    with pytest.raises(CheckpointDownloadError,
                       match=f"put it at '{re.escape(str(cached))}'.*{re.escape(SCRATCH)}"):
        MambaOut(SMALL_MAMBAOUT, init_cfg=pretrained(url)).init_weights()
    assert cache_files(cache) == []


def test_downloaded_file_with_pickled_objects_is_refused_unless_trusted(server, cache, tmp_path):
    """Weights-only reading holds for downloads as for local files (mmengine's own URL loader
    unpickles fully)."""
    state = {'backbone.norm0.weight': torch.ones(2)}
    url = server.serve('detector.pth', {'state_dict': state, 'config': argparse.Namespace(a=1)})
    cached = cache / 'detector.pth'

    use_checkpoint_loader(str(tmp_path / 'work'))
    with pytest.raises(RuntimeError) as error:
        CheckpointLoader.load_checkpoint(url)
    assert f"Refusing to unpickle checkpoint '{cached}'" in str(error.value)
    assert 'argparse.Namespace' in str(error.value) and '--trust-checkpoint' in str(error.value)
    assert cache_files(cache) == ['detector.pth']  # whole: no second download

    use_checkpoint_loader(str(tmp_path / 'work'), trusted_files=[url])
    checkpoint = CheckpointLoader.load_checkpoint(url)
    assert checkpoint['config'] == argparse.Namespace(a=1)
    assert server.requests == ['detector.pth']

    refusal = (f"'{re.escape(str(cached))}' weights-only: it holds argparse.Namespace"
               '.*--trust-pickle')
    with pytest.raises(RuntimeError, match=refusal):  # at start-up, not after the datasets
        runtime.check_pretrained_files(dict(backbone=dict(init_cfg=pretrained(url))))
    with pytest.raises(RuntimeError, match=refusal):
        MambaOut(SMALL_MAMBAOUT, init_cfg=pretrained(url)).init_weights()


# ---------------------------------------------------------------- the shipped configs

MAMBAOUT_RELEASE = 'https://github.com/yuweihao/MambaOut/releases/download/model/'
VMAMBA_RELEASE = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
# VMamba's classification/configs/vssm/*.yaml of each release file: depths, EMBED_DIM,
# SSM_RATIO, d_state; DROP_PATH_RATE of its detection and segmentation configs (vssm1/).
VMAMBA_RELEASES = {
    'tiny': ('vssm1_tiny_0230s_ckpt_epoch_264.pth', (2, 2, 8, 2), 96, 1.0, 0.2),
    'small': ('vssm_small_0229_ckpt_epoch_222.pth', (2, 2, 15, 2), 96, 2.0, 0.3),
    'base': ('vssm_base_0229_ckpt_epoch_237.pth', (2, 2, 15, 2), 128, 2.0, 0.6),
}


@pytest.mark.parametrize('size', ['tiny', 'small', 'base'])
def test_configs_name_the_release_files_of_their_arch(size):
    for task in ('mask_rcnn_{}_{}_coco.py', 'upernet_{}_{}_ade20k.py'):
        cfg = Config.fromfile(REPO / 'configs' / task.format('mambaout', size))
        assert cfg.pretrained == f'{MAMBAOUT_RELEASE}mambaout_{size}.pth'
        assert cfg.model.backbone.init_cfg == pretrained(cfg.pretrained)

        cfg = Config.fromfile(REPO / 'configs' / task.format('vmamba', size))
        name, depths, width, ratio, drop_path = VMAMBA_RELEASES[size]
        backbone = cfg.model.backbone
        assert cfg.pretrained == VMAMBA_RELEASE + name
        assert backbone.init_cfg == pretrained(cfg.pretrained)
        assert VMamba.arch_settings[backbone.arch] == dict(
            depths=depths, dims=tuple(width * 2**i for i in range(4)), ssm_ratio=ratio,
            d_state=1)
        assert (backbone.out_indices, backbone.drop_path_rate) == ((0, 1, 2, 3), drop_path)
        head = cfg.model.get('neck') or cfg.model.decode_head
        assert head.in_channels == [width * 2**i for i in range(4)]


# ---------------------------------------------------------------- whole models

def test_whole_model_backbone_is_converted_and_the_rest_kept(tmp_path, log_text):
    model = build_model(Config.fromfile(toy_vmamba_config(tmp_path, 'det')))
    ours = model.state_dict()
    theirs = in_vmamba_layout(ours)
    assert 'backbone.layers.2.blocks.1.op.A_logs' in theirs  # the test's mapping at work
    converted = convert_backbone_keys(theirs, model.backbone, 'released.pth')
    assert converted.keys() == ours.keys()
    for key, value in ours.items():
        assert converted[key] is value or torch.equal(converted[key], value), key
    backbone_tensors = len(model.backbone.state_dict())
    assert (f'Converted {backbone_tensors}/{backbone_tensors} backbone tensors of released.pth'
            in log_text())
    assert 'MISSING' not in log_text() and 'UNUSED' not in log_text()
    assert convert_backbone_keys(ours, model.backbone, 'ours.pth') is ours  # ours: unchanged


def test_whole_model_of_another_arch_names_both_keys_and_shapes(tmp_path):
    model = build_model(Config.fromfile(toy_vmamba_config(tmp_path, 'det')))
    other = build_model(Config.fromfile(toy_vmamba_config(
        tmp_path, 'det', dict(SMALL_VMAMBA, ssm_ratio=1.0), name='other')))
    with pytest.raises(ValueError) as error:
        convert_backbone_keys(in_vmamba_layout(other.state_dict()), model.backbone, 'other.pth')
    assert ("Checkpoint 'other.pth' does not fit VMamba: 'stages.0.0.op.x_proj_weight' (in the "
            "file 'backbone.layers.0.blocks.0.op.x_proj_weight') has shape (4, 3, 16) in the file "
            'but (4, 3, 32) in the model') in str(error.value)


def test_convert_checkpoint_writes_the_whole_model_in_our_layout(tmp_path, monkeypatch, capsys):
    model = build_model(Config.fromfile(toy_vmamba_config(tmp_path, 'seg')))
    ours = model.state_dict()
    dataset_meta = dict(classes=('wall', 'sky'), palette=[[1, 2, 3], [4, 5, 6]])
    src = tmp_path / 'upernet_vssm_released.pth'
    torch.save({'meta': dict(dataset_meta=dataset_meta, epoch=3, seed=1),
                'state_dict': in_vmamba_layout(ours)}, src)
    dst = tmp_path / 'upernet_ours.pth'
    monkeypatch.setattr('sys.argv', ['convert_checkpoint.py', str(src), str(dst), '--backbone',
                                     'VMamba', '--whole-model'])
    load_tool('tools/convert_checkpoint.py').main()
    written = torch.load(dst, weights_only=True)
    assert written['meta'] == dict(dataset_meta=dataset_meta)
    assert written['state_dict'].keys() == ours.keys()
    for key, value in ours.items():
        assert torch.equal(written['state_dict'][key], value), key
    assert f'Wrote {len(ours)} tensors to {dst}' in capsys.readouterr().out


def test_results_table_shows_a_released_model_beside_both_published_rows(tmp_path, capsys):
    work_dir = tmp_path / 'mask_rcnn_vmamba_tiny_coco'  # tools/test.py of the released file
    write_run(work_dir, '20250101_000000', 'mmdet', dict(type='VMamba', arch='tiny'),
              test_metrics=dict(zip(COCO_KEYS, (0.473, 0.693, 0.520, 0.427, 0.664, 0.459))))
    load_tool('tools/analysis/results_table.py').main([str(work_dir)])
    lines = capsys.readouterr().out.splitlines()
    # VMamba's README (VMamba-T s1l8, Mask R-CNN 1x) and the MambaOut paper ("VMamba v2-T")
    assert '| VMamba v2-T | VMamba release | 47.3 | 69.3 | 52.0 | 42.7 | 66.4 | 45.9 |' in lines
    assert ('| VMamba v2-T | ours − VMamba release | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 | +0.0 |'
            in lines)
    assert '| VMamba v2-T | paper | 47.4 | 69.5 | 52.0 | 42.7 | 66.3 | 46.0 |' in lines
    assert '| VMamba v2-T | ours − paper | -0.1 | -0.2 | +0.0 | +0.0 | +0.1 | -0.1 |' in lines
