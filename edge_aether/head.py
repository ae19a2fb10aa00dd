"""The AETHER temporal head: projections + sparse attention + output projection (DESIGN.md section 4).

``TemporalHead.forward`` runs a prefill over whole sequences (NumPy projections, the prange sparse
kernel). ``TemporalHead.stream`` / ``stream_batch`` return streams whose ``step`` is ONE call into
compiled code: q/k/v projections, ring-buffer update, attention, output projection and classifier,
with every buffer allocated when the stream is made (DESIGN.md section 3).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .errors import InputError
from numba import prange

from .jit import kernel, parallel_kernel
from .kernels import (_ROWS_PER_CHUNK, attend_keys, block_means, check_array, check_frame, deliver, key_scratch,
                      prefill_key_rows)
from .pattern import MAX_LOG_KEYS, SparsePattern, gen_keys


class HeadWeights(NamedTuple):
    """Parameters of the head, float32, C-contiguous (``W @ x + b`` convention)."""

    wq: np.ndarray  # [q_heads*d, in_dim]
    bq: np.ndarray  # [q_heads*d]
    wk: np.ndarray  # [kv_heads*d, in_dim]
    bk: np.ndarray  # [kv_heads*d]
    wv: np.ndarray  # [kv_heads*d, in_dim]
    bv: np.ndarray  # [kv_heads*d]
    wo: np.ndarray  # [in_dim, q_heads*d]
    bo: np.ndarray  # [in_dim]
    wc: np.ndarray  # [n_classes, in_dim] (n_classes may be 0)
    bc: np.ndarray  # [n_classes]


def weight_shapes(in_dim, q_heads, kv_heads, head_dim, n_classes) -> HeadWeights:
    """The expected shape of every weight, as a HeadWeights of tuples."""
    qd, kd = q_heads * head_dim, kv_heads * head_dim
    return HeadWeights((qd, in_dim), (qd,), (kd, in_dim), (kd,), (kd, in_dim), (kd,),
                       (in_dim, qd), (in_dim,), (n_classes, in_dim), (n_classes,))


# Positions inside the int64 configuration vector handed to the step kernel.
_C_IN, _C_HQ, _C_HKV, _C_D, _C_NC, _C_W, _C_B, _C_H, _C_LOG, _C_LM, _C_RING, _C_LMRING, _C_NCFG = range(13)


@kernel
def _offsets(in_dim, hq, hkv, d, nc):
    """Offsets of wq, bq, wk, bk, wv, bv, wo, bo, wc, bc in the flat parameter buffer."""
    qd, kd = hq * d, hkv * d
    o_bq = qd * in_dim
    o_wk = o_bq + qd
    o_bk = o_wk + kd * in_dim
    o_wv = o_bk + kd
    o_bv = o_wv + kd * in_dim
    o_wo = o_bv + kd
    o_bo = o_wo + in_dim * qd
    o_wc = o_bo + in_dim
    o_bc = o_wc + nc * in_dim
    return 0, o_bq, o_wk, o_bk, o_wv, o_bv, o_wo, o_bo, o_wc, o_bc


@kernel
def _matvec(theta, w_off, b_off, n_rows, x, out):
    """out[r] = theta-matrix row r (at w_off, row-major, len(x) columns) . x + theta[b_off + r]."""
    n_cols = x.shape[0]
    # Slice first: indices from range() are provably non-negative, so the loop vectorises
    # (an index built from a runtime offset would carry numba's negative-index wraparound).
    w = theta[w_off:w_off + n_rows * n_cols]
    b = theta[b_off:b_off + n_rows]
    for r in range(n_rows):
        base = r * n_cols
        acc = np.float32(0.0)
        for c in range(n_cols):
            acc += w[base + c] * x[c]
        out[r] = acc + b[r]


@kernel
def _advance(n, x, y, logits, theta, cfg, glob, kv, pos, work, scores, iwork):
    """Advance stream ``n`` by one frame: x[n] -> y[n], logits[n]; state kv[n], pos[n] updated."""
    in_dim, hq, hkv, d, nc = cfg[_C_IN], cfg[_C_HQ], cfg[_C_HKV], cfg[_C_D], cfg[_C_NC]
    window, block, horizon = cfg[_C_W], cfg[_C_B], cfg[_C_H]
    log_stride, landmarks = cfg[_C_LOG] != 0, cfg[_C_LM] != 0
    ring, lmring = cfg[_C_RING], cfg[_C_LMRING]
    ng = glob.shape[0]
    qd, kd = hq * d, hkv * d
    o_wq, o_bq, o_wk, o_bk, o_wv, o_bv, o_wo, o_bo, o_wc, o_bc = _offsets(in_dim, hq, hkv, d, nc)

    t = pos[n]
    xs = x[n]
    flat = work.reshape(work.size)
    q = work[0]
    o = work[1]
    _matvec(theta, o_wq, o_bq, qd, xs, flat[0:qd])
    # k, v projections straight into the ring slot
    slot = t % ring
    K = kv[n, 0]
    V = kv[n, 1]
    _matvec(theta, o_wk, o_bk, kd, xs, K[slot].reshape(kd))
    _matvec(theta, o_wv, o_bv, kd, xs, V[slot].reshape(kd))
    # pin a global token
    for i in range(ng):
        if glob[i] == t:
            K[ring + i] = K[slot]
            V[ring + i] = V[slot]
    # landmark block running sum, final mean once its last token arrives
    if landmarks:
        lrow = ring + ng + (t // block) % lmring
        if t % block == 0:
            K[lrow] = K[slot]
            V[lrow] = V[slot]
        else:
            for g in range(hkv):
                for i in range(d):
                    K[lrow, g, i] += K[slot, g, i]
                    V[lrow, g, i] += V[slot, g, i]
        if t % block == block - 1:
            for g in range(hkv):
                for i in range(d):
                    K[lrow, g, i] /= block
                    V[lrow, g, i] /= block
    # visible keys -> rows of the state table
    # iwork holds gen_keys' buffers then the rows, laid out as kernels.key_scratch sizes them
    ntk = window + 1 + MAX_LOG_KEYS
    ngs = max(ng, 1)
    tok = iwork[0:ntk]
    gsel = iwork[ntk:ntk + ngs]
    blk = iwork[ntk + ngs:ntk + ngs + MAX_LOG_KEYS + 1]
    rows = iwork[ntk + ngs + MAX_LOG_KEYS + 1:]
    nt, ngl, nb = gen_keys(t, window, block, glob, log_stride, landmarks, horizon, tok, gsel, blk)
    cnt = 0
    for i in range(nt):
        rows[cnt] = tok[i] % ring
        cnt += 1
    for i in range(ngl):
        rows[cnt] = ring + gsel[i]
        cnt += 1
    for i in range(nb):
        rows[cnt] = ring + ng + blk[i] % lmring
        cnt += 1
    attend_keys(q, K, V, rows, cnt, np.float32(1.0 / math.sqrt(d)), scores, o)
    # output projection and classifier
    _matvec(theta, o_wo, o_bo, in_dim, flat[qd:2 * qd], y[n])
    if nc > 0:
        _matvec(theta, o_wc, o_bc, nc, y[n], logits[n])
    pos[n] = t + 1


@kernel
def _step_streams(x, y, logits, theta, cfg, glob, kv, pos, work, scores, iwork):
    """Advance every stream by one frame. Returns -1, or the first row of x that is not finite
    (then no stream is touched)."""
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            if not np.isfinite(x[n, c]):
                return n
    for n in range(x.shape[0]):
        _advance(n, x, y, logits, theta, cfg, glob, kv, pos, work, scores, iwork)
    return -1


@parallel_kernel
def _head_prefill(x, theta, cfg, glob, y):
    """Fused prefill: x [N, T, in_dim] -> y [N, T, in_dim] with the same matvecs as the stream."""
    in_dim, hq, hkv, d, nc = cfg[_C_IN], cfg[_C_HQ], cfg[_C_HKV], cfg[_C_D], cfg[_C_NC]
    window, block, horizon = cfg[_C_W], cfg[_C_B], cfg[_C_H]
    log_stride, landmarks = cfg[_C_LOG] != 0, cfg[_C_LM] != 0
    N, T = x.shape[0], x.shape[1]
    qd, kd = hq * d, hkv * d
    o_wq, o_bq, o_wk, o_bk, o_wv, o_bv, o_wo, o_bo, o_wc, o_bc = _offsets(in_dim, hq, hkv, d, nc)
    nb = T // block if landmarks else 0
    q = np.empty((N, T, hq, d), np.float32)
    K = np.empty((N, T + nb, hkv, d), np.float32)
    V = np.empty((N, T + nb, hkv, d), np.float32)
    scale = np.float32(1.0 / math.sqrt(d))
    n_chunks = (T + _ROWS_PER_CHUNK - 1) // _ROWS_PER_CHUNK
    for job in prange(N * n_chunks):
        n = job // n_chunks
        c = job % n_chunks
        for t in range(c * _ROWS_PER_CHUNK, min(T, (c + 1) * _ROWS_PER_CHUNK)):
            _matvec(theta, o_wq, o_bq, qd, x[n, t], q[n, t].reshape(qd))
            _matvec(theta, o_wk, o_bk, kd, x[n, t], K[n, t].reshape(kd))
            _matvec(theta, o_wv, o_bv, kd, x[n, t], V[n, t].reshape(kd))
    for n in range(N):
        block_means(K[n, :T], block, K[n, T:])
        block_means(V[n, :T], block, V[n, T:])
    for job in prange(N * n_chunks):
        n = job // n_chunks
        c = job % n_chunks
        tok, gsel, blk, rows = key_scratch(window, glob.shape[0])
        scores = np.empty((hq // hkv, rows.shape[0]), np.float32)
        o = np.empty((hq, d), np.float32)
        for t in range(c * _ROWS_PER_CHUNK, min(T, (c + 1) * _ROWS_PER_CHUNK)):
            cnt = prefill_key_rows(t, T, window, block, glob, log_stride, landmarks, horizon,
                                   tok, gsel, blk, rows)
            attend_keys(q[n, t], K[n], V[n], rows, cnt, scale, scores, o)
            _matvec(theta, o_wo, o_bo, in_dim, o.reshape(qd), y[n, t])


def _config_vector(head, pattern, ring=0, lmring=0):
    cfg = np.zeros(_C_NCFG, np.int64)
    cfg[[_C_IN, _C_HQ, _C_HKV, _C_D, _C_NC]] = (head.in_dim, head.q_heads, head.kv_heads,
                                                head.head_dim, head.n_classes)
    cfg[[_C_W, _C_B, _C_H, _C_LOG, _C_LM]] = (pattern.window, pattern.block_size, pattern.horizon_value,
                                              pattern.log_stride, pattern.landmarks)
    cfg[[_C_RING, _C_LMRING]] = (ring, lmring)
    return cfg


class HeadStream:
    """Streaming state of ``n_streams`` independent streams of one head (DESIGN.md section 3).

    Memory is fixed at creation: a ring of horizon+1 keys/values, the pinned global tokens and a
    ring of landmark block means per stream. Use ``TemporalHead.stream``/``stream_batch``.
    """

    def __init__(self, head: "TemporalHead", n_streams: int, horizon: int, batched: bool):
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise InputError(f"horizon: expected an integer, found {horizon!r}")
        if isinstance(n_streams, bool) or not isinstance(n_streams, (int, np.integer)) or n_streams < 1:
            raise InputError(f"n_streams: expected an integer >= 1, found {n_streams!r}")
        self.head = head
        self.pattern = head.pattern.with_horizon(int(horizon))  # validates horizon >= window
        p = self.pattern
        self.n_streams = int(n_streams)
        self.batched = batched
        self.capacity = p.horizon + 1
        self.landmark_capacity = p.horizon // p.block_size + 3
        ng = len(p.global_tokens)
        rows = self.capacity + ng + (self.landmark_capacity if p.landmarks else 0)
        self._cfg = _config_vector(head, p, self.capacity, self.landmark_capacity)
        self._glob = p.globals_array
        self.kv = np.zeros((self.n_streams, 2, rows, head.kv_heads, head.head_dim), np.float32)
        self.positions = np.zeros(self.n_streams, np.int64)
        self._work = np.zeros((2, head.q_heads, head.head_dim), np.float32)
        self._scores = np.zeros((head.q_heads // head.kv_heads, p.max_keys()), np.float32)
        self._iwork = np.zeros(2 * p.max_keys(), np.int64)  # gen_keys buffers + rows (see _advance)
        self._y = np.zeros((self.n_streams, head.in_dim), np.float32)
        self._logits = np.zeros((self.n_streams, head.n_classes), np.float32)
        self._shape = (self.n_streams, head.in_dim) if batched else (head.in_dim,)

    @property
    def position(self):
        """Next position (frames consumed since the last reset); an array for batched streams."""
        return self.positions.copy() if self.batched else int(self.positions[0])

    @property
    def logits(self) -> np.ndarray:
        """Classifier logits of the latest step ([n_classes], or [n_streams, n_classes])."""
        return self._logits if self.batched else self._logits[0]

    def nbytes(self) -> int:
        """Bytes of state held (constant for the stream's life)."""
        return sum(a.nbytes for a in (self.kv, self.positions, self._work, self._scores, self._iwork,
                                      self._y, self._logits))

    def step(self, x_t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Consume one frame per stream and return the head's output for it.

        Parameters
        ----------
        x_t : float32 [in_dim] (single stream) or [n_streams, in_dim] (batched), C-contiguous, finite
        out : optional float32 array of the same shape to write the output into

        Returns
        -------
        y_t : float32, shaped like ``x_t``; ``out`` if given, else an internal buffer that the next
            step overwrites (copy it to keep it).
        """
        check_frame(x_t, self._shape)
        x2 = x_t.reshape(self.n_streams, -1)
        bad = _step_streams(x2, self._y, self._logits, self.head._theta, self._cfg, self._glob,
                            self.kv, self.positions, self._work, self._scores, self._iwork)
        if bad >= 0:
            raise InputError(f"x_t: expected finite values, found NaN or inf in stream {bad}; "
                             "no stream was advanced")
        return deliver(self._y if self.batched else self._y[0], out, self._shape)

    def reset(self, stream: int | None = None) -> None:
        """Forget everything (or one stream of a batch): positions restart at 0."""
        if stream is None:
            self.kv[...] = 0
            self.positions[...] = 0
        else:
            self.kv[stream] = 0
            self.positions[stream] = 0


class TemporalHead:
    """The AETHER temporal head (numpy/numba backend).

    Parameters
    ----------
    in_dim : int
        Feature vector length (112 for the default recipe).
    q_heads, kv_heads, head_dim : int
        Query heads, key/value heads (GQA: q_heads % kv_heads == 0), per-head width.
    pattern : SparsePattern
        Attention pattern; its horizon applies to ``forward``.
    weights : HeadWeights or None
        Parameters (any float dtype, converted to float32; must be finite). None: zeros.
    class_names : sequence of str
        Classifier labels; empty for no classifier. Their count must match ``weights.wc``.
    feature_recipe : dict or None
        The feature recipe the weights were made for (recorded in model files).
    """

    backend = "numba"

    def __init__(self, in_dim, q_heads=4, kv_heads=1, head_dim=32, pattern=None, weights=None,
                 class_names=(), feature_recipe=None):
        for name, val in (("in_dim", in_dim), ("q_heads", q_heads), ("kv_heads", kv_heads),
                          ("head_dim", head_dim)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise InputError(f"{name}: expected an integer >= 1, found {val!r}")
        if q_heads % kv_heads:
            raise InputError(f"q_heads={q_heads}, kv_heads={kv_heads}: expected q_heads to be a "
                             "multiple of kv_heads (grouped-query attention)")
        self.in_dim, self.q_heads, self.kv_heads, self.head_dim = map(int, (in_dim, q_heads, kv_heads, head_dim))
        self.pattern = SparsePattern() if pattern is None else pattern
        if not isinstance(self.pattern, SparsePattern):
            raise InputError(f"pattern: expected a SparsePattern, found {type(self.pattern).__name__}")
        self.class_names = tuple(str(c) for c in class_names)
        self.feature_recipe = feature_recipe
        n_classes = len(self.class_names)
        if weights is not None and not isinstance(weights, HeadWeights):
            if isinstance(weights, dict):
                missing = set(HeadWeights._fields) - set(weights)
                if missing:
                    raise InputError(f"weights: missing {sorted(missing)}; expected all of {list(HeadWeights._fields)}")
                weights = HeadWeights(**{k: weights[k] for k in HeadWeights._fields})
            else:
                raise InputError(f"weights: expected HeadWeights or a dict, found {type(weights).__name__}")
        if weights is not None and not class_names and np.shape(weights.wc)[0:1] not in ((0,), ()):
            n_classes = int(np.shape(weights.wc)[0])
            self.class_names = tuple(f"class_{i}" for i in range(n_classes))
        self.n_classes = n_classes
        shapes = weight_shapes(self.in_dim, self.q_heads, self.kv_heads, self.head_dim, n_classes)
        if weights is None:
            weights = HeadWeights(*(np.zeros(s, np.float32) for s in shapes))
        # One flat float32 buffer holds every parameter; the HeadWeights fields are views of it.
        sizes = [int(np.prod(s)) for s in shapes]
        self._theta = np.empty(sum(sizes), np.float32)
        views, off = [], 0
        for name, shape, size, arr in zip(HeadWeights._fields, shapes, sizes, weights):
            arr = np.asarray(arr)
            if arr.shape != shape:
                raise InputError(f"weights.{name}: expected shape {shape}, found {arr.shape}")
            if not np.issubdtype(arr.dtype, np.floating):
                raise InputError(f"weights.{name}: expected a floating dtype, found {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise InputError(f"weights.{name}: expected finite values, found NaN or inf")
            view = self._theta[off:off + size].reshape(shape)
            view[...] = arr
            views.append(view)
            off += size
        self.weights = HeadWeights(*views)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def random(cls, in_dim, seed=0, q_heads=4, kv_heads=1, head_dim=32, pattern=None, n_classes=0,
               class_names=None, feature_recipe=None) -> "TemporalHead":
        """Deterministic weights for a given seed: N(0, 1/fan_in) matrices, N(0, 0.02^2) biases."""
        rng = np.random.default_rng(seed)
        names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(n_classes))
        shapes = weight_shapes(in_dim, q_heads, kv_heads, head_dim, len(names))
        arrays = []
        for shape in shapes:
            if len(shape) == 2:
                a = rng.standard_normal(shape) / math.sqrt(max(shape[1], 1))
            else:
                a = 0.02 * rng.standard_normal(shape)
            arrays.append(a.astype(np.float32))
        return cls(in_dim, q_heads, kv_heads, head_dim, pattern, HeadWeights(*arrays), names, feature_recipe)

    def to_onnx(self, path, **kw):
        """Write this head to an ONNX model file (see ``edge_aether.onnx_model.save_onnx``)."""
        from .onnx_model import save_onnx
        return save_onnx(self, path, **kw)

    @classmethod
    def from_onnx(cls, path, backend="numba"):
        """Load a head from an ONNX model file; ``backend`` is "numba" or "onnxruntime"."""
        from .onnx_model import load_onnx
        return load_onnx(path, backend=backend)

    @property
    def n_params(self) -> int:
        return int(self._theta.size)

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "q_heads": self.q_heads, "kv_heads": self.kv_heads,
                "head_dim": self.head_dim, "n_classes": self.n_classes,
                "class_names": list(self.class_names), "pattern": self.pattern.to_dict(),
                "feature_recipe": self.feature_recipe}

    # -- prefill --------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, horizon="pattern") -> np.ndarray:
        """Prefill: y for every position of x [T, in_dim] or [N, T, in_dim] (float32, C-contiguous).

        ``horizon`` overrides the pattern's horizon (an int, or None for unbounded); compare a stream
        made with ``stream(horizon=H)`` against ``forward(x, horizon=H)``.
        """
        check_array("x", x, (2, 3))
        if x.shape[-1] != self.in_dim:
            raise InputError(f"x: expected last dimension in_dim={self.in_dim}, found shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InputError("x: expected finite values, found NaN or inf")
        pattern = self.pattern if horizon == "pattern" else self.pattern.with_horizon(horizon)
        x3 = x if x.ndim == 3 else x[None]
        y = np.empty_like(x3)
        _head_prefill(x3, self._theta, _config_vector(self, pattern), pattern.globals_array, y)
        return y if x.ndim == 3 else y[0]

    def logits(self, y: np.ndarray) -> np.ndarray:
        """Classifier logits for outputs y [..., in_dim] ([..., 0] without a classifier)."""
        return y @ self.weights.wc.T + self.weights.bc

    # -- streaming ------------------------------------------------------------------------------
    def stream(self, horizon: int = 1024) -> HeadStream:
        """A single stream: ``step(x_t [in_dim]) -> y_t``."""
        return HeadStream(self, 1, horizon, batched=False)

    def stream_batch(self, n_streams: int, horizon: int = 1024) -> HeadStream:
        """``n_streams`` independent streams advanced together: ``step(x [n_streams, in_dim])``."""
        return HeadStream(self, n_streams, horizon, batched=True)

    def prepare(self, prefill: bool = False) -> None:
        """Compile (or load from the numba cache) the streaming kernels, and the prefill kernel
        when ``prefill`` is true; call before reporting ready."""
        x = np.zeros((2 * self.pattern.block_size + 2, self.in_dim), np.float32)
        if prefill:
            self.forward(x)
        s = self.stream_batch(1, horizon=max(self.pattern.window, 1))
        for row in x:
            s.step(row[None])
