"""Forward latency and peak memory of our MambaOut against timm's, on the same weights and input.

    python tools/analysis/benchmark_backbone.py --arch tiny --shape 800 1280

Runs are interleaved (ours, timm, ours, ...) so that machine noise hits both alike; the figure is
the median ratio ours/timm (below 1.0: ours is faster). Ours returns the four normed NCHW
features a detector consumes; timm's side is ``forward_intermediates`` (the same four stages,
without output norms), so ours does slightly more work.
"""
import argparse
import os
import statistics
import threading
import time

import timm
import torch
from mmengine.utils import ProgressBar

from mmambaout.models.backbones.mambaout import MambaOut, convert_mambaout_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny', choices=sorted(MambaOut.arch_settings))
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1280), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args()


def build_pair(arch, device):
    """timm's model with random weights, and ours loaded with exactly those weights."""
    torch.manual_seed(0)
    theirs = timm.create_model(f'mambaout_{arch}', pretrained=False, num_classes=0)
    ours = MambaOut(arch)
    state, _ = convert_mambaout_checkpoint(theirs.state_dict())
    ours.load_state_dict(state, strict=False)
    ours, theirs = ours.to(device).eval(), theirs.to(device).eval()

    def run_theirs(x):
        return theirs.forward_intermediates(x, intermediates_only=True)

    return ours, {'ours': ours, 'timm': run_theirs}


def check_same_maths(ours, models, device):
    """A benchmark of different maths is void: ours must equal timm plus our output norms."""
    x = torch.randn(1, 3, 96, 160, device=device)
    with torch.inference_mode():
        for i, (a, b) in enumerate(zip(models['ours'](x), models['timm'](x))):
            b = getattr(ours, f'norm{i}')(b.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def timed(fn, x):
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rss_mib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_memory_mib(fn, x):
    """Extra memory one forward needs: the CUDA allocator's peak, or on CPU the peak resident
    set above the level before the call, sampled every millisecond by a side thread."""
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        timed(fn, x)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base, peak, done = rss_mib(), [0.], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(1e-3)

    sampler = threading.Thread(target=sample)
    sampler.start()
    timed(fn, x)
    done.set()
    sampler.join()
    return peak[0] - base


def main():
    args = parse_args()
    shape = (args.batch, 3, *args.shape)
    ours, models = build_pair(args.arch, args.device)
    check_same_maths(ours, models, args.device)
    x = torch.randn(*shape, device=args.device)
    for fn in models.values():  # warm-up
        timed(fn, x)
    times = {name: [] for name in models}
    bar = ProgressBar(args.repeats)
    for _ in range(args.repeats):
        for name, fn in models.items():
            times[name].append(timed(fn, x))
        bar.update()
    ratios = [o / t for o, t in zip(times['ours'], times['timm'])]
    memory = {name: peak_memory_mib(fn, x) for name, fn in models.items()}
    print(f'\nMambaOut-{args.arch}, input {shape}, {args.device}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, {args.repeats} interleaved runs')
    print('| model | median ms | peak memory MiB |\n|---|---|---|')
    for name in models:
        print(f'| {name} | {1000 * statistics.median(times[name]):.1f} | {memory[name]:.0f} |')
    print(f'median ratio ours/timm: {statistics.median(ratios):.3f}')


if __name__ == '__main__':
    main()
