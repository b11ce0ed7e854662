"""The report of tools/gpu_check.sh: OUT_DIR/report.md and OUT_DIR/report.json.

    python tools/gpu_report.py OUT_DIR

Reads what the check left in OUT_DIR: steps.tsv (step, exit status, seconds), gpu_tests.xml
(pytest's junit XML with the figures the tests record), benchmark_scan.json and the other
benchmarks' logs; adds the machine, and the Triton forward's bandwidth: the bytes it must move at
least (u, Δ and y in the dtype, B and C) over its time, against the GPU's peak (memory clock x
bus width).
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

# The floors of an H100/H200 (issue 17): the Triton scan at VMamba-T stage 1 in fp32 and bf16,
# bf16 no slower than fp32 and every mode ahead of flash-linear-attention's best HGRN kernel (ours
# over theirs), and MambaOut-T ours/timm in bf16.
FLOORS = {'scan triton fp32 forward ms': 0.35, 'scan triton bf16 forward ms': 0.25,
          'scan triton fp32 forward+backward ms': 1.2,
          'scan triton bf16 forward+backward ms': 1.2, 'scan triton bf16/fp32 forward': 1.0,
          **{f'scan triton/best fla {dtype} {step}': 1.0 for dtype in ('fp32', 'bf16')
             for step in ('forward', 'forward+backward')},
          'backbone ours/timm forward': 1.0, 'backbone ours/timm forward+backward': 1.0,
          'training loop / model step': 1.3}
STEPS = {'fwd': 'forward', 'fwd+bwd': 'forward+backward'}
BYTES = {'fp32': 4, 'bf16': 2, 'fp16': 2}


def machine() -> dict:
    info = dict(torch=torch.__version__, cuda=torch.version.cuda, cpus=os.cpu_count(),
                gpu=None, gpu_peak_gb_per_s=None)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info['gpu'] = props.name
        clock_khz, bus_bits = (getattr(props, 'memory_clock_rate', None),
                               getattr(props, 'memory_bus_width', None))
        if clock_khz and bus_bits:  # double data rate
            info['gpu_peak_gb_per_s'] = round(2 * clock_khz * 1e3 * bus_bits / 8 / 1e9)
    return info


def steps(out: Path) -> list:
    rows = [line.split('\t') for line in (out / 'steps.tsv').read_text().splitlines()]
    return [dict(step=r[0], status='ok' if r[1] == '0' else r[1] if r[1] == 'skipped'
                 else f'failed (exit {r[1]})', seconds=int(r[2]), note=r[3] if len(r) > 3 else '')
            for r in rows]


def tests(out: Path) -> list:
    path = out / 'gpu_tests.xml'
    if not path.is_file():
        return []
    results = []
    for case in ET.parse(path).iter('testcase'):
        outcome = next((child.tag for child in case if child.tag in
                        ('failure', 'error', 'skipped')), 'passed')
        figures = {p.get('name'): float(p.get('value')) for p in case.iter('property')}
        results.append(dict(test=f"{case.get('classname')}::{case.get('name')}", outcome=outcome,
                            seconds=round(float(case.get('time', 0)), 1), **figures))
    return results


def scan_benchmark(out: Path, peak) -> dict:
    """Milliseconds per backend and dtype from benchmark_scan.py's JSON, the ratios the floors
    name, and the Triton forward's GB/s."""
    path = out / 'benchmark_scan.json'
    if not path.is_file():
        return {}
    found = json.loads(path.read_text())
    result = {'scan shape': found['shape']}
    b, d, n, length, g = map(int, re.findall(r'=(\d+)', found['shape']))
    for dtype, rows in found['dtypes'].items():
        result.update({f'scan {row} {dtype} {STEPS[step]} ms': round(ms, 3)
                       for row, times in rows.items() for step, ms in times.items()})
        fla = [times for row, times in rows.items() if row.startswith('fla')]
        if 'triton' not in rows:
            continue
        for step, name in STEPS.items():
            if fla:
                result[f'scan triton/best fla {dtype} {name}'] = round(
                    rows['triton'][step] / min(times[step] for times in fla), 3)
        # the fewest bytes the forward moves: u, Δ and y in the dtype, B and C
        moved = BYTES[dtype] * (3 * b * d * length + 2 * b * g * n * length)
        achieved = moved / (rows['triton']['fwd'] / 1e3) / 1e9
        result[f'scan triton {dtype} forward GB/s'] = round(achieved)
        if peak:
            result[f'scan triton {dtype} forward share of peak bandwidth'] = round(
                achieved / peak, 3)
    if {'fp32', 'bf16'} <= set(found['dtypes']) and 'triton' in found['dtypes']['fp32']:
        result['scan triton bf16/fp32 forward'] = round(
            found['dtypes']['bf16']['triton']['fwd'] / found['dtypes']['fp32']['triton']['fwd'], 3)
    return result


def backbone_benchmark(out: Path) -> dict:
    path = out / 'benchmark_backbone.log'
    if not path.is_file():
        return {}
    text = path.read_text()
    result = {}
    # one table per pass: 'forward', then 'forward+backward'
    for title, table, ratio in re.findall(
            r'^(forward(?:\+backward)?)\n(.*?)^median ratio ours/timm[^:]*: ([\d.]+)', text,
            re.M | re.S):
        result.update({f'backbone {name} {title} ms': float(ms) for name, ms in
                       re.findall(r'^\| (ours|timm) \| ([\d.]+) \|', table, re.M)})
        result[f'backbone ours/timm {title}'] = float(ratio)
    header = re.search(r'^MambaOut-.*$', text, re.M)
    if header:
        result['backbone setting'] = header.group(0)
    return result


def loop_benchmark(out: Path) -> dict:
    """benchmark.py --loop: the median ratio loop / step and each round's."""
    path = out / 'benchmark_loop.log'
    found = path.is_file() and re.search(
        r'^training loop / model step ratio ([\d.]+) \(median of \d+ rounds: ([\d., ]+)\)',
        path.read_text(), re.M)
    if not found:
        return {}
    return {'training loop / model step': float(found[1]),
            'training loop / model step, each round': found[2]}


def markdown(report: dict, out: Path) -> str:
    lines = ['# GPU check', '']
    if not report['machine']['gpu']:
        lines += ['**No CUDA GPU was visible: the GPU tests were skipped and the GPU benchmarks '
                  'were not run. This is not a GPU check.**', '']
    lines += ['| machine | |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in report['machine'].items()]
    lines += ['', '| step | status | seconds | note |', '|---|---|---|---|']
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |"
              for s in report['steps']]
    lines += ['', f"total: {sum(s['seconds'] for s in report['steps'])} s", '']
    counts = {}
    for t in report['tests']:
        counts[t['outcome']] = counts.get(t['outcome'], 0) + 1
    lines += ['## pytest -m gpu', '', ', '.join(f'{n} {o}' for o, n in sorted(counts.items()))
              or 'no results', '']
    shown = [t for t in report['tests'] if t['outcome'] != 'passed' or len(t) > 3]
    if shown:
        lines += ['| test | outcome | seconds | figures |', '|---|---|---|---|']
        lines += [f"| {t['test']} | {t['outcome']} | {t['seconds']} | " + ', '.join(
            f'{k} {v}' for k, v in t.items() if k not in ('test', 'outcome', 'seconds')) + ' |'
            for t in shown]
        lines.append('')
    lines += ['## Benchmarks against the floors', '']
    if report['benchmarks']:
        lines += ['| figure | value | floor |', '|---|---|---|']
        lines += [f"| {k} | {v} | {'≤ %s' % FLOORS[k] if k in FLOORS else ''} |"
                  for k, v in report['benchmarks'].items()]
        for log in sorted(out.glob('benchmark_*.log')):
            tail = [f'    {line}' for line in log.read_text().splitlines() if line.strip()][-14:]
            lines += ['', f'{log.name}:', '', *tail]
    else:
        lines.append('not run')
    return '\n'.join(lines) + '\n'


def main():
    out = Path(sys.argv[1])
    info = machine()
    report = dict(machine=info, steps=steps(out), tests=tests(out),
                  benchmarks={**scan_benchmark(out, info['gpu_peak_gb_per_s']),
                              **backbone_benchmark(out), **loop_benchmark(out)})
    report['floors_met'] = {k: report['benchmarks'][k] <= v for k, v in FLOORS.items()
                            if k in report['benchmarks']}
    (out / 'report.json').write_text(json.dumps(report, indent=1) + '\n')
    text = markdown(report, out)
    (out / 'report.md').write_text(text)
    print(text)
    print(f'written: {out / "report.md"}, {out / "report.json"}')


if __name__ == '__main__':
    main()
