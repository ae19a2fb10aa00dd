"""firmware_bridge.nodes: lost frames, reboots, timestamp wrap-around, per node."""
from __future__ import annotations

import numpy as np

from firmware_bridge.frame import CsiFrame
from firmware_bridge.nodes import NodeTracker

_IQ = np.zeros(4, np.int8)


def _f(node="mac:a", seq=None, ts=None) -> CsiFrame:
    return CsiFrame(node=node, iq=_IQ, fmt="esp-csi", seq=seq, raw_timestamp=ts)


def _run(tr, items, node="mac:a"):
    return [tr.update(_f(node, s, t)) for s, t in items]


def test_sequence_gaps_count_lost_frames():
    tr = NodeTracker()
    out = _run(tr, [(10, 0), (11, 100), (14, 400), (15, 500)])
    assert [f.lost_before for f in out] == [0, 0, 2, 0]
    assert [f.reset for f in out] == [True, False, False, False]
    assert tr.stats()["mac:a"]["lost"] == 2


def test_sequence_wraps_at_32_bits_without_loss():
    out = _run(NodeTracker(), [(0xFFFFFFFE, 0), (0xFFFFFFFF, 10), (0, 20), (2, 30)])
    assert [f.lost_before for f in out] == [0, 0, 0, 1] and not any(f.reset for f in out[1:])


def test_sequence_restart_is_a_reboot():
    tr = NodeTracker()
    out = _run(tr, [(500, 5_000_000), (501, 5_010_000), (0, 300_000), (1, 310_000)])
    assert [f.reset for f in out] == [True, False, True, False]
    assert [f.lost_before for f in out] == [0, 0, 0, 0]
    assert out[2].timestamp_us == 300_000 and out[3].timestamp_us == 310_000
    assert tr.stats()["mac:a"]["reboots"] == 1


def test_long_gap_starts_a_new_stream_and_duplicates_are_counted():
    tr = NodeTracker(max_gap=100)
    out = _run(tr, [(1, None), (1, None), (500, None)])
    assert [f.reset for f in out] == [True, False, True]
    assert tr.stats()["mac:a"]["duplicates"] == 1 and tr.stats()["mac:a"]["gaps"] == 1


def test_timestamp_wrap_is_unwrapped_to_64_bits():
    top = (1 << 32) - 20_000
    out = _run(NodeTracker(), [(1, top), (2, top + 10_000), (3, 5_000), (4, 15_000)])
    ts = [f.timestamp_us for f in out]
    assert ts == [top, top + 10_000, (1 << 32) + 5_000, (1 << 32) + 15_000]
    assert not any(f.reset for f in out[1:])


def test_timestamp_restart_without_sequence_is_a_reboot():
    # ESP32-CSI-Tool sends no sequence number: only the timestamp tells a reboot.
    tr = NodeTracker()
    out = _run(tr, [(None, 900_000_000), (None, 900_010_000), (None, 2_000_000)])
    assert [f.reset for f in out] == [True, False, True]
    assert out[2].timestamp_us == 2_000_000 and tr.totals()["reboots"] == 1


def test_nodes_are_independent_and_bounded():
    tr = NodeTracker(max_nodes=2)
    a = tr.update(_f("mac:a", 1))
    b = tr.update(_f("mac:b", 7))
    a2 = tr.update(_f("mac:a", 3))
    assert a.reset and b.reset and a2.lost_before == 1 and not a2.reset
    tr.update(_f("mac:c", 1))
    assert len(tr.stats()) == 2
