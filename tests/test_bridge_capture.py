"""firmware_bridge.capture: crash-safe record files."""
from __future__ import annotations

import pytest

from firmware_bridge.capture import HEAD_SIZE, KIND_META, RecordReader, RecordWriter, is_capture_file
from firmware_bridge.errors import CaptureError
from firmware_bridge.sources import FileFrames
from firmware_bridge.sim import Simulator, encode


def _write(path, payloads, meta=None):
    with RecordWriter(str(path), fsync=False, meta=meta) as w:
        for i, p in enumerate(payloads):
            w.write(p, host_time=100.0 + i, wall_time=1e9 + i)
    return path


def test_round_trip_keeps_bytes_and_times(tmp_path):
    p = _write(tmp_path / "a.rec", [b"abc", b"", b"\x00" * 1000], meta={"source": "sim://"})
    recs = list(RecordReader(str(p)))
    assert recs[0].kind == KIND_META
    data = [(r.payload, r.host_time, r.wall_time) for r in recs[1:]]
    assert data == [(b"abc", 100.0, 1e9), (b"", 101.0, 1e9 + 1), (b"\x00" * 1000, 102.0, 1e9 + 2)]
    assert is_capture_file(str(p))


def test_appending_continues_the_same_file(tmp_path):
    p = tmp_path / "a.rec"
    _write(p, [b"one"])
    _write(p, [b"two"])
    assert [r.payload for r in RecordReader(str(p))] == [b"one", b"two"]


def test_a_file_that_is_not_ours_is_refused(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"type,id,mac\n")
    with pytest.raises(CaptureError, match="not an edge-aether record file"):
        RecordWriter(str(p))
    with pytest.raises(CaptureError):
        list(RecordReader(str(p)))


def test_cut_at_every_offset_of_the_last_record_replays_all_earlier_ones(tmp_path):
    payloads = [bytes([i]) * (10 + i) for i in range(5)]
    full = _write(tmp_path / "full.rec", payloads).read_bytes()
    last_start = len(full) - (HEAD_SIZE + len(payloads[-1]))
    cut_path = tmp_path / "cut.rec"
    for cut in range(last_start, len(full)):
        cut_path.write_bytes(full[:cut])
        reader = RecordReader(str(cut_path))
        assert [r.payload for r in reader] == payloads[:-1], cut
        assert reader.stats["torn_tail_bytes"] == cut - last_start
    cut_path.write_bytes(full)
    assert [r.payload for r in RecordReader(str(cut_path))] == payloads


def test_a_damaged_record_in_the_middle_is_skipped(tmp_path):
    payloads = [b"first-record", b"second-record", b"third-record"]
    data = bytearray(_write(tmp_path / "a.rec", payloads).read_bytes())
    second = data.index(b"second-record")
    data[second] ^= 0xFF
    (tmp_path / "a.rec").write_bytes(bytes(data))
    reader = RecordReader(str(tmp_path / "a.rec"))
    assert [r.payload for r in reader] == [b"first-record", b"third-record"]
    assert reader.stats["skipped_bytes"] > 0


def test_replay_of_a_record_file_yields_the_frames_of_the_live_bytes(tmp_path):
    frames = list(Simulator(nodes=2, fmt="esp-csi", seed=4).frames(40))
    data = b"".join(encode(f) for f in frames)
    chunks = [data[i:i + 777] for i in range(0, len(data), 777)]  # records cut mid-line
    p = _write(tmp_path / "a.rec", chunks)
    got = [f for _, fs in FileFrames(str(p)).batches() for f in fs]
    assert [(f.node, f.seq, f.iq.tobytes()) for f in got] == [(f.node, f.seq, f.iq.tobytes()) for f in frames]
    # Each frame carries the recorded arrival time of the chunk that completed it.
    assert all(100.0 <= f.host_time <= 100.0 + len(chunks) for f in got)
