"""Speed of the selective-scan backends, forward and forward+backward, side by side.

    python tools/analysis/benchmark_scan.py                  # CPU: b=1, d=384, n=1, L=4096, g=4
    python tools/analysis/benchmark_scan.py --threads 1      # the same on one CPU thread
    python tools/analysis/benchmark_scan.py --device cuda    # VMamba-T stage 1: b=2, L=64000

Rounds are interleaved (every backend once per round) so that machine noise hits all alike; the
figures are medians. The reference loop runs only the first --reference-repeats rounds. Inputs
are VMamba's: D, delta_bias and softplus, B and C shared by g groups of channels. Every backend
is checked against the reference first: a benchmark of different maths is void. On CPU the
compiled 'cpu' backend runs too (it must be built: the script says how otherwise). The last row
times Δ = softplus(delta + delta_bias) alone, which the chunked and triton backends compute as
whole-tensor passes before their scan (a floor under their time) and the cpu backend fuses.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mmambaout.ops import selective_scan

DISCRETISE = 'softplus(delta + bias) alone'
DEFAULT_SHAPES = {'cpu': dict(batch=1, length=4096), 'cuda': dict(batch=2, length=64000)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, help='default: 1 on CPU, 2 on CUDA')
    parser.add_argument('--dim', type=int, default=384)
    parser.add_argument('--state', type=int, default=1)
    parser.add_argument('--length', type=int, help='default: 4096 on CPU, 64000 on CUDA')
    parser.add_argument('--groups', type=int, default=4)
    parser.add_argument('--chunk-size', type=int)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--reference-repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    args = parser.parse_args()
    if not 1 <= args.reference_repeats <= args.repeats:
        parser.error('--reference-repeats must be from 1 to --repeats: the ratios need the '
                     'reference timed')
    for name, value in DEFAULT_SHAPES['cuda' if args.device.startswith('cuda') else 'cpu'].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def make_inputs(args):
    b, d, n, L, g = args.batch, args.dim, args.state, args.length, args.groups
    torch.manual_seed(0)
    inputs = dict(u=torch.randn(b, d, L), delta=torch.randn(b, d, L) - 2,
                  A=-torch.arange(1, n + 1.).repeat(d, 1), B=torch.randn(b, g, n, L),
                  C=torch.randn(b, g, n, L), D=torch.ones(d), delta_bias=torch.rand(d))
    return {k: v.to(args.device) for k, v in inputs.items()}


def backends_for(device):
    if not device.startswith('cuda'):
        return ['reference', 'chunked', 'cpu']
    try:
        import triton  # noqa: F401
    except ImportError:
        return ['reference', 'chunked']
    return ['reference', 'chunked', 'triton']


def scan(backend, inputs, chunk_size):
    return selective_scan(**inputs, delta_softplus=True, backend=backend, chunk_size=chunk_size)


def timed(fn, device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    inputs = make_inputs(args)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    grad = torch.randn_like(inputs['u'])
    backends = backends_for(args.device)

    with torch.no_grad():
        expected = scan('reference', inputs, None)
        for backend in backends[1:]:
            torch.testing.assert_close(scan(backend, inputs, args.chunk_size), expected,
                                       rtol=1e-4, atol=1e-4 * expected.abs().max().item())

    def run(backend, tensors):
        if backend == DISCRETISE:
            return F.softplus(tensors['delta'] + tensors['delta_bias'][:, None])
        return scan(backend, tensors, args.chunk_size)

    def forward(backend):
        with torch.no_grad():
            run(backend, inputs)

    def forward_backward(backend):
        for leaf in leaves.values():  # as an optimizer's zero_grad does: no accumulation
            leaf.grad = None
        run(backend, leaves).backward(grad)

    for backend in backends[1:]:  # warm-up: triton compiles, allocators settle
        forward(backend)
        forward_backward(backend)
    timed_rows = backends + [DISCRETISE]
    times = {(backend, step): [] for backend in timed_rows for step in ('fwd', 'fwd+bwd')}
    for round_ in range(args.repeats):
        for backend in timed_rows:
            if backend == 'reference' and round_ >= args.reference_repeats:
                continue
            times[backend, 'fwd'].append(timed(lambda: forward(backend), args.device))
            times[backend, 'fwd+bwd'].append(timed(lambda: forward_backward(backend), args.device))
    median = {key: 1000 * statistics.median(value) for key, value in times.items()}

    shape = f'b={args.batch} d={args.dim} n={args.state} L={args.length} g={args.groups}'
    device = torch.cuda.get_device_name() if args.device.startswith('cuda') else \
        f'CPU, {torch.get_num_threads()} threads'
    print(f'\nselective scan, {shape}, {device}, torch {torch.__version__}, '
          f'{args.repeats} interleaved rounds ({args.reference_repeats} for the reference)')
    print('| backend | forward ms | forward+backward ms |\n|---|---|---|')
    for backend in timed_rows:
        print(f'| {backend} | {median[backend, "fwd"]:.2f} | {median[backend, "fwd+bwd"]:.2f} |')
    for slow, fast in [('reference', fast) for fast in backends[1:]] + \
            [('chunked', fast) for fast in backends[2:]]:
        print(f'{slow}/{fast}: forward {median[slow, "fwd"] / median[fast, "fwd"]:.1f}x, '
              f'forward+backward {median[slow, "fwd+bwd"] / median[fast, "fwd+bwd"]:.1f}x')


if __name__ == '__main__':
    main()
