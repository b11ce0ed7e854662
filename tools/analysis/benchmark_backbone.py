"""Latency and peak memory of our MambaOut against timm's, on the same weights and input.

    python tools/analysis/benchmark_backbone.py --arch tiny --shape 800 1280 [--dtype bf16] [--backward]

Runs are interleaved (ours, timm, ours, ...) so that machine noise hits both alike; the figure is
the median ratio ours/timm (below 1.0: ours is faster). Ours returns the four normed NCHW
features a detector consumes; timm's side is ``forward_intermediates`` (the same four stages,
without output norms), so ours does slightly more work. ``--dtype bf16`` runs both under
autocast; ``--backward`` also times forward+backward (the gradient of the outputs' sum), as
training does.
"""
import argparse
import contextlib
import statistics
from functools import partial

import timm
import torch

from mmambaout.analysis.measure import interleaved_times, peak_memory_mib
from mmambaout.models.backbones.mambaout import MambaOut, convert_mambaout_checkpoint

DTYPES = {'fp32': None, 'bf16': torch.bfloat16}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny', choices=sorted(MambaOut.arch_settings))
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1280), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', default='fp32', choices=sorted(DTYPES),
                        help='bf16: both models under torch.autocast')
    parser.add_argument('--backward', action='store_true',
                        help='also time forward+backward')
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


def check_same_maths(ours, models, device, autocast, dtype):
    """A benchmark of different maths is void: ours must equal timm plus our output norms, in the
    dtype timed. fp32 is compared without TF32 (cuDNN's default for convolutions on CUDA,
    ~1e-3); what is left is summation order (cuDNN made the two differ by 1.8e-4, at ~1e-5 of
    the features' largest value). bf16: both round to 8 bits, ~4e-3 each."""
    x = torch.randn(1, 3, 96, 160, device=device)
    tolerance = 1e-4 if dtype is None else 2e-2
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode(), autocast():
            for i, (a, b) in enumerate(zip(models['ours'](x), models['timm'](x))):
                b = getattr(ours, f'norm{i}')(b.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                torch.testing.assert_close(a.float(), b.float(), rtol=tolerance,
                                           atol=tolerance * b.abs().max().item())
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def measure(runs, device, repeats):
    """Interleaved times and peak memory of each run, after one warm-up call each."""
    for run in runs.values():
        run()
    times = interleaved_times(runs, device, repeats)
    return times, {name: peak_memory_mib(run, device) for name, run in runs.items()}


def print_table(title, times, memory):
    print(f'\n{title}\n| model | median ms | peak memory MiB |\n|---|---|---|')
    for name in times:
        print(f'| {name} | {1000 * statistics.median(times[name]):.1f} | {memory[name]:.0f} |')
    ratios = [o / t for o, t in zip(times['ours'], times['timm'])]
    suffix = '' if title == 'forward' else f' ({title})'
    print(f'median ratio ours/timm{suffix}: {statistics.median(ratios):.3f}')


def main():
    args = parse_args()
    shape = (args.batch, 3, *args.shape)
    ours, models = build_pair(args.arch, args.device)
    x = torch.randn(*shape, device=args.device)
    device = x.device
    dtype = DTYPES[args.dtype]
    autocast = (partial(torch.autocast, device.type, dtype) if dtype else contextlib.nullcontext)
    check_same_maths(ours, models, device, autocast, dtype)

    def forward(model):
        with torch.inference_mode(), autocast():
            model(x)

    def forward_backward(model):
        with autocast():
            outs = model(x)
        sum(out.float().sum() for out in outs).backward()

    print(f'\nMambaOut-{args.arch}, input {shape}, {args.device}, {args.dtype}, torch '
          f'{torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} interleaved runs')
    passes = {'forward': forward, **({'forward+backward': forward_backward} if args.backward else {})}
    for title, step in passes.items():
        runs = {name: partial(step, model) for name, model in models.items()}
        print_table(title, *measure(runs, device, args.repeats))


if __name__ == '__main__':
    main()
