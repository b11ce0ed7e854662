"""Backbone forward latency and peak memory against input size: does a backbone's cost grow
linearly in the pixels (convolution, selective scan) or faster (global attention)?

    python tools/analysis/latency_scaling.py [--sizes 224 384 512 768] [--repeats 2] \
        [--models mambaout_t vit_s16] [--device cuda] [--out docs/figures/latency_scaling]

Every size H runs square (H×H) and detection-like (H×1.6H, the width rounded to a multiple of
32, as 800×1280). The exponent is the slope of log time against log pixels, fitted per model
over all inputs: 1 is linear, 2 quadratic. The ViT-S/16 reference crosses the paper's
threshold L = 6·D = 2304 tokens at 2304·16² pixels (768×768). Batch 1, inference mode; per
model and size, the first (warm-up) call measures peak memory, then --repeats calls are timed
in turn with the other models' and the median is kept (--clock cpu: process CPU time, for a
CPU shared with other jobs). A backbone that does not build stops the run with its name.

--out PREFIX writes PREFIX.csv and PREFIX.png (log-log, with the fits).
"""
import argparse
import ast
import statistics
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

from mmambaout.analysis.measure import (CLOCKS, interleaved_times,  # noqa: E402
                                        peak_memory_mib)
from mmambaout.analysis.report import markdown_table, write_csv  # noqa: E402
from mmambaout.analysis.scaling import scaling_exponent  # noqa: E402
from mmambaout.analysis.vit_reference import ViTReference  # noqa: E402
from mmambaout.registry import MMDET_MODELS  # noqa: E402

PRESETS = {
    'mambaout_t': ('MambaOut-T', dict(type='MambaOut', arch='tiny')),
    'mambaout_ss2d_t': ('MambaOut-T + SS2D',
                        dict(type='MambaOut', arch='tiny', token_mixer='gated_cnn_ss2d')),
    'vmamba_t': ('VMamba v2-T', dict(type='VMamba', arch='tiny')),
    'vit_s16': ('ViT-S/16 (global attention)', dict(type=ViTReference.__name__)),
}
VIT_S16_THRESHOLD_PIXELS = 6 * 384 * 16**2
HEADER = ['model', 'height', 'width', 'pixels', 'median ms', 'peak memory MiB']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', choices=sorted(PRESETS), default=list(PRESETS))
    parser.add_argument('--backbone', nargs=2, action='append', default=[],
                        metavar=('LABEL', 'CFG'), help='another backbone, e.g. MambaOut-S '
                        '"{\'type\': \'MambaOut\', \'arch\': \'small\'}"; repeatable')
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 384, 512, 768, 1024, 1536],
                        help='input heights H')
    parser.add_argument('--aspects', type=float, nargs='+', default=[1.0, 1.6],
                        help='width / height ratios')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='cpu: process CPU time, for a CPU shared with other jobs')
    parser.add_argument('--out', type=Path, metavar='PREFIX', help='write a CSV file and a PNG')
    return parser.parse_args(argv)


def input_shapes(sizes, aspects):
    """(H, W) for every size and aspect, W rounded to a multiple of 32, fewest pixels first."""
    shapes = {(h, 32 * round(aspect * h / 32)) for h in sizes for aspect in aspects}
    return sorted(shapes, key=lambda shape: (shape[0] * shape[1], shape))


def build_backbones(backbone_cfgs, device):
    """{label: backbone in eval mode}; a config that does not build stops the run, named (a
    table without it would read as complete)."""
    backbones = {}
    for label, cfg in backbone_cfgs:
        try:
            backbones[label] = MMDET_MODELS.build(dict(cfg)).to(device).eval()
        except Exception as error:
            raise RuntimeError(f'Cannot build {label} from {cfg}: {error}') from error
    return backbones


def measure(backbones, shapes, repeats, device, clock):
    """One row (a dict of HEADER) per backbone and input shape."""
    rows = []
    bar = ProgressBar(len(shapes) * len(backbones))
    for height, width in shapes:
        x = torch.randn(1, 3, height, width, device=device)
        runs = {label: partial(backbone, x) for label, backbone in backbones.items()}
        with torch.inference_mode():
            memory = {label: peak_memory_mib(run, device) for label, run in runs.items()}
            times = interleaved_times(runs, device, repeats, clock, progress=False)
        rows += [dict(zip(HEADER, (label, height, width, height * width,
                                   round(1000 * statistics.median(times[label]), 1),
                                   round(memory[label], 1)))) for label in runs]
        bar.update(len(runs))
    print()
    return rows


def time_exponents(rows):
    """{model: fitted exponent of its median time against pixels}."""
    models = dict.fromkeys(row['model'] for row in rows)
    return {m: scaling_exponent([r['pixels'] for r in rows if r['model'] == m],
                                [r['median ms'] for r in rows if r['model'] == m])
            for m in models}


def plot(rows, exponents, path: Path, setting: str) -> None:
    """Log-log time (left) and peak memory (right) against pixels; markers by aspect."""
    fig, (times, memory) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for color, model in zip(colors, exponents):
        points = [r for r in rows if r['model'] == model]
        for axis, column in ((times, 'median ms'), (memory, 'peak memory MiB')):
            label = f'{model} (slope {exponents[model]:.2f})' if axis is times else model
            axis.plot([r['pixels'] for r in points], [r[column] for r in points], color=color,
                      linewidth=1, label=label)
            for square, marker in ((True, 'o'), (False, 's')):
                chosen = [r for r in points if (r['height'] == r['width']) == square]
                axis.scatter([r['pixels'] for r in chosen], [r[column] for r in chosen],
                             color=color, marker=marker, s=20)
    for axis, label in ((times, 'median forward time (ms)'), (memory, 'peak memory (MiB)')):
        axis.set_xscale('log')
        axis.set_yscale('log')
        axis.set_xlabel('input pixels (o: H×H, □: H×1.6H)')
        axis.set_ylabel(label)
        axis.axvline(VIT_S16_THRESHOLD_PIXELS, color='gray', linestyle=':', linewidth=1)
        axis.grid(True, which='both', alpha=0.3)
    times.text(VIT_S16_THRESHOLD_PIXELS * 1.05, times.get_ylim()[0] * 1.5,
               'ViT-S/16: L = 6·D', color='gray', fontsize=8)
    times.set_title(f'Backbone forward time, batch 1, {setting}')
    memory.set_title('Peak memory of one forward')
    times.legend(fontsize=8, title='fitted exponent of time vs pixels', title_fontsize=8)
    memory.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    backbone_cfgs = [PRESETS[name] for name in args.models]
    backbone_cfgs += [(label, ast.literal_eval(cfg)) for label, cfg in args.backbone]
    backbones = build_backbones(backbone_cfgs, args.device)
    shapes = input_shapes(args.sizes, args.aspects)
    rows = measure(backbones, shapes, args.repeats, args.device, args.clock)
    print(f'Backbone forward, batch 1, {args.device}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, {args.clock} clock, median of {args.repeats} '
          'interleaved runs:\n')
    table = [[row[column] for column in HEADER] for row in rows]
    print(markdown_table(HEADER, table))
    exponents = time_exponents(rows)
    print('\nFitted exponent of time against pixels (1: linear, 2: quadratic):\n')
    print(markdown_table(['model', 'exponent'], [[m, f'{e:.2f}'] for m, e in exponents.items()]))
    if args.out:
        write_csv(f'{args.out}.csv', HEADER, table)
        plot(rows, exponents, Path(f'{args.out}.png'), f'{args.device}, {args.clock} clock')
        print(f'\nWrote {args.out}.csv, {args.out}.png')


if __name__ == '__main__':
    main()
