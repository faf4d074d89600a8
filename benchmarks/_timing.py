"""Time a training step and read its peak memory, the same way for every benchmark script."""
from __future__ import annotations

import resource
import time
from collections.abc import Callable

import torch


def process_peak_rss_mib() -> float:
    """The process's peak resident set so far (MiB; ``ru_maxrss``, which only grows)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step: Callable[[], None], device: str, warmup: int, steps: int) -> dict:
    """Call ``step`` ``warmup`` times untimed, then ``steps`` times timed.

    Returns ``s_per_step``; ``peak_mib``: CUDA ``max_memory_allocated`` over the timed calls, or on the CPU the growth
    of the process's peak RSS during them (``peak_kind`` says which); ``process_peak_rss_mib`` at the end.
    """
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss0 = process_peak_rss_mib()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    return {"s_per_step": dt,
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else process_peak_rss_mib() - rss0,
            "peak_kind": "cuda max_memory_allocated" if cuda else "process peak-RSS growth",
            "process_peak_rss_mib": process_peak_rss_mib()}
