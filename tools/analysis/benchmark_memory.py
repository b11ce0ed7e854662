"""Resident memory over many toy training steps: a leak shows as a line that keeps rising.

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_memory.py --iters 300 --out rss.png

Trains the toy detection config on the toy COCO set (generated in --data-root if missing) with
small images, data loaded in the training process (so one process holds all the memory), and no
validation or checkpoints; samples the process's resident set size (RSS) every --every steps
after --warmup steps. Prints the first, last and largest sample and the drift (last - first) /
first, saves RSS against step to --out, and exits with status 1 if the drift exceeds
--tolerance percent. Linux only (RSS is read from /proc).

oneDNN (PyTorch's CPU convolutions) caches a compiled kernel for every new tensor shape, up to
1024 of them, and Mask R-CNN's heads see a new shape with almost every new count of RoIs: with
the cache on, RSS climbs by about a quarter over the first ~250 toy steps and then levels off.
That bounded cache would hide or fake a leak, so this tool turns it off unless
ONEDNN_PRIMITIVE_CACHE_CAPACITY is set (e.g. to 1024, to see its effect).
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault('ONEDNN_PRIMITIVE_CACHE_CAPACITY', '0')  # before torch is imported

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

from mmambaout.datasets import ensure_toy_coco  # noqa: E402
from mmambaout.utils import runtime  # noqa: E402

CONFIG = 'configs/toy/mask_rcnn_mambaout_femto_toy.py'
PAGE_MIB = os.sysconf('SC_PAGE_SIZE') / 2**20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG, help='a detection config on the toy set')
    parser.add_argument('--data-root', default='data/toy_coco/',
                        help='toy COCO set (generated there if missing)')
    parser.add_argument('--iters', type=int, default=300, help='training steps')
    parser.add_argument('--warmup', type=int, default=50,
                        help='steps before the first sample (allocator and caches settle)')
    parser.add_argument('--every', type=int, default=10, help='steps between samples')
    parser.add_argument('--image-size', type=int, default=96, help='longest image side')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--tolerance', type=float, default=5., help='allowed drift in percent')
    parser.add_argument('--out', required=True, help='PNG file for the plot')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='further config overrides, key=value')
    args = parser.parse_args(argv)
    if args.warmup >= args.iters:
        parser.error('--warmup must be smaller than --iters')
    return args


def rss_mib() -> float:
    """This process's resident set size in MiB."""
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * PAGE_MIB


class RssSampler(Hook):
    """Records (step, RSS in MiB) after every ``every``-th training step from ``warmup`` on."""
    priority = 'LOWEST'

    def __init__(self, warmup: int, every: int) -> None:
        self.warmup, self.every = warmup, every
        self.samples = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        step = runner.iter + 1
        if step >= self.warmup and (step - self.warmup) % self.every == 0:
            self.samples.append((step, rss_mib()))


def memory_run_config(args, work_dir: str):
    """The config, turned into ``args.iters`` training steps and nothing else."""
    cfg = runtime.load_config(args.config, args.cfg_options, work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters, val_interval=10**9)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 50
    cfg.log_processor.by_epoch = False
    loader = cfg.train_dataloader
    loader.update(batch_size=args.batch_size, num_workers=0, persistent_workers=False,
                  sampler=dict(type='InfiniteSampler', shuffle=True))
    loader.dataset.data_root = args.data_root
    for step in loader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (args.image_size, args.image_size)
    runtime.configure_training(cfg)
    return cfg


def drift_percent(samples) -> float:
    first, last = samples[0][1], samples[-1][1]
    return 100. * (last - first) / first


def plot(samples, drift: float, out: str) -> None:
    steps, rss = zip(*samples)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, rss, marker='.')
    ax.set_ylim(0, max(rss) * 1.1)  # from zero: a flat line looks flat
    ax.set(xlabel='training step', ylabel='RSS (MiB)',
           title=f'Resident memory, toy Mask R-CNN training: drift {drift:+.2f} %')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv=None) -> int:
    args = parse_args(argv)
    ensure_toy_coco(args.data_root)
    sampler = RssSampler(args.warmup, args.every)
    with tempfile.TemporaryDirectory() as work_dir:
        runner = runtime.build_runner(memory_run_config(args, work_dir))
        runner.register_hook(sampler)
        runner.train()
    samples = sampler.samples
    drift = drift_percent(samples)
    plot(samples, drift, args.out)
    print(f'RSS over steps {samples[0][0]}-{samples[-1][0]} ({len(samples)} samples, oneDNN '
          f'cache capacity {os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]}): first '
          f'{samples[0][1]:.1f} MiB, last {samples[-1][1]:.1f} MiB, '
          f'max {max(rss for _, rss in samples):.1f} MiB, drift {drift:+.2f} % '
          f'(tolerance {args.tolerance:g} %). Plot: {args.out}')
    return 0 if abs(drift) <= args.tolerance else 1


if __name__ == '__main__':
    sys.exit(main())
