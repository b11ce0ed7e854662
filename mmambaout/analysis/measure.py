"""Latency and peak memory of one call, interleaved timing of several, and the time of a
runner's training iterations.

Callers choose the grad mode (``torch.inference_mode()`` for inference) around these calls.
Clocks: 'wall' (elapsed time, GPU work included) or 'cpu' (this process's CPU time: on a CPU
shared with other jobs it leaves out the time spent waiting for a core, and equals the latency
of an idle machine when torch runs one thread).
"""
import ctypes
import os
import threading
import time
from typing import Callable, Dict, List

import torch
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

Run = Callable[[], object]
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}
LIBC = ctypes.CDLL(None)  # the C library this process runs on (glibc on Linux)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that wall time covers it."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timed(run: Run, device: torch.device, clock: str = 'wall') -> float:
    """Seconds one ``run()`` takes on ``clock``, GPU work included."""
    if clock == 'cpu' and torch.device(device).type != 'cpu':
        raise ValueError('CPU time leaves out GPU work: time GPU runs on the wall clock')
    now = CLOCKS[clock]
    synchronize(device)
    start = now()
    run()
    synchronize(device)
    return now() - start


def rss_mib() -> float:
    """Resident set size of this process."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def release_free_memory() -> None:
    """Hand the C allocator's free pages back to the system (glibc's ``malloc_trim``).

    glibc keeps freed memory for reuse: a call served from it would not grow the resident set.
    After this, every page the call touches is counted again.
    """
    trim = getattr(LIBC, 'malloc_trim', None)
    if trim is not None:
        trim(0)


def peak_memory_mib(run: Run, device: torch.device) -> float:
    """Extra memory one ``run()`` needs: the CUDA allocator's peak above the level before the
    call, or on CPU the peak resident set above it (after ``release_free_memory``), sampled
    every millisecond by a side thread (which runs between operators: a peak inside one long
    operator may be missed)."""
    if torch.device(device).type == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        timed(run, device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    release_free_memory()
    base = rss_mib()
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(1e-3)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        timed(run, device)
    finally:
        done.set()
        sampler.join()
    return peak[0] - base


def interleaved_times(runs: Dict[str, Run], device: torch.device, repeats: int,
                      clock: str = 'wall', progress: bool = True) -> Dict[str, List[float]]:
    """Seconds of each run, ``repeats`` times, in turn (a, b, a, b, ...): machine noise then
    hits all runs alike. Warm up before calling."""
    times: Dict[str, List[float]] = {name: [] for name in runs}
    bar = ProgressBar(repeats * len(runs)) if progress else None
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run, device, clock))
            if bar:
                bar.update()
    if bar:
        print()
    return times


class LoopClock(Hook):
    """Times a runner's training loop in rounds: each round runs ``warmup`` iterations, then
    ``iterations`` timed ones, from the end of the last warm-up iteration to the end of the round's
    last, on ``clock`` (as ``timed``: wall time includes GPU work). Registered with the lowest
    priority, it marks the end of an iteration after every other hook: the time counts the whole
    loop (data loading, hooks, logging). At the end of a round, off the clock, ``after_round`` gets
    the timed iterations' data batches (to time the model's step alone on them, interleaved with
    the loop).
    """
    priority = 'LOWEST'

    def __init__(self, warmup: int, iterations: int, device: torch.device,
                 after_round: Callable[[list], None], clock: str = 'wall') -> None:
        if clock == 'cpu' and torch.device(device).type != 'cpu':
            raise ValueError('CPU time leaves out GPU work: time GPU runs on the wall clock')
        if warmup < 1 or iterations < 1:
            raise ValueError(f'LoopClock needs warmup >= 1 and iterations >= 1, got {warmup} and '
                             f'{iterations}: a round starts its clock at the end of a warm-up '
                             'iteration.')
        self.warmup, self.iterations, self.device = warmup, iterations, device
        self.after_round, self.now = after_round, CLOCKS[clock]
        self.seconds: List[float] = []  # per round
        self.batches: list = []
        self.start = 0.

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # runner.iter counts this iteration only after its hooks: it is the 0-based index here
        position = runner.iter % (self.warmup + self.iterations) + 1
        if position == self.warmup:
            synchronize(self.device)
            self.start = self.now()
        elif position > self.warmup:
            self.batches.append(data_batch)
            if position == self.warmup + self.iterations:
                synchronize(self.device)
                self.seconds.append(self.now() - self.start)
                self.after_round(self.batches)
                self.batches = []
