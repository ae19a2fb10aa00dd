"""The featuriser's Python face: a stateful featuriser per node, and stateless batch functions.

``NodeFeaturiser.push(frame)`` is what the service calls for every frame of one node; it runs the
per-frame kernel and the temporal stage (two compiled calls, nothing allocated when ``out`` is
given). ``featurise_frames`` computes the per-frame features of many frames at once, grouped by
layout; ``NodeFeaturiser.push_many`` runs a node's frames through both stages in two calls and
gives exactly what pushing them one at a time gives.
"""
from __future__ import annotations

import logging
import threading
from typing import Iterable, NamedTuple, Optional, Sequence

import numpy as np

from firmware_bridge.frame import CsiFrame
from firmware_bridge.layouts import CsiLayout, layout_for

from ..errors import InputError
from . import kernels as K
from .plan import ResamplePlan, plan_for
from .recipe import DEFAULT_RECIPE, GRID_SIZE, HAMPEL_HALF_WINDOW, HAMPEL_SIGMAS, FeatureRecipe

_log = logging.getLogger("edge_aether.features")
_unknown_lock = threading.Lock()
_unknown_logged: set = set()

STATUS_NAMES = {K.OK: "ok", K.ZERO: "zero", K.SATURATED: "saturated", K.UNKNOWN_LAYOUT: "unknown_layout"}
_WINDOW = 2 * HAMPEL_HALF_WINDOW + 1


def _note_unknown(n_values: int) -> None:
    """Log an unknown layout once per value count per process, not per frame."""
    if n_values in _unknown_logged:
        return
    with _unknown_lock:
        if n_values in _unknown_logged:
            return
        _unknown_logged.add(n_values)
    _log.warning("CSI buffer with %d values per antenna matches no known layout: such frames are "
                 "counted (rejected_unknown_layout) and skipped", n_values)


def frame_layout(frame: CsiFrame) -> Optional[CsiLayout]:
    """The layout of a frame's first antenna, or None (unknown: counted and skipped)."""
    ant = frame.antennas if frame.antennas and frame.antennas > 0 else 1
    n = frame.iq.shape[0] // ant
    return layout_for(n, frame.sig_mode, frame.bandwidth, frame.secondary_channel, frame.stbc, frame.chip)


def _as_int8(iq: np.ndarray) -> np.ndarray:
    if iq.dtype == np.int8 and iq.ndim == 1 and iq.flags.c_contiguous:
        return iq
    a = np.asarray(iq)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InputError(f"CsiFrame.iq: found {a.dtype} array of shape {a.shape}, expected a flat int8 array")
    if a.size and (a.min() < -128 or a.max() > 127):
        raise InputError(f"CsiFrame.iq: values {a.min()}..{a.max()} do not fit int8; the decoder should "
                         "deliver the int8 values as sent")
    return np.ascontiguousarray(a, dtype=np.int8)


def _plan(frame: CsiFrame, recipe: FeatureRecipe) -> Optional[ResamplePlan]:
    lay = frame_layout(frame)
    if lay is None:
        _note_unknown(frame.iq.shape[0] // (frame.antennas if frame.antennas and frame.antennas > 0 else 1))
        return None
    return plan_for(lay, frame.first_word_invalid, recipe.ht40)


def featurise_iq(iq: np.ndarray, layout: CsiLayout, recipe: FeatureRecipe = DEFAULT_RECIPE,
                 first_word_invalid: bool = False, out: Optional[np.ndarray] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame features of a batch of buffers that share one layout (stateless).

    Parameters
    ----------
    iq : numpy.ndarray
        int8 [N, n_values] (or [n_values]): buffers as sent, first antenna.
    layout : CsiLayout
        Their layout (``firmware_bridge.layouts.layout_for``).
    recipe : FeatureRecipe
        Only the per-frame options apply here (I/Q order, amplitude only, HT40 mode).
    first_word_invalid : bool
        The frames' ``first_word_invalid`` flag (classic-MAC buffers always drop it).
    out : numpy.ndarray, optional
        float32 [N, in_dim] to write into.

    Returns
    -------
    (x, status) : (float32 [N, in_dim], int8 [N])
        status per frame: 0 ok, 1 all zero, 2 saturated. Rows are finite whatever the status.
    """
    a = np.asarray(iq)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.dtype != np.int8:
        raise InputError(f"iq: found {a.dtype} array of shape {a.shape}, expected int8 [N, n_values]")
    if a.shape[1] < layout.n_values:
        raise InputError(f"iq: found {a.shape[1]} values per frame, layout {layout.name} needs {layout.n_values}")
    a = np.ascontiguousarray(a)
    n = a.shape[0]
    if out is None:
        out = np.empty((n, recipe.in_dim), np.float32)
    elif out.shape != (n, recipe.in_dim) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise InputError(f"out: found {out.dtype} {out.shape}, expected contiguous float32 {(n, recipe.in_dim)}")
    status = np.empty(n, np.int8)
    plan = plan_for(layout, first_word_invalid, recipe.ht40)
    K.batch_features(a, plan.src_pairs, plan.taps, plan.weights, recipe.iq_order == "imag_first",
                     recipe.amplitude_only, out, status)
    return out, status


def featurise_frames(frames: Sequence[CsiFrame], recipe: FeatureRecipe = DEFAULT_RECIPE
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame features of many frames, of any mix of layouts (stateless, vectorised per layout).

    Frames of one layout are gathered into one int8 array and featurised by one compiled call.

    Returns
    -------
    (x, status) : (float32 [N, in_dim], int8 [N])
        status 0 ok, 1 all zero, 2 saturated, 3 unknown layout (that row is zeros). The temporal
        options of the recipe (Hampel, normalisation, hold) need a node's history: see
        ``NodeFeaturiser.push_many``.
    """
    frames = list(frames)
    n = len(frames)
    x = np.zeros((n, recipe.in_dim), np.float32)
    status = np.full(n, K.UNKNOWN_LAYOUT, np.int8)
    groups: dict = {}
    for i, fr in enumerate(frames):
        key = (fr.iq.shape[0], fr.antennas, fr.sig_mode, fr.bandwidth, fr.secondary_channel, fr.stbc,
               fr.first_word_invalid, fr.chip)
        g = groups.get(key)
        if g is None:
            g = groups[key] = []
        g.append(i)
    imag_first = recipe.iq_order == "imag_first"
    for idx in groups.values():
        plan = _plan(frames[idx[0]], recipe)
        if plan is None:
            continue
        need = 2 * int(plan.src_pairs.max()) + 2
        iq = np.stack([_as_int8(frames[i].iq)[:need] for i in idx])
        if len(idx) == n:
            K.batch_features(iq, plan.src_pairs, plan.taps, plan.weights, imag_first, recipe.amplitude_only,
                             x, status)
            continue
        xo = np.empty((len(idx), recipe.in_dim), np.float32)
        st = np.empty(len(idx), np.int8)
        K.batch_features(iq, plan.src_pairs, plan.taps, plan.weights, imag_first, recipe.amplitude_only, xo, st)
        x[idx] = xo
        status[idx] = st
    return x, status


class TemporalState(NamedTuple):
    """A node's running state, preallocated once and updated in place by the kernels.

    ``fstate`` packs, as float64: the Hampel window [7, D] (raw features), the exponentially
    weighted mean [D] and sum of squared deviations [D], the last vector emitted [D], the sum of
    weights [1] and median scratch [7]. ``istate`` packs, as int64: ring count, ring position,
    pending gap (rejected frames since the last accepted one), have-last flag, then the counters.
    """

    fstate: np.ndarray
    istate: np.ndarray

    @classmethod
    def new(cls, dim: int) -> "TemporalState":
        return cls(np.zeros(K.state_size(dim, _WINDOW)), np.zeros(4 + K.N_COUNTERS, np.int64))

    def clear(self) -> None:
        """Running state back to fresh; the counters are kept."""
        self.fstate[...] = 0.0
        self.istate[:4] = 0


class NodeFeaturiser:
    """Features of one ESP32 node's frames, in arrival order.

    Parameters
    ----------
    recipe : FeatureRecipe
        The recipe; ``recipe.id`` must match the model's (``check_recipe``).

    Notes
    -----
    A frame with ``reset=True`` clears the running state before it is used. A frame whose layout
    is unknown, or whose buffer is all zeros or saturated, is rejected (no row), counted, and
    never touches the running state; it counts as lost for the hold of the next accepted frame.
    Not thread-safe: one featuriser per node, fed from one thread.
    """

    def __init__(self, recipe: FeatureRecipe = DEFAULT_RECIPE) -> None:
        if not isinstance(recipe, FeatureRecipe):
            raise InputError(f"recipe: found {type(recipe).__name__}, expected FeatureRecipe")
        self.recipe = recipe
        d = recipe.in_dim
        self._dim = d
        self._imag_first = recipe.iq_order == "imag_first"
        self._amp_only = recipe.amplitude_only
        self._hampel = recipe.hampel
        self._lam = float(recipe.normalise) if recipe.normalise is not None else 0.0
        self._hold = recipe.hold_max
        self.max_rows = 1 + recipe.hold_max
        self._state = TemporalState.new(d)
        self._frames = 0
        self._scratch = np.zeros((2, 512), np.float64)   # >= largest plan's knots (245) + 56
        self._plans: dict = {}
        self._none = (np.zeros(1, np.int64), np.zeros((GRID_SIZE, 4), np.int64), np.zeros((GRID_SIZE, 4)))

    def reset(self) -> None:
        """Forget the running state (Hampel window, normalisation, last vector); counters are kept."""
        self._state.clear()

    def _plan_of(self, frame: CsiFrame) -> Optional[ResamplePlan]:
        key = (frame.iq.shape[0], frame.antennas, frame.sig_mode, frame.bandwidth, frame.secondary_channel,
               frame.stbc, frame.first_word_invalid, frame.chip)
        try:
            return self._plans[key]
        except KeyError:
            plan = self._plans[key] = _plan(frame, self.recipe)
            return plan

    def push(self, frame: CsiFrame, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Feature rows for one frame.

        Parameters
        ----------
        frame : CsiFrame
            The node's next frame (``lost_before`` and ``reset`` as set by per-node bookkeeping).
        out : numpy.ndarray, optional
            float32 [>= max_rows, in_dim], C-contiguous: rows are written there (no allocation).

        Returns
        -------
        numpy.ndarray
            float32 [m, in_dim] (a view of ``out`` when given): m = 1, or 1 + held copies of the
            last vector when frames were lost and the gap is at most ``hold_max``, or 0 when the
            frame is rejected (unknown layout, all zeros, saturated).
        """
        if out is None:
            out = np.empty((self.max_rows, self._dim), np.float32)
        elif (out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != self._dim
              or out.shape[0] < self.max_rows or not out.flags.c_contiguous):
            raise InputError(f"out: found {out.dtype} {out.shape}, expected contiguous float32 "
                             f"[>= {self.max_rows}, {self._dim}]")
        self._frames += 1
        plan = self._plan_of(frame)
        iq = frame.iq
        if iq.dtype != np.int8 or not iq.flags.c_contiguous:
            iq = _as_int8(iq)
        if plan is None:
            sp, taps, w = self._none
        else:
            sp, taps, w = plan.src_pairs, plan.taps, plan.weights
        s = self._state
        m = K.node_push(iq, sp, taps, w, self._imag_first, self._amp_only, plan is not None, frame.lost_before,
                        bool(frame.reset), self._hampel, HAMPEL_SIGMAS, self._lam, self._hold, _WINDOW,
                        s.fstate, s.istate, self._scratch, out)
        return out[:m]

    def push_many(self, frames: Iterable[CsiFrame]) -> np.ndarray:
        """Feature rows for a run of this node's frames: exactly the rows ``push`` would give, stacked."""
        frames = list(frames)
        x, status = featurise_frames(frames, self.recipe)
        lost = np.array([fr.lost_before for fr in frames], np.int64)
        reset = np.array([1 if fr.reset else 0 for fr in frames], np.uint8)
        out = np.empty((len(frames) * self.max_rows, self._dim), np.float32)
        self._frames += len(frames)
        s = self._state
        m = K.node_advance(x, status, lost, reset, self._hampel, HAMPEL_SIGMAS, self._lam, self._hold, _WINDOW,
                           s.fstate, s.istate, out)
        return out[:m]

    def stats(self) -> dict:
        """Counters since construction: frames seen, rows emitted and held, rejections by reason."""
        c = self._state.istate[4:]
        return {
            "frames": self._frames,
            "emitted": int(c[K.C_EMITTED]),
            "held": int(c[K.C_HELD]),
            "gaps_unfilled": int(c[K.C_GAP_UNFILLED]),
            "resets": int(c[K.C_RESETS]),
            "rejected_zero": int(c[K.C_ZERO]),
            "rejected_saturated": int(c[K.C_SATURATED]),
            "rejected_unknown_layout": int(c[K.C_UNKNOWN]),
        }


def prepare(recipe: FeatureRecipe = DEFAULT_RECIPE) -> None:
    """Compile the kernels (a warm-up before the service reports ready): one synthetic frame."""
    fr = CsiFrame(node="prepare", iq=np.ones(128, np.int8), fmt="esp-csi")
    NodeFeaturiser(recipe).push(fr)
    featurise_frames([fr], recipe)


__all__ = ["NodeFeaturiser", "TemporalState", "featurise_frames", "featurise_iq", "frame_layout",
           "prepare", "STATUS_NAMES", "GRID_SIZE"]
