"""The compiled CPU selective scan (backend 'cpu') against the reference loop, values and gradients,
and how ``selective_scan`` chooses it, refuses it, or falls back when it is not built."""
import sys

import pytest
import torch

import mmambaout.ops
from mmambaout.ops import selective_scan
from test_selective_scan import CASES, assert_close, make_inputs, run

dispatcher = sys.modules['mmambaout.ops.selective_scan']  # the module, not the function
try:  # not skipped: `make install` builds it, and CI must see when it does not
    from mmambaout.ops import cpu_scan
except ImportError as error:
    raise ImportError(f'the compiled CPU kernel does not import; {dispatcher.BUILD_HINT}') \
        from error


@pytest.mark.parametrize('state,groups,options', CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16],
                         ids=['fp32', 'bf16', 'fp16'])
def test_matches_reference(state, groups, options, dtype):
    # chunks of 4 over L = 37: a remainder; D, z, delta_bias and softplus all on or all off
    inputs = make_inputs(state=state, groups=groups, options=options, dtype=dtype)
    expected = run('reference', inputs, delta_softplus=options)
    actual = run('cpu', inputs, delta_softplus=options, chunk_size=4)
    assert actual['out'].dtype == dtype
    # half precision: both compute in fp32 from the same inputs; only the final rounding differs
    assert_close(actual, expected, 1e-4 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize('chunk_size', [2, 3, 36, 37, 64])
@pytest.mark.parametrize('length', [1, 37])
def test_chunk_sizes(chunk_size, length):
    # one step per chunk up to one chunk longer than the sequence
    inputs = make_inputs(state=3, length=length, groups=2)
    assert_close(run('cpu', inputs, delta_softplus=True, chunk_size=chunk_size),
                 run('reference', inputs, delta_softplus=True), 1e-4)


@pytest.mark.parametrize('step', [9.9, 20., 200.])
def test_gradients_where_each_step_forgets_almost_all(step):
    # a_t = e^-step: below float32's resolution of h_t (200: exp underflows to 0), so ∂/∂(Δ·A)
    # must come from gh_t·a_t·h_{t-1}, not gh_t·(h_t - x_t)
    inputs = make_inputs(options=False)
    inputs.update(delta=torch.full_like(inputs['delta'], step), A=-torch.ones_like(inputs['A']))
    assert_close(run('cpu', inputs, chunk_size=16), run('reference', inputs), 1e-4)


def test_softplus_on_both_sides_of_its_threshold():
    # delta + bias from about -60 to 60: softplus ≈ e^v (tiny Δ) up to v itself (torch switches to
    # v above 20), with decays from ~1 down to underflow
    inputs = make_inputs(state=4)
    inputs['delta'] = 20 * torch.randn(inputs['delta'].shape,
                                       generator=torch.Generator().manual_seed(2))
    assert inputs['delta'].min() < -40 and inputs['delta'].max() > 40
    assert_close(run('cpu', inputs, delta_softplus=True),
                 run('reference', inputs, delta_softplus=True), 1e-4)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_half_precision_large_delta_is_finite(dtype):
    # softplus(Δ) up to ~60 with A down to -e^2.5: decays of e^-700 underflow, nothing overflows
    inputs = make_inputs(state=16, dtype=dtype, delta_scale=20.)
    actual = run('cpu', inputs, delta_softplus=True)
    for name, value in actual.items():
        assert torch.isfinite(value).all(), name
    assert_close(actual, run('reference', inputs, delta_softplus=True), 1e-2)


@pytest.mark.parametrize('threads', [1, 3, 8])
def test_same_gradients_whatever_the_threads(threads):
    # the backward cuts a group's channels into one run per thread (here 1, 3 or 8 of the 8
    # channels, batch 1, one group), each with its own part of ∂B and ∂C, summed afterwards
    inputs = make_inputs(batch=1, dim=8, state=2, groups=1)
    expected = run('reference', inputs, delta_softplus=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        actual = run('cpu', inputs, delta_softplus=True, chunk_size=8)
    finally:
        torch.set_num_threads(before)
    assert_close(actual, expected, 1e-4)


def test_auto_is_cpu_for_cpu_tensors(monkeypatch):
    calls = []
    solve = cpu_scan.forward
    monkeypatch.setattr(cpu_scan, 'forward', lambda *args: calls.append(1) or solve(*args))
    out = selective_scan(**make_inputs(), delta_softplus=True)
    assert calls == [1]
    torch.testing.assert_close(out, selective_scan(**make_inputs(), delta_softplus=True,
                                                   backend='cpu'), rtol=0, atol=0)


@pytest.fixture
def kernel_not_built(monkeypatch):
    """As if the extension were never compiled: importing it raises ImportError."""
    monkeypatch.setitem(sys.modules, 'mmambaout.ops._selective_scan_cpu', None)
    monkeypatch.delitem(sys.modules, 'mmambaout.ops.cpu_scan')
    for name in ('cpu_scan', '_selective_scan_cpu'):  # else `from . import` finds them there
        monkeypatch.delattr(mmambaout.ops, name)
    for cached in (dispatcher._import_backend, dispatcher._warn_once):
        cached.cache_clear()
    yield
    for cached in (dispatcher._import_backend, dispatcher._warn_once):
        cached.cache_clear()


def test_cpu_without_the_kernel_says_how_to_build_it(kernel_not_built):
    with pytest.raises(ValueError, match=r"backend='cpu' needs the compiled CPU kernel, which "
                                         r"failed to import .*pip install --no-build-isolation "
                                         r"--use-pep517 --no-deps -e \."):
        selective_scan(**make_inputs(), backend='cpu')


def test_auto_without_the_kernel_warns_and_runs_chunked(kernel_not_built):
    inputs = make_inputs()
    with pytest.warns(UserWarning, match='CPU tensors take the slower chunked backend'):
        out = selective_scan(**inputs)
    torch.testing.assert_close(out, selective_scan(**inputs, backend='chunked'), rtol=0, atol=0)


def test_triton_too_old_is_refused_by_name(monkeypatch):
    triton = pytest.importorskip('triton')
    monkeypatch.delattr(triton, 'knobs')  # as Triton < 3.4, whose kernels would fail at run time
    monkeypatch.delitem(sys.modules, 'mmambaout.ops.triton_scan', raising=False)
    monkeypatch.delattr(mmambaout.ops, 'triton_scan', raising=False)
    dispatcher._import_backend.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"backend='triton' needs triton >= 3.4, which failed "
                                             r'to import \(triton .* is too old'):
            selective_scan(**make_inputs(), backend='triton')
    finally:
        dispatcher._import_backend.cache_clear()


def test_cpu_refuses_other_devices():
    inputs = {k: v.to('meta') for k, v in make_inputs().items()}
    with pytest.raises(ValueError, match="backend='cpu' needs CPU tensors, got meta"):
        selective_scan(**inputs, backend='cpu')
    assert selective_scan(**inputs).device.type == 'meta'  # auto: chunked, as before


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
def test_one_autograd_node_for_the_flop_counter():
    # flops.py counts the SelectiveScan node of the trace: the cpu backend must show it, once
    inputs = make_inputs()
    graph = torch.jit.trace(
        lambda u, delta, B: selective_scan(u, delta, inputs['A'], B, inputs['C'], backend='cpu'),
        (inputs['u'], inputs['delta'], inputs['B'])).graph
    kinds = [node.kind() for node in graph.nodes()]
    assert kinds.count('prim::PythonOp') == 1
    assert [node.pyname() for node in graph.nodes() if node.kind() == 'prim::PythonOp'] == \
        ['SelectiveScan']
