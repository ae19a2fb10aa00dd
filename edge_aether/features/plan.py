"""Per-layout resampling plans: which pairs to read and how they land on the 56-subcarrier grid.

A plan is computed once per (layout, first-word flag, HT40 mode) and cached. The resampling is a
fixed linear map from the block's data subcarriers to the grid, so it is stored as four taps per
grid point (indices and weights); the per-frame kernel only gathers and multiplies.

Interpolation: cubic Hermite with Catmull-Rom tangents, m_j = (y[j+1] - y[j-1]) / (x[j+1] - x[j-1])
(one-sided at the ends), on the block's data subcarriers as knots. On evenly spaced knots this is
exactly the Catmull-Rom spline; across the DC hole and a dropped first word the spacing adapts.
Beyond the outermost knot the end tangent is continued linearly: that fills +-27, +-28 of an LLTF
(52 data subcarriers, -26..26) and the outer edge of an HT40 primary half (2 subcarriers). The map
reproduces linear functions exactly, so a linear phase ramp survives resampling as a linear ramp
and the detrending removes it exactly.

Which block: the 20 MHz HT-LTF if present, else the HE-LTF (HE20, grid point k at HE subcarrier
4k: same frequency, spacing a quarter), else the HT40 HT-LTF (primary 20 MHz half, grid point k at
40 MHz subcarrier k + primary_center; or ``ht40="decimate"``: at 2k), else the LLTF. The STBC
HT-LTF is never used: it repeats the first HT-LTF's band.

The first word: on classic-MAC buffers (ESP32, -S2, -S3, -C3) pairs 0 and 1 are always dropped,
because text formats such as ESP32-CSI-Tool do not print ``first_word_invalid`` and the real
capture has garbage there on every row; on C5/C6 buffers only when the frame's flag says so.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from firmware_bridge.layouts import CsiLayout, LtfBlock

from .recipe import GRID_SIZE

#: Subcarrier index of each grid point: -28..-1, 1..28.
GRID = np.concatenate([np.arange(-28, 0), np.arange(1, 29)]).astype(np.int64)
GRID.setflags(write=False)
assert GRID.shape[0] == GRID_SIZE


class ResamplePlan(NamedTuple):
    """What the per-frame kernel needs for one layout (arrays read-only, shared between nodes)."""

    layout: str            # CsiLayout.name
    block: str             # name of the block read
    src_pairs: np.ndarray  # int64 [n_src]: buffer pair index of each knot, ascending subcarrier
    src_pos: np.ndarray    # float64 [n_src]: subcarrier index of each knot (block numbering)
    targets: np.ndarray    # float64 [56]: grid points in block numbering
    taps: np.ndarray       # int64 [56, 4]: knot indices
    weights: np.ndarray    # float64 [56, 4]


def choose_block(layout: CsiLayout) -> LtfBlock:
    """The block the default recipe reads (see the module docstring)."""
    for b in layout.blocks:
        if b.name == "htltf" and b.kind == "ht20":
            return b
    for name in ("heltf", "htltf", "lltf"):
        b = layout.block(name)
        if b is not None:
            return b
    raise AssertionError(f"layout {layout.name} has no usable block")


def target_positions(block: LtfBlock, ht40: str) -> np.ndarray:
    """Grid points (HT20 subcarriers -28..28) expressed in the block's subcarrier numbering."""
    k = GRID.astype(np.float64)
    if block.kind == "ht40":
        return k + block.primary_center if ht40 == "primary" else 2.0 * k
    if block.kind == "he20":
        return 4.0 * k
    return k


def hermite_matrix(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Dense [len(p), len(x)] matrix W with W @ y = the Hermite/Catmull-Rom interpolant at p."""
    n = x.shape[0]
    eye = np.eye(n)
    # tangents as linear maps of y: T[j] @ y = m_j
    T = np.zeros((n, n))
    T[0] = (eye[1] - eye[0]) / (x[1] - x[0])
    T[-1] = (eye[-1] - eye[-2]) / (x[-1] - x[-2])
    for j in range(1, n - 1):
        T[j] = (eye[j + 1] - eye[j - 1]) / (x[j + 1] - x[j - 1])
    W = np.zeros((p.shape[0], n))
    for r, pt in enumerate(p):
        if pt <= x[0]:
            W[r] = eye[0] + (pt - x[0]) * T[0]
        elif pt >= x[-1]:
            W[r] = eye[-1] + (pt - x[-1]) * T[-1]
        else:
            j = int(np.searchsorted(x, pt, side="right")) - 1
            h = x[j + 1] - x[j]
            t = (pt - x[j]) / h
            h00 = 2 * t**3 - 3 * t**2 + 1
            h10 = t**3 - 2 * t**2 + t
            h01 = -2 * t**3 + 3 * t**2
            h11 = t**3 - t**2
            W[r] = h00 * eye[j] + h10 * h * T[j] + h01 * eye[j + 1] + h11 * h * T[j + 1]
    return W


def _compact(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Four taps per row (every row of a Hermite map has at most four nonzero weights)."""
    m, n = W.shape
    taps = np.zeros((m, 4), np.int64)
    weights = np.zeros((m, 4), np.float64)
    for r in range(m):
        nz = np.flatnonzero(W[r] != 0.0)
        if nz.size == 0:
            continue
        lo = int(min(nz[0], n - 4))
        assert nz[-1] < lo + 4, "Hermite row with more than four taps"
        taps[r] = np.arange(lo, lo + 4)
        weights[r] = W[r, lo:lo + 4]
    return taps, weights


def build_plan(layout: CsiLayout, first_word_invalid: bool, ht40: str) -> ResamplePlan:
    """The resampling plan of one layout (uncached; see ``plan_for``)."""
    block = choose_block(layout)
    drop = bool(first_word_invalid) or layout.family == "classic"
    pairs, sc = block.data_pairs(drop)
    x = sc.astype(np.float64)
    targets = target_positions(block, ht40)
    taps, weights = _compact(hermite_matrix(x, targets))
    # keep only the knots the taps reach: the unwrap then starts at the first of them, which
    # changes the phase by a multiple of 2 pi, a constant the detrending removes
    lo, hi = int(taps.min()), int(taps.max())
    pairs, x, taps = pairs[lo:hi + 1].copy(), x[lo:hi + 1].copy(), taps - lo
    for a in (pairs, x, targets, taps, weights):
        a.setflags(write=False)
    return ResamplePlan(layout.name, block.name, pairs, x, targets, taps, weights)


_PLANS: dict = {}


def plan_for(layout: CsiLayout, first_word_invalid: bool, ht40: str) -> ResamplePlan:
    """Cached ``build_plan``; layouts are few, so the cache stays small."""
    key = (layout.name, layout.n_values, bool(first_word_invalid) and layout.family != "classic", ht40)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = build_plan(layout, first_word_invalid, ht40)
    return plan
