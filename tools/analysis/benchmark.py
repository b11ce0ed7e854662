"""A detector's or segmentor's speed and memory against the toolbox's ResNet-50 model for the
same task, or its training loop against its training step, measured in the same run: the ratio
is the figure.

    python tools/analysis/benchmark.py CONFIG [--shape H W] [--repeats 3] [--train]
    python tools/analysis/benchmark.py CONFIG --loop N [--warmup 2] [--repeats 3]

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

--loop N trains instead the config's model (random weights) through mmengine's Runner, as
tools/train.py builds it: the config's hooks and the ones train.py adds, its dataloader and
pipeline on a generated toy set (toy COCO for CocoDataset, toy ADE20K for ADE20KDataset) at the
config's input size, its optimizer wrapper (AMP on a GPU). The loop is mmengine's
IterBasedTrainLoop (an epoch-based config's iterations are the same; no epoch ends in a timed
window), without validation or checkpoints. In each of --repeats rounds it runs --warmup
iterations, then N timed ones, then, off the loop's clock, the model's step alone (``train_step``
with the runner's optimizer wrapper) on the same N batches. Both are timed on the wall clock, GPU
work included (--clock cpu: this process's CPU time, which leaves out the dataloader workers and
any wait for them; mmengine's data_time, printed, shows the wait); the figure is the median of the
per-round ratios loop / step: what the loop costs beyond the model. The first iteration (worker
start-up, CUDA and cuDNN set-up) is printed apart. While a step block runs, the dataloader workers
fill their queue (num_workers × prefetch_factor batches): a loop that waits for data shows it fully
only with --warmup at least that long. The loop runs where the Runner puts the model (the GPU if
there is one).
"""
import argparse
import copy
import statistics
import tempfile
from functools import partial
from pathlib import Path

import torch
from mmengine.config import Config, DictAction
from mmengine.optim import OptimWrapper

from mmambaout.analysis.measure import (CLOCKS, LoopClock, interleaved_times, peak_memory_mib,
                                        timed)
from mmambaout.analysis.models import (REFERENCE_CONFIGS, build_model, drop_pretrained,
                                       load_reference_config, synthetic_batch)
from mmambaout.analysis.report import markdown_table, significant
from mmambaout.datasets import TOY_COCO_CLASSES, make_toy_ade, make_toy_coco
from mmambaout.utils import runtime
from mmambaout.utils.data_check import leaf_datasets
from mmambaout.utils.runtime import toolbox_of

DEFAULT_SHAPES = {'mmdet': (800, 1216), 'mmseg': (512, 512)}
# Images per training step: the per-GPU batch of the paper's recipes (16 on 8 GPUs). One would
# not do: UperNet's 1×1 pooling branch cannot batch-normalise a single value per channel.
TRAIN_BATCH = 2
REFERENCE = 'ResNet-50 reference'
# --loop: the toy set a dataset type trains on, as (generator, dataset settings for its root).
TOY_SETS = {
    'CocoDataset': (make_toy_coco, lambda root: dict(
        data_root=f'{root}/', ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=TOY_COCO_CLASSES))),
    'ADE20KDataset': (make_toy_ade, lambda root: dict(data_root=str(root))),
}


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
    parser.add_argument('--loop', type=int, metavar='N',
                        help='instead: time rounds of N iterations of the training loop beside '
                        "the model's step alone on the same batches")
    parser.add_argument('--warmup', type=int, default=2,
                        help='--loop: iterations before the timed ones of each round (default 2)')
    args = parser.parse_args(argv)
    if args.loop is not None:
        if args.loop < 1 or args.warmup < 1:
            parser.error(f'--loop and --warmup need at least 1 iteration, got {args.loop} and '
                         f'{args.warmup}.')
        if args.train or args.shape:
            parser.error("--loop times the config's own training at its pipeline's input "
                         'size: leave out --train and --shape (change the size with '
                         '--cfg-options).')
    return args


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


def use_toy_training_set(cfg: Config, root: Path, num_images: int) -> None:
    """Generate the toy set of the config's training dataset type under ``root`` and point
    every dataset of ``train_dataloader`` at it (the pipelines stay)."""
    for dataset in leaf_datasets(cfg.train_dataloader.dataset):
        if dataset.type not in TOY_SETS:
            raise ValueError(f'--loop trains on a generated toy set of {" or ".join(TOY_SETS)}; '
                             f"this config's training dataset is {dataset.type}.")
        make_set, settings = TOY_SETS[dataset.type]
        set_root = root / dataset.type
        if not set_root.exists():
            make_set(set_root, num_train=num_images, num_val=1)
        dataset.update(settings(set_root))


def configure_loop(args, root: Path) -> Config:
    """The config as tools/train.py runs it, from random weights on a toy set, for --repeats
    rounds of --warmup + --loop iterations, without validation or checkpoints."""
    cfg = runtime.load_config(args.config, args.cfg_options, work_dir=str(root / 'work_dir'))
    drop_pretrained(cfg.model)
    iterations = args.repeats * (args.warmup + args.loop)
    # Twice the images the iterations take: mmdet drops those without objects, and no epoch
    # may end in a timed window.
    use_toy_training_set(cfg, root, 2 * cfg.train_dataloader.batch_size * iterations)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iterations)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.log_processor = dict(cfg.get('log_processor') or {}, by_epoch=False)
    cfg.default_hooks.checkpoint.update(by_epoch=False, interval=iterations + 1,
                                        save_last=False)
    runtime.configure_training(cfg)
    return cfg


def time_loop(args) -> None:
    """--loop: rounds of N iterations of the config's training loop, each followed by its
    model's step alone on the same batches; prints both, their ratio and mmengine's data_time."""
    steps = []  # per round: mean seconds of the step alone

    def time_steps(batches):
        runs = [partial(runner.model.train_step, batch, optim_wrapper=runner.optim_wrapper)
                for batch in batches]
        runs[0]()  # untimed, as the loop's warm-up
        steps.append(statistics.mean(timed(run, device, args.clock) for run in runs))

    with tempfile.TemporaryDirectory() as root:
        cfg = configure_loop(args, Path(root))
        runner = runtime.build_runner(cfg)
        device = next(runner.model.parameters()).device
        if device.type != torch.device(args.device).type:
            raise ValueError(f"--device {args.device}: mmengine's Runner trains on {device}; "
                             "for a CPU loop on a GPU machine set CUDA_VISIBLE_DEVICES=''.")
        loop_clock = LoopClock(args.warmup, args.loop, device, time_steps, args.clock)
        runner.register_hook(loop_clock)
        runner.train()
    loops = [seconds / args.loop for seconds in loop_clock.seconds]
    logged = {key: runner.message_hub.get_scalar(f'train/{key}').data[0]
              for key in ('time', 'data_time')}
    round_length = args.warmup + args.loop
    timed_data = [logged['data_time'][r * round_length + args.warmup:(r + 1) * round_length]
                  for r in range(args.repeats)]
    rows = [['training loop (mmengine Runner: dataloader, hooks, optimizer wrapper)',
             significant(statistics.median(loops))],
            ["of which mmengine's data_time (waiting for the batch)",
             significant(statistics.mean(t for times in timed_data for t in times))],
            ["model's step alone (train_step, the same batches)",
             significant(statistics.median(steps))],
            ["first iteration (warm-up, not counted; mmengine's time)",
             significant(logged['time'][0])]]
    print(f'\n{args.config}: {args.repeats} rounds × ({args.warmup} warm-up + {args.loop} '
          f'timed) iterations, batch {cfg.train_dataloader.batch_size}, '
          f'{cfg.optim_wrapper.type}, {device}, {args.clock} clock, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads\n')
    print(markdown_table(['', 's / iteration'], rows))
    ratios = [loop / step for loop, step in zip(loops, steps)]
    print(f'\ntraining loop / model step ratio {describe(ratios)}')


def main(argv=None):
    args = parse_args(argv)
    if args.loop is not None:
        time_loop(args)
        return
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
