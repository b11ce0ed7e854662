"""End to end, as a user: tools/train.py trains the toy UperNet on a small generated toy ADE20K,
tools/test.py evaluates the checkpoint (single-scale and --tta), and the mIoU they write is far
above what the untrained model gets."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from mmambaout.datasets import make_toy_ade

REPO = Path(__file__).resolve().parents[1]
CONFIG = 'configs/toy/upernet_mambaout_femto_toy.py'
ITERS, WARMUP = 40, 10
# Untrained weights (3 seeds, tools/test.py on the full toy validation split) get mIoU 0.0-0.3;
# one class predicted everywhere gets about 100/7 = 14 at most. The 40 iterations here reach 91
# (single-scale) and 93 (--tta).
MIOU_FLOOR = 50.


def run_tool(*args):
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f'{args[0]} failed:\n{result.stderr[-5000:]}'


def metrics(work_dir: Path) -> dict:
    """The metrics tools/test.py wrote (mmengine: WORK_DIR/<timestamp>/<timestamp>.json)."""
    (path, ) = work_dir.glob('*/*.json')
    return json.loads(path.read_text())


@pytest.mark.slow
def test_toy_training_then_evaluation(tmp_path):
    data_root = tmp_path / 'toy_ade'
    make_toy_ade(data_root, num_train=32, num_val=8)
    roots = [f'{loader}.dataset.data_root={data_root}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    short_schedule = [f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
                      f'default_hooks.checkpoint.interval={ITERS}',
                      f'param_scheduler.0.end={WARMUP}', f'param_scheduler.1.begin={WARMUP}',
                      f'param_scheduler.1.end={ITERS}']
    train_dir = tmp_path / 'train'
    run_tool('tools/train.py', CONFIG, '--work-dir', str(train_dir),
             '--cfg-options', *roots, *short_schedule)
    checkpoint = train_dir / f'iter_{ITERS}.pth'
    assert checkpoint.is_file()
    (train_log, ) = train_dir.glob('*/*.log')
    assert 'Iter(val) [8/8]' in train_log.read_text()

    mious = {}
    for name, flags, model in (('single_scale', ['--show-dir', 'drawn'], 'EncoderDecoder'),
                               ('tta', ['--tta'], 'SegTTAModel')):
        test_dir = tmp_path / name
        # The checkpoint lies outside the test's work dir: it is ours, so trust it.
        run_tool('tools/test.py', CONFIG, str(checkpoint), '--trust-checkpoint',
                 '--work-dir', str(test_dir), *flags, '--cfg-options', *roots)
        mious[name] = metrics(test_dir)['mIoU']
        assert mious[name] > MIOU_FLOOR, name
        # the model the run built, from the config mmengine dumped for it
        (dumped, ) = test_dir.glob('*/vis_data/config.py')
        assert Config.fromfile(dumped).model.type == model, name
    assert mious['tta'] != mious['single_scale']  # scales and flips: not the one pass
    # --show-dir: mmseg's visualizer draws every validation image (in WORK_DIR/SHOW_DIR)
    assert len(list((tmp_path / 'single_scale').glob('drawn/vis_data/vis_image/*.png'))) == 8
