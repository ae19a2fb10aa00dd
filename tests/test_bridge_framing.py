"""firmware_bridge.framing: chunks split anywhere, dirty serial output, bounded buffers, counts."""
from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.binary import MAGIC_TAIL
from firmware_bridge.framing import DatagramDecoder, StreamDecoder
from firmware_bridge.sim import Simulator, encode
from firmware_bridge.text import header_line

FORMATS = ["esp-csi", "esp32-csi-tool", "esp-csi-c5c6", "ruview-binary"]


def _frames(fmt: str, n: int = 6, seed: int = 0):
    return list(Simulator(nodes=2, fmt=fmt, seed=seed, loss=0.0, layout="lltf").frames(n))


_STREAMS = {fmt: (b"".join(encode(f) for f in _frames(fmt)), _frames(fmt)) for fmt in FORMATS}
_MIXED = b"".join(_STREAMS[f][0] for f in FORMATS)
_MIXED_FRAMES = [fr for f in FORMATS for fr in _STREAMS[f][1]]


def _key(f):
    return (f.node, f.seq, f.raw_timestamp, f.iq.tobytes())


def _balanced(dec: StreamDecoder) -> bool:
    s = dec.stats
    return s.records + sum(s.rejected.values()) == s.lines + s.packets


def _decode(data: bytes, cuts=(), max_line: int = 16384):
    dec = StreamDecoder(max_line=max_line)
    out, prev = [], 0
    for c in sorted(cuts) + [len(data)]:
        out += dec.feed(data[prev:c])
        prev = c
    return out + dec.flush(), dec


def test_every_single_split_point_gives_the_same_frames():
    data = _STREAMS["esp-csi"][0][:3000] + _STREAMS["ruview-binary"][0][:600]
    whole, _ = _decode(data)
    assert len(whole) >= 3
    for cut in range(0, len(data), 7):
        got, dec = _decode(data, [cut])
        assert [_key(f) for f in got] == [_key(f) for f in whole]
        assert _balanced(dec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(_MIXED)), max_size=40))
def test_any_chunking_of_a_valid_mixed_stream_decodes_everything(cuts):
    got, dec = _decode(_MIXED, cuts)
    assert [_key(f) for f in got] == [_key(f) for f in _MIXED_FRAMES]
    assert dec.stats.rejected == {} and _balanced(dec)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=10))
def test_any_bytes_never_raise_and_counts_add_up(data, cuts):
    got, dec = _decode(data, [c for c in cuts if c <= len(data)], max_line=512)
    assert _balanced(dec)
    assert len(dec._buf) <= dec.max_line


_garbage = st.binary(max_size=300).filter(lambda b: MAGIC_TAIL not in b and b"CSI_DATA" not in b)


@settings(max_examples=150, deadline=None)
@given(_garbage, st.sampled_from(FORMATS), st.booleans(), st.lists(st.integers(0, 4000), max_size=6))
def test_good_records_after_garbage_are_decoded(garbage, fmt, newline, cuts):
    data, frames = _STREAMS[fmt]
    stream = garbage + (b"\n" if newline else b"") + data
    got, dec = _decode(stream, [c for c in cuts if c <= len(stream)])
    # A binary frame's header may begin inside the garbage's last bytes only if the garbage holds a
    # magic, which the strategy excludes; so every record after the garbage must come out.
    assert [_key(f) for f in got][-len(frames):] == [_key(f) for f in frames]
    assert _balanced(dec)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FORMATS[:3]), st.integers(0, 5), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_corrupted_lines_are_counted_and_neighbours_survive(fmt, which, pos, junk):
    frames = _STREAMS[fmt][1]
    lines = [encode(f) for f in frames]
    bad = lines[which]
    at = pos % (len(bad) - 2)
    lines[which] = bad[:at] + junk.replace(b"\n", b"") + bad[at:]
    got, dec = _decode(b"".join(lines))
    keys = [_key(f) for f in got]
    for i, f in enumerate(frames):
        if i != which:
            assert _key(f) in keys
    assert len(got) + sum(dec.stats.rejected.values()) >= len(frames)
    assert _balanced(dec)


def test_dirty_serial_output_is_counted_by_reason():
    f1, f2, f3 = _frames("esp-csi", 3)
    good = [encode(f) for f in (f1, f2, f3)]
    torn = good[0][:40]
    stream = b"".join([
        b"ets Jun  8 2016 00:22:57\r\n",                                      # boot log
        b"\x1b[0;32mI (312) wifi:mode : sta (24:0a:c4:00:00:00)\x1b[0m\r\n",  # coloured log line
        header_line("esp-csi"),                                             # header naming CSI_DATA
        good[0].replace(b"\r\n", b"\r\r\n"),                                # CR CR LF
        torn,                                                               # torn record ...
        good[1],                                                            # ... and the next one on its line
        good[2][:200] + b"I (999) boot: spliced" + good[2][200:],           # log text inside an array
        b"\x1b[0m" + good[2],                                               # colour code before a record
    ])
    got, dec = _decode(stream)
    assert [_key(f) for f in got] == [_key(f) for f in (f1, f2, f3)]
    assert dec.stats.rejected == {"log_line": 2, "header": 1, "torn_line": 1, "bad_array": 1}
    assert _balanced(dec)


def test_over_long_line_is_dropped_not_accumulated():
    f = _frames("esp-csi", 1)[0]
    dec = StreamDecoder(max_line=5000)
    got = []
    for _ in range(50):
        got += dec.feed(b"x" * 1000)
        assert len(dec._buf) <= dec.max_line
    got += dec.feed(b"\n" + encode(f))
    assert len(got) == 1 and dec.stats.rejected == {"line_too_long": 1}
    # A record glued to the end of the junk (no newline between) is still found.
    dec = StreamDecoder(max_line=5000)
    got = []
    for _ in range(20):
        got += dec.feed(b"y" * 1000)
    got += dec.feed(encode(f)[:100])
    got += dec.feed(encode(f)[100:])
    assert len(got) == 1 and dec.stats.rejected == {"line_too_long": 1}


def test_binary_siblings_and_bad_headers_in_a_stream():
    csi = _STREAMS["ruview-binary"][0]
    vitals = struct.pack("<I", 0xC5110002) + bytes(28)
    bad = struct.pack("<IBBH", 0xC5110001, 1, 9, 4) + bytes(16)   # 9 antennas: not a frame
    got, dec = _decode(vitals + bad + csi + struct.pack("<I", 0xC5110005) + b"zz\n")
    assert len(got) == len(_STREAMS["ruview-binary"][1])
    assert dec.stats.rejected["non_csi_vitals"] == 1
    assert dec.stats.rejected["bad_antenna_count"] == 1
    assert dec.stats.rejected["non_csi_compressed_csi"] == 1
    assert _balanced(dec)


def test_flush_decodes_a_final_unterminated_record_and_drop_partial_counts_a_torn_one():
    line = encode(_frames("esp-csi", 1)[0]).rstrip()
    dec = StreamDecoder()
    assert dec.feed(line) == [] and len(dec.flush()) == 1
    dec.feed(line[:50])
    dec.drop_partial()
    assert dec.stats.rejected == {"torn_line": 1}


def test_datagrams_binary_and_text_per_peer():
    dec = DatagramDecoder()
    pkts = [encode(f) for f in _STREAMS["ruview-binary"][1]]
    got = [f for p in pkts for f in dec.feed(p, 1.0, "10.0.0.2:4000")]
    assert len(got) == len(pkts)
    assert dec.feed(pkts[0] + b"\x00", 1.0) == [] and dec.stats.rejected["length_mismatch"] == 1
    assert dec.feed(struct.pack("<I", 0xC5110003) + bytes(44)) == []
    assert dec.stats.rejected["non_csi_features"] == 1
    text = encode(_STREAMS["esp-csi"][1][0])
    assert len(dec.feed(text[:100], 1.0, "a")) == 0  # a text datagram is a whole line: torn
    assert len(dec.feed(text, 1.0, "a")) == 1
    d = dec.as_dict()
    assert d["records"] == len(pkts) + 1 and d["rejected"]["torn_line"] == 1
    assert np.array_equal(got[0].iq, _STREAMS["ruview-binary"][1][0].iq)
