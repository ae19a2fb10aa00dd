"""firmware_bridge.sources: the iterators of frames, through real ttys, sockets and files."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest

from firmware_bridge.capture import RecordWriter
from firmware_bridge.errors import SourceError
from firmware_bridge.sim import PtySimWriter, Simulator, encode
from firmware_bridge.sources import ChunkQueue, FrameQueue, SerialSource, open_serial_port, open_source

DEADLINE = 20.0  # seconds; generous for loaded CI machines, never reached when things work


def _key(f):
    return (f.node, f.seq, f.raw_timestamp, f.iq.tobytes())


def _collect(src, n: int, timeout: float = DEADLINE) -> list:
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        out += src.read(0.2)
    return out


def _until(cond, timeout: float = DEADLINE, src=None) -> bool:
    """Poll ``cond`` while draining ``src`` (read(timeout) is the wait, no sleeping)."""
    end = time.monotonic() + timeout
    ev = threading.Event()
    while not cond():
        if time.monotonic() > end:
            return False
        if src is not None:
            src.read(0.05)
        else:
            ev.wait(0.02)
    return True


@pytest.mark.parametrize("coalesce", ["", "&coalesce_ms=0", "&coalesce_ms=20"])
def test_simulator_through_a_pty_and_the_serial_source_yields_exactly_the_written_frames(coalesce):
    with open_source(f"pty-sim://?nodes=3&rate=500&seed=7&count=60&realtime=false&loss=0.05{coalesce}") as src:
        got = list(src)  # ends by itself: bounded run, everything read back
        written = list(src.writer.written)
        st = src.stats()
    assert len(written) == 60
    assert [_key(f) for f in got] == [_key(f) for f in written]
    assert st["rejected"] == {} and st["frames"] == 60 and st["dropped_queue"] == 0
    assert all(f.source == src.path for f in got) and all(f.host_time > 0 for f in got)
    # Bookkeeping: simulated losses show up as lost_before.
    assert sum(f.lost_before for f in got) == st["lost"] > 0


def test_serial_port_vanishing_and_returning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="firmware_bridge.sources")
    link = str(tmp_path / "ttyESP")   # a udev-style stable name
    sim_a = Simulator(nodes=1, seed=1, loss=0.0)
    w1 = PtySimWriter(sim_a, count=10, realtime=False)
    os.symlink(w1.path, link)
    src = SerialSource(link, backoff=(0.01, 0.05))
    try:
        w1.start()
        first = _collect(src, 10)
        assert w1.wait(DEADLINE)  # ``written`` is complete once the writer is done
        assert [_key(f) for f in first] == [_key(f) for f in w1.written]
        # Unplug: the port disappears.
        w1.stop()
        os.unlink(link)
        assert _until(lambda: not src.connected.is_set(), src=src)
        # Frames sent while nobody can receive them are lost (here: never written at all).
        assert src.read(0.1) == []
        # Replug on a new tty under the same name.
        w2 = PtySimWriter(Simulator(nodes=1, seed=2, loss=0.0), count=12, realtime=False)
        try:
            os.symlink(w2.path, link)
            assert src.wait_connected(DEADLINE)
            w2.start()
            second = _collect(src, 12)
            assert w2.wait(DEADLINE)
            assert [_key(f) for f in second] == [_key(f) for f in w2.written]
            st = src.stats()
        finally:
            w2.stop()
        assert st["reconnects"] == 1 and st["disconnects"] == 1 and st["frames"] == 22
        assert not src.ended  # never ends by itself
        assert any("port lost" in r.getMessage() for r in caplog.records)
        assert any("reconnected" in r.getMessage() for r in caplog.records)
    finally:
        src.close()
    assert src.ended


def test_a_burst_of_records_is_read_in_one_wake_up():
    # Bytes already waiting when the reader wakes (here one write of several records) are taken by
    # one read and one decoder call: the reader's cost follows wake-ups, not records.
    master, slave = os.openpty()
    try:
        import tty

        tty.setraw(slave)
        sim = Simulator(nodes=4, seed=3, loss=0.0)
        burst = b"".join(encode(f, sim.fmt) for f in sim.frames(4))
        assert len(burst) < 4096  # one write into the pty, arriving at once
        with SerialSource(os.ttyname(slave), coalesce_ms=50) as src:
            assert src.coalesce_s == 0.05
            os.write(master, burst)
            got = _collect(src, 4)
            st = src.stats()
        assert len(got) == 4 and st["reads"] == 1 and st["records"] == 4
        assert len({f.host_time for f in got}) == 1  # stamped when the reader woke for the burst
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_coalescing_interval_is_a_clear_error(value):
    w = PtySimWriter(Simulator(nodes=1), count=1)
    try:
        with pytest.raises(SourceError, match="coalesce_ms"):
            open_source(f"serial://{w.path}?coalesce_ms={value}")
    finally:
        w.stop()


def test_opening_the_port_keeps_dtr_and_rts_as_the_kernel_set_them():
    w = PtySimWriter(Simulator(nodes=1), count=1)
    try:
        ser = open_serial_port(w.path, 921600, 0.05)
        assert ser.dtr is True and ser.rts is True
        ser.close()
    finally:
        w.stop()


def test_missing_serial_port_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open serial port"):
        open_source("serial:///dev/does-not-exist-ttyUSB9")
    with pytest.raises(SourceError, match="neither a file nor a serial device"):
        open_source("/dev/does-not-exist-ttyUSB9")


def test_udp_source_decodes_binary_frames_and_counts_siblings():
    frames = list(Simulator(nodes=2, fmt="ruview-binary", seed=3, loss=0.0).frames(20))
    with open_source("udp://127.0.0.1:0") as src:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for f in frames:
                tx.sendto(encode(f), src.address)
            tx.sendto(b"\x02\x00\x11\xc5" + bytes(28), src.address)  # vitals
            got = _collect(src, 20)
            assert _until(lambda: src.stats()["rejected"].get("non_csi_vitals") == 1, src=src)
        finally:
            tx.close()
    assert [_key(f) for f in got] == [_key(f) for f in frames]
    assert got[0].reset and got[0].node == "id:0"


def test_replay_of_a_recording_and_of_a_raw_capture(tmp_path):
    rec = str(tmp_path / "s.rec")
    with open_source("sim://?nodes=2&rate=1000&count=30&realtime=false&seed=9", record=RecordWriter(rec, fsync=False)) as live:
        live_frames = list(live)
    assert len(live_frames) == 30
    with open_source(f"replay://{rec}") as rep:
        replayed = list(rep)
    assert [(_key(f), f.host_time) for f in replayed] == [(_key(f), f.host_time) for f in live_frames]
    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"".join(encode(f) for f in live_frames))
    with open_source(str(raw)) as rep:
        assert [_key(f) for f in rep] == [_key(f) for f in live_frames]


def test_paced_replay_read_never_blocks_longer_than_asked(tmp_path):
    rec = str(tmp_path / "s.rec")
    w = RecordWriter(rec, fsync=False)
    f = next(Simulator(nodes=1).frames(1))
    w.write(encode(f), host_time=0.0)
    w.write(encode(f), host_time=30.0)  # 30 s later in recorded time
    w.close()
    with open_source(f"replay://{rec}?speed=1.0") as src:
        assert len(_collect(src, 1)) == 1
        t0 = time.monotonic()
        assert src.read(0.1) == []
        assert time.monotonic() - t0 < 1.0


def test_live_queue_drops_the_oldest_and_counts_it():
    q = FrameQueue(maxlen=3, drop_oldest=True)
    q.put(list(range(5)), threading.Event())
    assert q.get(0.0) == [2, 3, 4] and q.dropped == 2


def test_serial_chunk_queue_drops_the_oldest_bytes_counts_them_and_marks_the_gap():
    q = ChunkQueue(max_bytes=10)
    for i, data in enumerate([b"aaaaaa", b"bbbbbb", b"cccccc"]):
        q.put_chunk(data, float(i))
    # The torn line before the gap must be dropped: a marker comes first, then what survived.
    assert q.get(0.0) == [(None, 0.0), (b"cccccc", 2.0)]
    assert q.dropped == 2 and q.dropped_bytes == 12
    q.put_chunk(b"x" * 64, 3.0)  # one chunk larger than the bound is kept whole
    assert q.get(0.0) == [(b"x" * 64, 3.0)] and q.dropped == 2


def test_a_reader_thread_failure_reaches_the_consumer(monkeypatch):
    from firmware_bridge import sources

    def boom(self, *a, **k):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(sources.StreamDecoder, "feed", boom)
    with open_source("sim://?count=5&realtime=false") as src:
        with pytest.raises(SourceError, match="decoder bug"):
            list(src)


@pytest.mark.parametrize("url, msg", [
    ("ftp://x", "unknown source scheme"),
    ("sim://?nodes=4&colour=red", "unknown source option 'colour'"),
    ("sim://?nodes=many", "expected int"),
    ("sim://?fmt=csv", "bad simulator option"),
    ("replay:///no/such/file.rec", "no such file"),
])
def test_bad_urls_are_clear_errors(url, msg):
    with pytest.raises(SourceError, match=msg):
        open_source(url)


def test_sim_source_iterates_a_bounded_run_with_bookkeeping():
    with open_source("sim://?nodes=2&rate=2000&count=40&seed=1") as src:
        got = list(src)
        st = src.stats()
    assert len(got) == 40 and st["frames"] == 40
    assert sum(f.reset for f in got) == 2 and set(st["nodes"]) == {f.node for f in got}
    assert all(f.timestamp_us is not None for f in got)
