"""Latency and peak memory of one call, and interleaved timing of several.

Callers choose the grad mode (``torch.inference_mode()`` for inference) around these calls.
"""
import os
import threading
import time
from typing import Callable, Dict, List

import torch
from mmengine.utils import ProgressBar

Run = Callable[[], object]


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that wall time covers it."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timed(run: Run, device: torch.device) -> float:
    """Seconds one ``run()`` takes, GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def rss_mib() -> float:
    """Resident set size of this process."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_memory_mib(run: Run, device: torch.device) -> float:
    """Extra memory one ``run()`` needs: the CUDA allocator's peak above the level before the
    call, or on CPU the peak resident set above it, sampled every millisecond by a side thread.
    The CPU figure is approximate: the C allocator may serve part of the call from memory freed
    earlier but not returned to the system."""
    if torch.device(device).type == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        timed(run, device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
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
                      progress: bool = True) -> Dict[str, List[float]]:
    """Seconds of each run, ``repeats`` times, in turn (a, b, a, b, ...): machine noise then
    hits all runs alike. Warm up before calling."""
    times: Dict[str, List[float]] = {name: [] for name in runs}
    bar = ProgressBar(repeats * len(runs)) if progress else None
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run, device))
            if bar:
                bar.update()
    if bar:
        print()
    return times
