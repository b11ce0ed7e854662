"""End to end, as a user with VMamba's released Mask R-CNN / UperNet files: tools/test.py on the
toy COCO and toy ADE20K sets predicts from a whole model in VMamba's key layout, served by URL
from 127.0.0.1, exactly what it predicts from the same weights in ours (a local file); a file of
another arch stops at its first mismatching key; fine-tuning with ``load_from`` starts from the
file's weights. The files are made from a randomly initialised toy model of ours by the test's
own inverse key mapping (helpers.in_vmamba_layout)."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from helpers import (LOADERS, SMALL_VMAMBA, in_vmamba_layout, log_of, test_tool, toy_options,
                     toy_vmamba_config, train_tool)
from mmambaout.analysis.models import build_model
from mmambaout.datasets import make_toy_ade


def released_files(tmp_path: Path, config: Path):
    """A random toy model's weights saved in our layout and, as VMamba's own detector or
    segmentor saves them, in VMamba's; (our file, VMamba's file, the weights)."""
    torch.manual_seed(0)
    state = build_model(Config.fromfile(config)).state_dict()
    ours, theirs = tmp_path / 'ours.pth', tmp_path / 'vssm_released.pth'
    torch.save({'state_dict': state}, ours)
    torch.save({'meta': dict(epoch=12, dataset_meta=dict(classes=('a', 'b'))),
                'state_dict': in_vmamba_layout(state)}, theirs)
    return ours, theirs, state


def assert_same(ours, theirs, where='predictions'):
    """Equal structure, equal values, bit for bit."""
    assert type(ours) is type(theirs), where
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), where
        for key in ours:
            assert_same(ours[key], theirs[key], f'{where}[{key!r}]')
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f'{where}[{index}]')
    elif isinstance(ours, torch.Tensor):
        assert torch.equal(ours, theirs), where
    elif isinstance(ours, np.ndarray):
        assert np.array_equal(ours, theirs), where
    else:
        assert ours == theirs, where


@pytest.fixture(scope='module')
def toy_ade_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy_ade')
    make_toy_ade(root, num_train=2, num_val=2)
    return root


def seg_options(root: Path) -> list:
    return [f'{loader}.{setting}' for loader in LOADERS for setting in (
        f'dataset.data_root={root}', 'num_workers=0', 'persistent_workers=False')]


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_released_whole_model_predicts_as_the_same_weights_in_our_layout(
        task, tmp_path, request, server, cache):
    options = (toy_options(request.getfixturevalue('toy_root')) if task == 'det' else
               seg_options(request.getfixturevalue('toy_ade_root')))
    config = toy_vmamba_config(tmp_path, task)
    ours, theirs, state = released_files(tmp_path, config)
    url = server.serve(theirs.name, torch.load(theirs, weights_only=True))
    predictions = {}
    for name, checkpoint in (('ours', ours), ('theirs', url)):
        test_tool.main([str(config), str(checkpoint), '--work-dir', str(tmp_path / name),
                        '--out', str(tmp_path / f'{name}.pkl'), '--cfg-options', *options])
        predictions[name] = pickle.loads((tmp_path / f'{name}.pkl').read_bytes())
    assert len(predictions['ours']) == 2
    if task == 'det':  # a random detector still finds boxes above the score threshold
        assert sum(len(p['pred_instances']['bboxes']) for p in predictions['ours']) > 0
    assert_same(predictions['ours'], predictions['theirs'])

    backbone = len([k for k in state if k.startswith('backbone.')])
    assert (f'Converted {backbone}/{backbone} backbone tensors of {url}'
            in log_of(tmp_path / 'theirs'))
    assert (cache / theirs.name).is_file()
    assert 'Converted' not in log_of(tmp_path / 'ours')


@pytest.mark.slow
def test_released_whole_model_of_another_arch_stops_at_the_first_mismatch(tmp_path, toy_root):
    config = toy_vmamba_config(tmp_path, 'det')
    other = toy_vmamba_config(tmp_path, 'det', dict(SMALL_VMAMBA, ssm_ratio=1.0), name='other')
    _, theirs, _ = released_files(tmp_path, other)
    with pytest.raises(ValueError) as error:
        test_tool.main([str(config), str(theirs), '--work-dir', str(tmp_path / 'work'),
                        '--cfg-options', *toy_options(toy_root)])
    assert (f"Checkpoint '{theirs}' does not fit VMamba: 'stages.0.0.op.x_proj_weight' (in the "
            "file 'backbone.layers.0.blocks.0.op.x_proj_weight') has shape (4, 3, 16) in the file "
            'but (4, 3, 32) in the model') in str(error.value)


@pytest.mark.slow
def test_fine_tuning_from_a_released_whole_model_starts_from_its_weights(tmp_path, toy_root):
    """With the learning rate at 0, the first checkpoint holds the loaded weights."""
    config = toy_vmamba_config(tmp_path, 'det')
    _, theirs, state = released_files(tmp_path, config)
    work_dir = tmp_path / 'work'
    train_tool.main([str(config), '--work-dir', str(work_dir), '--cfg-options',
                     *toy_options(toy_root), f'load_from={theirs}', 'train_cfg.val_interval=2',
                     'optim_wrapper.optimizer.lr=0', 'param_scheduler.1.eta_min=0'])
    trained = torch.load(work_dir / 'epoch_1.pth', weights_only=False)['state_dict']
    assert trained.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(trained[key], value), key
    backbone = len([k for k in state if k.startswith('backbone.')])
    assert f'Converted {backbone}/{backbone} backbone tensors of {theirs}' in log_of(work_dir)
