"""End to end: tools/analysis/longrange_sweep.py --quick trains every arm through mmengine's
Runner, writes the CSV files, the summary and the figure, and a second run trains only what is
missing."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# --quick's grid, written out independently of the tool
EXPECTED_CELLS = {(arm, '0') for arm in ('MambaOut', 'MambaOut + SS2D', 'MambaOut k=1',
                                         'MambaOut + SS2D k=1', 'global pool')}
# smaller than --quick's own recipe, to keep the suite fast
SMALL = ['--iters', '4', '--num-train', '12', '--num-val', '6', '--erf-images', '1']


def sweep(out: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'analysis' / 'longrange_sweep.py'), '--quick',
         '--out', str(out), *SMALL, *args],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def read(path: Path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def cells(rows):
    return {(r['arm'], r['seed']) for r in rows}


@pytest.mark.slow
def test_quick_sweep_writes_every_cell_and_resumes(tmp_path):
    out = tmp_path / 'sweep'
    stdout = sweep(out, '--jobs', '2', '--device', 'cpu')  # two cells at a time
    assert '5 cells: 0 done' in stdout and '2 at a time' in stdout and 'Device: cpu' in stdout
    assert 'MambaOut: a logit sees 131 px to a side of its centre, an output pixel ' \
           '128-142 px' in stdout
    rows = read(out / 'cells.csv')
    assert cells(rows) == EXPECTED_CELLS and len(rows) == len(EXPECTED_CELLS)
    for row in rows:
        assert row['iters'] == '4' and row['device'] == 'cpu'
        bounded = row['arm'] in ('MambaOut', 'MambaOut k=1')
        # the bounded arms' ERF has no mass beyond their reach; every other arm's has some
        assert (float(row['erf beyond, init']) == 0) == bounded
    results = read(out / 'results.csv')
    assert cells(results) == EXPECTED_CELLS
    distances = sorted({int(r['distance']) for r in results})
    assert distances[0] == 0 and distances[-1] >= 272 and set(distances) <= set(range(0, 320, 16))
    assert all(0 <= float(r['accuracy']) <= 100 for r in results)
    curves = read(out / 'curves.csv')
    assert cells(r for r in curves if r['loss']) == EXPECTED_CELLS
    assert {r['iter'] for r in curves if r['val accuracy']} >= {'4'}
    assert cells(read(out / 'erf.csv')) == EXPECTED_CELLS
    assert (out / 'longrange.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    summary = (out / 'summary.md').read_text()
    assert summary.startswith('Controls:') and 'Verdict:' in summary

    # drop one finished cell: the next run trains that one only and completes the table
    rows = read(out / 'cells.csv')
    lost = rows.pop()
    with open(out / 'cells.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(lost))
        writer.writeheader()
        writer.writerows(rows)
    stdout = sweep(out)
    trained = re.findall(r'^\[\d+/\d+\] (.+), seed (\d+): ', stdout, re.MULTILINE)
    assert '5 cells: 4 done' in stdout
    assert trained == [(lost['arm'], lost['seed'])]
    assert cells(read(out / 'cells.csv')) == EXPECTED_CELLS
    assert len(read(out / 'results.csv')) == len(results)  # the cell's rows replaced
