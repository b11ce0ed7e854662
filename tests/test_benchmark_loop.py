"""tools/analysis/benchmark.py --loop: the training loop through mmengine's Runner against the
model's step alone on the same batches. End to end on the toy detector; and, with a clock that
counts model steps instead of seconds, that a round times exactly its own iterations: neither
the warm-up (the first iteration carries worker start-up and, on a GPU, CUDA and cuDNN set-up,
which once made 6-iteration GPU runs log ~15x the step) nor the step-alone block."""
import re

import pytest
import torch
from mmengine.model import BaseModel

from helpers import TOY_DET_CONFIG, TOY_SEG_CONFIG, load_tool, resize_steps, run_tool
from mmambaout.analysis import measure

ROWS = {'loop': 'training loop', 'data': "of which mmengine's data_time",
        'step': "model's step alone", 'first': 'first iteration'}


def printed_figures(out: str) -> dict:
    """The table's seconds per iteration by row, and the ratio line's median and rounds."""
    figures = {key: float(re.search(rf'^\| {re.escape(label)}[^|]*\| ([\d.]+) \|$', out, re.M)[1])
               for key, label in ROWS.items()}
    ratio = re.search(r'training loop / model step ratio ([\d.]+) \(median of \d+ rounds: '
                      r'([\d., ]+)\)', out)
    figures['ratio'] = float(ratio[1])
    figures['rounds'] = [float(r) for r in ratio[2].split(', ')]
    return figures


@pytest.mark.slow
def test_loop_cli_prints_the_ratio_of_its_times():
    """One round: the ratio is loop / step of the printed times (each printed to 3 significant
    figures, so within 2 %)."""
    resize = resize_steps()['train_dataloader']
    out = run_tool('tools/analysis/benchmark.py', TOY_DET_CONFIG, '--loop', 1, '--warmup', 1,
                   '--repeats', 1, '--cfg-options', 'train_dataloader.batch_size=1',
                   f'train_dataloader.dataset.pipeline.{resize}.scale=(64,64)', threads=1)
    figures = printed_figures(out)
    assert figures['ratio'] == pytest.approx(figures['loop'] / figures['step'], rel=0.02)
    assert figures['rounds'] == [figures['ratio']]
    assert 0 <= figures['data'] < figures['loop']
    assert figures['first'] > 0
    assert '1 rounds × (1 warm-up + 1 timed) iterations, batch 1, OptimWrapper, cpu' in out


@pytest.fixture
def one_thread():
    """torch on one thread, as the tools' runs here (two on a shared CPU are slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_loop_rounds_time_their_own_iterations(monkeypatch, capsys, one_thread):
    """The clock reads the number of model steps finished: each round's loop must take exactly
    one step per timed iteration, and the step alone must run on the batches of those
    iterations."""
    steps = []  # the batch of every train_step, loop's and step alone's, in order
    train_step = BaseModel.train_step

    def counted_train_step(model, data, optim_wrapper):
        result = train_step(model, data, optim_wrapper)
        steps.append(data)
        return result

    monkeypatch.setattr(BaseModel, 'train_step', counted_train_step)
    monkeypatch.setitem(measure.CLOCKS, 'wall', lambda: len(steps))
    warmup, iterations, rounds = 1, 2, 2
    load_tool('tools/analysis/benchmark.py').main([
        TOY_SEG_CONFIG, '--loop', str(iterations), '--warmup', str(warmup), '--repeats',
        str(rounds), '--cfg-options', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False'])
    figures = printed_figures(capsys.readouterr().out)
    assert (figures['loop'], figures['step'], figures['rounds']) == (1, 1, [1] * rounds)
    # per round: warm-up and timed loop iterations, the step alone's warm-up, the step alone
    per_round = warmup + iterations + 1 + iterations
    assert len(steps) == rounds * per_round
    for start in range(0, len(steps), per_round):
        timed_loop = steps[start + warmup:start + warmup + iterations]
        step_alone = steps[start + per_round - iterations:start + per_round]
        assert all(a is b for a, b in zip(step_alone, timed_loop))


def test_gpu_report_reads_the_loop_ratio(tmp_path):
    """The GPU check's report takes the median and each round's ratio from the line that
    benchmark.py --loop prints (here as it printed on an H200), against the 1.3 floor."""
    gpu_report = load_tool('tools/gpu_report.py')
    (tmp_path / 'benchmark_loop.log').write_text(
        '| model\'s step alone (train_step, the same batches) | 0.134 |\n'
        'training loop / model step ratio 15.0 (median of 2 rounds: 28.8, 1.17)\n')
    figures = gpu_report.loop_benchmark(tmp_path)
    assert figures == {'training loop / model step': 15.0,
                       'training loop / model step, each round': '28.8, 1.17'}
    assert gpu_report.FLOORS['training loop / model step'] == 1.3
