"""Resuming after a crash, and which checkpoints are unpickled fully under torch >= 2.6.

A toy training killed with SIGKILL after its first checkpoint resumes with tools/train.py
--resume and ends with exactly the weights of an uninterrupted run. Checkpoints of the run's work
dir load fully (mmengine's own objects); any other file that holds more than tensors is refused
unless trusted, and its pickled code never runs."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

from helpers import REPO, TOY_DET_CONFIG, run_test, toy_options
from mmambaout.utils.checkpoint_io import use_checkpoint_loader

KILL_TIMEOUT_S = 600


def train_process(work_dir: Path, options, *flags, log: Path) -> subprocess.Popen:
    """tools/train.py in a process of its own (so that it can be killed), output to ``log``."""
    with open(log, 'w') as output:
        return subprocess.Popen(
            [sys.executable, 'tools/train.py', TOY_DET_CONFIG, '--work-dir', str(work_dir),
             *flags, '--cfg-options', *options],
            cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS='1'))


def finish(process: subprocess.Popen, log: Path) -> None:
    assert process.wait() == 0, log.read_text()[-5000:]


def kill_after_first_checkpoint(process: subprocess.Popen, work_dir: Path) -> None:
    """SIGKILL ``process`` once mmengine has recorded a checkpoint as complete (it writes
    ``last_checkpoint`` after the checkpoint file)."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not (work_dir / 'last_checkpoint').exists():
        assert process.poll() is None and time.monotonic() < deadline, 'no checkpoint written'
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, 'the run ended before it could be killed'


def weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=False)['state_dict']  # written by this test


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path, toy_root):
    """2 epochs of 4 iterations, a checkpoint and a validation after each; random flips and
    RoI sampling draw from the generators whose states the checkpoint must carry."""
    options = toy_options(toy_root, epochs=2)
    whole, resumed = tmp_path / 'whole', tmp_path / 'resumed'
    finish(train_process(whole, options, log=tmp_path / 'whole.log'), tmp_path / 'whole.log')

    kill_after_first_checkpoint(train_process(resumed, options, log=tmp_path / 'killed.log'),
                                resumed)
    assert (resumed / 'last_checkpoint').read_text().strip() == str(resumed / 'epoch_1.pth')
    assert not (resumed / 'epoch_2.pth').exists()
    finish(train_process(resumed, options, '--resume', log=tmp_path / 'resumed.log'),
           tmp_path / 'resumed.log')
    assert 'resumed epoch: 1, iter: 4' in (tmp_path / 'resumed.log').read_text()

    expected, actual = weights(whole / 'epoch_2.pth'), weights(resumed / 'epoch_2.pth')
    assert expected.keys() == actual.keys()
    differing = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not differing, f'{len(differing)} of {len(expected)} tensors differ: {differing[:5]}'


# ---------------------------------------------------------------- which files unpickle fully

class Payload:
    """Unpickling an instance creates the folder ``marker``: proof that its code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker, )


def mmengine_like_checkpoint(path: Path) -> Path:
    """A checkpoint with the objects besides tensors that every mmengine checkpoint holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict={'w': torch.ones(2)}, message_hub=dict(loss=HistoryBuffer())),
               path)
    return path


def test_own_checkpoints_load_fully_others_weights_only(tmp_path):
    work_dir = tmp_path / 'work'
    own = mmengine_like_checkpoint(work_dir / 'epoch_1.pth')
    foreign = mmengine_like_checkpoint(tmp_path / 'downloads' / 'detector.pth')
    plain = tmp_path / 'downloads' / 'backbone.pth'
    torch.save({'w': torch.ones(2)}, plain)
    (work_dir / 'linked.pth').symlink_to(foreign)
    use_checkpoint_loader(str(work_dir))

    assert isinstance(_load_checkpoint(str(own))['message_hub']['loss'], HistoryBuffer)
    assert torch.equal(_load_checkpoint(str(plain))['w'], torch.ones(2))
    for path in (foreign, work_dir / 'linked.pth'):  # a link does not carry trust outside
        with pytest.raises(RuntimeError) as error:
            _load_checkpoint(str(path))
        assert f"Refusing to unpickle checkpoint '{path}'" in str(error.value)
        assert 'HistoryBuffer' in str(error.value) and '--trust-checkpoint' in str(error.value)

    use_checkpoint_loader(str(work_dir), trusted_files=[str(foreign)])
    assert isinstance(_load_checkpoint(str(foreign))['message_hub']['loss'], HistoryBuffer)


def test_refused_pickle_runs_no_code(tmp_path):
    marker, path = tmp_path / 'code_ran', tmp_path / 'payload.pth'
    torch.save(dict(state_dict={}, extra=Payload(marker)), path)
    use_checkpoint_loader(str(tmp_path / 'work'))
    with pytest.raises(RuntimeError, match='Refusing to unpickle'):
        _load_checkpoint(str(path))
    assert not marker.exists()
    use_checkpoint_loader(str(tmp_path / 'work'), trusted_files=[str(path)])
    _load_checkpoint(str(path))
    assert marker.exists()  # trusted: unpickled fully


@pytest.fixture
def foreign_detector_checkpoint(tmp_path, toy_detector_state) -> Path:
    """The toy detector's weights with an mmengine message hub, outside any work dir."""
    checkpoint = torch.load(toy_detector_state)
    checkpoint['message_hub'] = dict(loss=HistoryBuffer())
    torch.save(checkpoint, toy_detector_state)
    return toy_detector_state


def test_test_tool_refuses_a_foreign_pickle(tmp_path, toy_root, foreign_detector_checkpoint):
    with pytest.raises(RuntimeError) as error:
        run_test(tmp_path / 'work', foreign_detector_checkpoint, *toy_options(toy_root))
    assert f"Refusing to unpickle checkpoint '{foreign_detector_checkpoint}'" in str(error.value)
    assert '--trust-checkpoint' in str(error.value)


def test_test_tool_trusts_a_checkpoint_on_request(tmp_path, toy_root,
                                                 foreign_detector_checkpoint):
    run_test(tmp_path / 'work', foreign_detector_checkpoint, *toy_options(toy_root),
             flags=['--trust-checkpoint'])
    assert list((tmp_path / 'work').glob('*/*.json'))  # metrics written
