"""The text wire formats (DESIGN.md section 5): one ``CSI_DATA`` record per line.

:class:`CsiLineDecoder` turns one complete line (without its line ending) into a :class:`CsiFrame` or
a rejection reason. It remembers the last header line it saw and uses it for records whose field count
matches; otherwise the field count picks the layout. Decoding never raises on bad bytes.

The int8 array is parsed with ``np.fromstring`` after a character-set check (``bytes.translate``), so
no Python loop runs per value: that is what makes 20,000+ lines/s on a Raspberry Pi core possible.
"""
from __future__ import annotations

import base64
import binascii
import operator
import re
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .frame import FMT_CSI_TOOL, FMT_ESP_CSI, FMT_ESP_CSI_C6, CsiFrame

#: Field names of each known layout, as their firmware prints them in the header line.
LAYOUT_FIELDS: dict[str, tuple[str, ...]] = {
    FMT_ESP_CSI: (
        "type", "id", "mac", "rssi", "rate", "sig_mode", "mcs", "bandwidth", "smoothing", "not_sounding",
        "aggregation", "stbc", "fec_coding", "sgi", "noise_floor", "ampdu_cnt", "channel",
        "secondary_channel", "local_timestamp", "ant", "sig_len", "rx_state", "len", "first_word", "data",
    ),
    FMT_CSI_TOOL: (
        "type", "role", "mac", "rssi", "rate", "sig_mode", "mcs", "bandwidth", "smoothing", "not_sounding",
        "aggregation", "stbc", "fec_coding", "sgi", "noise_floor", "ampdu_cnt", "channel",
        "secondary_channel", "local_timestamp", "ant", "sig_len", "rx_state", "real_time_set",
        "real_timestamp", "len", "CSI_DATA",
    ),
    FMT_ESP_CSI_C6: (
        "type", "seq", "mac", "rssi", "rate", "noise_floor", "fft_gain", "agc_gain", "channel",
        "local_timestamp", "sig_len", "rx_state", "len", "first_word", "data",
    ),
}

#: Header names (any layout) -> CsiFrame attribute. Integers only; ``mac`` is handled apart.
_INT_FIELDS = {
    "id": "seq", "seq": "seq", "rssi": "rssi", "sig_mode": "sig_mode", "bandwidth": "bandwidth",
    "cwb": "bandwidth", "stbc": "stbc", "noise_floor": "noise_floor", "channel": "channel",
    "secondary_channel": "secondary_channel", "local_timestamp": "raw_timestamp",
    "first_word": "first_word_invalid", "first_word_invalid": "first_word_invalid", "len": "len",
}
_DATA_NAMES = ("data", "csi_data")

_ARRAY_CHARS_DELETE = b"0123456789-, \t"
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TOKEN = b"CSI_DATA"
_HEADER = re.compile(rb"type(,[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*)+")


def is_header(line: bytes) -> bool:
    """True for a header line (``type,`` then field names only), which may name ``CSI_DATA`` too."""
    return line.startswith(b"type,") and _HEADER.fullmatch(line) is not None


@dataclass(frozen=True)
class TextLayout:
    """Where the fields of one layout are: ``data_index`` fields precede the data field."""

    fmt: str
    data_index: int
    ints: tuple[tuple[str, int], ...]   # (attribute, field index)
    mac_index: int
    from_header: bool = False

    def __post_init__(self) -> None:
        # Precomputed once per layout so a record costs one itemgetter call and one int() per field:
        # ``kw_attrs`` are passed to CsiFrame as they are; len, first_word_invalid and raw_timestamp
        # need a transformation and sit at fixed places after them (-1: the layout lacks the field).
        attrs = [a for a, _ in self.ints]
        special = ("len", "first_word_invalid", "raw_timestamp")
        kw = [(a, i) for a, i in self.ints if a not in special]
        order = kw + [(a, i) for a, i in self.ints if a in special]
        object.__setattr__(self, "int_attrs", tuple(attrs))
        object.__setattr__(self, "kw_attrs", tuple(a for a, _ in kw))
        names = [a for a, _ in order]
        for a in special:
            object.__setattr__(self, f"at_{a}", names.index(a) if a in names else -1)
        idx = [i for _, i in order]
        if len(idx) > 1:
            getter = operator.itemgetter(*idx)
        elif idx:
            getter = lambda f, i=idx[0]: (f[i],)  # noqa: E731 - itemgetter of one index returns a scalar
        else:
            getter = lambda f: ()  # noqa: E731
        object.__setattr__(self, "int_getter", getter)
        object.__setattr__(self, "n_fields", self.data_index)
        object.__setattr__(self, "default_fwi", self.fmt == FMT_CSI_TOOL)


def _layout_from_names(names: list[str], fmt: Optional[str], from_header: bool) -> Optional[TextLayout]:
    lower = [n.strip().lower() for n in names]
    data_index = None
    for i in range(len(lower) - 1, 0, -1):  # the last data-named column (CSI-Tool's type column is not it)
        if lower[i] in _DATA_NAMES:
            data_index = i
            break
    if data_index is None or "mac" not in lower[:data_index]:
        return None
    if fmt is None:
        if "role" in lower or "real_timestamp" in lower:
            fmt = FMT_CSI_TOOL
        elif "fft_gain" in lower or "agc_gain" in lower:
            fmt = FMT_ESP_CSI_C6
        else:
            fmt = FMT_ESP_CSI
    ints = []
    seen = set()
    for i, name in enumerate(lower[:data_index]):
        attr = _INT_FIELDS.get(name)
        if attr and attr not in seen:
            seen.add(attr)
            ints.append((attr, i))
    return TextLayout(fmt, data_index, tuple(ints), lower.index("mac"), from_header)


#: Known layouts by data-field index (the field count without the data field).
KNOWN_LAYOUTS: dict[int, TextLayout] = {}
for _fmt, _names in LAYOUT_FIELDS.items():
    _lay = _layout_from_names(list(_names), _fmt, False)
    KNOWN_LAYOUTS[_lay.data_index] = _lay


def strip_ansi(line: bytes) -> bytes:
    """Remove ANSI colour/control sequences (ESP-IDF logs colour their lines)."""
    return _ANSI.sub(b"", line) if b"\x1b" in line else line


def _fromstring_raises() -> bool:
    """Whether this numpy raises on unparsable text (newer) or stops early with a warning (older)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            np.fromstring(b"1,x", dtype=np.int64, sep=",")
        except ValueError:
            return True
    return False


#: Newer numpy raises on unparsable text, so a count of values is only needed with older ones.
_COUNT_VALUES = not _fromstring_raises()


def parse_int8_list(body: bytes) -> Optional[np.ndarray]:
    """Parse the inside of a bracketed list (comma- or space-separated) into int8, or ``None``."""
    if not body or body.translate(None, _ARRAY_CHARS_DELETE):
        return None
    spaced = body.find(b",", 0, 8) < 0  # the first value has at most 4 characters
    # numpy's whitespace separator reads "1 - 2" as [1, -2]; commas keep a lone "-" visible.
    text = body.strip().replace(b" ", b",") if spaced else body
    try:
        values = np.fromstring(text, dtype=np.int64, sep=",")
    except ValueError:
        values = None
    if values is not None and _COUNT_VALUES:
        expected = text.count(b",") + 1 - text.rstrip().endswith(b",")
        if values.shape[0] != expected:
            values = None
    if values is None or not values.shape[0]:
        if not spaced or (b",," not in text and b"\t" not in text):
            return None
        # Irregular whitespace (runs of spaces, tabs): normalise and try once more.
        text = b",".join(body.split())
        try:
            values = np.fromstring(text, dtype=np.int64, sep=",")
        except ValueError:
            return None
        if values.shape[0] != text.count(b",") + 1:
            return None
    if b"-," in text or text[-1] == 45:  # 45: "-"; numpy reads a lone "-" as 0
        return None
    iq = values.astype(np.int8)
    # Range check in one comparison of bytes (cheaper than two numpy reductions per line).
    if iq.astype(np.int64).tobytes() != values.tobytes():
        return None
    return iq


def _normalise_mac(raw: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff`` (lower case) from a MAC field, or ``""`` when it is not one."""
    try:
        mac = raw.decode("ascii").strip().lower()
        if len(mac) != 17 or mac.count(":") != 5:
            return ""
        bytes.fromhex(mac.replace(":", ""))
    except (UnicodeDecodeError, ValueError):
        return ""
    return mac


#: MAC fields remembered per decoder (a few nodes in practice; junk cannot grow it past this).
_MAC_CACHE = 256


class CsiLineDecoder:
    """Decode complete text lines into frames; remembers the latest header line.

    ``decode(line)`` returns a :class:`CsiFrame`, or a rejection reason string: ``header``,
    ``log_line``, ``torn_line``, ``bad_field_count``, ``bad_field``, ``bad_array``.
    """

    def __init__(self, source: Optional[str] = None) -> None:
        self.source = source
        self.header: Optional[TextLayout] = None
        self._macs: dict[bytes, str] = {}  # raw MAC field -> normalised MAC ("" when invalid)

    def decode(self, line: bytes, host_time: float = 0.0) -> Union[CsiFrame, str]:
        """Decode one line (ANSI codes and line-ending whitespace already stripped)."""
        if not line.startswith(_TOKEN):
            if is_header(line):
                lay = _layout_from_names(line.decode("ascii", "replace").split(","), None, True)
                if lay is not None:
                    self.header = lay
                return "header"
            return "torn_line" if _TOKEN in line or b"]" in line else "log_line"
        lb = line.find(b"[")
        if lb < 0:
            return self._decode_base64(line, host_time)
        rb = line.find(b"]", lb)
        if rb < 0:
            return "torn_line"
        end = lb - 1 if line[lb - 1] == 34 else lb  # 34: '"' (esp-csi quotes the list)
        if line[end - 1] != 44:  # 44: ","
            return "bad_field_count"
        fields = line[:end - 1].split(b",")
        n = len(fields)
        lay = self.header
        if lay is None or lay.data_index != n:
            lay = KNOWN_LAYOUTS.get(n)
            if lay is None:
                return "bad_field_count"
        iq = parse_int8_list(line[lb + 1:rb])
        if iq is None or iq.shape[0] & 1:
            return "bad_array"
        return self._frame(lay, fields, iq, host_time)

    def _layout(self, n_prefix: int) -> Optional[TextLayout]:
        h = self.header
        if h is not None and h.data_index == n_prefix:
            return h
        return KNOWN_LAYOUTS.get(n_prefix)

    def _decode_base64(self, line: bytes, host_time: float) -> Union[CsiFrame, str]:
        fields = line.split(b",")
        lay = self._layout(len(fields) - 1)
        if lay is None:
            return "bad_field_count"
        data = fields[lay.data_index].strip().strip(b'"')
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return "bad_array"
        if not raw or len(raw) % 2:
            return "bad_array"
        frame = self._frame(lay, fields[:lay.data_index], np.frombuffer(raw, dtype=np.int8).copy(), host_time)
        if isinstance(frame, CsiFrame):
            frame.extra["encoding"] = "base64"
        return frame

    def _frame(self, lay: TextLayout, fields: list, iq: np.ndarray, host_time: float) -> Union[CsiFrame, str]:
        raw_mac = fields[lay.mac_index]
        mac = self._macs.get(raw_mac)
        if mac is None:
            if len(self._macs) >= _MAC_CACHE:
                self._macs.clear()
            mac = self._macs[raw_mac] = _normalise_mac(raw_mac)
        if not mac:
            return "bad_field"
        try:
            ints = list(map(int, lay.int_getter(fields)))
        except ValueError:
            return "bad_field"
        fwi = ints[lay.at_first_word_invalid] if lay.at_first_word_invalid >= 0 else lay.default_fwi
        # ESP32-CSI-Tool does not print the first_word flag; on the original ESP32 the first word is
        # garbage (see the real capture's SOURCES.md), so that layout defaults to invalid.
        at_ts = lay.at_raw_timestamp
        frame = CsiFrame("mac:" + mac, iq, lay.fmt, host_time=host_time, mac=mac, first_word_invalid=bool(fwi),
                         source=self.source, raw_timestamp=ints[at_ts] & 0xFFFFFFFF if at_ts >= 0 else None,
                         **dict(zip(lay.kw_attrs, ints)))
        at_len = lay.at_len
        if at_len >= 0 and ints[at_len] != iq.shape[0]:
            frame.extra["declared_len"] = ints[at_len]
        return frame


# ---------------------------------------------------------------------------------------------
# Encoding (the simulator's side of the wire)

def encode_line(frame: CsiFrame, fmt: Optional[str] = None, base64_data: bool = False) -> bytes:
    """One text record for ``frame`` in layout ``fmt`` (default ``frame.fmt``), ending in CRLF.

    The field values not carried by :class:`CsiFrame` come from ``frame.extra`` or plausible defaults.
    """
    fmt = fmt or frame.fmt
    e = frame.extra
    ts = frame.raw_timestamp if frame.raw_timestamp is not None else 0
    common = [
        frame.mac or "00:00:00:00:00:00", frame.rssi, e.get("rate", 11), frame.sig_mode or 0, e.get("mcs", 0),
        frame.bandwidth or 0, e.get("smoothing", 1), e.get("not_sounding", 1), e.get("aggregation", 0),
        frame.stbc or 0, e.get("fec_coding", 0), e.get("sgi", 0), frame.noise_floor or -95,
        e.get("ampdu_cnt", 0), frame.channel or 0, frame.secondary_channel or 0, ts, e.get("ant", 0),
        e.get("sig_len", 100), e.get("rx_state", 0),
    ]
    n = frame.iq.shape[0]
    if base64_data:
        data = base64.b64encode(np.ascontiguousarray(frame.iq, dtype=np.int8).tobytes()).decode("ascii")
    if fmt == FMT_ESP_CSI:
        head = ["CSI_DATA", frame.seq or 0] + common + [n, int(frame.first_word_invalid)]
        tail = data if base64_data else '"[' + ",".join(map(str, frame.iq.tolist())) + ']"'
    elif fmt == FMT_CSI_TOOL:
        head = ["CSI_DATA", e.get("role", "STA")] + common + [0, f"{ts / 1e6:.6f}", n]
        tail = data if base64_data else "[" + " ".join(map(str, frame.iq.tolist())) + " ]"
    elif fmt == FMT_ESP_CSI_C6:
        head = ["CSI_DATA", frame.seq or 0, frame.mac or "00:00:00:00:00:00", frame.rssi, e.get("rate", 11),
                frame.noise_floor or -95, e.get("fft_gain", 0), e.get("agc_gain", 0), frame.channel or 0, ts,
                e.get("sig_len", 100), e.get("rx_state", 0), n, int(frame.first_word_invalid)]
        tail = data if base64_data else '"[' + ",".join(map(str, frame.iq.tolist())) + ']"'
    else:
        raise ValueError(f"unknown text format {fmt!r}; expected one of {sorted(LAYOUT_FIELDS)}")
    return (",".join(map(str, head)) + "," + tail + "\r\n").encode("ascii")


def header_line(fmt: str) -> bytes:
    """The header line a firmware prints for layout ``fmt`` (CRLF-terminated)."""
    return (",".join(LAYOUT_FIELDS[fmt]) + "\r\n").encode("ascii")
