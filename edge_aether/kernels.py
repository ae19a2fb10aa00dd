"""Numba kernels for causal attention prefill: sparse (DESIGN.md section 2) and dense (for A/B).

Three layers: ``attend_keys`` (one query row, all its heads, over a list of key rows), the prange
orchestrators (chunks of rows, scratch allocated once per chunk), and the Python wrappers
``sparse_attention``/``dense_attention`` that validate once and trust nothing else.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .errors import InputError
from .jit import kernel, parallel_kernel
from .pattern import MAX_LOG_KEYS, SparsePattern, gen_keys

_ROWS_PER_CHUNK = 32


@kernel
def attend_keys(q, K, V, rows, n, scale, scores, out):
    """Softmax attention of one query position over ``n`` key rows.

    q [Hq, d]; K, V [R, Hkv, d]; rows[:n] index K/V; scores scratch [>= Hq // Hkv, >= n];
    out [Hq, d] written. Query head h reads KV head h // (Hq // Hkv); the heads of one group share
    each key row load. No key: output 0.
    """
    hq = q.shape[0]
    d = q.shape[1]
    hkv = K.shape[1]
    group = hq // hkv
    out[:, :] = 0.0
    if n == 0:
        return
    for g in range(hkv):
        h0 = g * group
        for c in range(n):
            r = rows[c]
            for hh in range(group):
                s = np.float32(0.0)
                for i in range(d):
                    s += q[h0 + hh, i] * K[r, g, i]
                scores[hh, c] = s * scale
        for hh in range(group):
            m = scores[hh, 0]
            for c in range(1, n):
                if scores[hh, c] > m:
                    m = scores[hh, c]
            total = np.float32(0.0)
            for c in range(n):
                e = np.exp(scores[hh, c] - m)
                scores[hh, c] = e
                total += e
            inv = np.float32(1.0) / total
            for c in range(n):
                scores[hh, c] *= inv
        for c in range(n):
            r = rows[c]
            for hh in range(group):
                w = scores[hh, c]
                for i in range(d):
                    out[h0 + hh, i] += w * V[r, g, i]


@kernel
def block_means(k, block, out):
    """out[b] = mean of k[b*block:(b+1)*block] (sequential float32 sum, then divide)."""
    for b in range(out.shape[0]):
        base = b * block
        for i in range(k.shape[1]):
            for j in range(k.shape[2]):
                out[b, i, j] = k[base, i, j]
        for t in range(base + 1, base + block):
            for i in range(k.shape[1]):
                for j in range(k.shape[2]):
                    out[b, i, j] += k[t, i, j]
        for i in range(k.shape[1]):
            for j in range(k.shape[2]):
                out[b, i, j] /= block


@kernel
def _extend_with_landmarks(k, v, block, landmarks):
    """[T + n_blocks, Hkv, d] key/value tables: tokens, then block means (row T + b is block b)."""
    T = k.shape[0]
    nb = T // block if landmarks else 0
    K = np.empty((T + nb, k.shape[1], k.shape[2]), np.float32)
    V = np.empty_like(K)
    K[:T] = k
    V[:T] = v
    block_means(k, block, K[T:])
    block_means(v, block, V[T:])
    return K, V


@kernel
def prefill_key_rows(t, T, window, block, glob, log_stride, landmarks, horizon, tok, gsel, blk, rows):
    """Rows of query t's keys in a prefill table [T tokens, then block means]; returns the count."""
    nt, ng, nb = gen_keys(t, window, block, glob, log_stride, landmarks, horizon, tok, gsel, blk)
    cnt = 0
    for i in range(nt):
        rows[cnt] = tok[i]
        cnt += 1
    for i in range(ng):
        rows[cnt] = glob[gsel[i]]
        cnt += 1
    for i in range(nb):
        rows[cnt] = T + blk[i]
        cnt += 1
    return cnt


@kernel
def key_scratch(window, n_glob):
    """Per-worker buffers for gen_keys and the key rows: (tok, gsel, blk, rows)."""
    tok = np.empty(window + 1 + MAX_LOG_KEYS, np.int64)
    gsel = np.empty(max(n_glob, 1), np.int64)
    blk = np.empty(MAX_LOG_KEYS + 1, np.int64)
    rows = np.empty(tok.shape[0] + gsel.shape[0] + blk.shape[0], np.int64)
    return tok, gsel, blk, rows


@parallel_kernel
def _sparse_prefill(q, k, v, window, block, glob, log_stride, landmarks, horizon, out):
    """q [N, T, Hq, d], k/v [N, T, Hkv, d] -> out [N, T, Hq, d]."""
    N, T = q.shape[0], q.shape[1]
    scale = np.float32(1.0 / math.sqrt(q.shape[3]))
    n_chunks = (T + _ROWS_PER_CHUNK - 1) // _ROWS_PER_CHUNK
    for n in range(N):
        K, V = _extend_with_landmarks(k[n], v[n], block, landmarks)
        for c in prange(n_chunks):
            tok, gsel, blk, rows = key_scratch(window, glob.shape[0])
            scores = np.empty((q.shape[2], rows.shape[0]), np.float32)
            for t in range(c * _ROWS_PER_CHUNK, min(T, (c + 1) * _ROWS_PER_CHUNK)):
                cnt = prefill_key_rows(t, T, window, block, glob, log_stride, landmarks, horizon,
                                       tok, gsel, blk, rows)
                attend_keys(q[n, t], K, V, rows, cnt, scale, scores, out[n, t])


@parallel_kernel
def _dense_prefill(q, k, v, out):
    N, T = q.shape[0], q.shape[1]
    scale = np.float32(1.0 / math.sqrt(q.shape[3]))
    n_chunks = (T + _ROWS_PER_CHUNK - 1) // _ROWS_PER_CHUNK
    for n in range(N):
        for c in prange(n_chunks):
            rows = np.arange(T)
            scores = np.empty((q.shape[2], T), np.float32)
            for t in range(c * _ROWS_PER_CHUNK, min(T, (c + 1) * _ROWS_PER_CHUNK)):
                attend_keys(q[n, t], k[n], v[n], rows, t + 1, scale, scores, out[n, t])


def check_array(name, a, ndim, dtype=np.float32):
    """Raise InputError unless ``a`` is a C-contiguous ndarray of ``dtype`` with ``ndim`` dims."""
    if not isinstance(a, np.ndarray):
        raise InputError(f"{name}: expected a numpy.ndarray, found {type(a).__name__}")
    if a.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise InputError(f"{name}: expected {ndim} dimensions, found shape {a.shape}")
    if a.dtype != dtype:
        raise InputError(f"{name}: expected dtype {np.dtype(dtype).name}, found {a.dtype.name} "
                         f"(convert with .astype(np.{np.dtype(dtype).name}))")
    if not a.flags.c_contiguous:
        raise InputError(f"{name}: expected a C-contiguous array, found strides {a.strides} "
                         "(use np.ascontiguousarray)")


def check_frame(x_t, shape) -> None:
    """Raise InputError unless x_t is a C-contiguous float32 array of exactly ``shape``."""
    if type(x_t) is not np.ndarray or x_t.dtype != np.float32 or x_t.shape != shape \
            or not x_t.flags.c_contiguous:
        check_array("x_t", x_t, len(shape))
        raise InputError(f"x_t: expected shape {shape}, found {x_t.shape}")


def deliver(y, out, shape):
    """Return ``y``, or copy it into the caller's ``out`` (float32 of ``shape``) and return that."""
    if out is None:
        return y
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32:
        raise InputError(f"out: expected float32 {shape}, found {getattr(out, 'dtype', type(out).__name__)} "
                         f"{getattr(out, 'shape', '')}")
    out[...] = y
    return out


def _check_qkv(q, k, v):
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_array(name, a, (3, 4))
    if not (q.ndim == k.ndim == v.ndim):
        raise InputError(f"q, k, v: expected the same rank, found shapes {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape:
        raise InputError(f"k and v: expected equal shapes, found {k.shape} and {v.shape}")
    lead = q.ndim - 3
    if q.shape[:lead + 1] != k.shape[:lead + 1] or q.shape[-1] != k.shape[-1]:
        raise InputError(f"q {q.shape} and k {k.shape}: expected equal batch, sequence and head_dim")
    hq, hkv = q.shape[-2], k.shape[-2]
    if hkv == 0 or hq % hkv:
        raise InputError(f"q_heads={hq}, kv_heads={hkv}: expected q_heads to be a multiple of kv_heads")
    if q.shape[-1] == 0:
        raise InputError("head_dim: expected >= 1, found 0")


def _batched(a):
    return a if a.ndim == 4 else a[None]


def sparse_attention(q, k, v, pattern: SparsePattern = SparsePattern(), out=None):
    """Causal sparse attention prefill.

    Parameters
    ----------
    q : float32 array [T, q_heads, d] or [N, T, q_heads, d], C-contiguous
    k, v : float32 arrays [T, kv_heads, d] or [N, T, kv_heads, d]; q_heads % kv_heads == 0
    pattern : SparsePattern (its horizon applies)
    out : optional preallocated output like q

    Returns
    -------
    float32 array shaped like q.
    """
    _check_qkv(q, k, v)
    if not isinstance(pattern, SparsePattern):
        raise InputError(f"pattern: expected a SparsePattern, found {type(pattern).__name__}")
    if out is None:
        out = np.empty_like(q)
    else:
        check_array("out", out, q.ndim)
        if out.shape != q.shape:
            raise InputError(f"out: expected shape {q.shape}, found {out.shape}")
    _sparse_prefill(_batched(q), _batched(k), _batched(v), pattern.window, pattern.block_size,
                    pattern.globals_array, pattern.log_stride, pattern.landmarks, pattern.horizon_value,
                    _batched(out))
    return out


def dense_attention(q, k, v, out=None):
    """Causal dense attention (every j <= t), same shapes and conventions as ``sparse_attention``."""
    _check_qkv(q, k, v)
    if out is None:
        out = np.empty_like(q)
    _dense_prefill(_batched(q), _batched(k), _batched(v), _batched(out))
    return out
