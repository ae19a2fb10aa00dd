"""Numba kernels of the featuriser: one frame (worker), a batch of frames (orchestrator), and the
per-node temporal stage (Hampel, running normalisation, holding over lost frames).

Kernels trust their inputs; the wrappers in ``node.py`` validate once. Everything is computed in
float64 and written as float32; nothing here allocates per frame (scratch comes from the caller).
"""
from __future__ import annotations

import math

import numpy as np

from ..jit import kernel

# status of a frame, as returned by ``frame_features``
OK = 0
ZERO = 1            # every value read is zero: no channel estimate
SATURATED = 2       # half or more of the values read are at the int8 rails
UNKNOWN_LAYOUT = 3  # set by the wrappers: the kernel never sees such a frame

# counters of ``node_advance`` (indices into its int64 counters array)
C_EMITTED = 0       # rows emitted for accepted frames
C_HELD = 1          # rows emitted as copies of the last vector over lost frames
C_GAP_UNFILLED = 2  # gaps not filled (no previous vector, hold off, or longer than hold_max)
C_ZERO = 3
C_SATURATED = 4
C_UNKNOWN = 5
C_RESETS = 6
N_COUNTERS = 7

# meta of the temporal state (indices into its int64 meta array)
M_RING_COUNT = 0
M_RING_POS = 1
M_PENDING = 2       # frames rejected since the last accepted one: they widen the next gap
M_HAVE_LAST = 3

_TWO_PI = 2.0 * math.pi
_AMP_STD_FLOOR = 1e-6   # int8 units: a flatter amplitude profile z-scores to zeros, not noise
_NORM_EPS = 1e-6


@kernel
def frame_features(iq, src_pairs, taps, weights, imag_first, amp_only, amp, ph, out):
    """Feature vector of one frame.

    iq int8 [n_values]; src_pairs int64 [n]; taps int64 [56, 4]; weights float64 [56, 4];
    amp, ph float64 scratch (>= n + 56); out float32 [56] or [112] written. Returns the frame status.
    """
    n = src_pairs.shape[0]
    g = taps.shape[0]
    n_zero = 0
    n_rail = 0
    prev_raw = 0.0
    corr = 0.0
    for i in range(n):
        p = 2 * src_pairs[i]
        a = np.float64(iq[p])
        b = np.float64(iq[p + 1])
        if imag_first:
            im = a
            re = b
        else:
            re = a
            im = b
        if a == 0.0 and b == 0.0:
            n_zero += 1
        if abs(a) >= 127.0:
            n_rail += 1
        if abs(b) >= 127.0:
            n_rail += 1
        amp[i] = math.sqrt(re * re + im * im)
        raw = math.atan2(im, re)
        # unwrap across subcarriers, exactly as numpy.unwrap does
        if i > 0:
            d = raw - prev_raw
            if abs(d) >= math.pi:
                dm = (d + math.pi) % _TWO_PI - math.pi
                if dm == -math.pi and d > 0.0:
                    dm = math.pi
                corr += dm - d
        prev_raw = raw
        ph[i] = raw + corr
    status = OK
    if n_zero == n:
        status = ZERO
    elif n_rail >= n:
        status = SATURATED

    # resample onto the grid; amplitude z-scored, phase detrended (least squares on the grid)
    s = 0.0
    for r in range(g):
        v = 0.0
        for q in range(4):
            v += weights[r, q] * amp[taps[r, q]]
        if v < 0.0:
            v = 0.0
        amp[n + r] = v
        s += v
    mean = s / g
    ss = 0.0
    for r in range(g):
        dv = amp[n + r] - mean
        ss += dv * dv
    std = math.sqrt(ss / g)
    if std > _AMP_STD_FLOOR:
        inv = 1.0 / std
        for r in range(g):
            out[r] = (amp[n + r] - mean) * inv
    else:
        for r in range(g):
            out[r] = 0.0
    if amp_only:
        return status
    # grid k = -28..-1, 1..28: sum k = 0, so the trend is mean + slope * k with slope = sum(k y)/sum(k^2)
    sy = 0.0
    sky = 0.0
    skk = 0.0
    half = g // 2
    for r in range(g):
        v = 0.0
        for q in range(4):
            v += weights[r, q] * ph[taps[r, q]]
        amp[n + r] = v      # the grid amplitudes are written out: reuse their scratch
        k = r - half if r < half else r - half + 1
        sy += v
        sky += k * v
        skk += k * k
    c = sy / g
    slope = sky / skk
    for r in range(g):
        k = r - half if r < half else r - half + 1
        out[g + r] = amp[n + r] - c - slope * k
    return status


@kernel
def batch_features(iq, src_pairs, taps, weights, imag_first, amp_only, out, status):
    """``frame_features`` over the rows of iq [N, n_values] into out [N, in_dim]; status int8 [N]."""
    n = src_pairs.shape[0]
    m = n + taps.shape[0]
    amp = np.empty(m, np.float64)
    ph = np.empty(m, np.float64)
    for f in range(iq.shape[0]):
        status[f] = frame_features(iq[f], src_pairs, taps, weights, imag_first, amp_only, amp, ph, out[f])


@kernel
def _median_small(buf, n):
    """Median of buf[:n] (n small), sorting buf[:n] in place."""
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    h = n // 2
    if n % 2 == 1:
        return buf[h]
    return 0.5 * (buf[h - 1] + buf[h])


# layout of the packed float state of a node (see ``state_size``): ring [W, D], mean [D],
# s2 [D], last [D], wsum [1], work [W]
def state_size(dim: int, wlen: int) -> int:
    """Length of the packed float64 state of one node."""
    return wlen * dim + 3 * dim + 1 + wlen


@kernel
def _state_views(fstate, dim, wlen):
    o = wlen * dim
    ring = fstate[:o].reshape((wlen, dim))
    mean = fstate[o:o + dim]
    s2 = fstate[o + dim:o + 2 * dim]
    last = fstate[o + 2 * dim:o + 3 * dim]
    wsum = fstate[o + 3 * dim:o + 3 * dim + 1]
    work = fstate[o + 3 * dim + 1:o + 3 * dim + 1 + wlen]
    return ring, mean, s2, last, wsum, work


@kernel
def _advance_one(x, st, lost, reset, hampel, sigmas, lam, hold_max, wlen, fstate, istate, out, row):
    """Temporal stage for one frame (features x float32 [D], status st); rows written at out[row:].

    istate int64 [4 + N_COUNTERS]: meta then counters. Returns the number of rows written.
    """
    dim = x.shape[0]
    ring, mean, s2, last, wsum, work = _state_views(fstate, dim, wlen)
    c0 = 4
    if reset:
        istate[M_RING_COUNT] = 0
        istate[M_RING_POS] = 0
        istate[M_PENDING] = 0
        istate[M_HAVE_LAST] = 0
        wsum[0] = 0.0
        for d in range(dim):
            mean[d] = 0.0
            s2[d] = 0.0
        istate[c0 + C_RESETS] += 1
    gap = istate[M_PENDING] + (lost if lost > 0 else 0)
    if st != OK:
        if st == ZERO:
            istate[c0 + C_ZERO] += 1
        elif st == SATURATED:
            istate[c0 + C_SATURATED] += 1
        else:
            istate[c0 + C_UNKNOWN] += 1
        istate[M_PENDING] = gap + 1
        return 0
    istate[M_PENDING] = 0
    rows = 0
    if gap > 0:
        if istate[M_HAVE_LAST] == 1 and gap <= hold_max:
            for c in range(gap):
                for d in range(dim):
                    out[row + rows, d] = last[d]
                rows += 1
            istate[c0 + C_HELD] += gap
        else:
            istate[c0 + C_GAP_UNFILLED] += 1
    cnt = istate[M_RING_COUNT]
    if hampel:
        pos = istate[M_RING_POS]
        for d in range(dim):
            ring[pos, d] = x[d]
        istate[M_RING_POS] = (pos + 1) % wlen
        cnt = min(cnt + 1, wlen)
        istate[M_RING_COUNT] = cnt
    inv_w = 0.0
    if lam > 0.0:
        wsum[0] = lam * wsum[0] + 1.0
        inv_w = 1.0 / wsum[0]
    r = row + rows
    for d in range(dim):
        v = np.float64(x[d])
        if hampel and cnt >= 3:
            for i in range(cnt):
                work[i] = ring[i, d]
            med = _median_small(work, cnt)
            for i in range(cnt):
                work[i] = abs(ring[i, d] - med)
            mad = _median_small(work, cnt)
            if abs(v - med) > sigmas * 1.4826 * mad:
                v = med
        if lam > 0.0:
            dv = v - mean[d]
            mean[d] += dv * inv_w
            s2[d] = lam * s2[d] + dv * (v - mean[d])
            var = s2[d] * inv_w
            if var < 0.0:
                var = 0.0
            v = (v - mean[d]) / math.sqrt(var + _NORM_EPS)
        out[r, d] = v
        last[d] = out[r, d]
    istate[M_HAVE_LAST] = 1
    istate[c0 + C_EMITTED] += 1
    return rows + 1


@kernel
def node_advance(x, status, lost, reset, hampel, sigmas, lam, hold_max, wlen, fstate, istate, out):
    """Temporal stage over frames of one node, in order: x float32 [N, D], status int8 [N], lost
    int64 [N], reset uint8 [N]; out float32 [>= N * (1 + hold_max), D]. Returns the rows written."""
    rows = 0
    for f in range(x.shape[0]):
        rows += _advance_one(x[f], status[f], lost[f], reset[f] != 0, hampel, sigmas, lam, hold_max, wlen,
                             fstate, istate, out, rows)
    return rows


@kernel
def node_push(iq, src_pairs, taps, weights, imag_first, amp_only, known, lost, reset, hampel, sigmas, lam,
              hold_max, wlen, fstate, istate, scratch, out):
    """One frame through both stages in one call. scratch float64 [2, >= n_knots + 56]; out float32
    [>= 1 + hold_max, D]. The per-frame features are computed into out's last row, which held rows
    (written first, at most hold_max of them) never reach. Returns the rows written."""
    x = out[out.shape[0] - 1]
    st = UNKNOWN_LAYOUT
    if known:
        st = frame_features(iq, src_pairs, taps, weights, imag_first, amp_only, scratch[0], scratch[1], x)
    return _advance_one(x, st, lost, reset, hampel, sigmas, lam, hold_max, wlen, fstate, istate, out, 0)
