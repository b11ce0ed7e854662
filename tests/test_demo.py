"""`make demo-seg`'s own path, tools/demo.py, on a short schedule: it generates the toy set where
the config reads it (if missing), trains, tests, and every path it prints at the end exists."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ITERS, VAL_IMAGES = 4, 4
SHORT_RUN = [f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
             f'default_hooks.checkpoint.interval={ITERS}', 'param_scheduler.0.end=2',
             'param_scheduler.1.begin=2', f'param_scheduler.1.end={ITERS}',
             'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
             f'val_dataloader.dataset.indices={VAL_IMAGES}',
             f'test_dataloader.dataset.indices={VAL_IMAGES}']


@pytest.mark.slow
def test_demo_prints_where_everything_is(tmp_path):
    work_dir = tmp_path / 'demo'
    result = subprocess.run([sys.executable, 'tools/demo.py', 'seg', '--work-dir', str(work_dir),
                             '--cfg-options', *SHORT_RUN], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout[result.stdout.rindex('\nLogs:'):]
    train_log, test_log = re.search(r'Logs: +(\S+) \(training\)\n +(\S+) \(test\)',
                                    summary).groups()
    checkpoint = re.search(r'Checkpoint: +(\S+)', summary)[1]
    metrics = re.search(r'Test metrics: +(\S+)', summary)[1]
    predictions = re.search(r'Predictions: +(\S+)', summary)[1]
    assert f'Iter(train) [{ITERS}/{ITERS}]' in Path(train_log).read_text()
    assert f'Iter(test) [{VAL_IMAGES}/{VAL_IMAGES}]' in Path(test_log).read_text()
    assert Path(checkpoint) == work_dir / f'iter_{ITERS}.pth' and Path(checkpoint).is_file()
    assert "'mIoU'" in summary and Path(metrics).is_file()
    assert len(list(Path(predictions).glob('*.png'))) == VAL_IMAGES
