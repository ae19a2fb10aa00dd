"""The RuView binary wire format (DESIGN.md section 5): one CSI frame per UDP datagram, little-endian.

``decode_csi_packet`` turns exactly one frame's bytes into a :class:`CsiFrame` or a rejection reason;
the framer (``firmware_bridge.framing``) uses :func:`classify_magic` and :func:`csi_frame_length` to
find frame boundaries when the same bytes arrive inside a serial stream. There is no checksum in a CSI
frame, so magic, counts and length are all we can validate.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional, Union

import numpy as np

from .frame import FMT_RUVIEW, CsiFrame

MAGIC_CSI = 0xC5110001
#: Sibling packets on the same port: magic -> (name, fixed length in bytes or None when unknown).
SIBLING_MAGICS: dict[int, tuple[str, Optional[int]]] = {
    0xC5110002: ("vitals", 32),
    0xC5110003: ("features", 48),
    0xC5110004: ("magic_0004", None),
    0xC5110005: ("compressed_csi", None),
    0xC5110006: ("feature_state", 60),
}
#: The three high bytes every RuView magic shares, as they appear on the wire (little-endian).
MAGIC_TAIL = b"\x00\x11\xc5"

HEADER = struct.Struct("<IBBHIIbbH")
HEADER_SIZE = HEADER.size  # 20
MAX_ANTENNAS = 4
#: Upper bound on subcarriers per antenna we accept (HT40 with all LTFs is 192); bounds the framer.
MAX_SUBCARRIERS = 512
MAX_CSI_FRAME = HEADER_SIZE + 2 * MAX_ANTENNAS * MAX_SUBCARRIERS


def classify_magic(magic: int) -> Optional[str]:
    """Return ``"csi"``, a sibling packet name, or ``None`` for a magic that is not RuView's."""
    if magic == MAGIC_CSI:
        return "csi"
    sib = SIBLING_MAGICS.get(magic)
    return sib[0] if sib else None


def csi_frame_length(header: bytes) -> Union[int, str]:
    """Total length of the CSI frame whose 20-byte header is given, or a rejection reason.

    The header must already start with the CSI magic.
    """
    _, _, ant, n, _, _, _, _, _ = HEADER.unpack_from(header, 0)
    if not 1 <= ant <= MAX_ANTENNAS:
        return "bad_antenna_count"
    if not 1 <= n <= MAX_SUBCARRIERS:
        return "bad_subcarrier_count"
    return HEADER_SIZE + 2 * ant * n


def decode_csi_packet(packet: bytes, host_time: float = 0.0, source: Optional[str] = None) -> Union[CsiFrame, str]:
    """Decode one RuView CSI frame (magic 0xC5110001) occupying exactly ``packet``.

    Returns
    -------
    CsiFrame or str
        The frame, or the rejection reason (``bad_magic``, ``short_packet``, ``bad_antenna_count``,
        ``bad_subcarrier_count``, ``length_mismatch``). Never raises on bad bytes.
    """
    if len(packet) < HEADER_SIZE:
        return "short_packet"
    magic, node_id, ant, n, freq, seq, rssi, noise, _ = HEADER.unpack_from(packet, 0)
    if magic != MAGIC_CSI:
        return "bad_magic"
    if not 1 <= ant <= MAX_ANTENNAS:
        return "bad_antenna_count"
    if not 1 <= n <= MAX_SUBCARRIERS:
        return "bad_subcarrier_count"
    if len(packet) != HEADER_SIZE + 2 * ant * n:
        return "length_mismatch"
    iq = np.frombuffer(packet, dtype=np.int8, offset=HEADER_SIZE).copy()
    return CsiFrame(
        node=f"id:{node_id}", iq=iq, fmt=FMT_RUVIEW, seq=seq, rssi=rssi, host_time=host_time,
        noise_floor=noise, channel=_freq_to_channel(freq), antennas=ant, node_id=node_id,
        source=source, extra={"freq_mhz": freq},
    )


def check_sibling(packet: bytes) -> str:
    """Validate a sibling packet (not CSI): returns its counter name, or a rejection reason."""
    magic = int.from_bytes(packet[:4], "little")
    name, size = SIBLING_MAGICS[magic]
    if size is not None and len(packet) != size:
        return "length_mismatch"
    if magic == 0xC5110006 and zlib.crc32(packet[:56]) != int.from_bytes(packet[56:60], "little"):
        return "bad_checksum"
    return "non_csi_" + name


def encode_csi_packet(frame: CsiFrame) -> bytes:
    """The RuView bytes for ``frame`` (inverse of :func:`decode_csi_packet`; used by the simulator)."""
    iq = np.ascontiguousarray(frame.iq, dtype=np.int8)
    ant = max(1, int(frame.antennas))
    n = iq.shape[0] // (2 * ant)
    if n * 2 * ant != iq.shape[0]:
        raise ValueError(f"iq has {iq.shape[0]} values; expected a multiple of 2*antennas = {2 * ant}")
    freq = int(frame.extra.get("freq_mhz", _channel_to_freq(frame.channel)))
    node_id = frame.node_id if frame.node_id is not None else 0
    head = HEADER.pack(MAGIC_CSI, node_id & 0xFF, ant, n, freq, (frame.seq or 0) & 0xFFFFFFFF,
                       int(frame.rssi), int(frame.noise_floor or 0), 0)
    return head + iq.tobytes()


def _freq_to_channel(freq: int) -> Optional[int]:
    if 2412 <= freq <= 2472:
        return (freq - 2407) // 5
    if freq == 2484:
        return 14
    if 5000 <= freq <= 5895:
        return (freq - 5000) // 5
    return None


def _channel_to_freq(channel: Optional[int]) -> int:
    if channel is None:
        return 0
    if 1 <= channel <= 13:
        return 2407 + 5 * channel
    if channel == 14:
        return 2484
    return 5000 + 5 * channel
