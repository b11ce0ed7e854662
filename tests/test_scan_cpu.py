"""What only the compiled CPU selective scan (backend 'cpu') has: its chunking, fused softplus,
instruction sets and determinism, and how ``selective_scan`` chooses it, refuses it, or falls back
when it is not built. test_selective_scan.py checks it with the other backends."""
import importlib
import sys

import pytest
import torch

import mmambaout.ops
from mmambaout.ops import selective_scan
from test_selective_scan import assert_close, make_inputs, run, run_semantics

dispatcher = sys.modules['mmambaout.ops.selective_scan']  # the module, not the function
try:  # not skipped: `make install` builds it, and CI must see when it does not
    from mmambaout.ops import cpu_scan
except ImportError as error:
    raise ImportError(f'the compiled CPU kernel does not import; {dispatcher.BUILD_HINT}') \
        from error


@pytest.mark.parametrize('chunk_size', [2, 3, 36, 37, 64])
@pytest.mark.parametrize('length', [1, 37])
def test_chunk_sizes(chunk_size, length):
    # one step per chunk up to one chunk longer than the sequence
    inputs = make_inputs(state=3, length=length, groups=2)
    assert_close(run('cpu', inputs, delta_softplus=True, chunk_size=chunk_size),
                 run('reference', inputs, delta_softplus=True), 1e-4)


@pytest.fixture
def instruction_set():
    """Sets the kernel's instruction set for a test (``instruction_set(name)``), then the best
    again."""
    yield cpu_scan.use_instruction_set
    cpu_scan.use_instruction_set(next(name for name, runs in cpu_scan.INSTRUCTION_SETS.items()
                                      if runs))


@pytest.mark.parametrize('name', ['avx512', 'avx2', 'baseline'])
def test_every_instruction_set_against_float64(instruction_set, name):
    """Each copy the CPU runs: blocks of 5 channels · 3 states (the recurrence's 8-, 4- and 1-row
    widths), time loops with vector remainders (L = 37)."""
    if not cpu_scan.INSTRUCTION_SETS.get(name):
        pytest.skip(f'this CPU cannot run {name}' if name in cpu_scan.INSTRUCTION_SETS
                    else f'{name} is not compiled for this CPU architecture')
    instruction_set(name)
    assert cpu_scan.instruction_set() == name
    inputs = make_inputs(dim=10, state=3, groups=2)  # 5 channels a group
    assert_close(run('cpu', inputs, delta_softplus=True), run_semantics(inputs), 1e-4)


def test_instruction_set_from_the_environment(monkeypatch, instruction_set):
    monkeypatch.setenv(cpu_scan.ISA_VARIABLE, 'baseline')
    importlib.reload(cpu_scan)
    assert cpu_scan.instruction_set() == 'baseline'
    monkeypatch.setenv(cpu_scan.ISA_VARIABLE, 'avx1')
    with pytest.raises(ValueError, match=r"no instruction set 'avx1'; this build has .*baseline "
                                         r"\(asked for by MMAMBAOUT_CPU_SCAN_ISA=avx1\)"):
        importlib.reload(cpu_scan)


def test_instruction_sets_the_cpu_lacks_are_refused(monkeypatch, instruction_set):
    monkeypatch.setitem(cpu_scan.INSTRUCTION_SETS, 'avx512', False)
    monkeypatch.setitem(cpu_scan.INSTRUCTION_SETS, 'avx2', False)
    with pytest.raises(ValueError, match="this CPU cannot run instruction set 'avx512'; it runs "
                                         "baseline$"):
        instruction_set('avx512')
    with pytest.raises(ValueError, match="no instruction set 'sse2'"):
        instruction_set('sse2')


def test_same_bits_at_every_run_and_thread_count():
    """The work is cut by the shapes alone: 64 channels in one group and batch give 4 runs of 16
    channels whatever the threads (cut by the thread count, ∂B and ∂C were summed from 1 to 8
    parts, with other roundings); two runs on 2 threads, and 1, 3 and 8 threads."""
    inputs = make_inputs(batch=1, dim=64, state=2, groups=1, length=100)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (2, 2, 1, 3, 8):
            torch.set_num_threads(threads)
            results.append(run('cpu', inputs, delta_softplus=True, chunk_size=16))
    finally:
        torch.set_num_threads(before)
    assert_close(results[0], run('reference', inputs, delta_softplus=True), 1e-4)
    for threads, result in zip((2, 1, 3, 8), results[1:]):
        for name, value in result.items():
            assert torch.equal(value, results[0][name]), f'{name} on {threads} threads'


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
