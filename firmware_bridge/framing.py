"""Incremental framing: byte chunks split at any point -> frames, with every rejection counted.

:class:`StreamDecoder` is what a serial port (or a file) feeds. It cuts the stream into text lines and,
where a RuView magic appears, binary packets; it is pure (no I/O, no clock) and its buffer is bounded:
an over-long line is dropped and counted, never accumulated. :class:`DatagramDecoder` does the same
for UDP, where each datagram is one packet (or a bunch of text lines from one peer).

Counting rule, checked by the property tests: every unit examined (a non-blank text line or line
fragment, or a binary packet candidate) ends as exactly one record or one rejection, so
``records + sum(rejected.values()) == lines + packets``.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Optional

from .binary import (
    HEADER_SIZE, MAGIC_CSI, MAX_CSI_FRAME, MAGIC_TAIL, SIBLING_MAGICS, check_sibling, csi_frame_length, decode_csi_packet,
)
from .frame import CsiFrame
from .text import CsiLineDecoder, is_header, strip_ansi

log = logging.getLogger(__name__)

#: Longest text line kept (a 384-value CSI-Tool line is about 1.7 kB; HT40 with STBC about 3.5 kB).
DEFAULT_MAX_LINE = 16384
_TOKEN = b"CSI_DATA"


class RejectLog:
    """Rate-limited warning about rejections: at most one log line per ``interval`` seconds."""

    def __init__(self, name: str, interval: float = 10.0) -> None:
        self.name = name
        self.interval = interval
        self._next = 0.0
        self._since = Counter()

    def note(self, reason: str) -> None:
        self._since[reason] += 1
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            log.info("%s: rejected %s", self.name, dict(self._since))
            self._since.clear()


class DecoderStats:
    """Counters shared by the decoders."""

    def __init__(self) -> None:
        self.records = 0
        self.lines = 0
        self.packets = 0
        self.bytes = 0
        self.rejected: Counter = Counter()

    def as_dict(self) -> dict:
        return {"records": self.records, "lines": self.lines, "packets": self.packets, "bytes": self.bytes,
                "rejected": dict(self.rejected)}


class StreamDecoder:
    """Feed byte chunks with :meth:`feed`; get the frames they complete.

    Parameters
    ----------
    source : str, optional
        Stored in each frame's ``source`` (port path, file name).
    max_line : int
        Bound on buffered bytes of one unfinished line or packet.
    """

    def __init__(self, source: Optional[str] = None, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.source = source
        self.max_line = max(max_line, MAX_CSI_FRAME)
        self.lines = CsiLineDecoder(source)
        self.stats = DecoderStats()
        self._buf = b""  # unconsumed bytes (bytes, not bytearray: slicing a line out is then one copy)
        self._discarding = False   # inside an over-long line already counted; drop to next newline
        self._log = RejectLog(f"decoder[{source}]")

    # -- public -------------------------------------------------------------------------------
    def feed(self, chunk: bytes, host_time: float = 0.0) -> list[CsiFrame]:
        """Append ``chunk`` (arrived at ``host_time``, monotonic seconds); return completed frames."""
        self.stats.bytes += len(chunk)
        buf = self._buf + bytes(chunk) if self._buf else bytes(chunk)
        out: list[CsiFrame] = []
        pos = self._consume(buf, out, host_time)
        self._buf = buf[pos:] if pos else buf
        if len(self._buf) > self.max_line:
            self._overflow(out, host_time)
        return out

    def flush(self, host_time: float = 0.0) -> list[CsiFrame]:
        """End of stream (or port lost): decode a final unterminated line, count any torn remainder."""
        out: list[CsiFrame] = []
        if self._buf and not self._discarding:
            rest = bytes(self._buf)
            if MAGIC_TAIL in rest:
                self._count_unit("packets", "torn_packet")
            else:
                self._line(rest, out, host_time)
        self._buf = b""
        self._discarding = False
        return out

    def drop_partial(self) -> None:
        """Forget a partial line (the port went away mid-record); counted as ``torn_line``."""
        if self._buf.strip() and not self._discarding:
            self._count_unit("lines", "torn_line")
        self._buf = b""
        self._discarding = False

    # -- internals ----------------------------------------------------------------------------
    def _reject(self, reason: str) -> None:
        self.stats.rejected[reason] += 1
        self._log.note(reason)

    def _count_unit(self, kind: str, reason: str) -> None:
        if kind == "lines":
            self.stats.lines += 1
        else:
            self.stats.packets += 1
        self._reject(reason)

    def _consume(self, buf: bytes, out: list, host_time: float) -> int:
        """Decode every complete unit in ``buf``; return the number of bytes consumed."""
        pos = 0
        n = len(buf)
        magic_at = self._find_magic(buf, 0)
        while pos < n:
            if magic_at is not None and magic_at < pos:
                magic_at = self._find_magic(buf, pos)
            nl = buf.find(b"\n", pos)
            if magic_at is not None and (nl < 0 or magic_at < nl):
                if magic_at > pos:
                    # Text before a binary packet: an unterminated fragment.
                    self._fragment(buf[pos:magic_at], out, host_time)
                    pos = magic_at
                used = self._packet(buf, pos, out, host_time)
                if used == 0:
                    return pos  # need more bytes
                pos += used
                continue
            if nl < 0:
                return pos
            if self._discarding:
                self._discarding = False
                seg = buf[pos:nl]
                i = seg.rfind(_TOKEN)
                if i >= 0:
                    self._line(seg[i:], out, host_time)
            else:
                self._line(buf[pos:nl], out, host_time)
            pos = nl + 1
        return pos

    @staticmethod
    def _find_magic(buf: bytes, start: int) -> Optional[int]:
        i = buf.find(MAGIC_TAIL, start + 1)
        while i >= 0:
            if 1 <= buf[i - 1] <= 6:
                return i - 1
            i = buf.find(MAGIC_TAIL, i + 1)
        return None

    def _fragment(self, seg: bytes, out: list, host_time: float) -> None:
        if self._discarding:
            self._discarding = False
            i = seg.rfind(_TOKEN)
            if i < 0:
                return
            seg = seg[i:]
        self._line(seg, out, host_time)

    def _line(self, raw: bytes, out: list, host_time: float) -> None:
        i = raw.rfind(_TOKEN)
        if i > 0:
            # Something precedes the last record start on this line: a colour code (harmless), or
            # junk such as a torn record or a log fragment. Resync at the record start; junk is one
            # unit, the record another. A header line names CSI_DATA too: it is not split.
            head = strip_ansi(raw[:i]).strip()
            if is_header(strip_ansi(raw).strip()):
                i = 0
            else:
                if head:
                    self._count_unit("lines", "torn_line")
                raw = raw[i:]
        line = strip_ansi(raw).strip()
        if not line:
            return
        self.stats.lines += 1
        res = self.lines.decode(line, host_time)
        if isinstance(res, str):
            self._reject(res)
        else:
            self.stats.records += 1
            out.append(res)

    def _packet(self, buf: bytes, pos: int, out: list, host_time: float) -> int:
        """Decode the packet at ``pos``; return bytes used, 0 if more bytes are needed."""
        avail = len(buf) - pos
        if avail < 4:
            return 0
        magic = int.from_bytes(buf[pos:pos + 4], "little")
        if magic == MAGIC_CSI:
            if avail < HEADER_SIZE:
                return 0
            total = csi_frame_length(buf[pos:pos + HEADER_SIZE])
            if isinstance(total, str):
                self._count_unit("packets", total)
                return 4  # resync after the magic
            if avail < total:
                return 0
            self.stats.packets += 1
            res = decode_csi_packet(buf[pos:pos + total], host_time, self.source)
            if isinstance(res, str):  # pragma: no cover - length already checked
                self._reject(res)
            else:
                self.stats.records += 1
                out.append(res)
            return total
        if magic in SIBLING_MAGICS:
            name, size = SIBLING_MAGICS[magic]
            if size is None:
                # Unknown length in a stream: count it and resync after the magic.
                self._count_unit("packets", "non_csi_" + name)
                return 4
            if avail < size:
                return 0
            self._count_unit("packets", check_sibling(buf[pos:pos + size]))
            return size
        self._count_unit("packets", "bad_magic")  # pragma: no cover - _find_magic only stops at RuView magics
        return 1

    def _overflow(self, out: list, host_time: float) -> None:
        """The unfinished unit exceeds ``max_line``: drop it, keeping a record start if one is inside."""
        buf = self._buf
        if not self._discarding:
            self._count_unit("lines", "line_too_long")
        i = buf.rfind(_TOKEN)
        if i > 0 and len(buf) - i <= self.max_line:
            self._buf = buf[i:]
            self._discarding = False
            return
        # Keep a few bytes so a token split across chunks survives; they are junk of the same line.
        self._buf = buf[len(buf) - (len(_TOKEN) - 1):]
        self._discarding = True


class DatagramDecoder:
    """Decode UDP datagrams: a binary packet per datagram, or text lines (kept per peer)."""

    def __init__(self, source: Optional[str] = None, max_peers: int = 64) -> None:
        self.source = source
        self.stats = DecoderStats()
        self._text: dict[str, StreamDecoder] = {}
        self._max_peers = max_peers
        self._log = RejectLog(f"udp[{source}]")

    def feed(self, datagram: bytes, host_time: float = 0.0, peer: Optional[str] = None) -> list[CsiFrame]:
        st = self.stats
        st.bytes += len(datagram)
        if len(datagram) >= 4 and datagram[1:4] == MAGIC_TAIL and 1 <= datagram[0] <= 6:
            st.packets += 1
            magic = int.from_bytes(datagram[:4], "little")
            if magic == MAGIC_CSI:
                res = decode_csi_packet(datagram, host_time, peer or self.source)
                if isinstance(res, str):
                    st.rejected[res] += 1
                    self._log.note(res)
                    return []
                st.records += 1
                return [res]
            reason = check_sibling(datagram)
            st.rejected[reason] += 1
            return []
        key = peer or ""
        dec = self._text.get(key)
        if dec is None:
            if len(self._text) >= self._max_peers:
                self._text.pop(next(iter(self._text)))
            dec = self._text[key] = StreamDecoder(peer or self.source)
        frames = dec.feed(datagram if datagram.endswith(b"\n") else datagram + b"\n", host_time)
        return frames

    def as_dict(self) -> dict:
        d = self.stats.as_dict()
        rej = Counter(d["rejected"])
        for dec in self._text.values():
            s = dec.stats
            d["records"] += s.records
            d["lines"] += s.lines
            d["packets"] += s.packets
            rej.update(s.rejected)
        d["rejected"] = dict(rej)
        return d
