"""The shipped Mask R-CNN configs: they build, train and predict, match the paper's sizes, and
stop at start-up with a useful message when the pretrained file or the dataset is missing."""
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from PIL import Image
from torch import nn

from mmambaout.analysis.models import build_model
from mmambaout.utils import runtime
from mmambaout.utils.data_check import check_dataset_files

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
DET_CONFIGS = sorted(CONFIG_DIR.glob('mask_rcnn_*.py'))
TINY = CONFIG_DIR / 'mask_rcnn_mambaout_tiny_coco.py'
TINY_3X = CONFIG_DIR / 'mask_rcnn_mambaout_tiny_coco_3x.py'
# Mask R-CNN 1x parameters in the MambaOut paper (millions).
PAPER_PARAMS_M = {'tiny': 43, 'small': 65, 'base': 100}

register_all_modules()


def config_param(path: Path):
    # VMamba's selective scan runs in plain PyTorch on a CPU: its larger sizes take 20-45 s here.
    slow = 'vmamba' in path.stem and 'tiny' not in path.stem
    return pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else [])


@lru_cache(maxsize=None)
def build(path: Path) -> nn.Module:
    return build_model(Config.fromfile(path))


def demo_batch(model, training: bool) -> dict:
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 96, 128]], num_items=[2, 1], with_mask=True)
    return model.data_preprocessor(packed, training)


def test_configs_are_shipped():
    names = {p.name for p in DET_CONFIGS}
    assert {f'mask_rcnn_mambaout_{size}_coco.py' for size in PAPER_PARAMS_M} <= names
    assert TINY_3X in DET_CONFIGS


# The 3x config's model is the 1x config's (test_recipe): trained here once.
@pytest.mark.parametrize('path', [config_param(p) for p in DET_CONFIGS if p != TINY_3X])
def test_config_trains_and_predicts(path):
    model = build(path).train()
    losses = model(**demo_batch(model, True), mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items()
                if k.startswith('loss'))
    assert torch.isfinite(total)

    model.eval()
    with torch.no_grad():
        results = model(**demo_batch(model, False), mode='predict')
    assert len(results) == 2
    for result in results:
        instances = result.pred_instances
        assert tuple(instances.masks.shape[1:]) == tuple(result.ori_shape)
        assert len(instances.bboxes) == len(instances.scores) == len(instances.masks)


@pytest.mark.parametrize('size', PAPER_PARAMS_M)
def test_param_count_matches_paper(size):
    model = build(CONFIG_DIR / f'mask_rcnn_mambaout_{size}_coco.py')
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(PAPER_PARAMS_M[size], rel=0.02)


def test_recipe():
    cfg = Config.fromfile(TINY)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                               weight_decay=0.05)
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.param_scheduler[-1].milestones == [8, 11]
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (1333, 800)
    drop_paths = {size: Config.fromfile(CONFIG_DIR / f'mask_rcnn_mambaout_{size}_coco.py')
                  .model.backbone.drop_path_rate for size in PAPER_PARAMS_M}
    assert drop_paths == dict(tiny=0.3, small=0.4, base=0.6)

    cfg_3x = Config.fromfile(TINY_3X)
    assert cfg_3x.train_cfg.max_epochs == 36
    assert cfg_3x.param_scheduler[-1].milestones == [27, 33]
    assert cfg_3x.model == cfg.model


def test_3x_pipeline_trains_at_many_scales(tmp_path):
    """Swin's 3x recipe: every training image ends with a short side of 480, 512, ..., 800
    (long side at most 1333), half of them after a random crop that changes the aspect."""
    height, width = 480, 640
    image = tmp_path / 'image.png'
    Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(image)
    box = [100., 100., 300., 250.]
    instance = dict(bbox=box, bbox_label=0, ignore_flag=0,
                    mask=[[100., 100., 300., 100., 300., 250., 100., 250.]])
    cfg = Config.fromfile(TINY_3X)
    pipeline = Compose(cfg.train_dataloader.dataset.pipeline)
    random.seed(0)
    np.random.seed(0)
    shapes = set()
    for _ in range(40):
        packed = pipeline(dict(img_path=str(image), img_id=0, height=height, width=width,
                               instances=[instance]))
        shapes.add(tuple(packed['inputs'].shape[1:]))
    assert {min(shape) for shape in shapes} <= set(range(480, 801, 32))
    assert all(max(shape) <= 1333 for shape in shapes)
    uncropped = {shape for shape in shapes if abs(shape[1] / shape[0] - width / height) < 5e-3}
    assert uncropped != shapes  # both branches of the RandomChoice ran, each at many scales
    assert len({min(shape) for shape in uncropped}) > 3
    assert len({min(shape) for shape in shapes - uncropped}) > 3


def test_norms_and_biases_get_no_weight_decay():
    cfg = Config.fromfile(TINY)
    runtime.use_fp32_optim_wrapper(cfg)  # AmpOptimWrapper needs a GPU; the groups are the same
    model = build(TINY)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    decay = {id(p): group['weight_decay'] for group in optimizer.param_groups
             for p in group['params']}
    layer_norms = [m for m in model.backbone.modules() if isinstance(m, nn.LayerNorm)]
    assert len(layer_norms) == 2 + 3 + 18 + 4  # stem, downsamplings, blocks, output norms
    for norm in layer_norms:
        assert decay[id(norm.weight)] == decay[id(norm.bias)] == 0
    for name, param in model.named_parameters():
        expected = 0 if name.endswith('bias') or 'norm' in name else 0.05
        assert decay[id(param)] == expected, name


def test_missing_pretrained_file_stops_at_startup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative checkpoint path that does not exist here
    # (the config's own is a URL: test_released_weights.py tests downloads, from 127.0.0.1)
    cfg = runtime.load_config(
        str(TINY), {'model.backbone.init_cfg.checkpoint': 'checkpoints/mambaout_tiny.pth'})
    with pytest.raises(FileNotFoundError) as error:
        runtime.configure_training(cfg)
    message = str(error.value)
    assert 'checkpoints/mambaout_tiny.pth' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message


def test_missing_data_root_names_the_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(Config.fromfile(TINY), ['train_dataloader'])
    message = str(error.value)
    for path in ('data/coco/annotations/instances_train2017.json', 'data/coco/', 'train2017/',
                 'val2017/'):
        assert path in message
