"""Fixtures that several test modules share. The toy trainings are session-scoped: each runs
once, through tools/train.py as a user runs it, for every test that needs a trained toy model.

The suite, and every tool it starts, runs torch on one thread unless OMP_NUM_THREADS says
otherwise: its models are small, and on a shared 2-core machine the whole suite took 52 minutes
with torch's default of two threads per process and 9.5 minutes with one (same tests, same day).
Tests of thread counts set their own.
"""
import logging
import os
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from mmdet.visualization import DetLocalVisualizer
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import CheckpointLoader
from mmengine.visualization import Visualizer
from mmseg.visualization import SegLocalVisualizer

from helpers import (LOADERS, TOY_DET_CONFIG, TOY_SEG_CONFIG, CheckpointServer, resize_steps,
                     run_tool)
from mmambaout.analysis.models import build_model
from mmambaout.datasets import make_toy_ade, make_toy_coco

os.environ.setdefault('OMP_NUM_THREADS', '1')
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


@pytest.fixture(autouse=True)
def restore_checkpoint_loader(monkeypatch):
    """The tools replace mmengine's local checkpoint loader process-wide: undo it after each
    test."""
    # A copy: registering a loader changes the table in place before replacing it.
    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))


@pytest.fixture(autouse=True)
def own_visualizers(monkeypatch):
    """Each test's runners make their own visualizers. mmdet's and mmseg's configs name theirs
    'visualizer', and mmengine hands a runner the instance of that name if one exists: one made
    by an earlier test's runner in this process, which writes to that test's work dir, deleted
    if it was a temporary one."""
    for visualizer in (Visualizer, DetLocalVisualizer, SegLocalVisualizer):
        monkeypatch.setattr(visualizer, '_instance_dict', OrderedDict())


@pytest.fixture
def log_text():
    """Everything mmengine's current logger prints at INFO and above (it bypasses the logging
    hierarchy), whatever level an earlier run in this process left it at (a quiet tool or a
    runner's ``log_level='WARNING'`` sets the shared instance's level)."""
    logger = MMLogger.get_current_instance()
    lines, level = [], logger.level
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: '\n'.join(lines)
    logger.setLevel(level)
    logger.removeHandler(handler)


# ---------------------------------------------------------------- checkpoints by URL

@pytest.fixture
def server(monkeypatch):
    """A CheckpointServer on 127.0.0.1, stopped after the test."""
    monkeypatch.setenv('no_proxy', '127.0.0.1')  # a proxy set for the machine must not see it
    checkpoint_server = CheckpointServer()
    yield checkpoint_server
    checkpoint_server.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """torch.hub's checkpoint cache, under a fresh TORCH_HOME."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


# ---------------------------------------------------------------- toy sets and trainings

@pytest.fixture(scope='session')
def toy_root(tmp_path_factory):
    """8 training and 2 validation images of the toy COCO set (160-256 px; the first of each
    split holds no object), for quick runs (helpers.toy_options); tests that change it copy it
    first."""
    root = tmp_path_factory.mktemp('toy_coco')
    make_toy_coco(root, num_train=8, num_val=2, seed=0)
    return root


@pytest.fixture
def toy_detector_state(tmp_path):
    """A plain state dict of the toy detector (as a converted detector checkpoint would be)."""
    path = tmp_path / 'detector.pth'
    torch.save(dict(state_dict=build_model(Config.fromfile(TOY_DET_CONFIG)).state_dict()), path)
    return path


@pytest.fixture(scope='session')
def trained_toy_detector(tmp_path_factory):
    """tools/train.py: the toy Mask R-CNN from scratch on a generated toy COCO set, in
    ``root/data/toy_coco`` where the config reads it (the tools run from ``root``), on images
    resized to ``scale`` (at the config's 224 px it took 1.5 times as long); no validation (the
    tests evaluate the checkpoint). ``test_options`` test the toy config at that scale."""
    root = tmp_path_factory.mktemp('trained_toy_detector')
    num_train, num_val, epochs, size = 96, 16, 3, 160
    make_toy_coco(root / 'data' / 'toy_coco', num_train=num_train, num_val=num_val)
    train_scale, test_scale = (
        f'{loader}.dataset.pipeline.{resize_steps()[loader]}.scale=({size},{size})'
        for loader in ('train_dataloader', 'test_dataloader'))
    schedule = ['randomness.seed=0', f'train_cfg.max_epochs={epochs}',
                f'train_cfg.val_begin={epochs + 1}', 'param_scheduler.0.end=20',
                f'param_scheduler.1.end={epochs}', f'default_hooks.checkpoint.interval={epochs}']
    run_tool('tools/train.py', TOY_DET_CONFIG, '--work-dir', 'train', '--cfg-options',
             train_scale, *schedule, cwd=root)
    checkpoint = root / 'train' / f'epoch_{epochs}.pth'
    assert checkpoint.is_file()
    return SimpleNamespace(root=root, checkpoint=checkpoint, scale=(size, size),
                           test_options=[test_scale], num_val=num_val,
                           val_ann_file=root / 'data' / 'toy_coco' / 'annotations' /
                           'instances_val.json')


@pytest.fixture(scope='session')
def trained_toy_segmentor(tmp_path_factory):
    """tools/train.py: the toy UperNet from scratch on a generated toy ADE20K set, validated at
    the end; ``data_options`` point a run of the toy config at the set."""
    root = tmp_path_factory.mktemp('trained_toy_segmentor')
    num_train, num_val, iters, warmup = 32, 4, 20, 5
    make_toy_ade(root / 'toy_ade', num_train=num_train, num_val=num_val)
    data_options = [f'{loader}.dataset.data_root={root / "toy_ade"}' for loader in LOADERS]
    schedule = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.0.end={warmup}',
                f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}']
    run_tool('tools/train.py', TOY_SEG_CONFIG, '--work-dir', root / 'train', '--cfg-options',
             *data_options, *schedule)
    checkpoint = root / 'train' / f'iter_{iters}.pth'
    assert checkpoint.is_file()
    return SimpleNamespace(data_root=root / 'toy_ade', data_options=data_options,
                           work_dir=root / 'train', checkpoint=checkpoint, num_val=num_val)
