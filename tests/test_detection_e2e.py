"""End to end, as a user: tools/train.py trains the toy Mask R-CNN on a small generated toy COCO
set, tools/test.py evaluates the checkpoint with pycocotools (mmdet's CocoMetric), and the bbox
and mask AP it writes are far above what an untrained model gets."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmambaout.datasets import make_toy_coco

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'configs/toy/mask_rcnn_mambaout_femto_toy.py')
EPOCHS = 3
# Untrained weights get bbox and mask AP 0.000 here; three epochs on 96 images reach ~0.2.
AP_FLOOR = 0.05


def run_tool(cwd, *args):
    result = subprocess.run([sys.executable, str(REPO / args[0]), *args[1:]], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 0, f'{args[0]} failed:\n{result.stderr[-5000:]}'


@pytest.mark.slow
def test_toy_training_then_evaluation(tmp_path):
    # the config's data_root 'data/toy_coco/' is relative: run the tools from tmp_path
    make_toy_coco(tmp_path / 'data/toy_coco', num_train=96, num_val=16)
    schedule = [f'train_cfg.max_epochs={EPOCHS}', f'train_cfg.val_interval={EPOCHS}',
                'param_scheduler.0.end=20',
                f'param_scheduler.1.end={EPOCHS}', f'default_hooks.checkpoint.interval={EPOCHS}']
    run_tool(tmp_path, 'tools/train.py', CONFIG, '--work-dir', 'train', '--cfg-options',
             *schedule)
    checkpoint = tmp_path / f'train/epoch_{EPOCHS}.pth'
    assert checkpoint.is_file()

    run_tool(tmp_path, 'tools/test.py', CONFIG, str(checkpoint), '--work-dir', 'test',
             '--show-dir', 'drawn', '--trust-checkpoint')
    (metrics_file, ) = (tmp_path / 'test').glob('*/*.json')
    metrics = json.loads(metrics_file.read_text())
    assert metrics['coco/bbox_mAP'] > AP_FLOOR, metrics
    assert metrics['coco/segm_mAP'] > AP_FLOOR, metrics
    assert len(list((tmp_path / 'test').glob('*/drawn/*.jpg'))) == 16  # mmdet's visualizer
