"""Is a backbone's token sequence "long" (L > 6·D, the MambaOut paper's threshold) at a task's
input size? Stage by stage, with the backbone's FLOPs split into token and channel mixing.

    python tools/analysis/long_sequence.py CONFIG [CONFIG ...] [--shape H W] [--out PREFIX]

The input size defaults to the largest landscape image of each config's test pipeline: COCO's
Resize (1333, 800) with keep_ratio → 800×1333 (the paper's FLOPs use 800×1280, 4% fewer
pixels; --shape 800 1280 gives those), ADE20K's (2048, 512) → 512×2048, the paper's size.
That is the upper end: a typical 640×480 COCO image is fed at 800×1067. The image then goes
through the model's data preprocessor, as in testing (mmdet pads to a multiple of 32: 800×1344).
The ratio L / 6D is per stage, since the hypothesis concerns the sequence a token mixer sees.

--out PREFIX writes PREFIX_stages.csv, PREFIX_flops.csv and PREFIX.png.
"""
import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmambaout.analysis.long_sequence import (LONG_SEQUENCE_FACTOR,  # noqa: E402
                                              pipeline_input_shape, stage_sequences)
from mmambaout.analysis.mixing_flops import PARTS, mixing_flops  # noqa: E402
from mmambaout.analysis.models import build_model  # noqa: E402
from mmambaout.analysis.report import markdown_table, write_csv  # noqa: E402
from mmambaout.utils.complexity import preprocessed_image  # noqa: E402

STAGE_HEADER = ['config', 'input', 'stage', 'feature', 'L', 'D', f'{LONG_SEQUENCE_FACTOR}·D',
                f'L/{LONG_SEQUENCE_FACTOR}D', 'long']
FLOPS_HEADER = ['config', 'input', 'backbone GFLOPs', *(f'{part} %' for part in PARTS)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', metavar='CONFIG')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size for every config (default: each test pipeline\'s)')
    parser.add_argument('--out', type=Path, metavar='PREFIX', help='write CSV files and a PNG')
    return parser.parse_args(argv)


def analyse(config: str, shape=None) -> dict:
    """Stage sequences and mixing FLOPs of the config's backbone at its input size."""
    cfg = Config.fromfile(config)
    height, width = shape or pipeline_input_shape(cfg)
    model = build_model(cfg).eval()
    inputs = preprocessed_image(model, height, width)['inputs']
    with warnings.catch_warnings():  # the trace warns on every data-dependent branch
        warnings.simplefilter('ignore')
        flops = mixing_flops(model.backbone, inputs)
    return dict(name=Path(config).stem, input='x'.join(map(str, inputs.shape[-2:])),
                stages=stage_sequences(model.backbone, *inputs.shape[-2:]), flops=flops)


def stage_rows(results):
    return [[r['name'], r['input'], s.stage, f'{s.height}x{s.width}', s.tokens, s.channels,
             s.threshold, f'{s.ratio:.2f}', 'yes' if s.is_long else 'no']
            for r in results for s in r['stages']]


def flops_rows(results):
    return [[r['name'], r['input'], f"{r['flops']['total'] / 1e9:.1f}",
             *(f"{100 * r['flops'][part] / r['flops']['total']:.1f}" for part in PARTS)]
            for r in results]


def plot(results, path: Path) -> None:
    """Left: L/6D per stage and config (log scale, threshold at 1). Right: FLOP shares."""
    fig, (ratios, shares) = plt.subplots(
        1, 2, figsize=(15, 5.5), gridspec_kw=dict(width_ratios=[3, 2]))
    names = [f"{r['name']} {r['input']}" for r in results]
    num_stages = max(len(r['stages']) for r in results)
    width = 0.8 / num_stages
    for stage in range(num_stages):
        xs = [i + (stage - (num_stages - 1) / 2) * width for i in range(len(results))]
        values = [r['stages'][stage].ratio if stage < len(r['stages']) else 0 for r in results]
        ratios.bar(xs, values, width, label=f'stage {stage}')
    ratios.axhline(1, color='black', linestyle='--', linewidth=1,
                   label=f'L = {LONG_SEQUENCE_FACTOR}·D (long above)')
    ratios.set_yscale('log')
    ratios.set_ylim(top=ratios.get_ylim()[1] * 10)  # room for the legend
    ratios.set_ylabel(f'L / {LONG_SEQUENCE_FACTOR}D (tokens over threshold)')
    ratios.set_xticks(range(len(results)), names, rotation=30, ha='right', fontsize=8)
    ratios.set_title('Token count per stage against the long-sequence threshold')
    ratios.legend(fontsize=8, ncol=num_stages + 1, loc='upper center')

    left = [0.] * len(results)
    for part in PARTS:
        values = [100 * r['flops'][part] / r['flops']['total'] for r in results]
        if not any(values):
            continue
        shares.barh(range(len(results)), values, left=left, label=part)
        left = [a + b for a, b in zip(left, values)]
    shares.set_yticks(range(len(results)), [r['name'] for r in results], fontsize=8)
    shares.invert_yaxis()
    shares.set_xlabel('% of backbone FLOPs')
    shares.set_xlim(0, 100)
    shares.set_title('Backbone FLOPs: token vs channel mixing')
    shares.legend(fontsize=8, ncol=len(PARTS), loc='upper center', bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    results = [analyse(config, args.shape) for config in args.configs]
    print('Backbone stages as token sequences (L = H·W tokens of width D; '
          f'long when L > {LONG_SEQUENCE_FACTOR}·D):\n')
    print(markdown_table(STAGE_HEADER, stage_rows(results)))
    print('\nBackbone FLOPs (mmengine, 1 multiply-add = 1 FLOP) by kind of mixing:\n')
    print(markdown_table(FLOPS_HEADER, flops_rows(results)))
    if args.out:
        write_csv(f'{args.out}_stages.csv', STAGE_HEADER, stage_rows(results))
        write_csv(f'{args.out}_flops.csv', FLOPS_HEADER, flops_rows(results))
        plot(results, Path(f'{args.out}.png'))
        print(f'\nWrote {args.out}_stages.csv, {args.out}_flops.csv, {args.out}.png')


if __name__ == '__main__':
    main()
