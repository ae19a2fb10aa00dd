"""Numba, onnxruntime and the NumPy reference agree: prefill and streaming far past the ring."""
from __future__ import annotations

import numpy as np
import pytest

from edge_aether.head import TemporalHead
from edge_aether.onnx_model import default_model_path, load_onnx
from edge_aether.ort_backend import OrtTemporalHead
from edge_aether.pattern import SparsePattern
from reference import ATOL, RefStream, ref_head_forward

HEADS = {
    # name: (in_dim, q_heads, kv_heads, head_dim, pattern, n_classes)
    "mqa": (12, 4, 1, 8, SparsePattern(window=6, block_size=4, horizon=48), 3),
    "gqa": (10, 6, 2, 4, SparsePattern(window=3, block_size=2, global_tokens=(0, 5), horizon=None), 0),
    "mha-no-extras": (8, 2, 2, 4, SparsePattern(window=5, block_size=3, global_tokens=(),
                                                log_stride=False, landmarks=False, horizon=20), 2),
    "landmarks-only": (8, 4, 2, 4, SparsePattern(window=2, block_size=5, global_tokens=(3,),
                                                 log_stride=False, horizon=30), 0),
}


def _x(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(HEADS))
def pair(request):
    in_dim, hq, hkv, d, pattern, nc = HEADS[request.param]
    head = TemporalHead.random(in_dim, seed=7, q_heads=hq, kv_heads=hkv, head_dim=d, pattern=pattern,
                               n_classes=nc)
    return head, OrtTemporalHead.from_head(head, max_seq=160)


@pytest.fixture(scope="module")
def shipped():
    return load_onnx(default_model_path()), load_onnx(default_model_path(), backend="onnxruntime")


def test_prefill_three_way(pair):
    head, ort_head = pair
    x = _x((2, 150, head.in_dim), 1)
    y_nb = head.forward(x)
    y_ort, lg_ort = ort_head.run(x)
    for n in range(2):
        ref = ref_head_forward(x[n], head.weights, head.q_heads, head.kv_heads, head.head_dim, head.pattern,
                               logits=True)
        np.testing.assert_allclose(y_nb[n], ref[0], atol=ATOL, rtol=0)
        np.testing.assert_allclose(y_ort[n], ref[0], atol=ATOL, rtol=0)
        if head.n_classes:
            np.testing.assert_allclose(lg_ort[n], ref[1], atol=ATOL, rtol=0)
    assert (lg_ort is None) == (head.n_classes == 0)
    np.testing.assert_allclose(ort_head.forward(x[0]), y_nb[0], atol=ATOL, rtol=0)


def test_stream_three_way_far_past_capacity(pair):
    head, ort_head = pair
    horizon = 24  # ring of 25 slots, 8 laps below
    steps = 200
    x = _x((steps, head.in_dim), 2)
    s_nb, s_ort = head.stream(horizon=horizon), ort_head.stream(horizon=horizon)
    y_nb = np.stack([s_nb.step(r).copy() for r in x])
    y_ort = np.stack([s_ort.step(r).copy() for r in x])
    want = ref_head_forward(x, head.weights, head.q_heads, head.kv_heads, head.head_dim,
                            head.pattern.with_horizon(horizon))
    np.testing.assert_allclose(y_nb, want, atol=ATOL, rtol=0)
    np.testing.assert_allclose(y_ort, want, atol=ATOL, rtol=0)
    assert s_ort.position == steps
    np.testing.assert_allclose(s_ort.logits, s_nb.logits, atol=ATOL, rtol=0)


def test_stream_matches_ref_stream_step_by_step():
    head = TemporalHead.random(6, seed=3, q_heads=2, kv_heads=1, head_dim=4,
                               pattern=SparsePattern(window=2, block_size=2, horizon=None))
    ort_s = OrtTemporalHead.from_head(head, max_seq=8).stream(horizon=5)
    ref = RefStream(head.weights, 2, 1, 4, head.pattern.with_horizon(5))
    for row in _x((30, 6), 4):
        np.testing.assert_allclose(ort_s.step(row), ref.step(row), atol=ATOL, rtol=0)


def test_stream_batch_independent_positions_and_reset(pair):
    head, ort_head = pair
    x = _x((3, 90, head.in_dim), 5)
    sb = ort_head.stream_batch(3, horizon=30)
    out = np.empty((3, head.in_dim), np.float32)
    for t in range(60):
        sb.step(x[:, t].copy(), out=out)
    sb.reset(1)  # stream 1 restarts: its next 30 frames are a fresh sequence
    ys = []
    for t in range(60, 90):
        ys.append(sb.step(np.ascontiguousarray(x[:, t])).copy())
    ys = np.stack(ys, 1)
    assert list(sb.position) == [90, 30, 90]
    np.testing.assert_allclose(ys[1], head.forward(np.ascontiguousarray(x[1, 60:]), horizon=30),
                               atol=ATOL, rtol=0)
    np.testing.assert_allclose(ys[0], head.forward(np.ascontiguousarray(x[0]), horizon=30)[60:],
                               atol=ATOL, rtol=0)
    sb.reset()
    assert list(sb.position) == [0, 0, 0]


def test_shipped_model_prefill_three_way(shipped):
    head, ort_head = shipped
    x = _x((300, 112), 6)
    y_ort, lg_ort = ort_head.run(x)
    ref, ref_lg = ref_head_forward(x, head.weights, 4, 1, 32, head.pattern, logits=True)
    np.testing.assert_allclose(head.forward(x), ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(y_ort, ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(lg_ort, ref_lg, atol=ATOL, rtol=0)


def test_shipped_model_stream_past_ring(shipped):
    head, ort_head = shipped
    steps = 2 * 1025 + 100  # the default horizon-1024 ring wraps twice
    x = _x((steps, 112), 7)
    s_nb, s_ort = head.stream(), ort_head.stream()
    y_nb = np.empty((steps, 112), np.float32)
    y_ort = np.empty((steps, 112), np.float32)
    for t in range(steps):
        s_nb.step(x[t], out=y_nb[t])
        s_ort.step(x[t], out=y_ort[t])
    np.testing.assert_allclose(y_ort, y_nb, atol=ATOL, rtol=0)
    np.testing.assert_allclose(y_nb, head.forward(x, horizon=1024), atol=ATOL, rtol=0)
    np.testing.assert_allclose(s_ort.logits, s_nb.logits, atol=ATOL, rtol=0)
    # the reference on the tail, where the ring has wrapped
    tail = ref_head_forward(x, head.weights, 4, 1, 32, head.pattern)[-50:]
    np.testing.assert_allclose(y_ort[-50:], tail, atol=ATOL, rtol=0)


def test_ort_rejects_too_long_and_other_horizon(pair):
    head, ort_head = pair
    with pytest.raises(ValueError, match="max_seq=160"):
        ort_head.forward(_x((161, head.in_dim), 8))
    with pytest.raises(ValueError, match="horizon"):
        ort_head.forward(_x((10, head.in_dim), 8), horizon=head.pattern.window + 1000)
    with pytest.raises(ValueError, match="finite"):
        ort_head.stream(horizon=40).step(np.full(head.in_dim, np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        ort_head.stream(horizon=40).step(np.zeros(head.in_dim + 1, np.float32))


def test_session_options_small_cpu():
    from edge_aether.ort_backend import session_options

    so = session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
