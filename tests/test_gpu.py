"""On a CUDA GPU (skipped without one; `make test-gpu` or tools/gpu_check.sh runs them): the Triton
scan against the chunked one at VMamba-T's sizes, the models on either backend, AMP training of
the toy detector and segmentor through tools/train.py, and the real configs at their real input
size. Seconds per iteration and peak memory go to pytest's record_property (--junitxml keeps
them for tools/gpu_check.sh's report)."""
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from helpers import TOY_DET_CONFIG, TOY_SEG_CONFIG, run_tool
from mmambaout.datasets import TOY_COCO_CLASSES, make_toy_ade, make_toy_coco
from mmambaout.models.backbones import MambaOut, VMamba
from mmambaout.models.layers import SS2D
from mmambaout.ops import chunked, selective_scan
from test_detection_e2e import AP_FLOOR
from test_segmentation_e2e import MIOU_FLOOR
from test_selective_scan import assert_close, make_inputs, run

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]

REPO = Path(__file__).resolve().parents[1]
# VMamba-T's scans at 800x1280 (stage 1: 200x320 tokens): 4 directions x its channels, n = 1
STAGES = {'stage1': dict(dim=4 * 96, length=200 * 320), 'stage2': dict(dim=4 * 192, length=16000),
          'stage3': dict(dim=4 * 384, length=4000)}
# fp32: both sum up to 128000 terms in different orders; bf16: both round the same fp32 result
REL = {torch.float32: 1e-3, torch.bfloat16: 1e-2}
DTYPES = pytest.mark.parametrize('dtype', list(REL), ids=['fp32', 'bf16'])


@pytest.mark.parametrize('stage', STAGES)
@DTYPES
def test_triton_scan_equals_chunked_at_vmamba_tiny_sizes(stage, dtype):
    inputs = make_inputs(batch=2, state=1, groups=4, dtype=dtype, device='cuda', **STAGES[stage])
    expected = run('chunked', inputs, delta_softplus=True)
    actual = run('triton', inputs, delta_softplus=True)
    assert actual['out'].dtype == dtype
    assert_close(actual, expected, REL[dtype])


def test_auto_runs_triton_on_cuda_tensors(monkeypatch):
    from mmambaout.ops import triton_scan
    ran = []
    for module in (triton_scan, chunked):
        def spy(*args, solve=module.forward, name=module.__name__):
            ran.append(name)
            return solve(*args)
        monkeypatch.setattr(module, 'forward', spy)
    selective_scan(**make_inputs(device='cuda'), backend='auto')
    assert ran == [triton_scan.__name__]


def outputs_and_gradients(model, x):
    """Every output, the input's gradient and every parameter's, for one weighted loss."""
    x = x.clone().requires_grad_()
    outputs = model(x)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    gen = torch.Generator(device=x.device).manual_seed(1)
    sum((out * torch.randn(out.shape, generator=gen, device=x.device)).sum()
        for out in outputs).backward()
    result = {f'out{i}': out.detach() for i, out in enumerate(outputs)}
    result['grad_input'] = x.grad
    result.update((f'grad_{name}', p.grad) for name, p in model.named_parameters())
    return result


MODELS = {
    'ss2d': (lambda backend: SS2D(96, ssm_ratio=1.0, d_state=1, scan_backend=backend),
             (2, 128, 160, 96)),
    'vmamba_tiny': (lambda backend: VMamba('tiny', scan_backend=backend), (2, 3, 512, 640)),
    'mambaout_tiny_ss2d': (lambda backend: MambaOut('tiny', token_mixer='gated_cnn_ss2d',
                                                    scan_backend=backend), (2, 3, 512, 640)),
}


@pytest.mark.parametrize('name', MODELS)
def test_models_on_triton_equal_chunked(name):
    build, shape = MODELS[name]
    torch.manual_seed(0)
    chunked_model = build('chunked').cuda()
    triton_model = build('triton').cuda()
    triton_model.load_state_dict(chunked_model.state_dict())
    x = torch.randn(shape, device='cuda')
    expected = outputs_and_gradients(chunked_model, x)
    # 10x the scan's tolerance: the differences pass through every block and norm
    assert_close(outputs_and_gradients(triton_model, x), expected, 1e-2)


def logged(work_dir: Path, key: str) -> list:
    """mmengine's records (vis_data/scalars.json) that hold ``key``: 'loss' for the training
    iterations (with time and memory), a metric for the validations."""
    (scalars, ) = work_dir.glob('*/vis_data/scalars.json')
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r for r in records if key in r]


# Each record's time is its own iteration's: mmengine logs a mean over window_size iterations
# (50 for mmdet, 10 for mmseg), which carries the first iteration's one-time set-up (worker
# start, CUDA and cuDNN initialisation) into every record of a short run.
ONE_ITERATION_WINDOW = 'log_processor.window_size=1'


def check_amp_training(work_dir: Path, record_property) -> None:
    """fp16 with a dynamic loss scale, finite losses; records s/iteration and peak memory."""
    (dumped, ) = work_dir.glob('*/vis_data/config.py')
    wrapper = Config.fromfile(dumped).optim_wrapper
    assert (wrapper.type, wrapper.get('loss_scale')) == ('AmpOptimWrapper', 'dynamic'), wrapper
    assert wrapper.get('dtype') in (None, 'float16')  # autocast's CUDA default: fp16
    iterations = logged(work_dir, 'loss')
    assert iterations
    for record in iterations:
        losses = {k: v for k, v in record.items() if k.startswith('loss')}
        assert all(math.isfinite(v) for v in losses.values()), record
    record_property('seconds_per_iteration',
                    round(statistics.median(r['time'] for r in iterations[1:] or iterations), 4))
    record_property('peak_memory_mib', max(r['memory'] for r in iterations))


@pytest.mark.slow
def test_mask_rcnn_toy_amp_training(tmp_path, record_property):
    # tools/train.py with the toy config, as tests/test_detection_e2e.py, plus --amp
    make_toy_coco(tmp_path / 'data/toy_coco', num_train=96, num_val=16)
    epochs = 3
    schedule = [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
                'param_scheduler.0.end=20', f'param_scheduler.1.end={epochs}',
                'default_hooks.logger.interval=1', f'default_hooks.checkpoint.interval={epochs}',
                ONE_ITERATION_WINDOW]
    run_tool('tools/train.py', TOY_DET_CONFIG, '--amp', '--work-dir', 'train',
             '--cfg-options', *schedule, cwd=tmp_path)
    check_amp_training(tmp_path / 'train', record_property)
    (metrics, ) = logged(tmp_path / 'train', 'coco/bbox_mAP')
    record_property('bbox_mAP', metrics['coco/bbox_mAP'])
    assert metrics['coco/bbox_mAP'] > AP_FLOOR, metrics


# The toy UperNet with a VMamba backbone of the toy MambaOut's widths (the heads fit unchanged).
TOY_VMAMBA_SEG = """_base_ = [{base!r}]
model = dict(backbone=dict(_delete_=True, type='VMamba', out_indices=(0, 1, 2, 3),
                           arch=dict(depths=(2, 2, 4, 2), dims=(48, 96, 192, 288),
                                     ssm_ratio=1.0, d_state=1)))
"""


@pytest.mark.slow
def test_upernet_vmamba_toy_amp_training(tmp_path, record_property):
    config = tmp_path / 'upernet_vmamba_toy.py'
    config.write_text(TOY_VMAMBA_SEG.format(base=str(REPO / TOY_SEG_CONFIG)))
    make_toy_ade(tmp_path / 'toy_ade', num_train=32, num_val=8)
    iters, warmup = 40, 10
    options = [f'{loader}.dataset.data_root={tmp_path / "toy_ade"}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
                ONE_ITERATION_WINDOW, f'param_scheduler.0.end={warmup}',
                f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}']
    run_tool('tools/train.py', str(config), '--amp', '--work-dir', str(tmp_path / 'train'),
             '--cfg-options', *options)
    check_amp_training(tmp_path / 'train', record_property)
    (metrics, ) = logged(tmp_path / 'train', 'mIoU')
    record_property('mIoU', metrics['mIoU'])
    assert metrics['mIoU'] > MIOU_FLOOR, metrics


# A real config on a toy set: its own pipelines resize the toy images to its real input size;
# batch 2, from scratch, a few iterations, no validation (the loops validate after the last
# iteration otherwise) and no checkpoint.
REAL_ITERATIONS = 6
NO_VALIDATION = """val_cfg = val_dataloader = val_evaluator = None
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1000, save_last=False))
log_processor = dict(window_size=1)
"""
REAL_DET = """_base_ = [{base!r}]
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(batch_size=2, dataset=dict(
    data_root={root!r}, ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/'), metainfo=dict(classes={classes!r})))
train_cfg = dict(max_epochs=1)
""" + NO_VALIDATION
REAL_SEG = """_base_ = [{base!r}]
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(batch_size=2, dataset=dict(data_root={root!r}))
train_cfg = dict(max_iters={iters})
""" + NO_VALIDATION


@pytest.mark.slow
@pytest.mark.parametrize('name', ['mask_rcnn_mambaout_tiny_coco', 'mask_rcnn_vmamba_tiny_coco',
                                  'upernet_mambaout_tiny_ade20k'])
def test_real_config_trains_at_its_input_size(name, tmp_path, record_property):
    base = str(REPO / f'configs/{name}.py')
    if name.startswith('mask_rcnn'):
        root = tmp_path / 'toy_coco'
        make_toy_coco(root, num_train=2 * REAL_ITERATIONS, num_val=2)
        text = REAL_DET.format(base=base, root=f'{root}/', classes=TOY_COCO_CLASSES)
    else:
        root = tmp_path / 'toy_ade'
        make_toy_ade(root, num_train=2 * REAL_ITERATIONS, num_val=2)
        text = REAL_SEG.format(base=base, root=str(root), iters=REAL_ITERATIONS)
    config = tmp_path / f'{name}_toy_data.py'
    config.write_text(text)
    run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'train'))
    check_amp_training(tmp_path / 'train', record_property)
    assert len(logged(tmp_path / 'train', 'loss')) == REAL_ITERATIONS
