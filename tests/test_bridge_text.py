"""firmware_bridge.text: one line -> one frame or one named rejection."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.frame import FMT_CSI_TOOL, FMT_ESP_CSI, FMT_ESP_CSI_C6, CsiFrame
from firmware_bridge.framing import StreamDecoder
from firmware_bridge.sim import Simulator
from firmware_bridge.text import CsiLineDecoder, encode_line, header_line, parse_int8_list


def _frame(fmt: str, seed: int = 0) -> CsiFrame:
    return next(Simulator(nodes=1, fmt=fmt, seed=seed, loss=0.0).frames(1))


def test_real_capture_decodes_both_layouts_and_skips_only_the_header(csi_tool_capture):
    dec = StreamDecoder(source=str(csi_tool_capture))
    frames = dec.feed(csi_tool_capture.read_bytes(), 1.0) + dec.flush(1.0)
    assert dec.stats.rejected == {"header": 1}
    sizes = {f.n_values for f in frames}
    assert sizes == {128, 384}
    assert len(frames) == dec.stats.records == 299
    f0 = frames[0]
    assert f0.fmt == FMT_CSI_TOOL and f0.node == "mac:30:ae:a4:96:b7:00" and f0.seq is None
    assert (f0.rssi, f0.channel, f0.secondary_channel, f0.bandwidth, f0.sig_mode) == (-62, 8, 1, 1, 1)
    assert f0.raw_timestamp == 13861251 and f0.noise_floor == -95 and f0.first_word_invalid
    assert f0.iq[:4].tolist() == [-99, -48, 9, 0] and f0.iq[-2:].tolist() == [0, 0]


@pytest.mark.parametrize("fmt", [FMT_ESP_CSI, FMT_CSI_TOOL, FMT_ESP_CSI_C6])
@pytest.mark.parametrize("b64", [False, True])
def test_every_text_layout_round_trips(fmt, b64):
    f = _frame(fmt, seed=3)
    line = encode_line(f, fmt, base64_data=b64).rstrip()
    got = CsiLineDecoder().decode(line, 2.5)
    assert isinstance(got, CsiFrame), got
    assert np.array_equal(got.iq, f.iq) and got.iq.dtype == np.int8
    assert (got.node, got.seq, got.rssi, got.raw_timestamp, got.fmt, got.host_time) == (
        f.node, f.seq, f.rssi, f.raw_timestamp, fmt, 2.5)
    assert got.first_word_invalid == f.first_word_invalid


def test_header_line_is_counted_and_used_for_an_unknown_field_order():
    dec = CsiLineDecoder()
    assert dec.decode(b"type,seq,mac,rssi,channel,local_timestamp,gain,len,first_word,data") == "header"
    got = dec.decode(b'CSI_DATA,7,AA:BB:CC:DD:EE:FF,-40,11,123456,3,4,1,"[1,2,3,4]"')
    assert isinstance(got, CsiFrame)
    assert (got.seq, got.rssi, got.channel, got.raw_timestamp, got.first_word_invalid) == (7, -40, 11, 123456, True)
    assert got.mac == "aa:bb:cc:dd:ee:ff" and got.iq.tolist() == [1, 2, 3, 4]
    # A record with a known field count still decodes by count while that header is active.
    assert isinstance(dec.decode(encode_line(_frame(FMT_ESP_CSI)).rstrip()), CsiFrame)


def test_known_headers_name_their_layouts():
    for fmt in (FMT_ESP_CSI, FMT_CSI_TOOL, FMT_ESP_CSI_C6):
        dec = CsiLineDecoder()
        assert dec.decode(header_line(fmt).rstrip()) == "header"
        assert dec.header is not None and dec.header.fmt == fmt


def test_length_field_disagreeing_with_values_trusts_the_values():
    f = _frame(FMT_ESP_CSI)
    line = encode_line(f).rstrip().replace(b",256,0,\"[", b",384,0,\"[")
    got = CsiLineDecoder().decode(line)
    assert isinstance(got, CsiFrame) and got.n_values == 256 and got.extra["declared_len"] == 384


@pytest.mark.parametrize("line, reason", [
    (b"I (1234) wifi: station connected", "log_line"),
    (b"2,3,4]\"", "torn_line"),
    (b'CSI_DATA,1,aa:bb:cc:dd:ee:ff,-40,"[1,2,3', "torn_line"),
    (b'CSI_DATA,1,aa:bb:cc:dd:ee:ff,-40,"[1,2]"', "bad_field_count"),
    (b"CSI_DATA,1,2,3", "bad_field_count"),
    (b"type,id,mac,rssi", "header"),
])
def test_rejections_are_named(line, reason):
    assert CsiLineDecoder().decode(line) == reason


def test_spliced_log_text_and_bad_values_are_bad_arrays():
    good = encode_line(_frame(FMT_ESP_CSI)).rstrip()
    dec = CsiLineDecoder()
    assert dec.decode(good.replace(b"[", b"[1,I (55) boot: x,", 1)) == "bad_array"
    assert dec.decode(good.replace(b"[", b"[300,", 1)) == "bad_array"
    assert dec.decode(good.replace(b"[", b"[7,", 1)) == "bad_array"  # odd count
    assert dec.decode(good.replace(b"[", b"[--5,1,", 1)) == "bad_array"
    assert dec.decode(good.replace(b"24:0a", b"zz:0a", 1)) == "bad_field"


@pytest.mark.parametrize("body, expected", [
    (b"1 2 3 ", [1, 2, 3]), (b"1  2\t3", [1, 2, 3]), (b"-128,127", [-128, 127]), (b"1, 2, 3", [1, 2, 3]),
])
def test_int8_lists(body, expected):
    assert parse_int8_list(body).tolist() == expected


@pytest.mark.parametrize("body", [b"", b" ", b"1,-,2", b"128", b"1 x 2", b"1.5 2", b"1,,2", b"-"])
def test_bad_int8_lists(body):
    assert parse_int8_list(body) is None


@pytest.mark.parametrize("body, expected", [
    (b"1 2 3 ", [1, 2, 3]), (b"1,2,", [1, 2]), (b"1 x 2", None), (b"1,,2", None), (b"128", None),
])
def test_int8_lists_with_the_count_check_older_numpy_needs(monkeypatch, body, expected):
    from firmware_bridge import text

    monkeypatch.setattr(text, "_COUNT_VALUES", True)
    got = parse_int8_list(body)
    assert (got is None and expected is None) or got.tolist() == expected
