"""The long-range toy (at a set distance, and dense), plain MambaOut's receptive field in the
study's configs checked against the gradients of the real model, the per-distance metric, and
the controls, Fisher's test and the decision rule on hand-made results."""
import dataclasses
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from torch import nn

from mmambaout.analysis.longrange import (ARMS, GLOBAL, PLAIN, PLAIN_K1, TWIN, TWIN_K1, Cell,
                                          LongRangeDistanceAccuracy, Reach, Recipe, Sweep,
                                          check_recipe, configs_digest, controls,
                                          fisher_greater, rescale_schedule, verdict)
from mmambaout.analysis.models import build_model
from mmambaout.analysis.receptive_field import pixel_reach, receptive_field
from mmambaout.datasets import ensure_toy_longrange, make_toy_longrange
from mmambaout.datasets.cli import generate_from_command_line
from mmambaout.datasets.toy_longrange import (MARKER_RGB, ensure_toy_longrange_dense,
                                              marker_distance, render_dense_sample,
                                              render_sample)

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs' / 'toy'
LOCAL = CONFIG_DIR / 'fcn_mambaout_femto_s8_longrange.py'
LOCAL_TWIN = CONFIG_DIR / 'fcn_mambaout_ss2d_femto_s8_longrange.py'
LOCAL_K1 = CONFIG_DIR / 'fcn_mambaout_femto_s8_k1_longrange.py'
POOL = CONFIG_DIR / 'fcn_mambaout_femto_s8_pool_longrange.py'
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


def chebyshev_to_marker(marker: np.ndarray) -> np.ndarray:
    """Brute force: each pixel's least Chebyshev distance to any marker pixel."""
    ys, xs = np.indices(marker.shape)
    my, mx = np.nonzero(marker)
    return np.maximum(abs(ys[..., None] - my), abs(xs[..., None] - mx)).min(-1)


def test_dense_set_labels_every_pixel_and_differs_only_in_the_marker_colour():
    images = [render_dense_sample(0, 'train', index, width=96) for index in range(6)]
    for scene in (images[:3], images[3:]):
        (first, labels, record), *others = scene
        marker = labels == 0
        x0, y0, x1, y1 = record['marker_box']
        assert marker.sum() == 256 and marker[y0:y1, x0:x1].all()
        for class_index, (image, other_labels, other_record) in enumerate(scene):
            assert other_record == dict(record, label=class_index + 1)
            assert set(np.unique(other_labels)) == {0, class_index + 1}
            assert (other_labels == 0).sum() == 256
            # alike but for the marker, whose colour names the class
            assert np.array_equal(image[~marker], first[~marker])
            assert np.abs(image[marker] - MARKER_RGB[class_index]).max() == 0
    assert images[0][2]['marker_box'] != images[3][2]['marker_box']  # two scenes
    np.testing.assert_array_equal(marker_distance(images[0][1] == 0),
                                  chebyshev_to_marker(images[0][1] == 0))


def test_dense_set_on_disk_and_its_settings(tmp_path):
    root = ensure_toy_longrange_dense(tmp_path / 'dense', num_train=3, num_val=3, width=64)
    meta = json.loads((root / 'meta.json').read_text())
    assert (meta['labels'], meta['width'], len(meta['training'])) == ('dense', 64, 3)
    with pytest.raises(ValueError, match=r"dense holds a long-range set drawn with .*'width': "
                       r"64.* not .*'width': 96"):
        ensure_toy_longrange_dense(root, num_train=3, num_val=3, width=96)
    with pytest.raises(ValueError, match=r"'distance': None.* not .*'distance': 128"):
        ensure_toy_longrange(root, num_train=3, num_val=3, width=64)  # not a dense set's reader
    target = ensure_toy_longrange(tmp_path / 'target', num_train=3, num_val=3, width=64,
                                  distance=20)
    with pytest.raises(ValueError, match=r"'labels': None.* not .*'labels': 'dense'"):
        ensure_toy_longrange_dense(target, num_train=3, num_val=3, width=64)
    with pytest.raises(ValueError, match='num_train 4: .* a multiple of 3'):
        ensure_toy_longrange_dense(tmp_path / 'odd', num_train=4, num_val=3)


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


def test_k1_arm_sees_only_the_stem_downsampling_and_head():
    model = network(LOCAL_K1)
    window = receptive_field(nn.Sequential(model.backbone, model.decode_head),
                             torch.zeros(1, 3, 32, WIDTH, dtype=torch.float64))
    inputs = strip()
    logits = model.decode_head(model.backbone(inputs))
    columns = gradient_columns(logits[0, 0, 2, 32], inputs)
    assert (columns.min(), columns.max()) == window.columns(32)
    # by hand: stem ±3, downsampling ±4 (1 token at stride 4), two 3x3 head convs ±16
    assert window.size == 2 * (3 + 4 + 16) + 1


@pytest.mark.parametrize('config', [LOCAL_TWIN, POOL], ids=['twin', 'global pool'])
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
    cfg = Config.fromfile(LOCAL)
    assert cfg.train_cfg.max_iters == 3200 and cfg.train_cfg.val_interval == 200
    rescale_schedule(cfg, 800)
    assert cfg.train_cfg.max_iters == 800 and cfg.train_cfg.val_interval == 50
    assert cfg.default_hooks.checkpoint.interval == 800
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 25), (25, 800)]
    rescale_schedule(cfg, 8)  # a smoke run: no scheduler left empty (mmengine refuses one)
    assert all(s.end > s.begin for s in cfg.param_scheduler)


def test_a_sweep_folder_keeps_its_recipe(tmp_path):
    recipe = Recipe(40, 48, 24, 320, 2, configs_digest(CONFIG_DIR))
    check_recipe(tmp_path, recipe)
    check_recipe(tmp_path, recipe)
    with pytest.raises(ValueError, match="recipe .*'iters': 40.*not.*'iters': 50.* another --out"):
        check_recipe(tmp_path, dataclasses.replace(recipe, iters=50))
    # the recipe's optimiser and schedule live in the configs: an edit there is another recipe
    configs = tmp_path / 'configs'
    shutil.copytree(CONFIG_DIR, configs)
    assert configs_digest(configs) == recipe.configs
    (configs / LOCAL.name).write_text(LOCAL.read_text().replace('lr=', 'lr=2 * '))
    with pytest.raises(ValueError, match="'configs': '[0-9a-f]{12}'.* another --out"):
        check_recipe(tmp_path, dataclasses.replace(recipe, configs=configs_digest(configs)))


def test_cell_names_are_distinct():
    cells = [Cell(arm, seed) for arm in ARMS for seed in (0, 1, 10)]
    assert len({c.name for c in cells}) == len(cells)


# ---------------------------------------------------------------- metric

def test_metric_scores_each_distance_bin_and_all_three_colourings():
    metric = LongRangeDistanceAccuracy()
    samples = []
    for index in range(3):  # one scene in its three colours
        _, labels, record = render_dense_sample(0, 'val', index, width=96)
        truth = torch.from_numpy(np.where(labels == 0, 255, labels - 1))
        distance = chebyshev_to_marker(labels == 0)
        prediction = truth.clone()
        if index == 2:  # the third colouring is wrong from 32 px on
            prediction[torch.from_numpy(distance >= 32)] = 0
        samples.append(dict(img_path=f'x/{index + 1:06d}.jpg',
                            gt_sem_seg=dict(data=truth[None]),
                            pred_sem_seg=dict(data=prediction[None])))
    metric.process({}, samples)
    result = metric.compute_metrics(metric.results)
    far = distance[labels != 0] >= 32
    assert far.any() and (~far).any()
    for start in range(0, distance.max() + 1, 16):
        in_bin = (distance >= start) & (distance < start + 16) & (labels != 0)
        assert result[f'pixels_{start:03d}'] == 3 * in_bin.sum()
        near = start < 32
        assert result[f'acc_{start:03d}'] == pytest.approx(100 if near else 200 / 3)
        assert result[f'all3_{start:03d}'] == (100 if near else 0)
    assert f'acc_{distance.max() // 16 * 16 + 16:03d}' not in result

    metric.results.clear()
    samples[0]['gt_sem_seg']['data'] = torch.zeros(1, 32, 96, dtype=torch.long)
    with pytest.raises(ValueError, match='000001.jpg: no marker .* dense long-range sets'):
        metric.process({}, samples[:1])


# ---------------------------------------------------------------- controls and verdict

REACH = {PLAIN: Reach(131, (128, 142)), PLAIN_K1: Reach(23, (20, 34))}
BINS = (16, 32, 64, 128, 144, 192, 272)
SEEDS = range(5)


def made_up_sweep(accuracy, global_learnt_at=200, iters=1600, erf_trained=0.05, all3=None):
    """Results of every arm and seed: ``accuracy(arm, seed, bin)``; the global control's
    validation at every bin reaches 100 % at ``global_learnt_at``."""
    results = [dict(arm=arm, seed=seed, distance=d, accuracy=accuracy(arm, seed, d),
                    **{'all colours': all3(arm, seed, d) if all3 else accuracy(arm, seed, d)})
               for arm in ARMS for seed in SEEDS for d in BINS]
    curves = [dict(arm=GLOBAL, seed=seed, iter=step, distance=d,
                   **{'val accuracy': 100 if step >= global_learnt_at else 50})
              for seed in SEEDS for step in range(100, iters + 1, 100) for d in BINS]
    cells = [dict(arm=arm, seed=seed, **{'erf beyond, trained': erf_trained})
             for arm in ARMS for seed in SEEDS]
    return Sweep(cells, [{k: str(v) for k, v in r.items()} for r in results], curves, [])


def sound(arm, seed, d):
    """Controls pass: bounded arms learn inside their reach, chance beyond; global learns."""
    if arm == GLOBAL:
        return 99.
    reach = REACH[PLAIN_K1 if 'k=1' in arm else PLAIN].pixel[1]
    return 99. if d < reach else 33.3


def test_controls_pass_on_sound_results_and_name_what_fails():
    assert all(check.passed for check in controls(made_up_sweep(sound), REACH))

    def leaky(arm, seed, d):  # one seed of plain MambaOut above chance beyond its reach
        return 45. if (arm, seed, d) == (PLAIN, 3, 192) else sound(arm, seed, d)

    failed = [c for c in controls(made_up_sweep(leaky), REACH) if not c.passed]
    assert [c.name for c in failed] == ['b. MambaOut at chance beyond its reach (142 px)']
    assert 'seeds [0, 1, 2, 4] of [0, 1, 2, 3, 4]' in failed[0].detail

    def slow(arm, seed, d):  # plain MambaOut learns 64 px on 3 seeds of 5: fewer than 4
        return 80. if (arm, d) == (PLAIN, 64) and seed < 2 else sound(arm, seed, d)

    lines = verdict(made_up_sweep(slow, all3=sound), REACH, 1600)
    assert lines == ['Inconclusive: controls failed: a. MambaOut learns inside its reach.']


def test_verdict_confirms_refutes_or_leaves_inconclusive():
    def scanning_wins(arm, seed, d):  # the twins succeed far on 4 seeds of 5
        return 95. if arm in (TWIN, TWIN_K1) and seed < 4 else sound(arm, seed, d)

    confirmed = verdict(made_up_sweep(scanning_wins), REACH, 1600)
    assert confirmed[0].startswith(f'{TWIN}: confirmed') and 'at 144–272 px' in confirmed[0]
    assert confirmed[1].startswith(f'{TWIN_K1}: confirmed') and 'at 64–272 px' in confirmed[1]
    # without ERF mass beyond the reach, success alone does not confirm
    assert 'inconclusive' in verdict(made_up_sweep(scanning_wins, erf_trained=0.001), REACH,
                                     1600)[0]

    refuted = verdict(made_up_sweep(sound, global_learnt_at=400), REACH, 1600)
    assert refuted[0].startswith(f'{TWIN}: refuted') and '4.0x' in refuted[0]
    # the global control needed more than a third of the budget: not refuted
    assert 'inconclusive' in verdict(made_up_sweep(sound, global_learnt_at=800), REACH, 1600)[0]


def test_fisher_exact_test_against_hand_computed_tables():
    # 5 of 5 against 0 of 5: one table of C(10, 5) = 252 as extreme
    assert fisher_greater((5, 0), (5, 5)) == pytest.approx(1 / 252)
    # 3 of 5 against 1 of 5: P(X >= 3), X hypergeometric (10 seeds, 4 successes, 5 drawn):
    # (C(4,3)·C(6,2) + C(4,4)·C(6,1)) / 252 = (60 + 6) / 252
    assert fisher_greater((3, 1), (5, 5)) == pytest.approx(66 / 252)
    assert fisher_greater((0, 5), (5, 5)) == pytest.approx(1)
