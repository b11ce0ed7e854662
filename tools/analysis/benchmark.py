"""A detector's or segmentor's speed and memory against the toolbox's ResNet-50 model for the
same task, measured in the same run: the ratio is the figure.

    python tools/analysis/benchmark.py CONFIG [--shape H W] [--repeats 3] [--train]

The reference is mmdet's ResNet-50 Mask R-CNN (mask-rcnn_r50_fpn_1x_coco) for an mmdet config,
mmseg's ResNet-50 UperNet (upernet_r50_4xb4-160k_ade20k-512x512) for an mmseg one (by the
config's default_scope). Both models have random weights (PyTorch's default initialisation, no
checkpoint) and get the same synthetic image, one per call, through ``test_step`` (the data
preprocessor, then ``predict``) in eval and inference mode. Default input: 800×1216 for
detection, 512×512 for segmentation. Per model, the first (warm-up) call measures peak memory;
then the models run in turn, --repeats times, and the figure is the median of the per-round
time ratios CONFIG / reference (--clock cpu: process CPU time, for a CPU shared with other
jobs). --train also times ``train_step`` (forward, backward and an AdamW update) on a batch of
two such images with a few ground-truth objects. With random weights a detector's scores stay
under its test score threshold, so no detections reach the mask head (a trained one keeps up
to 100): the comparison weighs the backbone more than real inference does.
"""
import argparse
import copy
import statistics
from functools import partial

import torch
from mmengine.config import Config, DictAction
from mmengine.optim import OptimWrapper

from mmambaout.analysis.measure import CLOCKS, interleaved_times, peak_memory_mib
from mmambaout.analysis.models import (REFERENCE_CONFIGS, build_model, load_reference_config,
                                       synthetic_batch)
from mmambaout.analysis.report import markdown_table, significant
from mmambaout.utils.runtime import toolbox_of

DEFAULT_SHAPES = {'mmdet': (800, 1216), 'mmseg': (512, 512)}
# Images per training step: the per-GPU batch of the paper's recipes (16 on 8 GPUs). One would
# not do: UperNet's 1×1 pooling branch cannot batch-normalise a single value per channel.
TRAIN_BATCH = 2
REFERENCE = 'ResNet-50 reference'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 800 1216 detection, 512 512 segmentation)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--train', action='store_true', help='also time a training step')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='cpu: process CPU time, for a CPU shared with other jobs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of CONFIG: key=value pairs')
    return parser.parse_args(argv)


def measure(runs, device, repeats, clock):
    """{name: (median seconds per call, peak MiB)} and the per-round time ratios of the first
    run to the second."""
    memory = {name: peak_memory_mib(run, device) for name, run in runs.items()}
    times = interleaved_times(runs, device, repeats, clock)
    ours, reference = times.values()
    ratios = [a / b for a, b in zip(ours, reference)]
    return {name: (statistics.median(times[name]), memory[name]) for name in runs}, ratios


def describe(ratios) -> str:
    rounds = ', '.join(map(significant, ratios))
    return f'{significant(statistics.median(ratios))} (median of {len(ratios)} rounds: {rounds})'


def adamw(model):
    return OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    toolbox = toolbox_of(cfg)
    height, width = args.shape or DEFAULT_SHAPES[toolbox]
    torch.manual_seed(0)
    models = {name: build_model(c).to(args.device)
              for name, c in ((args.config, cfg), (REFERENCE, load_reference_config(toolbox)))}

    def batch_per_model(size):  # the same images for both; the preprocessor writes metainfo
        batch = synthetic_batch(toolbox, height, width, size)
        return {name: copy.deepcopy(batch) for name in models}

    for model in models.values():
        model.eval()
    batches = batch_per_model(1)
    with torch.inference_mode():
        results, ratios = measure({name: partial(m.test_step, batches[name])
                                   for name, m in models.items()},
                                  args.device, args.repeats, args.clock)
    header = ['model', 'ms / image', 'images / s', 'peak memory MiB']
    rows = [[name, significant(1000 * s), significant(1 / s), f'{mib:.0f}']
            for name, (s, mib) in results.items()]
    lines = [f'inference time ratio {describe(ratios)}']
    if args.train:
        for model in models.values():
            model.train()
        batches = batch_per_model(TRAIN_BATCH)
        results, ratios = measure({name: partial(m.train_step, batches[name], adamw(m))
                                   for name, m in models.items()},
                                  args.device, args.repeats, args.clock)
        header += [f'train step s ({TRAIN_BATCH} images)', 'train peak memory MiB']
        for row, (s, mib) in zip(rows, results.values()):
            row += [significant(s), f'{mib:.0f}']
        lines.append(f'training step time ratio {describe(ratios)}')
    print(f'\n{toolbox}, input {height}x{width}, inference on 1 image, random weights, '
          f'{args.device}, {args.clock} clock, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads; reference: {REFERENCE_CONFIGS[toolbox]}\n')
    print(markdown_table(header, rows))
    print('\n' + '\n'.join(f'{args.config} / {REFERENCE} {line}' for line in lines))


if __name__ == '__main__':
    main()
