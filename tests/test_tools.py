"""tools/train.py, tools/test.py, the launch scripts and get_flops: argument handling, the
config changes each flag makes for mmdet and mmseg configs, the file checks, and the changes a
machine without a GPU needs. The end-to-end toy training lives in the lead's tests."""
import logging
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MMLogger
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import _load_checkpoint

from helpers import REPO, load_tool, test_tool, train_tool
from mmambaout.utils import runtime
from mmambaout.utils.data_check import check_dataset_files

DET_CONFIG = REPO / 'configs' / 'mask_rcnn_mambaout_tiny_coco.py'
SEG_BASES = ['mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
             'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py']
get_flops = load_tool('tools/analysis/get_flops.py')


def write_config(directory: Path, bases, extra: str = '') -> Path:
    path = directory / 'config_under_test.py'
    path.write_text(f'_base_ = {list(map(str, bases))!r}\n{extra}')
    return path


@pytest.fixture
def seg_config_path(tmp_path):
    return write_config(tmp_path, SEG_BASES)


@pytest.fixture
def warnings_logged():
    """Messages of the WARNING records the mmengine logger receives during the test."""
    messages = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


@pytest.fixture
def with_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)


def run_config(launcher='none', wrapper='AmpOptimWrapper', **extra) -> Config:
    """A minimal config of what adapt_to_machine looks at."""
    return Config(dict(
        launcher=launcher, default_scope='mmdet',
        optim_wrapper=dict(type=wrapper, loss_scale='dynamic',
                           optimizer=dict(type='AdamW', lr=1e-4)),
        env_cfg=dict(dist_cfg=dict(backend='nccl')),
        model=dict(type='Net', norm_cfg=dict(type='SyncBN')), **extra))


# ---------------------------------------------------------------- arguments

def test_train_arguments(monkeypatch):
    # parse_args sets LOCAL_RANK: in a copy of the environment, which the next tests do not see
    # (with LOCAL_RANK 3 left set, check_pretrained_files would skip every download)
    monkeypatch.setattr(os, 'environ', {k: v for k, v in os.environ.items() if k != 'LOCAL_RANK'})

    def parse(*argv):
        return runtime.parse_args(train_tool.build_parser(), list(argv))

    args = parse('cfg.py', '--work-dir', 'w', '--amp', '--auto-scale-lr', '--launcher', 'pytorch',
                 '--local-rank', '3', '--cfg-options', 'model.backbone.init_cfg=None', 'a.b=2')
    assert (args.config, args.work_dir, args.amp, args.auto_scale_lr, args.launcher) == (
        'cfg.py', 'w', True, True, 'pytorch')
    assert args.cfg_options == {'model.backbone.init_cfg': None, 'a.b': 2}
    assert args.local_rank == 3 and os.environ['LOCAL_RANK'] == '3'
    assert parse('cfg.py', '--local_rank', '2').local_rank == 2
    assert parse('cfg.py').resume is None
    assert parse('cfg.py', '--resume').resume == 'auto'
    assert parse('cfg.py', '--resume', 'epoch_3.pth').resume == 'epoch_3.pth'
    with pytest.raises(SystemExit):
        parse('cfg.py', '--launcher', 'torchrun')


def test_test_arguments():
    args = runtime.parse_args(test_tool.build_parser(), [
        'cfg.py', 'ckpt.pth', '--out', 'p.pkl', '--show-dir', 'shows', '--tta', '--show',
        '--wait-time', '0.5', '--launcher', 'slurm'])
    assert (args.config, args.checkpoint, args.out, args.show_dir, args.tta, args.show,
            args.wait_time, args.launcher) == ('cfg.py', 'ckpt.pth', 'p.pkl', 'shows', True,
                                               True, 0.5, 'slurm')


# ---------------------------------------------------------------- config

def test_work_dir_rule(tmp_path):
    path = write_config(tmp_path, ['mmdet::_base_/default_runtime.py'])
    assert runtime.load_config(str(path)).work_dir == './work_dirs/config_under_test'
    assert runtime.load_config(str(path), work_dir='mine').work_dir == 'mine'
    assert runtime.load_config(str(path), {'work_dir': 'in_cfg'}).work_dir == 'in_cfg'


def test_toolbox_from_default_scope(tmp_path, seg_config_path):
    assert runtime.toolbox_of(runtime.load_config(str(DET_CONFIG))) == 'mmdet'
    assert runtime.toolbox_of(runtime.load_config(str(seg_config_path))) == 'mmseg'
    with pytest.raises(ValueError, match='default_scope'):
        runtime.load_config(str(write_config(tmp_path, [], "default_scope = 'mmpretrain'")))


def test_resume():
    cfg = Config(dict(resume=False, load_from='x.pth'))
    runtime.set_resume(cfg, None)
    assert (cfg.resume, cfg.load_from) == (False, 'x.pth')
    runtime.set_resume(cfg, 'auto')
    assert (cfg.resume, cfg.load_from) == (True, None)
    runtime.set_resume(cfg, 'epoch_3.pth')
    assert (cfg.resume, cfg.load_from) == (True, 'epoch_3.pth')


def test_amp_flag(warnings_logged):
    cfg = run_config(wrapper='OptimWrapper')
    runtime.enable_amp(cfg)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.loss_scale) == ('AmpOptimWrapper', 'dynamic')
    runtime.enable_amp(cfg)
    assert any('already enabled' in m for m in warnings_logged)
    with pytest.raises(ValueError, match='OptimWrapper'):
        runtime.enable_amp(run_config(wrapper='ApexOptimWrapper'))


def test_auto_scale_lr_flag():
    cfg = Config(dict(auto_scale_lr=dict(enable=False, base_batch_size=16)))
    runtime.enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr.enable
    with pytest.raises(ValueError, match='auto_scale_lr'):
        runtime.enable_auto_scale_lr(Config(dict()))


def test_missing_checkpoint_for_test(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        runtime.configure_testing(runtime.load_config(str(DET_CONFIG)),
                                  str(tmp_path / 'nothing.pth'))


def test_out_dumps_predictions_with_each_toolbox_metric(seg_config_path):
    det = runtime.load_config(str(DET_CONFIG))
    runtime.add_dump_metric(det, 'preds.pkl')
    assert [m['type'] for m in det.test_evaluator] == ['CocoMetric', 'DumpDetResults']
    seg = runtime.load_config(str(seg_config_path))
    runtime.add_dump_metric(seg, 'preds.pkl')
    assert seg.test_evaluator[-1] == dict(type='DumpResults', out_file_path='preds.pkl')
    with pytest.raises(ValueError, match='.pkl'):
        runtime.add_dump_metric(det, 'preds.json')


def test_show_dir_reaches_each_toolbox_writer(seg_config_path):
    det = runtime.load_config(str(DET_CONFIG))
    runtime.enable_visualization(det, show=False, show_dir='shows', wait_time=2.)
    assert det.default_hooks.visualization.draw
    assert det.default_hooks.visualization.test_out_dir == 'shows'
    seg = runtime.load_config(str(seg_config_path))
    runtime.enable_visualization(seg, show=True, show_dir='shows', wait_time=0.5)
    assert seg.default_hooks.visualization.draw and seg.default_hooks.visualization.show
    assert seg.default_hooks.visualization.interval == 1
    assert seg.visualizer.save_dir == './work_dirs/config_under_test/shows'


def test_tta(seg_config_path):
    seg = runtime.load_config(str(seg_config_path))
    model = seg.model
    runtime.use_tta(seg)
    assert seg.model.type == 'SegTTAModel' and seg.model.module == model
    assert seg.test_dataloader.dataset.pipeline == seg.tta_pipeline
    with pytest.raises(ValueError, match='tta_model and tta_pipeline'):
        runtime.use_tta(runtime.load_config(str(DET_CONFIG)))


# ---------------------------------------------------------------- files

def test_ade20k_layout(seg_config_path, tmp_path, monkeypatch):
    cfg = runtime.load_config(str(seg_config_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(cfg, ['train_dataloader'])
    message = str(error.value)
    assert 'data/ade/ADEChallengeData2016/images/training' in message
    assert 'annotations/validation/*.png' in message  # the expected layout
    for folder in ('images/training', 'annotations/training'):
        (tmp_path / 'data/ade/ADEChallengeData2016' / folder).mkdir(parents=True)
    check_dataset_files(cfg, ['train_dataloader'])


def test_wrapped_and_unknown_datasets(tmp_path):
    dataset = dict(type='MyDataset', data_root=str(tmp_path), ann_file='train.json',
                   data_prefix=dict(img='images/'))
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2,
                                                         dataset=dataset)),
                      val_dataloader=None))
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(cfg, ['train_dataloader', 'val_dataloader'])
    message = str(error.value)
    assert str(tmp_path / 'train.json') in message and str(tmp_path / 'images') in message
    assert 'standard layout' not in message  # no documented layout for this type


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_runner_checkpoints_of_the_work_dir_load_under_weights_only_torch(tool, tmp_path,
                                                                          monkeypatch):
    # mmengine checkpoints hold objects such as the message hub's HistoryBuffer. The tools
    # unpickle them fully in the run's work dir only (tests/test_resume.py tests the rest).
    # A copy: registering a loader changes the table in place before replacing it.
    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict={'w': torch.ones(1)}, message_hub=dict(loss=HistoryBuffer())),
               path)
    with pytest.raises(Exception, match='Weights only load failed'):
        _load_checkpoint(str(path))
    cfg = run_config(work_dir=str(tmp_path))
    if tool == 'train':
        runtime.configure_training(cfg, resume=str(path))
    else:
        runtime.configure_testing(cfg, str(path))
    assert isinstance(_load_checkpoint(str(path))['message_hub']['loss'], HistoryBuffer)
    assert 'RefuseMismatchedCheckpointHook' in [hook.type for hook in cfg.custom_hooks]


# ---------------------------------------------------------------- machine

def test_amp_falls_back_to_fp32_without_gpu(no_gpu, warnings_logged):
    cfg = run_config()
    runtime.adapt_to_machine(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert any('No GPU' in m and 'fp32' in m for m in warnings_logged)


def test_gpu_machine_keeps_amp_and_nccl(with_gpu, warnings_logged):
    cfg = run_config(launcher='pytorch')
    runtime.adapt_to_machine(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg
    assert not warnings_logged


def test_cpu_distributed_uses_gloo(no_gpu, warnings_logged):
    cfg = run_config(launcher='pytorch')
    runtime.adapt_to_machine(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model.norm_cfg.type == 'BN'
    assert any("'gloo' instead of 'nccl'" in m for m in warnings_logged)
    assert any('SyncBN' in m for m in warnings_logged)

    single = run_config()
    runtime.adapt_to_machine(single)
    assert single.env_cfg.dist_cfg.backend == 'nccl' and single.model.norm_cfg.type == 'SyncBN'
    with pytest.raises(ValueError, match='launcher pytorch'):
        runtime.adapt_to_machine(run_config(launcher='slurm'))


# ---------------------------------------------------------------- scripts

@pytest.fixture
def fake_bin(tmp_path):
    """A folder with `python` and `srun` stand-ins that print their arguments."""
    for name in ('python', 'srun'):
        script = tmp_path / name
        script.write_text('#!/usr/bin/env bash\necho "$(basename "$0") $*"\n')
        script.chmod(0o755)
    return tmp_path


def run_script(script: str, *args, env=None) -> str:
    result = subprocess.run(['bash', str(REPO / 'tools' / script), *args], env=env,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_dist_scripts_call_torchrun(fake_bin):
    env = dict(os.environ, PYTHON=str(fake_bin / 'python'), NNODES='2', NODE_RANK='1',
               MASTER_ADDR='10.0.0.1', PORT='29555')
    launch = ('python -m torch.distributed.run --nnodes=2 --node_rank=1 --master_addr=10.0.0.1 '
              '--master_port=29555 --nproc_per_node=4 ')
    tools = REPO / 'tools'
    assert run_script('dist_train.sh', 'cfg.py', '4', '--amp', env=env) == (
        f'{launch}{tools}/train.py cfg.py --amp --launcher pytorch')
    assert run_script('dist_test.sh', 'cfg.py', 'ckpt.pth', '4', '--tta', env=env) == (
        f'{launch}{tools}/test.py cfg.py ckpt.pth --tta --launcher pytorch')


def test_slurm_script_calls_srun(fake_bin):
    env = dict(os.environ, PATH=f'{fake_bin}:{os.environ["PATH"]}', PYTHON='python', GPUS='16')
    assert run_script('slurm_train.sh', 'part', 'job', 'cfg.py', 'wd', '--amp', env=env) == (
        'srun -p part --job-name=job --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 '
        f'--cpus-per-task=5 --kill-on-bad-exit=1 python -u {REPO}/tools/train.py cfg.py '
        '--work-dir=wd --launcher=slurm --amp')


# ---------------------------------------------------------------- get_flops

def test_get_flops_detection(capsys):
    get_flops.main([str(DET_CONFIG), '--shape', '320', '480'])
    out = capsys.readouterr().out
    assert 'input 1x3x320x480' in out
    assert '| total | 43.13 |' in out  # the paper's 43M
    # pinned (the heads' FLOPs vary with the number of proposals of a random image)
    assert '| backbone | 22.91 | 13.7 |' in out


# ops without FLOPs in mmengine's count (elementwise, or moving data): any other op left
# uncounted, the selective scan above all, would leave the FLOPs short
NO_FLOP_OPS = {'aten::add', 'aten::add_', 'aten::mul', 'aten::mul_', 'aten::exp', 'aten::neg',
               'aten::gelu', 'aten::silu', 'aten::flip', 'aten::unflatten',
               'aten::feature_dropout'}


def test_get_flops_counts_every_vmamba_op(capsys):
    get_flops.main([str(REPO / 'configs' / 'upernet_vmamba_tiny_ade20k.py'), '--shape', '64',
                    '96'])
    out = capsys.readouterr().out
    uncounted = re.search(r'Not counted \(no FLOP rule in mmengine\): (.*)', out)[1]
    assert {op.split(' (x')[0] for op in uncounted.split(', ')} <= NO_FLOP_OPS, uncounted


def test_get_flops_segmentation_without_auxiliary_head(seg_config_path, capsys):
    get_flops.main([str(seg_config_path), '--shape', '64', '64'])
    out = capsys.readouterr().out
    assert '| decode_head |' in out and 'auxiliary_head' not in out
