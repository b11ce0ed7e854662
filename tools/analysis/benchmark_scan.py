"""Speed of the selective-scan backends, forward and forward+backward, side by side.

    python tools/analysis/benchmark_scan.py                  # CPU: b=1, d=384, n=1, L=4096, g=4
    python tools/analysis/benchmark_scan.py --threads 1      # the same on one CPU thread
    python tools/analysis/benchmark_scan.py --device cuda --dtype fp32 bf16   # VMamba-T stage 1

Rounds are interleaved (every backend once per round) so that machine noise hits all alike; the
figures are medians of the time per call over --calls back-to-back calls (CUDA: device events). The reference loop runs only the first --reference-repeats rounds. Inputs
are VMamba's: D, delta_bias and softplus, B and C shared by g groups of channels; --dtype sets
u, delta, B and C (A, D and delta_bias stay fp32, as VMamba keeps them). Every backend is checked
against the reference first: a benchmark of different maths is void. On CPU the compiled 'cpu'
backend runs too (it must be built: the script says how otherwise). The 'softplus' row times
Δ = softplus(delta + delta_bias) alone, a whole-tensor pass that the chunked backend makes
before its scan (a floor under its time) and the cpu and triton backends fuse.

With flash-linear-attention installed (``pip install fla-core``: a benchmark's option, never a
dependency of mmambaout) its Triton kernels for the same diagonal recurrence are timed too:
``chunk_hgrn`` and ``fused_recurrent_hgrn`` compute h_t = exp(g_t)·h_{t-1} + x_t, (b, L, d), which
is this scan with A = -1, B = C = 1, n = 1, x = Δ·u and g = -Δ. Both are first checked against
our triton backend on that recurrence; they solve less than the timed VMamba inputs ask of ours
(no D, bias, softplus, B or C), so 'fla/triton' ratios above 1 are conservative.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from mmambaout.analysis.report import significant
from mmambaout.ops import selective_scan

DISCRETISE = 'softplus'
DEFAULT_SHAPES = {'cpu': dict(batch=1, length=4096), 'cuda': dict(batch=2, length=64000)}
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# max error within this share of the output's largest value: both compute in fp32 (half
# precision: from the same rounded inputs, rounded once more at the end)
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', nargs='+', choices=DTYPES, default=['fp32'],
                        help='one table each, in one run')
    parser.add_argument('--batch', type=int, help='default: 1 on CPU, 2 on CUDA')
    parser.add_argument('--dim', type=int, default=384)
    parser.add_argument('--state', type=int, default=1)
    parser.add_argument('--length', type=int, help='default: 4096 on CPU, 64000 on CUDA')
    parser.add_argument('--groups', type=int, default=4)
    parser.add_argument('--chunk-size', type=int)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--reference-repeats', type=int, default=3)
    parser.add_argument('--calls', type=int, default=5,
                        help='back-to-back calls per timed sample (the reference: one)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--json', help='also write the medians (ms) to this file')
    args = parser.parse_args()
    if not 1 <= args.reference_repeats <= args.repeats:
        parser.error('--reference-repeats must be from 1 to --repeats: the ratios need the '
                     'reference timed')
    for name, value in DEFAULT_SHAPES['cuda' if args.device.startswith('cuda') else 'cpu'].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def make_inputs(args, dtype):
    b, d, n, L, g = args.batch, args.dim, args.state, args.length, args.groups
    torch.manual_seed(0)
    inputs = dict(u=torch.randn(b, d, L), delta=torch.randn(b, d, L) - 2,
                  A=-torch.arange(1, n + 1.).repeat(d, 1), B=torch.randn(b, g, n, L),
                  C=torch.randn(b, g, n, L), D=torch.ones(d), delta_bias=torch.rand(d))
    return {k: v.to(args.device, dtype if k in ('u', 'delta', 'B', 'C') else torch.float32)
            for k, v in inputs.items()}


def backends_for(device):
    if not device.startswith('cuda'):
        return ['reference', 'chunked', 'cpu']
    try:
        import triton  # noqa: F401
    except ImportError:
        return ['reference', 'chunked']
    return ['reference', 'chunked', 'triton']


def fla_kernels(device):
    """flash-linear-attention's HGRN kernels by name, where it is installed (CUDA only)."""
    if not device.startswith('cuda'):
        return {}
    try:
        from fla.ops.hgrn import chunk_hgrn, fused_recurrent_hgrn
    except ImportError:
        return {}
    return {'fla chunk_hgrn': chunk_hgrn, 'fla fused_recurrent_hgrn': fused_recurrent_hgrn}


def shared_recurrence(inputs):
    """Δ = softplus(delta + delta_bias) and u, (b, d, L) in the inputs' dtype, and fla's
    x = Δ·u and g = -Δ, (b, L, d)."""
    delta = F.softplus(inputs['delta'].float() + inputs['delta_bias'][:, None])
    fla = dict(x=delta * inputs['u'].float(), g=-delta)
    dtype = inputs['u'].dtype
    return delta.to(dtype), {k: v.transpose(1, 2).contiguous().to(dtype) for k, v in fla.items()}


def check_fla(kernels, inputs, dtype):
    """Each fla kernel against our triton backend on the recurrence they share."""
    delta, fla = shared_recurrence(inputs)
    batch, dim, length = delta.shape
    ones = delta.new_ones(batch, 1, length)
    ours = selective_scan(inputs['u'], delta, -delta.new_ones(dim, 1, dtype=torch.float32), ones,
                          ones, backend='triton').float()
    for name, kernel in kernels.items():
        out = kernel(fla['x'], fla['g'])[0].transpose(1, 2).float()
        torch.testing.assert_close(out, ours, rtol=TOLERANCE[dtype],
                                   atol=TOLERANCE[dtype] * ours.abs().max().item(),
                                   msg=lambda m, name=name: f'{name} differs from ours: {m}')


def scan(backend, inputs, chunk_size):
    return selective_scan(**inputs, delta_softplus=True, backend=backend, chunk_size=chunk_size)


def timed(fn, device, calls):
    """Seconds per call. On CUDA: device events around ``calls`` back-to-back calls, as a model
    issues them, so that the host's launch work overlaps the GPU's (one call between two host
    synchronisations measured ~0.25 ms of synchronisation on an H200: a softplus alone took
    0.35 ms). On CPU: the wall clock around them."""
    if not device.startswith('cuda'):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000 / calls


def benchmark(args, dtype):
    """Median ms per (row, 'fwd' | 'fwd+bwd'), and the rows in order."""
    inputs = make_inputs(args, dtype)
    backends = backends_for(args.device)
    fla = fla_kernels(args.device)
    with torch.no_grad():
        expected = scan('reference', inputs, None).float()
        for backend in backends[1:]:
            torch.testing.assert_close(scan(backend, inputs, args.chunk_size).float(), expected,
                                       rtol=TOLERANCE[dtype],
                                       atol=TOLERANCE[dtype] * expected.abs().max().item())
        if fla:
            check_fla(fla, inputs, dtype)
    calls = {backend: (lambda tensors, backend=backend: scan(backend, tensors, args.chunk_size))
             for backend in backends}
    calls[DISCRETISE] = lambda tensors: F.softplus(tensors['delta'] + tensors['delta_bias'][:, None])
    tensors = {name: inputs for name in calls}
    for name, kernel in fla.items():
        calls[name] = lambda tensors, kernel=kernel: kernel(tensors['x'], tensors['g'])[0]
        tensors[name] = shared_recurrence(inputs)[1]
    leaves = {name: {k: v.clone().requires_grad_() if v.is_floating_point() else v
                     for k, v in given.items()} for name, given in tensors.items()}

    def forward(name):
        with torch.no_grad():
            calls[name](tensors[name])

    def forward_backward(name):
        for leaf in leaves[name].values():  # as an optimizer's zero_grad does: no accumulation
            leaf.grad = None
        out = calls[name](leaves[name])
        out.backward(torch.ones_like(out))

    for name in calls:  # warm-up: triton compiles, allocators settle
        if name != 'reference':
            forward(name)
            forward_backward(name)
    times = {(name, step): [] for name in calls for step in ('fwd', 'fwd+bwd')}
    for round_ in range(args.repeats):
        for name in calls:
            if name == 'reference' and round_ >= args.reference_repeats:
                continue
            burst = 1 if name == 'reference' else args.calls
            times[name, 'fwd'].append(timed(lambda: forward(name), args.device, burst))
            times[name, 'fwd+bwd'].append(timed(lambda: forward_backward(name), args.device,
                                                burst))
    return {key: 1000 * statistics.median(value) for key, value in times.items()}, list(calls)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = f'b={args.batch} d={args.dim} n={args.state} L={args.length} g={args.groups}'
    device = torch.cuda.get_device_name() if args.device.startswith('cuda') else \
        f'CPU, {torch.get_num_threads()} threads'
    results = dict(shape=shape, device=device, torch=torch.__version__, dtypes={})
    for dtype_name in args.dtype:
        median, rows = benchmark(args, DTYPES[dtype_name])
        print(f'\nselective scan, {shape}, {dtype_name}, {device}, torch {torch.__version__}, '
              f'{args.repeats} interleaved rounds of {args.calls} calls ({args.reference_repeats} '
              'of one for the reference)')
        print('| backend | forward ms | forward+backward ms |\n|---|---|---|')
        for row in rows:
            print(f'| {row} | {significant(median[row, "fwd"])} | '
                  f'{significant(median[row, "fwd+bwd"])} |')
        fast = [row for row in rows if row in ('chunked', 'cpu', 'triton')]
        pairs = [('reference', row) for row in fast] + [('chunked', row) for row in fast[1:]]
        pairs += [(row, 'triton') for row in rows if row.startswith('fla') and 'triton' in rows]
        for slow, quick in pairs:
            ratios = [significant(median[slow, step] / median[quick, step])
                      for step in ('fwd', 'fwd+bwd')]
            print(f'{slow}/{quick}: forward {ratios[0]}x, forward+backward {ratios[1]}x')
        results['dtypes'][dtype_name] = {row: {step: median[row, step] for step in
                                               ('fwd', 'fwd+bwd')} for row in rows}
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(results, file, indent=1)


if __name__ == '__main__':
    main()
