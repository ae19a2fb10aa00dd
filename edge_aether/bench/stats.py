"""Timing helpers shared by the bench sections: medians and tail percentiles, never single times."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def percentiles_us(samples_ns, prefix: str) -> dict:
    """p50/p90/p99/p999/max in microseconds of per-call times in nanoseconds."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    q = np.percentile(a, [50, 90, 99, 99.9])
    return {f"{prefix}_us_p50": float(q[0]), f"{prefix}_us_p90": float(q[1]),
            f"{prefix}_us_p99": float(q[2]), f"{prefix}_us_p999": float(q[3]),
            f"{prefix}_us_max": float(a.max())}


def time_calls_ns(fn: Callable[[int], object], n: int) -> np.ndarray:
    """Call ``fn(i)`` n times and return each call's wall time in nanoseconds."""
    out = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def median_ms(fn: Callable[[], object], reps: int) -> float:
    """Median wall time in milliseconds of ``reps`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)
