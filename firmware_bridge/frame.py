"""The decoded CSI frame, the unit every firmware_bridge source yields.

A frame carries what the wire told us (identity, sequence, radio metadata, the int8 buffer as sent)
and what the host added (arrival time; per-node bookkeeping fills ``timestamp_us``, ``lost_before``
and ``reset``). Nothing here interprets the buffer: ``firmware_bridge.layouts`` maps it to subcarriers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

#: Names of the wire formats, as found in ``CsiFrame.fmt``.
FMT_ESP_CSI = "esp-csi"              # esp-csi csi_recv, 25 fields
FMT_CSI_TOOL = "esp32-csi-tool"      # ESP32-CSI-Tool, 26 fields (+ host columns)
FMT_ESP_CSI_C6 = "esp-csi-c5c6"      # esp-csi on ESP32-C5/C6, 15 fields
FMT_RUVIEW = "ruview-binary"         # RuView binary frame, magic 0xC5110001


@dataclass(slots=True)
class CsiFrame:
    """One CSI record from one ESP32 node.

    Attributes
    ----------
    node : str
        Stable node key used for per-node state: ``"id:<n>"`` for binary frames, ``"mac:<aa:bb:..>"``
        for text records (lower case), prefixed by the source name when several sources are merged.
    iq : numpy.ndarray
        The int8 values exactly as sent, flat (pairs of two values per subcarrier, per antenna).
        Text formats print imaginary first; RuView binary frames send I (real) first.
    fmt : str
        One of the ``FMT_*`` names.
    seq : int or None
        Sequence number as sent by the node; ``None`` where the format has none (ESP32-CSI-Tool).
    rssi : int
        Received signal strength, dBm.
    host_time : float
        ``time.monotonic()`` seconds when the bytes that completed this frame arrived.
    raw_timestamp : int or None
        Device ``local_timestamp`` as sent, microseconds, 32-bit wrapping.
    timestamp_us : int or None
        Device timestamp unwrapped to 64-bit microseconds (per-node bookkeeping fills it).
    lost_before : int
        Frames lost just before this one, from the sequence gap (bookkeeping fills it).
    reset : bool
        True when this frame starts a new stream for its node (first frame, reboot, long gap).
    """

    node: str
    iq: np.ndarray
    fmt: str
    seq: Optional[int] = None
    rssi: int = 0
    host_time: float = 0.0
    raw_timestamp: Optional[int] = None
    timestamp_us: Optional[int] = None
    noise_floor: Optional[int] = None
    channel: Optional[int] = None
    sig_mode: Optional[int] = None           # 0 legacy (11b/g), 1 HT (11n)
    bandwidth: Optional[int] = None          # 0 HT20, 1 HT40 (esp-csi "cwb"/bandwidth field)
    secondary_channel: Optional[int] = None  # 0 none, 1 above, 2 below
    stbc: Optional[int] = None
    first_word_invalid: bool = False
    chip: Optional[str] = None               # "esp32", "esp32c5", "esp32c6", ... where known
    antennas: int = 1
    mac: Optional[str] = None
    node_id: Optional[int] = None
    source: Optional[str] = None             # port path, UDP peer or file the frame came from
    lost_before: int = 0
    reset: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def n_values(self) -> int:
        """Number of int8 values in the buffer (two per subcarrier per antenna)."""
        return int(self.iq.shape[0])
