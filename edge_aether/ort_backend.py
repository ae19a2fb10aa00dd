"""The onnxruntime backend: the model file's own graphs, run by onnxruntime on the CPU.

An independent second implementation of the head (DESIGN.md section 4) that the Numba kernels are
checked against and benchmarked beside. ``OrtTemporalHead`` has the interface of ``TemporalHead``:
``forward``, ``logits``, ``stream``, ``stream_batch``, ``prepare`` and the same attributes.

Sessions are configured for a small CPU: one intra-op and one inter-op thread, no spin-waiting,
sequential execution, the CPU execution provider only. A stream keeps its state in two preallocated
sets of arrays bound to the step graph's inputs and outputs (IOBinding), swapped every step, so a
step allocates no state in Python; onnxruntime itself copies the ring into the output buffer (ONNX
graphs are functional), which makes its step O(horizon) in memory traffic.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .errors import InputError
from .kernels import check_array, check_frame, deliver
from .onnx_graph import MAX_STEP_HORIZON, state_specs


def session_options() -> ort.SessionOptions:
    """Options for a small CPU: 1 intra-op and 1 inter-op thread, no spinning, sequential."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def _session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), session_options(),
                                providers=["CPUExecutionProvider"])


class OrtTemporalHead:
    """The head run by onnxruntime from its ONNX graphs. Build with ``from_onnx(path,
    backend="onnxruntime")`` or ``OrtTemporalHead.from_head(head)``."""

    backend = "onnxruntime"

    def __init__(self, config, weights, prefill_proto, step_proto):
        from .head import HeadWeights

        self.in_dim, self.q_heads = config.in_dim, config.q_heads
        self.kv_heads, self.head_dim = config.kv_heads, config.head_dim
        self.pattern = config.pattern
        self.n_classes = config.n_classes
        self.class_names = tuple(config.class_names)
        self.feature_recipe = config.feature_recipe
        self.max_seq = config.max_seq
        self.config_ = config
        self.weights = weights if isinstance(weights, HeadWeights) else HeadWeights(**weights)
        self._prefill_proto, self._step_proto = prefill_proto, step_proto
        self._prefill = None
        self._step = None

    @classmethod
    def from_model_file(cls, mf, step_mf=None) -> "OrtTemporalHead":
        """From a validated ``onnx_model.ModelFile`` (and its step file, or None to rebuild it)."""
        from . import __version__
        from .onnx_graph import build_step

        if step_mf is not None:
            step = step_mf.proto
        else:
            from .head import HeadWeights

            step = build_step(mf.config, HeadWeights(**mf.weights), mf.config.metadata("step"), __version__)
        return cls(mf.config, mf.weights, mf.proto, step)

    @classmethod
    def from_head(cls, head, max_seq=None) -> "OrtTemporalHead":
        """The onnxruntime twin of a (Numba) head, built in memory (nothing written)."""
        from .onnx_model import DEFAULT_MAX_SEQ, HeadConfig, build_models

        max_seq = DEFAULT_MAX_SEQ if max_seq is None else max_seq
        prefill, step = build_models(head, max_seq)
        return cls(HeadConfig.of(head, max_seq), head.weights, prefill, step)

    @property
    def n_params(self) -> int:
        return int(sum(np.asarray(w).size for w in self.weights))

    def _prefill_session(self):
        if self._prefill is None:
            self._prefill = _session(self._prefill_proto)
        return self._prefill

    def _step_session(self):
        if self._step is None:
            self._step = _session(self._step_proto)
        return self._step

    # -- prefill --------------------------------------------------------------------------------
    def run(self, x: np.ndarray, horizon="pattern"):
        """(y, logits) of the prefill graph for x [T, in_dim] or [N, T, in_dim]; logits is None
        without a classifier."""
        check_array("x", x, (2, 3))
        if x.shape[-1] != self.in_dim:
            raise InputError(f"x: expected last dimension in_dim={self.in_dim}, found shape {x.shape}")
        if horizon != "pattern" and self.pattern.with_horizon(horizon) != self.pattern:
            raise InputError(f"horizon={horizon!r}: the onnxruntime prefill graph is built for the model's "
                             f"pattern horizon {self.pattern.horizon!r} only; use the numba backend for "
                             "another horizon")
        T = x.shape[-2]
        if T > self.max_seq:
            raise InputError(f"x: sequence length T={T} exceeds max_seq={self.max_seq} of the model's "
                             "prefill graph; re-export it with to_onnx(path, max_seq=...) or use the "
                             "numba backend")
        if not np.all(np.isfinite(x)):
            raise InputError("x: expected finite values, found NaN or inf")
        x3 = x if x.ndim == 3 else x[None]
        if T == 0:
            y3 = np.zeros(x3.shape, np.float32)
            lg = np.zeros(x3.shape[:2] + (self.n_classes,), np.float32)
        else:
            outs = self._prefill_session().run(None, {"x": x3})
            y3 = outs[0]
            lg = outs[1] if self.n_classes else None
        if x.ndim == 2:
            return y3[0], (None if lg is None else lg[0])
        return y3, lg

    def forward(self, x: np.ndarray, horizon="pattern") -> np.ndarray:
        """Prefill: y for every position of x [T, in_dim] or [N, T, in_dim], T <= max_seq."""
        return self.run(x, horizon)[0]

    def logits(self, y: np.ndarray) -> np.ndarray:
        """Classifier logits for outputs y [..., in_dim] ([..., 0] without a classifier)."""
        return y @ self.weights.wc.T + self.weights.bc

    # -- streaming ------------------------------------------------------------------------------
    def stream(self, horizon: int = 1024) -> "OrtHeadStream":
        """A single stream: ``step(x_t [in_dim]) -> y_t``, run by the step graph."""
        return OrtHeadStream(self, 1, horizon, batched=False)

    def stream_batch(self, n_streams: int, horizon: int = 1024) -> "OrtHeadStream":
        """``n_streams`` independent streams advanced together: ``step(x [n_streams, in_dim])``."""
        return OrtHeadStream(self, n_streams, horizon, batched=True)

    def prepare(self) -> None:
        """Create both sessions and run each once."""
        self.forward(np.zeros((2 * self.pattern.block_size + 2, self.in_dim), np.float32))
        self.stream(horizon=max(self.pattern.window, 1)).step(np.zeros(self.in_dim, np.float32))


class OrtHeadStream:
    """Streams run by the step graph; same contract as ``head.HeadStream``."""

    def __init__(self, head: OrtTemporalHead, n_streams: int, horizon: int, batched: bool):
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise InputError(f"horizon: expected an integer, found {horizon!r}")
        if isinstance(n_streams, bool) or not isinstance(n_streams, (int, np.integer)) or n_streams < 1:
            raise InputError(f"n_streams: expected an integer >= 1, found {n_streams!r}")
        self.pattern = head.pattern.with_horizon(int(horizon))  # validates horizon >= window
        if horizon > MAX_STEP_HORIZON:
            raise InputError(f"horizon: the step graph supports horizons up to {MAX_STEP_HORIZON}, found {horizon}")
        self.head, self.n_streams, self.batched = head, int(n_streams), batched
        self.capacity = int(horizon) + 1
        sess = head._step_session()
        specs = state_specs(head.config_, self.n_streams, int(horizon))
        self._state = [{k: np.zeros(s, dt) for k, (s, dt) in specs.items()} for _ in range(2)]
        self._x = np.zeros((self.n_streams, head.in_dim), np.float32)
        self._y = np.zeros((self.n_streams, head.in_dim), np.float32)
        self._logits = np.zeros((self.n_streams, head.n_classes), np.float32)
        self._shape = (self.n_streams, head.in_dim) if batched else (head.in_dim,)
        # Two bindings: state set 0 -> set 1, and set 1 -> set 0.
        self._bindings = []
        for src, dst in ((0, 1), (1, 0)):
            b = sess.io_binding()
            b.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(self._x))
            for k in specs:
                b.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(self._state[src][k]))
                b.bind_ortvalue_output(k + "_out", ort.OrtValue.ortvalue_from_numpy(self._state[dst][k]))
            b.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(self._y))
            if head.n_classes:
                b.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(self._logits))
            self._bindings.append(b)
        self._sess = sess
        self._cur = 0

    @property
    def position(self):
        """Next position (frames consumed since the last reset); an array for batched streams."""
        pos = self._state[self._cur]["position"]
        return pos.copy() if self.batched else int(pos[0])

    @property
    def logits(self) -> np.ndarray:
        return self._logits if self.batched else self._logits[0]

    def step(self, x_t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Consume one frame per stream, return y_t (an internal buffer unless ``out`` is given)."""
        check_frame(x_t, self._shape)
        if not np.all(np.isfinite(x_t)):
            raise InputError("x_t: expected finite values, found NaN or inf; no stream was advanced")
        self._x[...] = x_t.reshape(self._x.shape)
        self._sess.run_with_iobinding(self._bindings[self._cur])
        self._cur ^= 1
        return deliver(self._y if self.batched else self._y[0], out, self._shape)

    def reset(self, stream: int | None = None) -> None:
        """Forget everything (or one stream of a batch): positions restart at 0."""
        for state in self._state:
            for a in state.values():
                if stream is None:
                    a[...] = 0
                else:
                    a[stream] = 0
