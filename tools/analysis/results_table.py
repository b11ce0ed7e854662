"""Our finished runs beside the MambaOut paper's published numbers, as Markdown.

    python tools/analysis/results_table.py WORK_DIR [WORK_DIR ...]

For every work dir: the backbone (from the config the runs dumped), the latest single-scale
result (a test run, else the last validation of training) and, for ADE20K, the latest
multi-scale one (a test run with --tta), then the paper's row for that backbone and our
difference (ours − paper). COCO: box and mask AP (Mask R-CNN 1x); ADE20K: mIoU SS / MS
(UperNet 160k). A backbone the paper has no row for gets ours only.
"""
import argparse
from pathlib import Path

from mmambaout.analysis.paper_results import (ADE20K, CITATION, COCO, METRICS, TASK_TITLES,
                                              paper_result)
from mmambaout.analysis.report import markdown_table
from mmambaout.analysis.work_dirs import collect

MISSING = '—'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+', type=Path, metavar='WORK_DIR')
    return parser.parse_args(argv)


def our_metrics(result) -> dict:
    """{paper metric name: our value} of a work dir's results."""
    if result.task == COCO:
        return dict(result.single_scale.metrics) if result.single_scale else {}
    runs = {'mIoU SS': result.single_scale, 'mIoU MS': result.multi_scale}
    return {name: run.metrics['mIoU'] for name, run in runs.items() if run}


def sources(result) -> str:
    """Which runs the numbers come from, e.g. 'work_dirs/x: test 20250101_120000'."""
    runs = [run for run in (result.single_scale, result.multi_scale) if run]
    described = ', '.join(f"{'MS ' if run.multi_scale else ''}{run.kind} {run.run_dir.name}"
                          for run in runs)
    return f'{result.work_dir}: {described or "no metrics yet"}'


def rows_for(result) -> list:
    """Rows 'ours', and when the paper has the backbone, 'paper' and 'ours − paper'."""
    names = METRICS[result.task]
    ours = our_metrics(result)
    rows = [[result.backbone, sources(result), *(f'{ours[n]:.1f}' if n in ours else MISSING
                                                 for n in names)]]
    paper = paper_result(result.task, result.backbone)
    if paper:
        rows.append([result.backbone, 'paper', *(f'{paper[n]:.1f}' for n in names)])
        rows.append([result.backbone, 'ours − paper',
                     *(f'{ours[n] - paper[n]:+.1f}' if n in ours else MISSING for n in names)])
    return rows


def main(argv=None):
    args = parse_args(argv)
    results = [collect(work_dir) for work_dir in args.work_dirs]
    for task in (COCO, ADE20K):
        task_results = [r for r in results if r.task == task]
        if task_results:
            print(f'\n### {TASK_TITLES[task]}\n')
            print(markdown_table(['backbone', 'source', *METRICS[task]],
                                 [row for r in task_results for row in rows_for(r)]))
    print(f'\nPaper: {CITATION}.')


if __name__ == '__main__':
    main()
