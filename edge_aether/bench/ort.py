"""onnxruntime figures for the kernels section: the same head run by its ONNX graphs.

``measure(ctx, head)`` returns ``ort_step_us_p50``/``ort_step_us_p99`` (one frame, one stream,
horizon 1024, measured after the ring has wrapped), ``ort_prefill_ms`` (T=1024) and
``ort_prefill_ms_4096`` (T=4096), median of warm repetitions, sessions already created. The
kernels section merges them and reports ``step_speedup_vs_ort`` = ORT step / Numba step.
"""
from __future__ import annotations

import time

import numpy as np


def _median_ms(fn, reps):
    fn()  # warm: first run allocates onnxruntime's arena
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def measure(ctx, head, horizon: int = 1024) -> dict:
    """Benchmark the onnxruntime backend of ``head`` (a TemporalHead or OrtTemporalHead)."""
    from ..ort_backend import OrtTemporalHead

    ort_head = head if isinstance(head, OrtTemporalHead) else OrtTemporalHead.from_head(head)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, ort_head.in_dim)).astype(np.float32)
    quick = bool(getattr(ctx, "quick", False))
    progress = getattr(ctx, "progress", lambda msg: None)

    progress("onnxruntime step")
    stream = ort_head.stream(horizon=horizon)
    warm = horizon + 200 if not quick else min(horizon + 50, 600)
    for t in range(warm):
        stream.step(x[t % len(x)])
    n = 1000 if quick else 5000
    ts = np.empty(n)
    for i in range(n):
        frame = x[i % len(x)]
        t0 = time.perf_counter()
        stream.step(frame)
        ts[i] = time.perf_counter() - t0
    if hasattr(ctx, "samples"):
        ctx.samples["onnxruntime step"] = ts * 1e6
    progress("onnxruntime prefill")
    reps = 3 if quick else 10
    return {
        "ort_step_us_p50": float(np.percentile(ts, 50) * 1e6),
        "ort_step_us_p99": float(np.percentile(ts, 99) * 1e6),
        "ort_prefill_ms": _median_ms(lambda: ort_head.forward(x[:1024]), reps),
        "ort_prefill_ms_4096": _median_ms(lambda: ort_head.forward(x), max(2, reps // 3)),
    }
