"""The long-range toy at a set distance, and plain MambaOut's receptive field in the sweep's
setting (b), checked against the gradients of the real model."""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from torch import nn

from mmambaout.analysis.longrange import Cell, Recipe, check_recipe, rescale_schedule
from mmambaout.analysis.models import build_model
from mmambaout.analysis.receptive_field import pixel_reach, receptive_field
from mmambaout.datasets import ensure_toy_longrange, make_toy_longrange
from mmambaout.datasets.cli import generate_from_command_line
from mmambaout.datasets.toy_longrange import render_sample

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs' / 'toy'
LOCAL = CONFIG_DIR / 'fcn_mambaout_femto_s8_longrange.py'
LOCAL_TWIN = CONFIG_DIR / 'fcn_mambaout_ss2d_femto_s8_longrange.py'
GLOBAL = CONFIG_DIR / 'upernet_mambaout_femto_longrange.py'
WIDTH = 512  # wide enough that a middle column's view is not cut by the ends


@lru_cache(maxsize=None)
def network(config: Path) -> nn.Module:
    """Backbone + decode head of the config's segmentor, float64 (no gradient underflows),
    eval mode (batch norm then acts per position)."""
    torch.manual_seed(0)
    model = build_model(Config.fromfile(config))
    return model.double().eval()


def gradient_columns(output: torch.Tensor, inputs: torch.Tensor) -> np.ndarray:
    """The input columns on which ``output`` (a scalar) depends."""
    grad, = torch.autograd.grad(output, inputs, retain_graph=True)
    return np.flatnonzero(grad.abs().sum((0, 1, 2)).numpy())


def strip(width: int = WIDTH) -> torch.Tensor:
    return torch.randn(1, 3, 32, width, dtype=torch.float64, requires_grad=True)


# ---------------------------------------------------------------- the set

@pytest.mark.parametrize('distance', [1, 32, 192])
def test_target_is_exactly_distance_columns_from_marker(distance):
    sides = set()
    for index in range(12):
        image, labels, record = render_sample(0, 'train', index, distance=distance, width=320)
        assert image.shape == (32, 320, 3)
        x0, y0, x1, y1 = record['marker_box']
        assert (x1 - x0, y1 - y0) == (16, 16)
        assert np.abs(image[y0:y1, x0:x1] - image[y0, x0]).max() == 0  # one flat colour
        ys, xs = np.nonzero(labels)
        assert set(labels[ys, xs]) == {record['label']}
        # Chebyshev distance from every target pixel to the nearest marker pixel
        dx = np.maximum(0, np.maximum(x0 - xs, xs - (x1 - 1)))
        dy = np.maximum(0, np.maximum(y0 - ys, ys - (y1 - 1)))
        chebyshev = np.maximum(dx, dy)
        assert chebyshev.min() == distance and chebyshev.max() <= distance + 15
        assert np.ptp(xs) == 15 and len(xs) > 200
        sides.add(xs.min() > x0)
    assert sides == {True, False}  # the marker is left of the target in some images, right in others


def test_set_on_disk_and_its_settings(tmp_path):
    root = tmp_path / 'd100'
    make_toy_longrange(root, num_train=3, num_val=2, distance=100, width=256)
    meta = json.loads((root / 'meta.json').read_text())
    assert (meta['distance'], meta['width'], meta['height']) == (100, 256, 32)
    labels = np.asarray(Image.open(root / 'annotations' / 'training' / '000001.png'))
    assert labels.shape == (32, 256)
    assert ensure_toy_longrange(root, num_train=3, num_val=2, distance=100, width=256) == root
    with pytest.raises(ValueError, match=r"d100 holds a long-range set drawn with .*'distance': "
                       r"100.* not .*'distance': 101"):
        ensure_toy_longrange(root, num_train=3, num_val=2, distance=101, width=256)
    with pytest.raises(ValueError, match='distance 300 does not fit a strip 320 px wide .*at '
                       'least 339'):
        make_toy_longrange(tmp_path / 'far', distance=300, width=320)
    assert not (tmp_path / 'far').exists()


def test_command_line_sets_distance_and_width(tmp_path, capsys):
    generate_from_command_line(
        'doc', make_toy_longrange, out='unused', num_train=2, num_val=1,
        argv=['--out', str(tmp_path), '--num-train', '1', '--distance', '50', '--width', '96'],
        distance=(128, 'columns'), width=(320, 'px'))
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert (meta['distance'], meta['width'], len(meta['training'])) == (50, 96, 1)
    assert str(tmp_path / 'meta.json') in capsys.readouterr().out


# ---------------------------------------------------------------- receptive field

def test_logit_window_is_where_the_gradient_is_nonzero():
    model = network(LOCAL)
    head = nn.Sequential(model.backbone, model.decode_head)
    window = receptive_field(head, torch.zeros(1, 3, 32, WIDTH, dtype=torch.float64))
    inputs = strip()
    logits = head(inputs)  # stride 8: (1, 3, 4, 64)
    assert logits.shape[-1] == WIDTH // window.jump
    for column in (30, 33):
        columns = gradient_columns(logits[0, 1, 2, column], inputs)
        assert (columns.min(), columns.max()) == window.columns(column)
        assert len(columns) == window.size  # no gap inside
    assert (window.size, window.jump) == (263, 8)  # the figure the config's comment quotes


def test_pixel_reach_is_where_the_gradient_of_an_output_pixel_is_nonzero():
    model = network(LOCAL)
    window = receptive_field(nn.Sequential(model.backbone, model.decode_head),
                             torch.zeros(1, 3, 32, WIDTH, dtype=torch.float64))
    inputs = strip()
    meta = dict(img_shape=(32, WIDTH), ori_shape=(32, WIDTH), pad_shape=(32, WIDTH))
    logits = model.encode_decode(inputs, [meta])  # upsampled to the input, as mmseg predicts
    assert logits.shape[-2:] == (32, WIDTH)
    reaches = []
    for column in range(256, 256 + window.jump):  # one period of the interpolation pattern
        columns = gradient_columns(logits[0, 0, 16, column], inputs)
        reaches += [column - columns.min(), columns.max() - column]
    assert pixel_reach(window) == (min(reaches), max(reaches))


@pytest.mark.parametrize('config', [LOCAL_TWIN, GLOBAL], ids=['local twin', 'global'])
def test_global_paths_are_refused_and_reach_everywhere(config):
    model = network(config)
    with pytest.raises(ValueError, match='receptive field is the whole input'):
        receptive_field(nn.Sequential(model.backbone, model.decode_head),
                        torch.zeros(1, 3, 32, WIDTH, dtype=torch.float64))
    inputs = strip()
    logits = model.decode_head(model.backbone(inputs))
    columns = gradient_columns(logits[0, 0, 0, logits.shape[-1] // 2], inputs)
    assert (columns.min(), columns.max()) == (0, WIDTH - 1)


# ---------------------------------------------------------------- sweep plumbing

def test_schedule_is_stretched_to_the_cell_iterations():
    cfg = Config.fromfile(GLOBAL)
    assert cfg.train_cfg.max_iters == 400
    rescale_schedule(cfg, 100)
    assert cfg.train_cfg.max_iters == 100 and cfg.train_cfg.val_interval == 25
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 12), (12, 100)]


def test_a_sweep_folder_keeps_its_recipe(tmp_path):
    check_recipe(tmp_path, Recipe(40, 64, 24, 320))
    check_recipe(tmp_path, Recipe(40, 64, 24, 320))
    with pytest.raises(ValueError, match="recipe .*'iters': 40.*not.*'iters': 50.* another --out"):
        check_recipe(tmp_path, Recipe(50, 64, 24, 320))


def test_cell_names_are_distinct():
    cells = [Cell(s, m, d, seed) for s in ('local', 'global')
             for m in ('MambaOut', 'MambaOut + SS2D') for d in (32, 320) for seed in (0, 1)]
    assert len({c.name for c in cells}) == len(cells)
