"""TemporalHead: prefill against the reference, streaming against prefill far past the ring."""
import numpy as np
import pytest

from edge_aether import HeadWeights, SparsePattern, TemporalHead
from reference import ATOL, RefStream, ref_head_forward

SMALL = SparsePattern(window=6, block_size=4, global_tokens=(0, 3))


def _x(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("hq,hkv", [(4, 4), (4, 2), (4, 1)], ids=["MHA", "GQA", "MQA"])
def test_forward_matches_reference(hq, hkv):
    head = TemporalHead.random(24, seed=1, q_heads=hq, kv_heads=hkv, head_dim=8, pattern=SMALL, n_classes=3)
    x = _x(2, 80, 24)
    y = head.forward(x)
    np.testing.assert_allclose(y, ref_head_forward(x, head.weights, hq, hkv, 8, SMALL), atol=ATOL, rtol=0)
    _, logits = ref_head_forward(x, head.weights, hq, hkv, 8, SMALL, logits=True)
    np.testing.assert_allclose(head.logits(y), logits, atol=ATOL, rtol=0)


def test_forward_batch_equals_loop_and_leaves_input():
    head = TemporalHead.random(16, seed=3, head_dim=8, pattern=SMALL)
    x = _x(4, 3, 40, 16)
    x0 = x.copy()
    y = head.forward(x)
    np.testing.assert_array_equal(x, x0)
    for n in range(3):
        np.testing.assert_allclose(y[n], head.forward(x[n]), atol=ATOL, rtol=0)


def test_random_is_deterministic():
    a = TemporalHead.random(16, seed=7)
    b = TemporalHead.random(16, seed=7)
    c = TemporalHead.random(16, seed=8)
    for wa, wb, wc in zip(a.weights, b.weights, c.weights):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.weights.wq, c.weights.wq)


@pytest.mark.parametrize("T_over_capacity", [0.5, 1.0, 6.3], ids=["below", "at", "6-wraps"])
@pytest.mark.parametrize("hq,hkv", [(4, 1), (4, 2)], ids=["MQA", "GQA"])
def test_stream_equals_prefill_with_same_horizon(T_over_capacity, hq, hkv):
    horizon = 20
    capacity = horizon + 1
    T = int(round(T_over_capacity * capacity))
    head = TemporalHead.random(12, seed=5, q_heads=hq, kv_heads=hkv, head_dim=8, pattern=SMALL, n_classes=2)
    x = _x(6, T, 12)
    prefill = head.forward(x, horizon=horizon)
    s = head.stream(horizon=horizon)
    for t in range(T):
        y = s.step(x[t])
        np.testing.assert_allclose(y, prefill[t], atol=ATOL, rtol=0, err_msg=f"position {t}")
        np.testing.assert_allclose(s.logits, head.logits(prefill[t]), atol=ATOL, rtol=0)
    assert s.position == T


def test_aether_defaults_stream_far_past_ring():
    head = TemporalHead.random(112, seed=0)  # AETHER defaults: 4/1 heads, d 32, W 32, B 16, G {0}
    horizon = 64
    x = _x(9, 5 * (horizon + 1) + 37, 112)
    prefill = head.forward(x, horizon=horizon)
    s = head.stream(horizon=horizon)
    got = np.stack([s.step(row).copy() for row in x])
    np.testing.assert_allclose(got, prefill, atol=ATOL, rtol=0)


def test_stream_matches_recomputing_reference_stream():
    head = TemporalHead.random(10, seed=11, head_dim=4, pattern=SMALL.with_horizon(9))
    ref = RefStream(head.weights, 4, 1, 4, head.pattern)
    s = head.stream(horizon=9)
    for row in _x(12, 35, 10):
        np.testing.assert_allclose(s.step(row), ref.step(row), atol=ATOL, rtol=0)


def test_batched_streams_equal_single_streams():
    head = TemporalHead.random(12, seed=13, head_dim=8, pattern=SMALL, n_classes=3)
    n, T, horizon = 3, 70, 10
    x = _x(14, n, T, 12)
    batch = head.stream_batch(n, horizon=horizon)
    singles = [head.stream(horizon=horizon) for _ in range(n)]
    for t in range(T):
        y = batch.step(np.ascontiguousarray(x[:, t]))
        for i in range(n):
            np.testing.assert_array_equal(y[i], singles[i].step(x[i, t]))
            np.testing.assert_array_equal(batch.logits[i], singles[i].logits)
    prefill = head.forward(x, horizon=horizon)
    np.testing.assert_allclose(y, prefill[:, -1], atol=ATOL, rtol=0)


def test_reset_equals_fresh_and_single_stream_reset():
    head = TemporalHead.random(12, seed=15, head_dim=8, pattern=SMALL)
    x = _x(16, 50, 12)
    s = head.stream(horizon=12)
    for row in x[:33]:
        s.step(row)
    s.reset()
    fresh = head.stream(horizon=12)
    for row in x:
        np.testing.assert_array_equal(s.step(row), fresh.step(row))
    b = head.stream_batch(2, horizon=12)
    for row in x[:20]:
        b.step(np.stack([row, row]))
    b.reset(stream=1)
    assert list(b.position) == [20, 0]


def test_step_out_argument_and_constant_memory():
    head = TemporalHead.random(12, seed=17, head_dim=8, pattern=SMALL)
    s = head.stream(horizon=16)
    before = s.nbytes()
    out = np.empty(12, np.float32)
    for row in _x(18, 200, 12):
        assert s.step(row, out=out) is out
    assert s.nbytes() == before


def test_step_rejects_bad_frames_without_touching_state():
    head = TemporalHead.random(12, seed=19, head_dim=8, pattern=SMALL)
    s = head.stream(horizon=16)
    x = _x(20, 10, 12)
    for row in x[:5]:
        s.step(row)
    bad = x[5].copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        s.step(bad)
    assert s.position == 5
    with pytest.raises(ValueError, match="float32"):
        s.step(x[5].astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        s.step(x[5][:11].copy())
    ref = head.stream(horizon=16)
    for row in x[:5]:
        ref.step(row)
    np.testing.assert_array_equal(s.step(x[5]), ref.step(x[5]))


@pytest.mark.parametrize("kwargs,needle", [
    (dict(q_heads=3, kv_heads=2), "multiple of kv_heads"),
    (dict(in_dim=0), "in_dim"),
    (dict(head_dim=2.0), "head_dim"),
])
def test_bad_head_configuration(kwargs, needle):
    args = dict(in_dim=8, q_heads=4, kv_heads=1, head_dim=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        TemporalHead(**args)


def test_bad_weights():
    good = TemporalHead.random(8, seed=0, head_dim=4).weights
    bad = good._replace(wk=good.wk.copy())
    bad.wk[0, 0] = np.nan
    with pytest.raises(ValueError, match="weights.wk.*finite"):
        TemporalHead(8, 4, 1, 4, weights=bad)
    with pytest.raises(ValueError, match=r"weights.wo: expected shape \(8, 16\)"):
        TemporalHead(8, 4, 1, 4, weights=good._replace(wo=good.wo.T.copy()))
    with pytest.raises(ValueError, match="missing"):
        TemporalHead(8, 4, 1, 4, weights={"wq": good.wq})
    assert isinstance(TemporalHead(8, 4, 1, 4, weights=good._asdict()).weights, HeadWeights)


def test_bad_forward_and_stream_arguments():
    head = TemporalHead.random(8, seed=0, head_dim=4)
    with pytest.raises(ValueError, match="in_dim=8"):
        head.forward(np.zeros((5, 7), np.float32))
    with pytest.raises(ValueError, match="float32"):
        head.forward(np.zeros((5, 8)))
    with pytest.raises(ValueError, match="finite"):
        head.forward(np.full((5, 8), np.inf, np.float32))
    with pytest.raises(ValueError, match="horizon"):
        head.stream(horizon=4)  # shorter than the window (32)
    with pytest.raises(ValueError, match="n_streams"):
        head.stream_batch(0)
