"""Soak: one stream for many frames; memory must stay flat and outputs exact.

Inputs repeat with a prime period (4099 frames) so any position's input can be rebuilt; at the end,
the last frames' outputs are checked against an independent prefill-style computation from only
the keys that position sees (NumPy, float64): K/V of the global tokens and of the last
horizon + block_size frames, block means, explicit softmax. ``soak_max_err`` is the largest
absolute difference; ``soak_rss_growth_mb`` the resident-set growth from after warm-up to the end.
"""
from __future__ import annotations

import numpy as np

PERIOD = 4099
CHECK_LAST = 8


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        import os
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def expected_output(head, pattern, inputs, t):
    """Output at position t from scratch: only the keys that t sees (pattern with finite horizon)."""
    w = {k: np.asarray(v, np.float64) for k, v in head.weights._asdict().items()}
    d, hq, hkv = head.head_dim, head.q_heads, head.kv_heads
    keys = pattern.keys(t)

    def kv(pos):
        x = np.asarray(inputs(pos), np.float64)
        return (w["wk"] @ x + w["bk"]).reshape(hkv, d), (w["wv"] @ x + w["bv"]).reshape(hkv, d)

    ks, vs = [], []
    for j in keys.tokens:
        k, v = kv(int(j))
        ks.append(k)
        vs.append(v)
    B = pattern.block_size
    for b in keys.blocks:
        pairs = [kv(int(j)) for j in range(b * B, (b + 1) * B)]
        ks.append(np.mean([p[0] for p in pairs], axis=0))
        vs.append(np.mean([p[1] for p in pairs], axis=0))
    K, V = np.stack(ks), np.stack(vs)  # [n, hkv, d]
    q = (w["wq"] @ np.asarray(inputs(t), np.float64) + w["bq"]).reshape(hq, d)
    o = np.empty((hq, d))
    for h in range(hq):
        g = h // (hq // hkv)
        s = K[:, g] @ q[h] / np.sqrt(d)
        e = np.exp(s - s.max())
        o[h] = (e / e.sum()) @ V[:, g]
    return w["wo"] @ o.reshape(-1) + w["bo"]


def soak(head, n_frames: int, horizon: int = 1024, progress=lambda msg: None) -> dict:
    table = np.random.default_rng(42).standard_normal((PERIOD, head.in_dim)).astype(np.float32)
    stream = head.stream(horizon=horizon)
    out = np.empty(head.in_dim, np.float32)
    warm = min(n_frames, horizon + 1000)
    for t in range(warm):
        stream.step(table[t % PERIOD], out=out)
    rss0 = rss_mb()
    last = {}
    report_every = max(n_frames // 10, 1)
    for t in range(warm, n_frames):
        stream.step(table[t % PERIOD], out=out)
        if t >= n_frames - CHECK_LAST:
            last[t] = out.copy()
        if (t + 1) % report_every == 0:
            progress(f"soak {t + 1}/{n_frames} frames, rss {rss_mb():.1f} MB")
    rss1 = rss_mb()
    pattern = stream.pattern
    err = 0.0
    for t, y in last.items():
        ref = expected_output(head, pattern, lambda p: table[p % PERIOD], t)
        err = max(err, float(np.max(np.abs(y - ref))))
    return {"soak_frames": n_frames, "soak_rss_start_mb": rss0, "soak_rss_end_mb": rss1,
            "soak_rss_growth_mb": rss1 - rss0, "soak_max_err": err,
            "soak_state_bytes": stream.nbytes()}


def run(ctx) -> dict:
    from .kernels import load_head
    n = ctx.soak or (30_000 if ctx.quick else 200_000)
    return soak(load_head(ctx), n, progress=ctx.progress)
