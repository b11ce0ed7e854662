"""tools/analysis/benchmark_scan.py and how tools/gpu_report.py reads it: tables, ratios, the JSON,
the floors; on a GPU, the triton backend (and flash-linear-attention's kernels where installed)
timed beside the others after their outputs were checked."""
import importlib.util
import json
import re
import subprocess
import sys

import pytest
import torch

from helpers import REPO, load_tool, run_tool

gpu_report = load_tool('tools/gpu_report.py')


def tables(out):
    """{dtype: {row: [forward ms, forward+backward ms]}} and the printed ratio lines."""
    found = {}
    for dtype, table in re.findall(r'^selective scan, .*?, (\w+), .*?\n(.*?)(?=^selective|\Z)', out,
                                   re.M | re.S):
        found[dtype] = {cells[1].strip(): [float(c) for c in cells[2:4]]
                        for cells in (line.split('|') for line in table.splitlines())
                        if len(cells) == 5 and cells[2].strip()[:1].isdigit()}
        ratios = re.findall(r'^(.+?)/(\w+): forward ([\d.]+)x, forward\+backward ([\d.]+)x$',
                            table, re.M)
        for slow, fast, *printed in ratios:  # the quotients of the table's times, all three
            for column, ratio in enumerate(printed):  # to 3 significant figures
                assert float(ratio) == pytest.approx(
                    found[dtype][slow][column] / found[dtype][fast][column], rel=0.02)
        found[dtype]['ratios'] = {(slow, fast) for slow, fast, *_ in ratios}
    return found


def test_benchmark_scan_cli_two_dtypes_and_json(tmp_path):
    path = tmp_path / 'scan.json'
    out = run_tool('tools/analysis/benchmark_scan.py', '--dim', 8, '--state', 2, '--length', 40,
                   '--repeats', 2, '--reference-repeats', 1, '--dtype', 'fp32', 'bf16',
                   '--json', path)
    found, written = tables(out), json.loads(path.read_text())
    assert list(found) == list(written['dtypes']) == ['fp32', 'bf16']
    for dtype, rows in found.items():
        assert rows.pop('ratios') == {('reference', 'chunked'), ('reference', 'cpu'),
                                      ('chunked', 'cpu')}
        assert set(rows) == {'reference', 'chunked', 'cpu', 'softplus'}
        for row, (fwd, fwd_bwd) in rows.items():  # the JSON holds the table's medians
            assert fwd > 0 and fwd_bwd > 0
            assert written['dtypes'][dtype][row]['fwd'] == pytest.approx(fwd, rel=6e-3)
            assert written['dtypes'][dtype][row]['fwd+bwd'] == pytest.approx(fwd_bwd, rel=6e-3)
    result = subprocess.run([sys.executable, 'tools/analysis/benchmark_scan.py',
                             '--reference-repeats', '0'], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and '--reference-repeats must be from 1' in result.stderr


def test_gpu_report_reads_the_scan_benchmark(tmp_path):
    """Ratios and bandwidth worked out by hand from a benchmark's JSON: ours over the faster of
    fla's kernels in each mode, bf16 over fp32, and the fewest bytes over the forward's time."""
    times = {'fp32': dict(triton=(0.3, 1.0), chunk=(1.5, 4.5), recurrent=(26.5, 50.)),
             'bf16': dict(triton=(0.2, 0.9), chunk=(1.4, 3.7), recurrent=(56.4, 60.))}
    found = dict(shape='b=2 d=384 n=1 L=64000 g=4', dtypes={
        dtype: {('fla ' + row if row != 'triton' else row): dict(zip(('fwd', 'fwd+bwd'), ms))
                for row, ms in rows.items()} for dtype, rows in times.items()})
    (tmp_path / 'benchmark_scan.json').write_text(json.dumps(found))
    figures = gpu_report.scan_benchmark(tmp_path, peak=4800)
    assert figures['scan triton/best fla fp32 forward'] == pytest.approx(0.3 / 1.5, abs=1e-3)
    assert figures['scan triton/best fla bf16 forward+backward'] == pytest.approx(0.9 / 3.7,
                                                                                  abs=1e-3)
    assert figures['scan triton bf16/fp32 forward'] == pytest.approx(0.2 / 0.3, abs=1e-3)
    fp32_bytes = 4 * (3 * 2 * 384 * 64000 + 2 * 2 * 4 * 1 * 64000)
    assert figures['scan triton fp32 forward GB/s'] == round(fp32_bytes / 0.3e-3 / 1e9)
    assert figures['scan triton bf16 forward GB/s'] == round(fp32_bytes / 2 / 0.2e-3 / 1e9)
    met = {k: figures[k] <= v for k, v in gpu_report.FLOORS.items() if k in figures}
    assert met == {'scan triton fp32 forward ms': True, 'scan triton bf16 forward ms': True,
                   'scan triton fp32 forward+backward ms': True,
                   'scan triton bf16 forward+backward ms': True,
                   'scan triton bf16/fp32 forward': True,
                   **{f'scan triton/best fla {d} {s}': True for d in ('fp32', 'bf16')
                      for s in ('forward', 'forward+backward')}}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_benchmark_scan_on_the_gpu(tmp_path):
    """The triton backend is checked and timed in both dtypes; fla's kernels too where it is
    installed (the benchmark checks them against ours first)."""
    path = tmp_path / 'scan.json'
    out = run_tool('tools/analysis/benchmark_scan.py', '--device', 'cuda', '--length', 8192,
                   '--repeats', 3, '--reference-repeats', 1, '--dtype', 'fp32', 'bf16',
                   '--json', path)
    rows = {dtype: set(found) for dtype, found in json.loads(path.read_text())['dtypes'].items()}
    fla = ({'fla chunk_hgrn', 'fla fused_recurrent_hgrn'} if importlib.util.find_spec('fla')
           else set())
    expected = {'reference', 'chunked', 'triton', 'softplus'} | fla
    assert rows == {'fp32': expected, 'bf16': expected}, out
