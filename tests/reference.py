"""Slow, obviously correct NumPy references for every kernel.

Nothing here is fast or clever: the pattern is enumerated by testing every earlier position against
DESIGN.md section 2's rules one by one, attention is an explicit softmax over that key set, and the
reference stream recomputes the whole prefill at every step.
"""
from __future__ import annotations

import numpy as np

#: The one parity tolerance of the suite (float32, absolute).
ATOL = 1e-5


def ref_keys(t, window, block_size, global_tokens, log_stride, landmarks, horizon=None):
    """(sorted token positions, sorted block ids) that query t sees, by brute force."""
    h = np.inf if horizon is None else horizon
    tokens = set()
    for j in range(t + 1):
        in_window = max(0, t - window) <= j <= t
        is_global = j in global_tokens
        d = t - j
        is_log = log_stride and d >= 1 and (d & (d - 1)) == 0 and d <= h
        if in_window or is_global or is_log:
            tokens.add(j)
    blocks = set()
    if landmarks:
        p = (t + 1) // block_size - 1
        if p >= 0:
            cand = {p, p - 1}
            k = 0
            while 2 ** k <= p:
                cand.add(p - 2 ** k)
                k += 1
            blocks = {b for b in cand if b >= 0 and b * block_size >= t - h}
    return np.array(sorted(tokens), dtype=np.int64), np.array(sorted(blocks), dtype=np.int64)


def ref_edge_count(seq_len, *pattern_args, **pattern_kw):
    return sum(sum(len(a) for a in ref_keys(t, *pattern_args, **pattern_kw)) for t in range(seq_len))


def pattern_args(p):
    """Positional pattern arguments of ref_keys from an edge_aether.SparsePattern."""
    return (p.window, p.block_size, p.global_tokens, p.log_stride, p.landmarks, p.horizon)


def ref_sparse_attention(q, k, v, window, block_size, global_tokens, log_stride, landmarks, horizon=None):
    """q [T, Hq, d], k/v [T, Hkv, d] -> o [T, Hq, d], float64 internally, explicit softmax."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    T, hq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    scale = 1.0 / np.sqrt(d)
    n_blocks = T // block_size
    lm_k = np.array([k[b * block_size:(b + 1) * block_size].mean(axis=0) for b in range(n_blocks)])
    lm_v = np.array([v[b * block_size:(b + 1) * block_size].mean(axis=0) for b in range(n_blocks)])
    out = np.zeros((T, hq, d))
    for t in range(T):
        toks, blks = ref_keys(t, window, block_size, global_tokens, log_stride, landmarks, horizon)
        for h in range(hq):
            g = h // group
            keys = [k[j, g] for j in toks] + [lm_k[b, g] for b in blks]
            vals = [v[j, g] for j in toks] + [lm_v[b, g] for b in blks]
            if not keys:
                continue
            s = np.array([q[t, h] @ kk for kk in keys]) * scale
            w = np.exp(s - s.max())
            w /= w.sum()
            out[t, h] = w @ np.array(vals)
    return out.astype(np.float32)


def ref_dense_attention(q, k, v):
    """Causal dense attention, the same conventions."""
    T = q.shape[0]
    return ref_sparse_attention(q, k, v, max(T - 1, 0), 1, (), False, False, None)


def ref_head_forward(x, w, q_heads, kv_heads, head_dim, pattern, logits=False):
    """The head of DESIGN.md section 4 on x [T, in_dim]; ``w`` has wq, bq, ... as attributes."""
    x = np.asarray(x, np.float64)
    T = x.shape[0]
    q = (x @ np.asarray(w.wq, np.float64).T + w.bq).reshape(T, q_heads, head_dim)
    k = (x @ np.asarray(w.wk, np.float64).T + w.bk).reshape(T, kv_heads, head_dim)
    v = (x @ np.asarray(w.wv, np.float64).T + w.bv).reshape(T, kv_heads, head_dim)
    o = ref_sparse_attention(q, k, v, *pattern_args(pattern)).astype(np.float64).reshape(T, -1)
    y = o @ np.asarray(w.wo, np.float64).T + w.bo
    if logits:
        return y.astype(np.float32), (y @ np.asarray(w.wc, np.float64).T + w.bc).astype(np.float32)
    return y.astype(np.float32)


class RefStream:
    """A stream that keeps every input and recomputes the whole prefill at each step."""

    def __init__(self, w, q_heads, kv_heads, head_dim, pattern):
        self.args = (w, q_heads, kv_heads, head_dim, pattern)
        self.xs = []

    def step(self, x_t):
        self.xs.append(np.array(x_t, np.float32))
        return ref_head_forward(np.stack(self.xs), *self.args)[-1]

    def reset(self):
        self.xs = []
