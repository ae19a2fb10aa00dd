"""firmware_bridge.binary: RuView frames and their sibling magics."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from firmware_bridge.binary import (
    HEADER, MAGIC_CSI, check_sibling, csi_frame_length, decode_csi_packet, encode_csi_packet,
)
from firmware_bridge.frame import FMT_RUVIEW, CsiFrame


def _packet(node=3, ant=2, n=4, freq=2437, seq=77, rssi=-50, noise=-92, payload=None):
    iq = np.arange(2 * ant * n, dtype=np.int8) if payload is None else payload
    return HEADER.pack(MAGIC_CSI, node, ant, n, freq, seq, rssi, noise, 0) + iq.tobytes()


def test_decode_fields():
    f = decode_csi_packet(_packet(), 1.5, "udp:x")
    assert isinstance(f, CsiFrame)
    assert (f.node, f.node_id, f.antennas, f.seq, f.rssi, f.noise_floor, f.channel, f.fmt, f.host_time) == (
        "id:3", 3, 2, 77, -50, -92, 6, FMT_RUVIEW, 1.5)
    assert f.iq.tolist() == list(range(16)) and f.extra["freq_mhz"] == 2437


def test_round_trip():
    f = decode_csi_packet(_packet(node=9, ant=1, n=64, seq=0xFFFFFFFF))
    assert decode_csi_packet(encode_csi_packet(f)).seq == 0xFFFFFFFF
    assert encode_csi_packet(f) == _packet(node=9, ant=1, n=64, seq=0xFFFFFFFF)


@pytest.mark.parametrize("pkt, reason", [
    (b"\x01\x00\x11\xc5" + b"\x00" * 10, "short_packet"),
    (_packet()[:-1], "length_mismatch"),
    (_packet() + b"\x00", "length_mismatch"),
    (_packet(ant=0, n=4, payload=np.zeros(0, np.int8)), "bad_antenna_count"),
    (_packet(ant=5, n=1, payload=np.zeros(10, np.int8)), "bad_antenna_count"),
    (_packet(ant=1, n=0, payload=np.zeros(0, np.int8)), "bad_subcarrier_count"),
    (struct.pack("<I", 0xC5110002) + _packet()[4:], "bad_magic"),
])
def test_rejections(pkt, reason):
    assert decode_csi_packet(pkt) == reason


def test_frame_length_from_header():
    assert csi_frame_length(_packet(ant=2, n=4)[:20]) == 20 + 16
    assert csi_frame_length(_packet(ant=9, n=4)[:20]) == "bad_antenna_count"


def test_siblings_are_recognised_not_csi():
    vitals = struct.pack("<I", 0xC5110002) + bytes(28)
    assert check_sibling(vitals) == "non_csi_vitals"
    assert check_sibling(vitals[:-1]) == "length_mismatch"
    body = struct.pack("<I", 0xC5110006) + bytes(range(52))
    state = body + struct.pack("<I", zlib.crc32(body))
    assert check_sibling(state) == "non_csi_feature_state"
    assert check_sibling(state[:-1] + bytes([state[-1] ^ 1])) == "bad_checksum"
