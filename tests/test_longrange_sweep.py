"""End to end: tools/analysis/longrange_sweep.py --quick trains every cell through mmengine's
Runner, writes the CSV files and the figure, and a second run trains only what is missing."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# --quick's grid, written out independently of the tool
EXPECTED_CELLS = {(setting, model, distance, '0') for setting in ('global', 'local')
                  for model in ('MambaOut', 'MambaOut + SS2D') for distance in ('32', '192')}
# smaller than --quick's own recipe, to keep the suite fast
SMALL = ['--iters', '6', '--num-train', '16', '--num-val', '6']


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
    return {(r['setting'], r['model'], r['distance'], r['seed']) for r in rows}


@pytest.mark.slow
def test_quick_sweep_writes_every_cell_and_resumes(tmp_path):
    out = tmp_path / 'sweep'
    stdout = sweep(out, '--jobs', '2')  # two cells at a time, each in a process of its own
    assert '8 cells: 0 done' in stdout and '2 at a time' in stdout
    results = read(out / 'results.csv')
    assert len(results) == len(EXPECTED_CELLS) and cells(results) == EXPECTED_CELLS
    for row in results:
        assert row['iters'] == '6'
        assert 0 <= float(row['aAcc']) <= 100 and 0 <= float(row['mIoU']) <= 100
    curves = read(out / 'curves.csv')
    assert cells(r for r in curves if r['train acc']) == EXPECTED_CELLS
    assert cells(r for r in curves if r['val aAcc']) == EXPECTED_CELLS
    assert {r['iter'] for r in curves if r['val aAcc']} >= {'6'}
    assert (out / 'longrange.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'an output pixel sees 128-142 px' in stdout

    # drop one finished cell: the next run trains that one only and completes the table
    lost = results.pop()
    with open(out / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(lost))
        writer.writeheader()
        writer.writerows(results)
    stdout = sweep(out)
    trained = re.findall(r'^\[\d+/\d+\] (\w+) (.+), distance (\d+), seed (\d+): ', stdout,
                         re.MULTILINE)
    assert '8 cells: 7 done' in stdout
    assert trained == [(lost['setting'], lost['model'], lost['distance'], lost['seed'])]
    assert cells(read(out / 'results.csv')) == EXPECTED_CELLS
