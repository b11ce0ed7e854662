"""selective_scan: every backend against the reference loop, values and gradients.

The triton backend runs in-process on CUDA; without a GPU, ``test_triton_interpreter`` reruns the
triton cases in a subprocess with ``TRITON_INTERPRET=1``, which must be set before triton loads.
"""
import itertools
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmambaout.ops import BACKENDS, scan_flop_handles, selective_scan
from mmambaout.ops import chunked

INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'


def triton_usable():
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or INTERPRETED


# the triton cases are GPU tests too: `pytest -m gpu` checks the compiled kernels against the
# float64-derived references here, not only against the chunked backend (tests/test_gpu.py)
FAST_BACKENDS = ['chunked', pytest.param('triton', marks=[pytest.mark.gpu, pytest.mark.skipif(
    not triton_usable(), reason='needs CUDA, or TRITON_INTERPRET=1 (test_triton_interpreter)')])]


def setting_for(backend):
    """Device and length: the interpreter is slow, so triton gets fewer (but several) chunks."""
    if backend != 'triton':
        return dict(device='cpu', length=37)
    return dict(device='cpu' if INTERPRETED else 'cuda', length=21)


def make_inputs(batch=2, dim=8, state=1, length=37, groups=4, options=True, dtype=torch.float32,
                delta_scale=1.0, device='cpu'):
    """u, delta, A, B, C, D, z, delta_bias as mamba uses them: A = -exp(A_log) < 0, and delta and
    delta_bias ≥ 0 so that decays exp(delta·A) ≤ 1 even without softplus."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    bc_shape = (batch, state, length) if groups is None else (batch, groups, state, length)
    inputs = dict(u=randn(batch, dim, length), delta=delta_scale * randn(batch, dim, length).abs(),
                  A=-torch.exp(randn(dim, state)), B=randn(*bc_shape), C=randn(*bc_shape))
    if options:
        inputs.update(D=randn(dim), z=randn(batch, dim, length), delta_bias=randn(dim).abs() / 2)
    return {k: v.to(device, dtype if k not in ('A', 'D', 'delta_bias') else torch.float32)
            for k, v in inputs.items()}


def run(backend, inputs, **kwargs):
    """Output, last state and the gradient of every input, for a loss that reaches both."""
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out, last_state = selective_scan(**leaves, return_last_state=True, backend=backend, **kwargs)
    weights = torch.linspace(-1, 1, out.shape[-1], device=out.device)
    (out.float() * weights).sum().add(last_state.square().sum()).backward()
    return dict(out=out, last_state=last_state, **{f'grad_{k}': v.grad for k, v in leaves.items()})


def assert_close(actual, expected, rtol):
    """Element by element, |actual - expected| <= rtol·|expected| + atol, for every tensor in
    ``expected``. atol is rtol/100 of the largest |expected| in the element's row (the last axis:
    one channel's sequence, or its states; a 1-D tensor's elements are rows of their own):
    float32 leaves a sum's last digits uncertain relative to its largest terms, not to the sum,
    where they cancel, and rows are independent computations, whose sizes may be orders of
    magnitude apart (as with Δ = softplus(v) ≈ e^v in one channel and ≈ v in the next)."""
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        a, e = actual[name].detach().double(), expected[name].detach().double()
        assert a.shape == e.shape, name
        row_scale = e.abs() if e.dim() == 1 else e.abs().amax(-1, keepdim=True)
        excess = (a - e).abs() - rtol * (e.abs() + row_scale / 100)
        worst = excess.argmax()
        assert excess.flatten()[worst] <= 0, (
            f'{name}: {a.flatten()[worst].item():.6g} instead of {e.flatten()[worst].item():.6g} '
            f'at {tuple(int(i) for i in torch.unravel_index(worst, e.shape))}')


CASES = list(itertools.product((1, 16), (None, 1, 4), (False, True)))
KERNEL_BACKENDS = [*FAST_BACKENDS, 'cpu']  # every backend but the reference


@pytest.mark.parametrize('backend', KERNEL_BACKENDS)
@pytest.mark.parametrize('state,groups,options', CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16], ids=['fp32', 'bf16'])
def test_matches_reference(backend, state, groups, options, dtype):
    # chunks of 4 over L = 37 (21): a remainder, and for chunked chunks of chunks
    inputs = make_inputs(state=state, groups=groups, options=options, dtype=dtype,
                         **setting_for(backend))
    expected = run('reference', inputs, delta_softplus=options)
    actual = run(backend, inputs, delta_softplus=options, chunk_size=4)
    assert actual['out'].dtype == dtype
    # bf16: both compute in fp32 from the same inputs; only the final rounding may differ
    assert_close(actual, expected, 1e-4 if dtype == torch.float32 else 1e-2)


def chunked_algorithm(monkeypatch, inputs, **kwargs):
    """(algorithm, chunk) that ``selective_scan`` runs in the chunked backend on these inputs."""
    solve, chosen = chunked.forward, []

    def spy(*args):
        *result, backward = solve(*args)
        chosen.append((backward.func.__name__.strip('_').replace('_backward', ''),
                       backward.keywords['chunk']))
        return (*result, backward)

    with monkeypatch.context() as patch, torch.no_grad():
        patch.setattr(chunked, 'forward', spy)
        selective_scan(**inputs, backend='chunked', **kwargs)
    (used,) = chosen
    return used


@pytest.fixture(params=['log_space', 'multiply_only'])
def algorithm(request, monkeypatch):
    """Run the chunked backend's log-space algorithm, or force its multiply-only one."""
    if request.param == 'multiply_only':
        monkeypatch.setattr(chunked, '_MAX_LOG_DECAY', -1.)
    return request.param


@pytest.mark.parametrize('state,groups,options', CASES)
def test_chunked_algorithms_match_reference(monkeypatch, algorithm, state, groups, options):
    inputs = make_inputs(state=state, groups=groups, options=options)
    inputs['A'] = inputs['A'].clamp(min=-1.)  # so that no chunk of 4 decays by e^-40
    used, _ = chunked_algorithm(monkeypatch, inputs, chunk_size=4, delta_softplus=options)
    assert used == algorithm
    expected = run('reference', inputs, delta_softplus=options)
    assert_close(run('chunked', inputs, delta_softplus=options, chunk_size=4), expected, 1e-4)


@pytest.mark.parametrize('step,used', [(2.4, ('log_space', 16)), (2.6, ('log_space', 4)),
                                       (9.9, ('log_space', 4)), (10.1, ('multiply_only', 16))])
def test_log_space_only_while_a_chunk_decays_at_most_e40(monkeypatch, step, used):
    # Δ·A = -step everywhere: a chunk of 16 decays by e^-(16·step), one of 4 by e^-(4·step)
    inputs = make_inputs(length=40, options=False)
    inputs.update(delta=torch.full_like(inputs['delta'], step), A=-torch.ones_like(inputs['A']))
    assert chunked_algorithm(monkeypatch, inputs, chunk_size=16) == used
    assert_close(run('chunked', inputs, chunk_size=16), run('reference', inputs), 1e-4)


@pytest.mark.parametrize('backend', KERNEL_BACKENDS)
@pytest.mark.parametrize('step', [9.9, 20.])
def test_gradients_where_each_step_forgets_almost_all(backend, step):
    # a_t = e^-step: a_t·h_{t-1} is below float32's resolution of h_t, so ∂/∂(Δ·A) must not be
    # taken as gh_t·(h_t - x_t) (that gave grad_A errors of 4e-4 and 100 % in the Triton kernel)
    inputs = make_inputs(options=False, **setting_for(backend))
    inputs.update(delta=torch.full_like(inputs['delta'], step), A=-torch.ones_like(inputs['A']))
    assert_close(run(backend, inputs, chunk_size=16), run('reference', inputs), 1e-4)


@pytest.mark.parametrize('backend', KERNEL_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_half_precision_large_delta_is_finite(monkeypatch, backend, dtype):
    # softplus(Δ) up to ~60 with A down to -e^2.5: decays of e^-700 underflow, nothing overflows
    inputs = make_inputs(state=16, dtype=dtype, delta_scale=20., **setting_for(backend))
    if backend == 'chunked':
        assert chunked_algorithm(monkeypatch, inputs, delta_softplus=True)[0] == 'multiply_only'
    expected = run('reference', inputs, delta_softplus=True)
    actual = run(backend, inputs, delta_softplus=True)
    for name, value in actual.items():
        assert torch.isfinite(value).all(), name
    assert_close(actual, expected, 1e-2)


@pytest.mark.parametrize('backend', KERNEL_BACKENDS)
def test_softplus_on_both_sides_of_its_threshold(backend):
    # delta + bias from about -60 to 60: softplus ≈ e^v (tiny Δ) up to v itself (torch switches to
    # v above 20), with decays from ~1 down to exp's underflow to 0 (Δ·A < -87), in the backward too
    setting = setting_for(backend)
    inputs = make_inputs(state=4, **setting)
    inputs['delta'] = 20 * torch.randn(inputs['delta'].shape,
                                       generator=torch.Generator().manual_seed(2))
    inputs['delta'] = inputs['delta'].to(setting['device'])
    assert inputs['delta'].min() < -40 and inputs['delta'].max() > 40
    assert_close(run(backend, inputs, delta_softplus=True),
                 run('reference', inputs, delta_softplus=True), 1e-4)


@pytest.mark.parametrize('backend', KERNEL_BACKENDS)
def test_softplus_far_below_zero_is_e_to_the_v(backend):
    """Channels 0-3 (groups 0 and 1) have v = delta + bias from -37 to -20, where softplus(v) =
    log(1 + e^v) ≈ e^v: Δ from 1e-16 to 1e-9, not 0 (torch's softplus switches to v above 20 only).
    Everything those channels make is as small; a tolerance relative to a tensor's largest value
    would let it all be 0 (D = 0: D·u would hide the scan's part of y)."""
    inputs = make_inputs(state=2, delta_scale=0.5, **setting_for(backend))
    inputs['delta_bias'][:4] = -torch.tensor([22., 27., 32., 37.])
    inputs['D'] = torch.zeros_like(inputs['D'])
    expected = run_semantics(inputs)
    assert expected['out'][:, :4].abs().max() < 1e-6 * expected['out'].abs().max()
    assert_close(run(backend, inputs, delta_softplus=True), expected, 1e-4)


@pytest.mark.parametrize('chunk_size', [2, 3, 5, 64])
@pytest.mark.parametrize('block_states', [7, 100, 1 << 22])
def test_chunked_blocks_and_chunks(monkeypatch, chunk_size, block_states):
    # multiply-only: blocks of one step up to one block for all; chunks from 2 to longer than
    # the sequence (the log-space algorithm's chunks are in the tests above)
    monkeypatch.setattr(chunked, '_MAX_LOG_DECAY', -1.)
    monkeypatch.setattr(chunked, '_BLOCK_STATES', block_states)
    inputs = make_inputs(state=3, length=50)
    assert_close(run('chunked', inputs, chunk_size=chunk_size), run('reference', inputs), 1e-4)


@pytest.mark.parametrize('length', [1, 2, 17, 100])
@pytest.mark.parametrize('chunk', [2, 3, 8])
@pytest.mark.parametrize('reverse', [False, True])
def test_chunked_scan_solves_the_recurrence(length, chunk, reverse):
    a, x = torch.rand(length, 3, dtype=torch.float64), torch.randn(length, 3, dtype=torch.float64)
    expected = x.clone()
    steps = range(length - 2, -1, -1) if reverse else range(1, length)
    for t in steps:
        expected[t] += a[t] * expected[t + 1 if reverse else t - 1]
    scanned = x.clone()
    chunked._scan_(a, scanned, chunk, reverse)
    torch.testing.assert_close(scanned, expected)


def test_semantics_of_the_options():
    """The recurrence with D, z, delta_bias and softplus, written out for two steps, independently
    of every backend."""
    inputs = make_inputs(length=2, groups=None)
    u, B, C = inputs['u'], inputs['B'][:, None], inputs['C'][:, None]  # (b, 1, n, L): all channels
    delta = F.softplus(inputs['delta'] + inputs['delta_bias'][:, None])
    h0 = delta[..., 0, None] * B[..., 0] * u[..., 0, None]  # h_{-1} = 0
    h1 = (torch.exp(delta[..., 1, None] * inputs['A']) * h0
          + delta[..., 1, None] * B[..., 1] * u[..., 1, None])
    y = torch.stack([(h0 * C[..., 0]).sum(-1), (h1 * C[..., 1]).sum(-1)], -1)
    y = y + inputs['D'][:, None] * u
    for backend in ('reference', 'chunked'):
        out, last_state = selective_scan(**inputs, delta_softplus=True, return_last_state=True,
                                         backend=backend)
        torch.testing.assert_close(out, y * F.silu(inputs['z']))
        torch.testing.assert_close(last_state, h1)


@pytest.mark.parametrize('backend', ['reference', 'chunked'])
def test_groups_are_blocks_of_channels(backend):
    """Channel c reads group c // (d/g): the grouped scan is g scans with shared B and C."""
    inputs, groups = make_inputs(groups=4), 4
    out = selective_scan(**inputs, backend=backend)
    for k, channels in enumerate(torch.arange(8).chunk(groups)):
        part = {name: value[:, channels] if value.dim() == 3 else value[channels]
                for name, value in inputs.items() if name not in ('B', 'C')}
        expected = selective_scan(**part, B=inputs['B'][:, k], C=inputs['C'][:, k], backend=backend)
        torch.testing.assert_close(out[:, channels], expected)


ALL_BACKENDS = [backend if backend != 'triton' else FAST_BACKENDS[1]
                for backend in BACKENDS if backend != 'auto']


def mamba_ssm_semantics(u, delta, A, B, C, D, z, delta_bias):
    """mamba-ssm's published ``selective_scan_ref`` with softplus, written out for B and C of
    their own group counts (b, g, n, L): channel c reads B group c // (d/g_B) and C group
    c // (d/g_C). Returns the output and the last state."""
    dim = u.shape[1]
    B, C = (x[:, torch.arange(dim) // (dim // x.shape[1])] for x in (B, C))  # (b, d, n, L)
    delta = F.softplus(delta + delta_bias[:, None])
    h, ys = torch.zeros_like(B[..., 0]), []
    for t in range(u.shape[-1]):
        drive = (delta[..., t] * u[..., t])[..., None] * B[..., t]
        h = torch.exp(delta[..., t, None] * A) * h + drive
        ys.append((h * C[..., t]).sum(-1))
    return (torch.stack(ys, -1) + D[:, None] * u) * F.silu(z), h


def run_semantics(inputs):
    """``run`` for :func:`mamba_ssm_semantics`, in float64; the results in the dtypes
    ``selective_scan`` gives (out: u's, last state: float32, gradients: their input's)."""
    leaves = {k: v.detach().double().requires_grad_() for k, v in inputs.items()}
    B = leaves['B'][:, None] if leaves['B'].dim() == 3 else leaves['B']
    out, last_state = mamba_ssm_semantics(**{**leaves, 'B': B})
    weights = torch.linspace(-1, 1, out.shape[-1], device=out.device, dtype=out.dtype)
    (out * weights).sum().add(last_state.square().sum()).backward()
    result = dict(out=out.to(inputs['u'].dtype), last_state=last_state.float())
    result.update({f'grad_{k}': v.grad.to(inputs[k].dtype) for k, v in leaves.items()})
    return result


@pytest.mark.parametrize('backend', ALL_BACKENDS)
@pytest.mark.parametrize('groups_B,groups_C', [(1, 2), (2, 1), (4, 6), (3, 2), (None, 4)])
def test_B_and_C_with_their_own_group_counts(backend, groups_B, groups_C):
    """mamba-ssm accepts B and C grouped differently; d = 12, lcm(3, 2) = 6 splits neither."""
    setting = setting_for(backend)
    inputs = make_inputs(dim=12, state=2, groups=groups_B, **setting)
    inputs['C'] = torch.randn(2, groups_C, 2, setting['length'],
                              generator=torch.Generator().manual_seed(1)).to(setting['device'])
    actual = run(backend, inputs, delta_softplus=True)
    assert_close(actual, run_semantics(inputs), 1e-4)


def unusual_inputs(case, device, length):
    """Inputs the checker accepts in layouts and dtypes the tests above do not use."""
    if case == 'length_1':
        return make_inputs(state=2, length=1, device=device)
    inputs = make_inputs(state=2, length=length, device=device)
    if case == 'non_contiguous':  # transposed views, and B and C in (b, L, g, n) memory order
        for name in ('u', 'delta', 'z'):
            inputs[name] = inputs[name].transpose(1, 2).contiguous().transpose(1, 2)
        for name in ('B', 'C'):
            inputs[name] = inputs[name].permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    elif case == 'float64_A_D':
        for name in ('A', 'D', 'delta_bias'):
            inputs[name] = inputs[name].double()
    return inputs


@pytest.mark.parametrize('backend', ALL_BACKENDS)
@pytest.mark.parametrize('case', ['length_1', 'non_contiguous', 'float64_A_D'])
def test_unusual_layouts_and_dtypes(backend, case):
    inputs = unusual_inputs(case, **setting_for(backend))
    assert_close(run(backend, inputs, delta_softplus=True), run_semantics(inputs), 1e-4)


BAD_SHAPES = [
    (dict(u=torch.zeros(2, 8)), "u must be (b, d, L), each at least 1, got shape (2, 8)"),
    (dict(u=torch.zeros(0, 8, 37)), "u must be (b, d, L), each at least 1, got shape (0, 8, 37)"),
    (dict(u=torch.zeros(2, 8, 0)), "u must be (b, d, L), each at least 1, got shape (2, 8, 0)"),
    (dict(u=torch.zeros(2, 8, 37, dtype=torch.int64)),
     "u must be a real floating-point tensor, got torch.int64"),
    (dict(delta=torch.zeros(2, 8, 36)), "delta must have shape (2, 8, 37) like u, got (2, 8, 36)"),
    (dict(A=torch.zeros(4, 1)), "A must be (d, n) = (8, n), n at least 1, got shape (4, 1)"),
    (dict(A=torch.zeros(8, 0)), "A must be (d, n) = (8, n), n at least 1, got shape (8, 0)"),
    (dict(A=torch.zeros(8, 1, dtype=torch.complex64)),
     "A must be a real floating-point tensor, got torch.complex64"),
    (dict(B=torch.zeros(2, 3, 1, 37)), "B must be (b, n, L) = (2, 1, 37) or (b, g, n, L) = (2, g, "
                                       "1, 37) with g dividing d = 8, got shape (2, 3, 1, 37)"),
    (dict(B=torch.zeros(2, 0, 1, 37)), "with g dividing d = 8, got shape (2, 0, 1, 37)"),
    (dict(C=torch.zeros(2, 2, 37)), "C must be (b, n, L) = (2, 1, 37)"),
    (dict(C=torch.zeros(2, 4, 1, 37, dtype=torch.complex64)),
     "C must be a real floating-point tensor, got torch.complex64"),
    (dict(D=torch.zeros(4)), "D must have shape (8,) like u, got (4,)"),
    (dict(z=torch.zeros(1, 8, 37)), "z must have shape (2, 8, 37) like u, got (1, 8, 37)"),
    (dict(delta_bias=torch.zeros(8, 1)), "delta_bias must have shape (8,) like u, got (8, 1)"),
]


@pytest.mark.parametrize('override,message', BAD_SHAPES)
def test_bad_shapes_are_named(override, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        selective_scan(**{**make_inputs(), **override})


def test_bad_backend_and_chunk_size():
    with pytest.raises(ValueError, match=r"one of \('auto', 'reference', 'chunked', 'triton', "
                       r"'cpu'\), got 'cuda'"):
        selective_scan(**make_inputs(), backend='cuda')
    with pytest.raises(ValueError, match='chunk_size must be an int >= 2, got 1'):
        selective_scan(**make_inputs(), chunk_size=1)
    assert BACKENDS == ('auto', 'reference', 'chunked', 'triton', 'cpu')


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED or torch.cuda.is_available(),
                    reason='the triton cases run in this process')
def test_triton_interpreter():
    """The triton cases on CPU, interpreted: fp32 and the large-Δ half-precision ones (bf16
    matching adds nothing there: the casts are the dispatcher's, shared with chunked). Every
    case that the selection collects must pass, none skipped."""
    pytest.importorskip('triton')
    selection = 'triton and not interpreter and not compile and not (reference and bf16)'
    command = [sys.executable, '-m', 'pytest', __file__, '-q', '-p', 'no:cacheprovider', '-k',
               selection]
    collected = subprocess.run(command + ['--collect-only'], capture_output=True, text=True)
    count = re.search(r'^(\d+)(?:/\d+)? tests? collected', collected.stdout, re.M)
    assert count and int(count[1]) >= 20, collected.stdout[-3000:]
    result = subprocess.run(command, env={**os.environ, 'TRITON_INTERPRET': '1'},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f'{count[1]} passed' in result.stdout and 'skipped' not in result.stdout, \
        result.stdout[-3000:]


COMPILE_FOR_SM90 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mmambaout.ops import triton_scan
NATIVE = ('u_ptr', 'delta_ptr', 'B_ptr', 'C_ptr', 'y_ptr', 'grad_y_ptr', 'grad_u_ptr',
          'grad_delta_ptr')  # read and written in the inputs' dtype
CHUNKS = [dict(HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, BLOCK_D=16, BLOCK_N=1, CHUNK=128),
          dict(HAS_D=False, HAS_BIAS=False, SOFTPLUS=False, BLOCK_D=1, BLOCK_N=16, CHUNK=128)]
LINKS = [dict(REVERSE=reverse, BLOCK_ROWS=8, BLOCK_CHUNKS=256) for reverse in (False, True)]
for name, kernel in vars(triton_scan).items():
    if not name.endswith('_kernel'):
        continue
    constexprs = LINKS if 'REVERSE' in kernel.arg_names else CHUNKS
    for dtype in ('fp32', 'bf16'):
        signature = {arg: (f'*{dtype}' if arg in NATIVE else '*fp32') if arg.endswith('_ptr')
                     else 'i32' for arg in kernel.arg_names if arg not in constexprs[0]}
        for meta in constexprs:
            source = ASTSource(kernel, {**signature, **dict.fromkeys(meta, 'constexpr')}, meta)
            binary = triton.compile(source, target=GPUTarget('cuda', 90, 32),
                                    options=dict(num_warps=8))
            print(name, dtype, len(binary.asm['cubin']))
"""


def test_triton_kernels_compile_for_an_h100(tmp_path):
    """The interpreter runs the kernels' Python; this runs Triton's compiler down to an sm_90
    binary (no GPU needed), which rejects what the interpreter lets through: every kernel, fp32
    and bf16 inputs, both tile shapes (or both directions of the link)."""
    pytest.importorskip('triton')
    result = subprocess.run([sys.executable, '-c', COMPILE_FOR_SM90], capture_output=True,
                            text=True, timeout=600,
                            env={**{k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'},
                                 'TRITON_CACHE_DIR': str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = [line.split()[:2] for line in result.stdout.splitlines()]
    assert len(compiled) == 5 * 2 * 2, result.stdout  # 5 kernels x 2 dtypes x 2 variants


@pytest.mark.parametrize('backend', FAST_BACKENDS[1:])
def test_triton_links_chunks_across_blocks(monkeypatch, backend):
    """11 chunks of 2 through a link kernel that takes 4 chunks at a time: the state (and the
    adjoint) carried from one block of chunks to the next, forward and backward."""
    from mmambaout.ops import triton_scan
    monkeypatch.setattr(triton_scan, '_LINK_CHUNKS', 4)
    inputs = make_inputs(state=2, groups=2, **setting_for(backend))
    assert_close(run(backend, inputs, delta_softplus=True, chunk_size=2),
                 run('reference', inputs, delta_softplus=True), 1e-4)


@pytest.mark.parametrize('backend', FAST_BACKENDS[1:])
def test_triton_reads_half_inputs_as_they_are(monkeypatch, backend):
    """bf16 u, delta, B and C reach the kernels as bf16 (half the bytes of fp32 copies) and y and
    the gradients come back in the inputs' dtypes (without a gate z: with one, y stays float32
    until gated, test_matches_reference)."""
    from mmambaout.ops import triton_scan
    seen, solve = [], triton_scan.forward
    monkeypatch.setattr(triton_scan, 'forward',
                        lambda u, delta, A, B, C, *rest: seen.append(
                            (u.dtype, delta.dtype, B.dtype, C.dtype)) or
                        solve(u, delta, A, B, C, *rest))
    inputs = make_inputs(dtype=torch.bfloat16, **setting_for(backend))
    del inputs['z']
    result = run(backend, inputs, delta_softplus=True)
    assert seen == [(torch.bfloat16,) * 4]
    for name in ('u', 'delta', 'B', 'C'):
        assert result[f'grad_{name}'].dtype == torch.bfloat16, name


def test_flops_count_the_scan():
    analysis = pytest.importorskip('mmengine.analysis')

    class Tiny(torch.nn.Module):
        def __init__(self, dim=8, state=3):
            super().__init__()
            self.proj = torch.nn.Linear(dim, dim)
            self.A = torch.nn.Parameter(-torch.rand(dim, state))

        def forward(self, x, B, C):
            u = self.proj(x).transpose(1, 2)
            return selective_scan(u, u, self.A, B, C, delta_softplus=True)

    batch, length, dim, state = 2, 5, 8, 3
    x, B = torch.randn(batch, length, dim), torch.randn(batch, 2, state, length)
    flops = analysis.FlopAnalyzer(Tiny(dim, state), (x, B, B))
    linear = batch * length * dim * dim  # mmengine: one multiply-add is one FLOP
    scan = 9 * batch * length * dim * state  # the Mamba authors' count
    assert flops.set_op_handle(**scan_flop_handles()).total() == linear + scan
