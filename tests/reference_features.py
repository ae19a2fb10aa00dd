"""Slow, obviously correct NumPy references for edge_aether.features.

Written from the recipe's words, not from the kernels: complex values per pair, numpy's abs,
angle and unwrap, a scalar cubic Hermite (Catmull-Rom tangents) evaluated point by point, numpy's
mean/std and polyfit. The temporal reference recomputes everything from the stored history at
every step (no running sums).
"""
from __future__ import annotations

import numpy as np

GRID = np.array(list(range(-28, 0)) + list(range(1, 29)))

LEGACY = [k for k in range(-26, 27) if k != 0]
HT20 = [k for k in range(-28, 29) if k != 0]
HT40 = [k for k in range(-58, 59) if abs(k) >= 2]
HE20 = [k for k in range(-122, 123) if abs(k) >= 2]


def table_subcarriers(n_values: int, secondary: int, ht40_forty: bool = True) -> dict:
    """Block name -> (offset in pairs, subcarrier of each pair in buffer order), from the ESP-IDF
    tables as printed (20 MHz blocks re-centred on the primary channel)."""
    def r(a, b):
        return list(range(a, b + 1))
    wrap = r(0, 31) + r(-32, -1)
    lltf = wrap if secondary == 0 else [k - 32 for k in r(0, 63)] if secondary == 2 else [k + 32 for k in r(-64, -1)]
    blocks = []
    if n_values in (128, 256, 376, 380, 384, 612):
        blocks.append(("lltf", lltf))
        if n_values == 256:
            blocks.append(("htltf", wrap if secondary == 0 else lltf))
        elif n_values == 376:
            blocks += [("htltf", [k + 32 for k in r(-62, -1)])] * 1 + [("stbc_htltf", [k + 32 for k in r(-62, -1)])]
        elif n_values == 380:
            blocks += [("htltf", [k - 32 for k in r(0, 62)]), ("stbc_htltf", [k - 32 for k in r(0, 62)])]
        elif n_values == 384 and secondary == 0:
            blocks += [("htltf", wrap), ("stbc_htltf", wrap)]
        elif n_values == 384:
            blocks.append(("htltf", r(0, 63) + r(-64, -1)))
        elif n_values == 612:
            blocks += [("htltf", r(0, 60) + r(-60, -1)), ("stbc_htltf", r(0, 60) + r(-60, -1))]
    elif n_values == 106:
        blocks.append(("lltf", r(0, 26) + r(-26, -1) if secondary == 0 else r(-26, 26)))
    elif n_values in (114, 228):
        idx = r(0, 28) + r(-28, -1) if secondary == 0 else r(-28, 28)
        blocks.append(("htltf", idx))
        if n_values == 228:
            blocks.append(("stbc_htltf", idx))
    elif n_values in (234, 468):
        blocks.append(("htltf", r(0, 58) + r(-58, -1)))
        if n_values == 468:
            blocks.append(("stbc_htltf", r(0, 58) + r(-58, -1)))
    elif n_values == 490:
        blocks.append(("heltf", r(0, 122) + r(-122, -1)))
    out, off = {}, 0
    for name, idx in blocks:
        out[name] = (off, idx)
        off += len(idx)
    assert 2 * off == n_values, (n_values, off)
    return out


def hermite_at(x, y, p):
    """Cubic Hermite with Catmull-Rom tangents through (x, y), evaluated at the scalar p;
    linear continuation of the end tangent outside [x0, x_last]."""
    n = len(x)

    def tangent(j):
        if j == 0:
            return (y[1] - y[0]) / (x[1] - x[0])
        if j == n - 1:
            return (y[-1] - y[-2]) / (x[-1] - x[-2])
        return (y[j + 1] - y[j - 1]) / (x[j + 1] - x[j - 1])

    if p <= x[0]:
        return y[0] + (p - x[0]) * tangent(0)
    if p >= x[-1]:
        return y[-1] + (p - x[-1]) * tangent(n - 1)
    j = max(i for i in range(n - 1) if x[i] <= p)
    h = x[j + 1] - x[j]
    t = (p - x[j]) / h
    return ((2 * t**3 - 3 * t**2 + 1) * y[j] + (t**3 - 2 * t**2 + t) * h * tangent(j)
            + (-2 * t**3 + 3 * t**2) * y[j + 1] + (t**3 - t**2) * h * tangent(j + 1))


def reference_features(values, knots_pairs, knots_sc, targets, imag_first=True, amplitude_only=False):
    """Per-frame features from the raw int8 values.

    knots_pairs/knots_sc: the buffer pair and subcarrier of each data subcarrier used, ascending;
    targets: the 56 grid points in the block's numbering. Returns float64 [56] or [112].
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1, 2)[np.asarray(knots_pairs)]
    h = v[:, 1] + 1j * v[:, 0] if imag_first else v[:, 0] + 1j * v[:, 1]
    amp = np.abs(h)
    phase = np.unwrap(np.angle(h))
    x = np.asarray(knots_sc, dtype=np.float64)
    a = np.array([max(0.0, hermite_at(x, amp, p)) for p in targets])
    ph = np.array([hermite_at(x, phase, p) for p in targets])
    sd = a.std()
    za = (a - a.mean()) / sd if sd > 1e-6 else np.zeros_like(a)
    if amplitude_only:
        return za
    slope, icept = np.polyfit(GRID.astype(np.float64), ph, 1)
    return np.concatenate([za, ph - (icept + slope * GRID)])


def knots_for(n_values, secondary, first_word_drop, ht40="primary"):
    """(pairs, subcarriers, targets) the recipe reads, derived from the table and the recipe text."""
    blocks = table_subcarriers(n_values, secondary)
    if "htltf" in blocks and n_values in (256, 376, 380, 114, 228) or (n_values == 384 and secondary == 0):
        name, kind = "htltf", "ht20"
    elif "heltf" in blocks:
        name, kind = "heltf", "he20"
    elif "htltf" in blocks:
        name, kind = "htltf", "ht40"
    else:
        name, kind = "lltf", "legacy"
    off, idx = blocks[name]
    data = {"ht20": HT20, "he20": HE20, "ht40": HT40, "legacy": LEGACY}[kind]
    pairs = [off + i for i, k in enumerate(idx) if k in data and not (first_word_drop and off + i < 2)]
    pairs.sort(key=lambda p: idx[p - off])
    sc = [idx[p - off] for p in pairs]
    if kind == "ht40":
        center = -32 if secondary == 1 else 32
        targets = GRID + center if ht40 == "primary" else 2 * GRID
    elif kind == "he20":
        targets = 4 * GRID
    else:
        targets = GRID
    return np.array(pairs), np.array(sc), targets.astype(np.float64)


class ReferenceNode:
    """Naive temporal stage: keeps every accepted per-frame vector and recomputes from scratch."""

    def __init__(self, hampel=False, lam=None, hold_max=0):
        self.hampel, self.lam, self.hold_max = hampel, lam, hold_max
        self.history = []       # raw per-frame vectors since the last reset
        self.cleaned = []       # after Hampel
        self.last = None
        self.pending = 0

    def push(self, x, ok, lost=0, reset=False):
        if reset:
            self.history, self.cleaned, self.last, self.pending = [], [], None, 0
        gap = self.pending + max(0, lost)
        if not ok:
            self.pending = gap + 1
            return []
        self.pending = 0
        rows = []
        if gap > 0 and self.last is not None and gap <= self.hold_max:
            rows += [self.last.copy() for _ in range(gap)]
        x = np.asarray(x, np.float64)
        self.history.append(x)
        v = x.copy()
        if self.hampel:
            win = np.array(self.history[-7:])
            if len(win) >= 3:
                med = np.median(win, axis=0)
                mad = np.median(np.abs(win - med), axis=0)
                out = np.abs(x - med) > 3.0 * 1.4826 * mad
                v = np.where(out, med, x)
        self.cleaned.append(v)
        if self.lam is not None:
            c = np.array(self.cleaned)
            w = self.lam ** np.arange(len(c) - 1, -1, -1)
            mean = (w[:, None] * c).sum(0) / w.sum()
            var = (w[:, None] * (c - mean) ** 2).sum(0) / w.sum()
            v = (v - mean) / np.sqrt(var + 1e-6)
        self.last = v.astype(np.float32)
        rows.append(self.last.copy())
        return rows
