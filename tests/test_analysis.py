"""The hypothesis tools (mmambaout/analysis, tools/analysis): long-sequence numbers, the FLOPs
split, latency and memory helpers, exponent fits, the paper data, the results table, and every
CLI end to end on tiny settings."""
import csv
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config

from mmambaout.analysis.long_sequence import pipeline_input_shape, stage_sequences
from mmambaout.analysis.measure import interleaved_times, peak_memory_mib, timed
from mmambaout.analysis.mixing_flops import PARTS, flops_by_module, mixing_flops
from mmambaout.analysis.models import drop_pretrained
from mmambaout.analysis.paper_results import (ADE20K, COCO, PAPER_RESULTS, backbone_name,
                                              published_results)
from mmambaout.analysis.report import significant
from mmambaout.analysis.scaling import scaling_exponent
from mmambaout.analysis.vit_reference import ViTReference
from mmambaout.analysis.work_dirs import collect
from mmambaout.models import MambaOut, VMamba
from mmambaout.ops import scan_flop_handles
from mmambaout.utils.complexity import PAPER_SHAPES, model_complexity
from mmambaout.utils.runtime import toolbox_of
import helpers
from helpers import load_tool

REPO = Path(__file__).resolve().parents[1]
DET_CONFIG = REPO / 'configs' / 'mask_rcnn_mambaout_tiny_coco.py'
SEG_CONFIG = REPO / 'configs' / 'upernet_mambaout_tiny_ade20k.py'
TOY_DET_CONFIG = 'configs/toy/mask_rcnn_mambaout_femto_toy.py'
TOY_SEG_CONFIG = 'configs/toy/upernet_mambaout_femto_toy.py'
SMALL_VMAMBA = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), ssm_ratio=1.0, d_state=1)


def run_tool(*args) -> str:
    """Run a tool as a user would (one thread, from the repository root); its stdout."""
    return helpers.run_tool(*args, threads=1)


def read_csv(path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- long sequences

def test_mambaout_tiny_stages_at_the_paper_coco_size():
    stages = stage_sequences(MambaOut('tiny'), 800, 1280)
    assert [(s.height, s.width, s.channels) for s in stages] == [
        (200, 320, 96), (100, 160, 192), (50, 80, 384), (25, 40, 576)]
    assert [s.tokens for s in stages] == [64000, 16000, 4000, 1000]
    assert [s.threshold for s in stages] == [576, 1152, 2304, 3456]
    assert [round(s.ratio, 3) for s in stages] == [111.111, 13.889, 1.736, 0.289]
    assert [s.is_long for s in stages] == [True, True, True, False]


def test_stage_sizes_round_up_when_the_input_is_not_a_multiple_of_32():
    stages = stage_sequences(VMamba('tiny'), 800, 1333)
    assert [(s.height, s.width) for s in stages] == [(200, 334), (100, 167), (50, 84), (25, 42)]
    assert [s.channels for s in stages] == [96, 192, 384, 768]
    assert stages[3].tokens == 1050 and not stages[3].is_long


def test_stage_sequences_leave_the_backbone_usable():
    backbone = MambaOut('femto')
    stage_sequences(backbone, 64, 64)
    assert backbone(torch.randn(1, 3, 64, 64))[0].shape == (1, 48, 16, 16)


def test_default_input_size_is_the_test_pipeline_resize():
    assert pipeline_input_shape(Config.fromfile(str(DET_CONFIG))) == (800, 1333)
    assert pipeline_input_shape(Config.fromfile(str(SEG_CONFIG))) == (512, 2048)
    fixed = Config(dict(test_dataloader=dict(dataset=dict(type='Wrapper', dataset=dict(
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='Resize', scale=(640, 480), keep_ratio=False)])))))
    assert pipeline_input_shape(fixed) == (480, 640)  # mmcv's scale is (w, h)


# ---------------------------------------------------------------- FLOPs by mixing

def test_mambaout_split_matches_the_block_formulas():
    """Token mixing is the 7×7 depthwise conv (L·C·49 per block), channel mixing fc1 and fc2
    (L·(D·2H + H·D), H = 8/3·D); nothing is left unattributed."""
    backbone = MambaOut('femto')
    flops = mixing_flops(backbone, torch.randn(1, 3, 64, 96))
    sizes = [(16, 24), (8, 12), (4, 6), (2, 3)]
    depths, dims = backbone.arch_settings['femto'].values()
    token = channel = 0
    for (h, w), depth, dim in zip(sizes, depths, dims):
        hidden = int(8 / 3 * dim)
        token += depth * h * w * dim * 49
        channel += depth * h * w * 3 * hidden * dim
    assert flops['token mixing'] == token
    assert flops['channel mixing'] == channel
    assert flops['unattributed'] == 0
    assert flops['other'] > 0
    assert sum(flops[part] for part in PARTS) == flops['total']


def test_vmamba_token_mixing_is_the_whole_ss2d():
    backbone = VMamba(SMALL_VMAMBA)
    x = torch.randn(1, 3, 64, 64)
    flops = mixing_flops(backbone, x)
    by_module = flops_by_module(backbone, x)
    ss2d = sum(v for k, v in by_module.items() if k.endswith('.op'))
    mlps = sum(v for k, v in by_module.items() if k.endswith('.mlp'))
    assert flops['token mixing'] == ss2d > 0
    assert flops['channel mixing'] == mlps
    assert flops['unattributed'] == 0
    assert sum(flops[part] for part in PARTS) == flops['total']


def flops_by_module_and_operator(model, x) -> dict:
    """mmengine's FLOPs {module: {operator: FLOPs}} ('' is the whole model; operators such as
    'einsum', 'PythonOp.SelectiveScan'), the scan counted by its handle."""
    analyzer = FlopAnalyzer(model.eval(), (x, )).set_op_handle(**scan_flop_handles())
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer.by_module_and_operator()


def test_ss2d_twin_adds_token_mixing_only():
    """The twin's extra FLOPs are its ``ssm`` modules', all of them token mixing, per block of C
    channels (all convolved), N = 1 state and R = ⌈C/16⌉ step-size ranks at L tokens: the scan,
    9·L·(4·C)·N (the Mamba authors' count, over the four directions' channels), out_norm, 5·L·C
    (mmengine's LayerNorm), and the projections to (Δ rank, B, C), 4·L·C·(R + 2N), and from Δ
    rank to Δ, 4·L·R·C, which mmengine counts from numpy's FLOP estimate of an einsum, rounded
    to 4 significant digits."""
    x = torch.randn(1, 3, 64, 64)
    twin_backbone = MambaOut('femto', token_mixer='gated_cnn_ss2d')
    plain = mixing_flops(MambaOut('femto'), x)
    twin = mixing_flops(twin_backbone, x)
    ssm = Counter()
    for name, operators in flops_by_module_and_operator(twin_backbone, x).items():
        if name.endswith('.ssm'):
            ssm.update(operators)
    assert twin['unattributed'] == 0
    assert sum(twin[part] for part in PARTS) == twin['total']
    assert twin['channel mixing'] == plain['channel mixing']
    assert twin['other'] == plain['other']
    assert twin['token mixing'] - plain['token mixing'] == sum(ssm.values())
    depths, dims = twin_backbone.arch_settings['femto'].values()
    expected, state = Counter(), 1
    for i, (depth, C) in enumerate(zip(depths, dims)):
        L, R = (16 // 2**i)**2, math.ceil(C / 16)
        expected['PythonOp.SelectiveScan'] += depth * 9 * L * 4 * C * state
        expected['layer_norm'] += depth * 5 * L * C
        expected['einsum'] += depth * (4 * L * C * (R + 2 * state) + 4 * L * R * C)
    assert set(ssm) == set(expected)
    assert ssm['PythonOp.SelectiveScan'] == expected['PythonOp.SelectiveScan']
    assert ssm['layer_norm'] == expected['layer_norm']
    assert ssm['einsum'] == pytest.approx(expected['einsum'], rel=5e-4)


def test_vmamba_tiny_at_224_is_the_papers_4_9_gflops():
    """The paper's ImageNet row for VMamba v2-T, 4.9 G (VMamba's count, 4.91 G, also has the
    classifier's 0.8 M), within 1 %; its scans exactly the Mamba authors' 9·B·L·D·N with D the
    four directions' channels (4·C at ssm_ratio 1) and N = 1."""
    backbone = VMamba('tiny')
    flops = flops_by_module_and_operator(backbone, torch.randn(1, 3, 224, 224))['']
    depths, dims = backbone.arch_settings['tiny']['depths'], backbone.arch_settings['tiny']['dims']
    assert flops['PythonOp.SelectiveScan'] == sum(
        9 * (56 // 2**i)**2 * 4 * C * depth for i, (depth, C) in enumerate(zip(depths, dims)))
    assert sum(flops.values()) == pytest.approx(4.9e9, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize('config,task', [('mask_rcnn_vmamba_tiny_coco.py', COCO),
                                         ('upernet_vmamba_tiny_ade20k.py', ADE20K)])
def test_vmamba_tiny_detector_and_segmentor_are_the_papers_gflops(config, task):
    """get_flops' count at the paper's sizes (800×1280, 512×2048) is the paper's (270 G, 948 G)
    within 1 %. The definitions match: one multiply-add is one FLOP; the whole model, as mmdet's
    and mmseg's get_flops count it (RoI heads on the RPN's 1000 proposals, their first 100 for
    the mask head; UperNet without its auxiliary head); the scan as 9·B·L·D·N, to which VMamba's
    count adds B·L·D for D·u (0.1 G here)."""
    torch.manual_seed(0)  # a random image: its proposals must not fall below 1000
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    result = model_complexity(cfg, *PAPER_SHAPES[toolbox_of(cfg)])
    paper = dict(published_results(task, 'VMamba v2-T'))['paper']['macs']
    assert result['parts']['total'][1] == pytest.approx(paper * 1e9, rel=0.01)


def test_vit_attention_equals_its_linear_layers_at_l_equal_6d():
    """The paper's threshold, on the reference model: at L = 6·D tokens QKᵀ and AV cost as
    much as qkv, proj and the MLP together."""
    dim = 16
    vit = ViTReference(dim=dim, depth=1, num_heads=2)
    flops = flops_by_module(vit, torch.randn(1, 3, 128, 192))  # 8×12 = 96 = 6·16 tokens
    linear = sum(flops[f'blocks.0.{m}'] for m in ('attn.qkv', 'attn.proj', 'mlp'))
    attention = flops['blocks.0.attn'] - flops['blocks.0.attn.qkv'] - flops['blocks.0.attn.proj']
    assert linear == 12 * dim**2 * 96
    assert attention == linear
    assert mixing_flops(vit, torch.randn(1, 3, 128, 192))['unattributed'] == 0


def test_vit_reference_output():
    (out, ) = ViTReference(dim=32, depth=2, num_heads=4)(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 32, 4, 6)


# ---------------------------------------------------------------- measuring

def test_timed_and_peak_memory_see_the_call():
    def allocate():
        block = torch.ones(200 * 2**20 // 4)  # 200 MiB, written: resident
        time.sleep(0.05)
        return block.sum()

    assert 0.05 <= timed(allocate, 'cpu') < 5
    assert 150 < peak_memory_mib(allocate, 'cpu') < 1000
    assert peak_memory_mib(lambda: None, 'cpu') < 50


def test_cpu_clock_leaves_out_waiting():
    assert timed(lambda: time.sleep(0.2), 'cpu') >= 0.2
    assert timed(lambda: time.sleep(0.2), 'cpu', clock='cpu') < 0.1
    with pytest.raises(ValueError, match='GPU'):
        timed(lambda: None, 'cuda', clock='cpu')


def test_interleaved_times_alternate_the_runs():
    calls = []
    times = interleaved_times({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')},
                              'cpu', repeats=3, progress=False)
    assert calls == ['a', 'b'] * 3
    assert {name: len(t) for name, t in times.items()} == {'a': 3, 'b': 3}


def test_drop_pretrained():
    cfg = dict(pretrained='open-mmlab://resnet50_v1c',
               backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth')),
               neck=dict(init_cfg=dict(type='Xavier')),
               heads=[dict(init_cfg=dict(type='Pretrained', checkpoint='y.pth'))])
    drop_pretrained(cfg)
    assert cfg == dict(pretrained=None, backbone=dict(init_cfg=None),
                       neck=dict(init_cfg=dict(type='Xavier')), heads=[dict(init_cfg=None)])


# ---------------------------------------------------------------- scaling exponents

def test_scaling_exponent_recovers_a_power_law():
    pixels = [224**2, 384**2, 512**2, 768**2]
    assert scaling_exponent(pixels, [3e-9 * p**1.5 for p in pixels]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match='two or more'):
        scaling_exponent([224**2, 224**2], [1., 2.])


def test_vit_cost_model_goes_from_linear_to_quadratic():
    """ViT-S/16's FLOPs, 24·D²·L + 4·D·L² per block: slope ~1 far below L = 6·D, 1.5 at it,
    ~2 far above."""
    dim = 384

    def vit_flops(side):
        tokens = (side / 16)**2
        return 24 * dim**2 * tokens + 4 * dim * tokens**2

    def exponent(sides):
        return scaling_exponent([s**2 for s in sides], [vit_flops(s) for s in sides])

    threshold_side = 16 * math.sqrt(6 * dim)  # 768
    assert exponent([64, 80, 96]) < 1.05
    assert exponent([threshold_side / 1.01, threshold_side * 1.01]) == pytest.approx(1.5, 1e-3)
    assert exponent([16384, 20480, 24576]) > 1.95


# ---------------------------------------------------------------- paper data

def paper_result(task, backbone):
    """The paper's row, as the results table finds it among the published sources."""
    return dict(published_results(task, backbone)).get('paper')


def test_paper_numbers():
    assert paper_result(COCO, 'MambaOut-T') == dict(
        params=43, macs=262, APb=45.1, APb50=67.3, APb75=49.6, APm=41.0, APm50=64.1, APm75=44.1)
    assert paper_result(COCO, 'VMamba v2-S')['APm'] == 43.7
    assert paper_result(COCO, 'VMamba-T (v0)')['APb'] == 46.5
    assert paper_result(ADE20K, 'MambaOut-B') == {'params': 112, 'macs': 1178,
                                                   'mIoU SS': 49.6, 'mIoU MS': 51.0}
    assert paper_result(ADE20K, 'VMamba v2-T')['mIoU SS'] == 48.3
    assert paper_result(ADE20K, 'MambaOut-Femto') is None
    assert len(PAPER_RESULTS) == 17


def test_backbone_names():
    assert backbone_name(dict(type='MambaOut', arch='small')) == 'MambaOut-S'
    assert backbone_name(dict(type='VMamba', arch='base')) == 'VMamba v2-B'
    assert backbone_name(dict(type='MambaOut', arch='tiny', token_mixer='gated_cnn_ss2d')) \
        == 'MambaOut-T + SS2D'
    assert backbone_name(dict(type='mmdet.ResNet', depth=50)) == 'ResNet-50'


# ---------------------------------------------------------------- results table

def write_run(work_dir: Path, timestamp: str, scope: str, backbone: dict, test_metrics=None,
              scalars=(), tta=False):
    """One mmengine run dir: its dumped config, and a test JSON or training scalars."""
    run_dir = work_dir / timestamp
    (run_dir / 'vis_data').mkdir(parents=True)
    model = dict(type='MaskRCNN' if scope == 'mmdet' else 'EncoderDecoder', backbone=backbone)
    if tta:
        model = dict(type='SegTTAModel', module=model)
    Config(dict(default_scope=scope, model=model)).dump(str(run_dir / 'vis_data' / 'config.py'))
    if test_metrics is not None:
        (run_dir / f'{timestamp}.json').write_text(json.dumps(test_metrics))
    (run_dir / 'vis_data' / 'scalars.json').write_text(
        ''.join(json.dumps(record) + '\n' for record in scalars))


COCO_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/segm_mAP',
             'coco/segm_mAP_50', 'coco/segm_mAP_75')


@pytest.fixture
def work_dirs(tmp_path):
    """A detection work dir with a training run then a test run; a segmentation one with a
    training run only (validations), then single-scale and TTA test runs in another."""
    mambaout_t = dict(type='MambaOut', arch='tiny')
    det = tmp_path / 'det'
    write_run(det, '20250101_000000', 'mmdet', mambaout_t, scalars=[
        dict(loss=1.0, step=10),
        {**dict.fromkeys(COCO_KEYS, 0.1), 'step': 12},
        dict(loss=0.9, step=20)])
    write_run(det, '20250102_000000', 'mmdet', mambaout_t, test_metrics={
        **dict(zip(COCO_KEYS, (0.453, 0.671, 0.497, 0.409, 0.642, 0.441))), 'time': 1.0})
    seg_train = tmp_path / 'seg_train'
    write_run(seg_train, '20250101_000000', 'mmseg', dict(type='VMamba', arch='tiny'),
              scalars=[dict(mIoU=30.0, step=8000), dict(loss=0.5, step=8050),
                       dict(mIoU=47.75, step=16000)])
    seg_test = tmp_path / 'seg_test'
    write_run(seg_test, '20250103_000000', 'mmseg', mambaout_t, test_metrics=dict(mIoU=47.0))
    write_run(seg_test, '20250103_010000', 'mmseg', mambaout_t, test_metrics=dict(mIoU=48.9),
              tta=True)
    return det, seg_train, seg_test


def test_collect_reads_each_kind_of_run(work_dirs):
    det, seg_train, seg_test = map(collect, work_dirs)
    assert (det.task, det.backbone) == (COCO, 'MambaOut-T')
    assert det.single_scale.kind == 'test'  # the test run, not the training validation
    assert det.single_scale.metrics['APb'] == pytest.approx(45.3)
    assert det.single_scale.metrics['APm75'] == pytest.approx(44.1)
    assert det.multi_scale is None
    assert (seg_train.backbone, seg_train.single_scale.kind) == ('VMamba v2-T', 'val')
    assert seg_train.single_scale.metrics == {'mIoU': 47.75}  # the last validation
    assert seg_test.single_scale.metrics == {'mIoU': 47.0}
    assert seg_test.multi_scale.metrics == {'mIoU': 48.9}


def test_results_table_cli(work_dirs):
    out = run_tool('tools/analysis/results_table.py', *work_dirs)
    lines = out.splitlines()
    assert '| MambaOut-T | paper | 45.1 | 67.3 | 49.6 | 41.0 | 64.1 | 44.1 |' in lines
    assert '| MambaOut-T | ours − paper | +0.2 | -0.2 | +0.1 | -0.1 | +0.1 | +0.0 |' in lines
    assert '| MambaOut-T | ours − paper | -0.4 | +0.3 |' in lines  # ADE20K SS 47.0, MS 48.9
    assert '| VMamba v2-T | ours − paper | -0.5 | — |' in lines  # 47.75 → 47.8 vs 48.3
    assert 'arXiv 2405.07992' in out


# ---------------------------------------------------------------- CLIs end to end

def test_long_sequence_cli(tmp_path):
    prefix = tmp_path / 'ls'
    out = run_tool('tools/analysis/long_sequence.py', TOY_DET_CONFIG, '--shape', 64, 96,
                   '--out', prefix)
    assert '| mask_rcnn_mambaout_femto_toy | 64x96 | 0 | 16x24 | 384 | 48 | 288 | 1.33 | yes |' \
        in out.splitlines()
    stages = read_csv(f'{prefix}_stages.csv')
    assert len(stages) == 4 and stages[3]['L/6D'] == f'{6 / (6 * 288):.2f}'  # 2x3 tokens
    flops = read_csv(f'{prefix}_flops.csv')
    shares = [float(flops[0][f'{part} %']) for part in PARTS]
    assert sum(shares) == pytest.approx(100, abs=0.3)
    assert Path(f'{prefix}.png').stat().st_size > 10_000


def test_latency_scaling_cli_runs_every_preset(tmp_path):
    prefix = tmp_path / 'lat'
    out = run_tool('tools/analysis/latency_scaling.py', '--sizes', 32, 64, '--aspects', 1, 1.6,
                   '--repeats', 1, '--clock', 'cpu', '--out', prefix)
    rows = read_csv(f'{prefix}.csv')
    models = ['MambaOut-T', 'MambaOut-T + SS2D', 'VMamba v2-T', 'ViT-S/16 (global attention)']
    assert [(r['model'], r['height'], r['width']) for r in rows[:4]] == [
        (model, '32', '32') for model in models]
    assert {(r['height'], r['width']) for r in rows} == {
        ('32', '32'), ('32', '64'), ('64', '64'), ('64', '96')}
    assert len(rows) == 4 * 4
    assert all(int(r['pixels']) == int(r['height']) * int(r['width']) for r in rows)
    assert all(float(r['median ms']) > 0 for r in rows)
    # the printed exponents are the fits of the written times
    for model in models:
        points = [r for r in rows if r['model'] == model]
        fit = scaling_exponent([int(r['pixels']) for r in points],
                               [float(r['median ms']) for r in points])
        assert f'| {model} | {fit:.2f} |' in out.splitlines()
    assert Path(f'{prefix}.png').stat().st_size > 10_000


def test_latency_scaling_fits_each_model_apart():
    rows = [dict(model=model, pixels=h * w, **{'median ms': cost(h * w)})
            for model, cost in (('linear', lambda p: 2e-3 * p), ('steep', lambda p: 1e-6 * p**1.5))
            for h, w in ((32, 32), (32, 64), (64, 64), (64, 96), (128, 192))]
    exponents = load_tool('tools/analysis/latency_scaling.py').time_exponents(rows)
    assert exponents == pytest.approx(dict(linear=1.0, steep=1.5))


def test_latency_scaling_stops_on_a_backbone_that_does_not_build():
    """Not a table without it, which would read as complete."""
    broken = "{'type': 'MambaOut', 'token_mixer': 'ssm'}"
    with pytest.raises(RuntimeError, match=rf"Cannot build Broken from {re.escape(broken)}: "
                       r".*token_mixer 'ssm'"):
        load_tool('tools/analysis/latency_scaling.py').main(
            ['--models', 'vit_s16', '--sizes', '32', '--backbone', 'Broken', broken])


def test_benchmark_backbone_cli_bf16_forward_and_backward():
    """Both passes are timed and reported, and the GPU check's report reads each; with one
    repeat each ratio is ours / timm of the printed times."""
    out = run_tool('tools/analysis/benchmark_backbone.py', '--arch', 'femto', '--shape', 64, 96,
                   '--repeats', 1, '--dtype', 'bf16', '--backward')
    assert ', bf16, ' in out
    sys.path.insert(0, str(REPO / 'tools'))
    try:
        import gpu_report
    finally:
        sys.path.pop(0)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / 'benchmark_backbone.log').write_text(out)
        figures = gpu_report.backbone_benchmark(Path(folder))
    for title in ('forward', 'forward+backward'):
        ours, timm = figures[f'backbone ours {title} ms'], figures[f'backbone timm {title} ms']
        assert figures[f'backbone ours/timm {title}'] == pytest.approx(ours / timm, rel=0.05)
    assert figures['backbone ours forward+backward ms'] > figures['backbone ours forward ms']


@pytest.mark.parametrize('value', [0.008525681, 0.0123456, 0.5, 0.99951, 3.4, 12.0, 99.94,
                                   352.0, 1234.5, -0.0421])
def test_significant_keeps_three_figures_without_an_exponent(value):
    """Below 1000, Python's own %g rounding to 3 significant figures is the reference; above,
    every integer digit stays (%g would print 1.23e+03)."""
    text = significant(value)
    assert 'e' not in text
    assert float(text) == (float(f'{value:.3g}') if abs(value) < 1000 else round(value))


def assert_ratios_are_the_printed_times(out):
    """With --repeats 1 each ratio is ours / reference of the times in the table: inference
    ms per image (column 1), training step seconds (column 4). All three numbers are printed
    to 3 significant figures, so they agree within 2 % whatever their size (a ratio of
    0.0085 once printed as 0.008 broke this)."""
    cells = [line.split('|')[2:-1] for line in out.splitlines() if line.startswith('| ')]
    ours, reference = [row for row in cells if row[0].strip()[:1].isdigit()]
    for name, column in (('inference', 0), ('training step', 3)):
        ratio = float(re.search(rf'{name} time ratio ([\d.]+)', out)[1])
        assert ratio == pytest.approx(float(ours[column]) / float(reference[column]), rel=0.02)


@pytest.mark.slow
def test_benchmark_cli_detection_with_training_step():
    out = run_tool('tools/analysis/benchmark.py', TOY_DET_CONFIG, '--shape', 64, 96,
                   '--repeats', 1, '--train')
    assert 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py' in out
    assert '| ResNet-50 reference |' in out
    assert_ratios_are_the_printed_times(out)


@pytest.mark.slow
def test_benchmark_cli_segmentation_with_training_step():
    """UperNet trains on two images: its 1×1 pooling branch cannot batch-normalise one."""
    out = run_tool('tools/analysis/benchmark.py', TOY_SEG_CONFIG, '--shape', 64, 64,
                   '--repeats', 1, '--train', '--clock', 'cpu')
    assert 'upernet_r50_4xb4-160k_ade20k-512x512.py' in out
    assert_ratios_are_the_printed_times(out)
