"""Metrics of finished runs, read from the files mmengine writes in a work dir.

Every run (train or test) gets ``WORK_DIR/<timestamp>/`` with its config in
``vis_data/config.py``. A test run writes its metrics to ``<timestamp>/<timestamp>.json`` (one
JSON object); a training run appends every log and validation record to
``vis_data/scalars.json`` (one JSON object per line). A test run whose model is a TTA wrapper
(``tools/test.py --tta``: mmseg's SegTTAModel) is multi-scale (MS), every other run
single-scale (SS). mmdet's CocoMetric reports fractions, mmseg's IoUMetric percentages: values
here are percentages.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from mmengine.config import Config

from ..utils.runtime import toolbox_of
from .paper_results import ADE20K, COCO, backbone_name

TASKS = {'mmdet': COCO, 'mmseg': ADE20K}
# Our metric name → (the toolbox's metric key, factor to percent).
METRIC_KEYS = {
    COCO: {'APb': ('coco/bbox_mAP', 100), 'APb50': ('coco/bbox_mAP_50', 100),
           'APb75': ('coco/bbox_mAP_75', 100), 'APm': ('coco/segm_mAP', 100),
           'APm50': ('coco/segm_mAP_50', 100), 'APm75': ('coco/segm_mAP_75', 100)},
    ADE20K: {'mIoU': ('mIoU', 1)},
}


@dataclass
class RunResult:
    """The metrics of one run (percent), and where they come from."""
    run_dir: Path
    kind: str  # 'test' or 'val' (the last validation of a training run)
    multi_scale: bool
    metrics: Dict[str, float]


@dataclass
class WorkDirResult:
    work_dir: Path
    task: str
    backbone: str
    single_scale: Optional[RunResult]
    multi_scale: Optional[RunResult]


def run_config(run_dir: Path) -> Optional[Config]:
    """The config a run dumped (``vis_data/config.py``), or None."""
    path = run_dir / 'vis_data' / 'config.py'
    return Config.fromfile(str(path), import_custom_modules=False) if path.is_file() else None


def work_dir_config(work_dir: Path) -> Config:
    """The latest config dumped by a run of the work dir, else the work dir's top-level one
    (``<config name>.py``, which every run overwrites)."""
    for run_dir in reversed(run_dirs(work_dir)):
        cfg = run_config(run_dir)
        if cfg is not None:
            return cfg
    dumped = sorted(work_dir.glob('*.py'))
    if not dumped:
        raise FileNotFoundError(f'{work_dir} holds no dumped config (<timestamp>/vis_data/'
                                'config.py or <config name>.py): is it an mmengine work dir?')
    return Config.fromfile(str(dumped[-1]), import_custom_modules=False)


def run_dirs(work_dir: Path) -> List[Path]:
    """The work dir's run dirs, oldest first (mmengine names them by timestamp)."""
    return sorted(p for p in work_dir.iterdir() if p.is_dir() and p.name[:8].isdigit())


def to_percent(record: dict, task: str) -> Dict[str, float]:
    return {name: record[key] * factor for name, (key, factor) in METRIC_KEYS[task].items()
            if key in record}


def last_validation(scalars: Path, task: str) -> Optional[dict]:
    """The last line of a ``scalars.json`` that holds the task's metrics."""
    records = [json.loads(line) for line in scalars.read_text().splitlines() if line.strip()]
    evaluations = [r for r in records if to_percent(r, task)]
    return evaluations[-1] if evaluations else None


def run_result(run_dir: Path, task: str) -> Optional[RunResult]:
    """A run's metrics: its test results, else its last validation, else None."""
    cfg = run_config(run_dir)
    multi_scale = cfg is not None and 'TTA' in cfg.model.get('type', '')
    test_json = run_dir / f'{run_dir.name}.json'
    scalars = run_dir / 'vis_data' / 'scalars.json'
    if test_json.is_file():
        record, kind = json.loads(test_json.read_text()), 'test'
    elif scalars.is_file():
        record, kind = last_validation(scalars, task), 'val'
    else:
        return None
    metrics = to_percent(record or {}, task)
    return RunResult(run_dir, kind, multi_scale, metrics) if metrics else None


def collect(work_dir: Path) -> WorkDirResult:
    """The latest single-scale and multi-scale results of a work dir, a test run before the
    validation of a training run."""
    work_dir = Path(work_dir)
    cfg = work_dir_config(work_dir)
    model = cfg.model.get('module', cfg.model)  # a TTA config wraps the model
    task = TASKS[toolbox_of(cfg)]
    results = [r for r in (run_result(d, task) for d in run_dirs(work_dir)) if r]

    def latest(multi_scale: bool) -> Optional[RunResult]:
        candidates = [r for r in results if r.multi_scale == multi_scale]
        tests = [r for r in candidates if r.kind == 'test']
        return (tests or candidates or [None])[-1]

    return WorkDirResult(work_dir, task, backbone_name(model.backbone), latest(False),
                         latest(True))
