"""Prefill kernels against the NumPy reference (tolerance: reference.ATOL)."""
import numpy as np
import pytest

from edge_aether import SparsePattern, dense_attention, sparse_attention
from reference import ATOL, pattern_args, ref_dense_attention, ref_sparse_attention


def _qkv(rng, T, hq, hkv, d, lead=()):
    q = rng.standard_normal((*lead, T, hq, d)).astype(np.float32)
    k = rng.standard_normal((*lead, T, hkv, d)).astype(np.float32)
    v = rng.standard_normal((*lead, T, hkv, d)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("hq,hkv", [(4, 4), (4, 2), (4, 1), (1, 1)], ids=["MHA", "GQA", "MQA", "single"])
@pytest.mark.parametrize("pattern", [
    SparsePattern(),
    SparsePattern(window=5, block_size=4, global_tokens=(0, 9), horizon=None),
    SparsePattern(window=3, block_size=2, global_tokens=(), horizon=12),
    SparsePattern(window=0, block_size=1, global_tokens=(70,), log_stride=False),
], ids=["aether", "small", "horizon", "w0"])
def test_sparse_matches_reference(hq, hkv, pattern):
    rng = np.random.default_rng(hq * 10 + hkv)
    q, k, v = _qkv(rng, 90, hq, hkv, 8)
    got = sparse_attention(q, k, v, pattern)
    want = ref_sparse_attention(q, k, v, *pattern_args(pattern))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_dense_matches_reference_and_sparse_identity():
    rng = np.random.default_rng(3)
    T = 70
    q, k, v = _qkv(rng, T, 4, 2, 16)
    dense = dense_attention(q, k, v)
    np.testing.assert_allclose(dense, ref_dense_attention(q, k, v), atol=ATOL, rtol=0)
    for window in (T - 1, T + 40):
        full = SparsePattern(window=window, block_size=8, global_tokens=(0, 5), log_stride=False, landmarks=False)
        np.testing.assert_allclose(sparse_attention(q, k, v, full), dense, atol=ATOL, rtol=0)


def test_batch_equals_loop():
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, 64, 4, 1, 8, lead=(3,))
    p = SparsePattern(window=6, block_size=4)
    batch = sparse_attention(q, k, v, p)
    for n in range(3):
        np.testing.assert_array_equal(batch[n], sparse_attention(q[n], k[n], v[n], p))
    dense = dense_attention(q, k, v)
    for n in range(3):
        np.testing.assert_array_equal(dense[n], dense_attention(q[n], k[n], v[n]))


def test_inputs_left_unchanged_and_deterministic():
    rng = np.random.default_rng(5)
    q, k, v = _qkv(rng, 50, 4, 1, 8)
    copies = [a.copy() for a in (q, k, v)]
    a = sparse_attention(q, k, v)
    b = sparse_attention(q, k, v)
    np.testing.assert_array_equal(a, b)
    for x, c in zip((q, k, v), copies):
        np.testing.assert_array_equal(x, c)


def test_large_scores_are_stable():
    rng = np.random.default_rng(6)
    q, k, v = _qkv(rng, 40, 2, 1, 8)
    q *= 1e3  # scores of order 1e5: a naive softmax would overflow
    out = sparse_attention(q, k, v)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref_sparse_attention(q, k, v, *pattern_args(SparsePattern())), atol=ATOL)


@pytest.mark.parametrize("mutate,needle", [
    (lambda q, k, v: (q.astype(np.float64), k, v), "float32"),
    (lambda q, k, v: (q[:, :, 0], k, v), "dimensions"),
    (lambda q, k, v: (np.asfortranarray(q), k, v), "contiguous"),
    (lambda q, k, v: (q[::2], k[::2], v[::2]), "contiguous"),
    (lambda q, k, v: (np.ascontiguousarray(q[:, :3]), k, v), "multiple of kv_heads"),
    (lambda q, k, v: (q, k, v[:-1]), "equal shapes"),
    (lambda q, k, v: (q[:-1], k, v), "sequence"),
    (lambda q, k, v: (q.tolist(), k, v), "ndarray"),
], ids=["float64", "rank", "fortran", "strided", "heads", "kv-shape", "seq", "list"])
def test_bad_inputs_raise_before_kernel(mutate, needle):
    rng = np.random.default_rng(7)
    q, k, v = _qkv(rng, 20, 4, 2, 8)
    with pytest.raises(ValueError, match=needle):
        sparse_attention(*mutate(q, k, v))


def test_bad_pattern_argument():
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError, match="SparsePattern"):
        sparse_attention(*_qkv(rng, 8, 1, 1, 4), pattern={"window": 3})
