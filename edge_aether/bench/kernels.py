"""Kernel benchmarks: the per-frame streaming step and prefill, Numba beside onnxruntime.

Keys: ``step_us_*`` (single stream, AETHER defaults, in_dim 112, horizon 1024, after the ring has
wrapped), ``batch8_step_us_*`` (8 streams in one call, per call), ``prefill_ms``/``dense_ms`` at
T = 1024 (also ``*_256`` and ``*_4096``), ``speedup_4096`` = dense/sparse, ``cold_first_step_ms``
(first step including JIT compile or cache load), the ORT figures and ``step_speedup_vs_ort``.
"""
from __future__ import annotations

import time

import numpy as np

from .stats import median_ms, percentiles_us, time_calls_ns

HORIZON = 1024


def load_head(ctx):
    """The model the bench runs: ctx.model, else the shipped default (ModelError if neither exists)."""
    from ..model_store import load_head as load_model
    return load_model(ctx.model, backend="numba")


def run(ctx) -> dict:
    from ..kernels import dense_attention, sparse_attention

    head = load_head(ctx)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, head.in_dim)).astype(np.float32)
    res: dict = {"in_dim": head.in_dim, "horizon": HORIZON}

    ctx.progress("numba step (cold: first call compiles or loads the cache)")
    s = head.stream(horizon=HORIZON)
    t0 = time.perf_counter()
    s.step(x[0])
    res["cold_first_step_ms"] = (time.perf_counter() - t0) * 1e3
    for i in range(1, HORIZON + 200):  # past the first wrap of the ring
        s.step(x[i])
    n = 5000 if ctx.quick else 50000
    step_ns = time_calls_ns(lambda i: s.step(x[i & 4095]), n)
    res.update(percentiles_us(step_ns, "step"))
    ctx.samples["numba step"] = step_ns / 1e3

    ctx.progress("numba step, 8 streams per call")
    b = head.stream_batch(8, horizon=HORIZON)
    xb = np.ascontiguousarray(x[:8])
    for _ in range(HORIZON + 200):
        b.step(xb)
    res.update(percentiles_us(time_calls_ns(lambda i: b.step(xb), n // 4), "batch8_step"))
    res["batch8_step_us_per_stream_p50"] = res["batch8_step_us_p50"] / 8

    w = head.weights
    reps = 3 if ctx.quick else 7
    for T in (256, 1024, 4096):
        ctx.progress(f"prefill T={T}")
        xt = x[:T]
        q = np.ascontiguousarray((xt @ w.wq.T + w.bq).reshape(T, head.q_heads, head.head_dim))
        k = np.ascontiguousarray((xt @ w.wk.T + w.bk).reshape(T, head.kv_heads, head.head_dim))
        v = np.ascontiguousarray((xt @ w.wv.T + w.bv).reshape(T, head.kv_heads, head.head_dim))
        pattern = head.pattern.with_horizon(None)
        sparse = median_ms(lambda: sparse_attention(q, k, v, pattern), reps)
        dense = median_ms(lambda: dense_attention(q, k, v), max(1, reps // 2) if T == 4096 else reps)
        suffix = "" if T == 1024 else f"_{T}"
        res[f"prefill_ms{suffix}"] = sparse
        res[f"dense_ms{suffix}"] = dense
        res[f"speedup_{T}"] = dense / sparse
        res[f"head_forward_ms{suffix}"] = median_ms(lambda: head.forward(xt), reps)
    res["edges_4096"] = head.pattern.with_horizon(None).edge_count(4096)
    res["dense_edges_4096"] = 4096 * 4097 // 2

    try:
        from .ort import measure
    except ImportError:  # pragma: no cover - onnxruntime is a hard dependency
        return res
    ctx.progress("onnxruntime")
    res.update(measure(ctx, head, horizon=HORIZON))
    res["step_speedup_vs_ort"] = res["ort_step_us_p50"] / res["step_us_p50"]
    res["prefill_speedup_vs_ort"] = res["ort_prefill_ms"] / res["head_forward_ms"]
    return res
