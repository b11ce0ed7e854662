"""Our finished runs beside the published numbers, as Markdown.

    python tools/analysis/results_table.py WORK_DIR [WORK_DIR ...]

For every work dir: the backbone (from the config the runs dumped), the latest single-scale
result (a test run, else the last validation of training) and, for ADE20K, the latest
multi-scale one (a test run with --tta), then the published rows for that backbone and our
difference to each: the paper's, and for VMamba v2 also the results VMamba's authors list for
their released checkpoints (a tools/test.py run of such a checkpoint goes beside them). COCO:
box and mask AP (Mask R-CNN 1x); ADE20K: mIoU SS / MS (UperNet 160k). A backbone without a
published row gets ours only.
"""
import argparse
from pathlib import Path

from mmambaout.analysis.paper_results import (ADE20K, COCO, METRICS, PUBLISHED, TASK_TITLES,
                                              published_results)
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


def difference(ours: float, published: float) -> str:
    """'+0.2', '-0.1'; '+0.0' also for a difference below the rounding (not '-0.0')."""
    return f'{round(ours - published, 1) or 0.0:+.1f}'


def rows_for(result) -> list:
    """Rows 'ours', then for each source that publishes the backbone (e.g. 'paper'), the
    source's and 'ours − source'."""
    names = METRICS[result.task]
    ours = our_metrics(result)
    rows = [[result.backbone, sources(result), *(f'{ours[n]:.1f}' if n in ours else MISSING
                                                 for n in names)]]
    for source, published in published_results(result.task, result.backbone):
        rows.append([result.backbone, source, *(f'{published[n]:.1f}' for n in names)])
        rows.append([result.backbone, f'ours − {source}',
                     *(difference(ours[n], published[n]) if n in ours else MISSING
                       for n in names)])
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
    print()
    for source, citation, _ in PUBLISHED:
        print(f'{source}: {citation}.')


if __name__ == '__main__':
    main()
