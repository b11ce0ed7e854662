"""The shipped UperNet configs: they build, train and predict, match the paper's sizes and
recipe, test with mmseg's multi-scale + flip augmentation under --tta, and stop at start-up with
the ADE20K layout when the dataset is missing."""
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules
from torch import nn

from mmambaout.analysis.models import build_model
from mmambaout.utils import runtime
from mmambaout.utils.data_check import check_dataset_files

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
TOY = CONFIG_DIR / 'toy' / 'upernet_mambaout_femto_toy.py'
SEG_CONFIGS = sorted(CONFIG_DIR.glob('upernet_mambaout_*.py')) + [TOY]
# UperNet 160k parameters in the MambaOut paper (millions).
PAPER_PARAMS_M = {'tiny': 54, 'small': 76, 'base': 112}
NUM_CLASSES = 150
# Loss and predict on small images: training inputs padded to TRAIN_PAD (the real configs pad
# them to 512x512), test inputs as they are.
TRAIN_SHAPES, TRAIN_PAD, TEST_SHAPE = [(64, 96), (48, 80)], (64, 96), (56, 72)

register_all_modules()


def size_config(size: str) -> Path:
    return CONFIG_DIR / f'upernet_mambaout_{size}_ade20k.py'


@lru_cache(maxsize=None)
def build(path: Path) -> nn.Module:
    return build_model(Config.fromfile(path))  # with BN for SyncBN, as the Runner on one process


def seg_batch(model, shapes, training: bool) -> dict:
    """Random uint8 images with random ADE20K labels (some ignored) through the preprocessor."""
    inputs, samples = [], []
    for height, width in shapes:
        labels = torch.randint(0, NUM_CLASSES, (1, height, width))
        labels[:, :height // 4] = 255  # ignore index, as ADE20K's "other" after reduce_zero_label
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
        samples.append(SegDataSample(
            gt_sem_seg=PixelData(data=labels),
            metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                          pad_shape=(height, width))))
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training)


def test_configs_are_shipped():
    names = {p.name for p in SEG_CONFIGS}
    assert {size_config(size).name for size in PAPER_PARAMS_M} <= names


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=lambda p: p.stem)
def test_config_trains_and_predicts(path):
    model = build(path).train()
    model.data_preprocessor.size = TRAIN_PAD
    losses = model(**seg_batch(model, TRAIN_SHAPES, True), mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())

    model.eval()
    with torch.no_grad():
        results = model(**seg_batch(model, [TEST_SHAPE] * 2, False), mode='predict')
    assert len(results) == 2
    for result in results:
        assert result.seg_logits.data.shape == (NUM_CLASSES, *TEST_SHAPE)
        assert result.pred_sem_seg.data.shape == (1, *TEST_SHAPE)


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=lambda p: p.stem)
def test_head_channels_follow_backbone(path):
    model = build(path)
    dims = model.backbone.dims
    assert tuple(model.decode_head.in_channels) == dims
    assert model.auxiliary_head.in_channels == dims[2]
    assert model.decode_head.num_classes == model.auxiliary_head.num_classes == NUM_CLASSES


@pytest.mark.parametrize('size', PAPER_PARAMS_M)
def test_param_count_matches_paper(size):
    model = build(size_config(size))
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(PAPER_PARAMS_M[size], rel=0.02)
    assert model.decode_head.channels == 512  # as mmseg's Swin UperNet


def test_recipe():
    cfgs = {size: Config.fromfile(size_config(size)) for size in PAPER_PARAMS_M}
    cfg = cfgs['tiny']
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                               weight_decay=0.01)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.begin, poly.end) == (
        'LinearLR', 1500, 'PolyLR', 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.crop_size == cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    assert cfg.val_evaluator.iou_metrics == ['mIoU']
    assert {size: c.model.backbone.drop_path_rate for size, c in cfgs.items()} == dict(
        tiny=0.3, small=0.4, base=0.6)
    for size, c in cfgs.items():
        assert c.pretrained == ('https://github.com/yuweihao/MambaOut/releases/download/model/'
                                f'mambaout_{size}.pth')
        assert c.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=c.pretrained)


def test_tta_is_multi_scale_and_flip():
    cfg = Config.fromfile(size_config('tiny'))
    runtime.use_tta(cfg)  # what tools/test.py --tta does
    assert cfg.model.type == 'SegTTAModel'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline == cfg.tta_pipeline
    scales, flips = pipeline[1].transforms[:2]
    assert [t.scale_factor for t in scales] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert sorted(t.prob for t in flips) == [0., 1.]


def test_toy_config_fits_a_cpu():
    cfg = Config.fromfile(TOY)
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # no AMP
    assert cfg.model.backbone.arch == 'femto' and cfg.model.backbone.init_cfg is None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == 'data/toy_ade'
        assert cfg[loader].dataset.type == 'ADE20KDataset'
    assert (cfg.val_evaluator.type, cfg.val_evaluator.iou_metrics) == ('IoUMetric', ['mIoU'])
    assert 0 < cfg.train_cfg.val_interval <= cfg.train_cfg.max_iters


def test_missing_pretrained_file_stops_at_startup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative checkpoint path that does not exist here
    # (the config's own is a URL: test_released_weights.py tests downloads, from 127.0.0.1)
    cfg = runtime.load_config(str(size_config('tiny')), {
        'model.backbone.init_cfg.checkpoint': 'checkpoints/mambaout_tiny.pth'})
    with pytest.raises(FileNotFoundError) as error:
        runtime.configure_training(cfg)
    assert 'checkpoints/mambaout_tiny.pth' in str(error.value)


def test_missing_data_root_names_the_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(Config.fromfile(size_config('tiny')), ['train_dataloader'])
    message = str(error.value)
    for path in ('data/ade/ADEChallengeData2016/images/training',
                 'data/ade/ADEChallengeData2016/annotations/training', 'annotations/validation'):
        assert path in message
