"""Bench section ``features``: microseconds per frame of the default recipe.

Keys: ``features_us_p50`` (one ``NodeFeaturiser.push`` into a preallocated ``out``, median over
frames), ``features_us_p90``, ``features_batch_us_per_frame`` (``featurise_frames`` over a batch,
median over repeats, divided by the batch size), ``features_cold_s`` (first call: JIT compile or
cache load), and the frame mix. Frames are synthetic HT40 (384 values) and LLTF (128) buffers in
the proportion of the real capture; timings are warm (compiled before timing).
"""
from __future__ import annotations

import time

import numpy as np


def _frames(n: int, seed: int = 0):
    from firmware_bridge.frame import CsiFrame

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        legacy = i % 15 == 14     # about 1 in 15 rows of the real capture are LLTF-only
        nv = 128 if legacy else 384
        out.append(CsiFrame(node="bench", iq=rng.integers(-60, 61, nv).astype(np.int8), fmt="esp32-csi-tool",
                            sig_mode=0 if legacy else 1, bandwidth=0 if legacy else 1, secondary_channel=1, stbc=0))
    return out


def run(ctx) -> dict:
    from edge_aether.features import DEFAULT_RECIPE, NodeFeaturiser, featurise_frames

    n_frames = 2000 if ctx.quick else 20000
    batch = 256
    repeats = 5 if ctx.quick else 25
    frames = _frames(max(n_frames, batch))

    ctx.progress("features: compile / load kernels")
    t0 = time.perf_counter()
    node = NodeFeaturiser(DEFAULT_RECIPE)
    node.push(frames[0])
    featurise_frames(frames[:2])
    cold = time.perf_counter() - t0

    out = np.empty((node.max_rows, DEFAULT_RECIPE.in_dim), np.float32)
    for fr in frames[:200]:
        node.push(fr, out)
    ctx.progress(f"features: {n_frames} frames one at a time")
    times = np.empty(n_frames)
    clock = time.perf_counter_ns
    push = node.push
    for i in range(n_frames):
        fr = frames[i]
        t = clock()
        push(fr, out)
        times[i] = clock() - t
    times /= 1e3

    ctx.progress(f"features: batches of {batch}")
    chunk = frames[:batch]
    featurise_frames(chunk)
    per = []
    for _ in range(repeats):
        t = time.perf_counter()
        featurise_frames(chunk)
        per.append((time.perf_counter() - t) / batch * 1e6)
    return {
        "features_us_p50": float(np.median(times)),
        "features_us_p90": float(np.percentile(times, 90)),
        "features_batch_us_per_frame": float(np.median(per)),
        "features_batch_size": batch,
        "features_cold_s": float(cold),
        "features_frames": n_frames,
    }
