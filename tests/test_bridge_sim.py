"""firmware_bridge.sim: deterministic simulated nodes, every wire format, a pty writer."""
from __future__ import annotations

import os

import numpy as np
import pytest

from firmware_bridge.framing import StreamDecoder
from firmware_bridge.sim import PtySimWriter, Simulator, canonical_format, encode


def _key(f):
    return (f.node, f.seq, f.raw_timestamp, f.rssi, f.iq.tobytes())


def test_same_seed_same_frames_other_seed_other_frames():
    a = [_key(f) for f in Simulator(nodes=3, seed=5).frames(30)]
    b = [_key(f) for f in Simulator(nodes=3, seed=5).frames(30)]
    c = [_key(f) for f in Simulator(nodes=3, seed=6).frames(30)]
    assert a == b and a != c


@pytest.mark.parametrize("fmt", ["esp-csi", "esp32-csi-tool", "esp-csi-c5c6", "ruview-binary"])
def test_every_format_decodes_back_to_the_simulated_frames(fmt):
    frames = list(Simulator(nodes=2, fmt=fmt, seed=1).frames(25))
    dec = StreamDecoder()
    got = dec.feed(b"".join(encode(f) for f in frames)) + dec.flush()
    assert [_key(f) for f in got] == [_key(f) for f in frames]
    assert dec.stats.rejected == {}


@pytest.mark.parametrize("layout, n", [("lltf", 128), ("ht20", 256), ("ht40", 384)])
def test_layouts_and_plausible_channel(layout, n):
    frames = list(Simulator(nodes=1, layout=layout, seed=2, loss=0.0).frames(50))
    assert {f.n_values for f in frames} == {n}
    iq = np.stack([f.iq for f in frames]).astype(float)
    amp = np.hypot(iq[:, 0::2], iq[:, 1::2])
    # Nulls stay zero, data subcarriers carry signal, and the moving reflector makes it vary in time.
    assert np.all(amp[:, 0] == 0) and amp[:, 1:27].mean() > 5
    assert amp[:, 1:27].std(axis=0).mean() > 0.5


def test_default_is_esp_csi_ht20_and_losses_show_as_sequence_gaps():
    sim = Simulator(nodes=2, seed=0, loss=0.2)
    frames = list(sim.frames(200))
    assert frames[0].fmt == "esp-csi" and frames[0].n_values == 256 and frames[0].sig_mode == 1
    seqs = [f.seq for f in frames if f.node == frames[0].node]
    gaps = np.diff(seqs)
    assert gaps.min() >= 1 and gaps.max() > 1


def test_bad_arguments_say_what_is_expected():
    with pytest.raises(ValueError, match="expected one of"):
        canonical_format("csv")
    with pytest.raises(ValueError, match="nodes"):
        Simulator(nodes=0)


def test_pty_writer_bounded_run_stops_by_itself():
    w = PtySimWriter(Simulator(nodes=2, seed=0, rate_hz=1000), count=10, realtime=False)
    try:
        assert os.path.exists(w.path)
        fd = os.open(w.path, os.O_RDONLY | os.O_NOCTTY)
        try:
            w.start()
            assert w.wait(10.0)
            data = b""
            while len(data) < w.bytes_written:
                data += os.read(fd, 65536)
        finally:
            os.close(fd)
        assert w.frames_written == 10 and len(w.written) == 10 and w.error is None
        dec = StreamDecoder()
        assert [_key(f) for f in dec.feed(data)] == [_key(f) for f in w.written]
    finally:
        w.stop()
