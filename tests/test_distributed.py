"""tools/dist_train.sh and tools/dist_test.sh with 2 processes on a machine without a GPU: two
gloo processes train the toy detection config, evaluate it together, then test the checkpoint."""
import os
import re
import socket
import subprocess

import pytest

from test_reliability import CONFIG, REPO, toy_options, toy_root  # noqa: F401


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_script(script: str, *args: str) -> None:
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1')
    result = subprocess.run(['bash', f'tools/{script}', *args], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_train_evaluate_and_test_on_cpu(tmp_path, toy_root):  # noqa: F811
    work_dir, options = tmp_path / 'work', toy_options(toy_root)
    run_script('dist_train.sh', CONFIG, '2', '--work-dir', str(work_dir), '--cfg-options', *options)
    (log, ) = work_dir.glob('*/*.log')  # rank 0 writes it
    text = log.read_text()
    assert 'Distributed training: True' in text and 'GPU number: 2' in text  # 2 processes
    assert 'Epoch(train) [1][2/2]' in text  # 8 images, 2 per process and step: 2 steps
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\] .*coco/bbox_mAP', text)  # 2 images, 1 each

    run_script('dist_test.sh', CONFIG, str(work_dir / 'epoch_1.pth'), '2',
               '--work-dir', str(work_dir), '--cfg-options', *options)
    (metrics, ) = work_dir.glob('*/*.json')
    assert 'coco/bbox_mAP' in metrics.read_text()
