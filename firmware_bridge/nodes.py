"""Per-node bookkeeping: lost frames, reboots and 32-bit timestamp wrap-around.

:class:`NodeTracker` fills ``timestamp_us``, ``lost_before`` and ``reset`` of each frame in arrival
order. Rules (one node, in order of precedence):

- first frame of a node: ``reset``;
- sequence numbers (32-bit, wrapping) advance by ``d``: ``d - 1`` frames were lost; ``d == 0`` is a
  duplicate (kept, counted); a step backwards is a reboot (``reset``); a forward gap above
  ``max_gap`` frames also starts a new stream (``reset``, the gap is not counted as lost);
- the device ``local_timestamp`` (32-bit microseconds, wraps every ~71.6 min) going backwards is a
  wrap when the modular step is below ``wrap_slack_us`` and a reboot otherwise (formats without a
  sequence number rely on this alone);
- ``timestamp_us`` is the unwrapped device time, monotonic within a stream; it restarts from the raw
  value at a reset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .frame import CsiFrame

_U32 = 1 << 32


@dataclass
class _NodeState:
    seq: Optional[int] = None
    raw_ts: Optional[int] = None
    ts_base: int = 0           # added to raw timestamps: multiples of 2^32 since the stream began
    frames: int = 0
    lost: int = 0
    reboots: int = 0
    gaps: int = 0
    wraps: int = 0
    duplicates: int = 0


class NodeTracker:
    """Fills per-node bookkeeping fields on frames, in arrival order.

    Parameters
    ----------
    max_gap : int
        Largest sequence gap (frames) still counted as loss; a larger gap starts a new stream.
    wrap_slack_us : int
        A backwards timestamp step is a wrap when the modular step is below this (microseconds).
    max_nodes : int
        Bound on remembered nodes (the oldest is forgotten beyond it).
    """

    def __init__(self, max_gap: int = 10_000, wrap_slack_us: int = 60_000_000, max_nodes: int = 1024) -> None:
        self.max_gap = max_gap
        self.wrap_slack_us = wrap_slack_us
        self.max_nodes = max_nodes
        self._nodes: dict[str, _NodeState] = {}

    def update(self, frame: CsiFrame) -> CsiFrame:
        """Fill ``frame``'s bookkeeping fields in place and return it."""
        st = self._nodes.get(frame.node)
        if st is None:
            if len(self._nodes) >= self.max_nodes:
                self._nodes.pop(next(iter(self._nodes)))
            st = self._nodes[frame.node] = _NodeState()
            reset = True
        else:
            reset = False
        lost = 0
        seq = frame.seq
        if not reset and seq is not None and st.seq is not None:
            d = (seq - st.seq) % _U32
            if d == 0:
                st.duplicates += 1
            elif d <= self.max_gap:
                lost = d - 1
            elif seq < st.seq:
                st.reboots += 1
                reset = True
            else:
                st.gaps += 1
                reset = True
        raw = frame.raw_timestamp
        if raw is not None:
            if reset or st.raw_ts is None:
                st.ts_base = 0
            elif raw < st.raw_ts:
                if (raw - st.raw_ts) % _U32 < self.wrap_slack_us:
                    st.ts_base += _U32
                    st.wraps += 1
                else:
                    st.reboots += 1
                    st.ts_base = 0
                    reset = True
                    lost = 0
            st.raw_ts = raw
            frame.timestamp_us = st.ts_base + raw
        if seq is not None:
            st.seq = seq
        st.frames += 1
        st.lost += lost
        frame.lost_before = lost
        frame.reset = reset
        return frame

    def stats(self) -> dict:
        """Per-node counters: frames, lost, reboots, gaps (long-gap resets), wraps, duplicates."""
        return {node: {"frames": s.frames, "lost": s.lost, "reboots": s.reboots, "gaps": s.gaps,
                       "wraps": s.wraps, "duplicates": s.duplicates} for node, s in self._nodes.items()}

    def totals(self) -> dict:
        keys = ("lost", "reboots", "gaps", "wraps", "duplicates")
        return {k: sum(getattr(s, k) for s in self._nodes.values()) for k in keys}
