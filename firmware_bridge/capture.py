"""Crash-safe capture files: raw bytes as they arrived, with their arrival times.

File layout: an 8-byte file magic ``b"EAREC01\\n"``, then records, each

| size | field |
|---|---|
| 4 | record marker ``b"\\xeaREC"`` (lets a reader resync after a damaged record) |
| 1 | kind: 0 stream chunk, 1 metadata (UTF-8 JSON), 2 datagram (u8 peer length, peer, bytes) |
| 3 | reserved, zero |
| 4 | u32 payload length |
| 4 | u32 CRC-32 of everything after this field (times and payload) |
| 8 | f64 host monotonic time of arrival, seconds |
| 8 | f64 host wall-clock time of arrival, seconds since the epoch |
| n | payload |

Each record is written with one ``write`` and flushed (and by default ``fsync``-ed), so a power cut
loses at most the record being written. A reader verifies every record and stops at a torn tail
(short or failing its CRC), after trying to resync on the next marker.
"""
from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional

from .errors import CaptureError

FILE_MAGIC = b"EAREC01\n"
MARKER = b"\xeaREC"
_HEAD = struct.Struct("<4sB3xIIdd")
HEAD_SIZE = _HEAD.size  # 32
#: Largest record payload we write or accept (a reader never allocates more on a damaged length).
MAX_PAYLOAD = 1 << 20

KIND_CHUNK = 0
KIND_META = 1
KIND_DATAGRAM = 2


@dataclass(frozen=True)
class Record:
    """One capture record."""

    kind: int
    host_time: float
    wall_time: float
    payload: bytes

    @property
    def peer_and_data(self) -> tuple[str, bytes]:
        """For a datagram record: (peer, datagram bytes)."""
        n = self.payload[0]
        return self.payload[1:1 + n].decode("utf-8", "replace"), self.payload[1 + n:]


def is_capture_file(path: str) -> bool:
    """True when ``path`` starts with our file magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(FILE_MAGIC)) == FILE_MAGIC
    except OSError:
        return False


class RecordWriter:
    """Append records to a capture file (created with its magic when new or empty).

    Parameters
    ----------
    path : str
        File to append to; an existing file must be one of ours.
    fsync : bool
        ``fsync`` after every record (the crash-safety promise); turn off on media that cannot take it.
    meta : dict, optional
        Written as a metadata record first (e.g. the source URL).
    """

    def __init__(self, path: str, fsync: bool = True, meta: Optional[dict] = None) -> None:
        self.path = path
        self.fsync = fsync
        self.records = 0
        self.bytes = 0
        try:
            self._f: BinaryIO = open(path, "ab")
            if self._f.tell() == 0:
                self._f.write(FILE_MAGIC)
                self._f.flush()
            elif not is_capture_file(path):
                self._f.close()
                raise CaptureError(f"{path} exists and is not an edge-aether record file "
                                   f"(no {FILE_MAGIC!r} magic); choose a new file name")
        except OSError as e:
            raise CaptureError(f"cannot write record file {path}: {e.strerror or e}") from e
        if meta is not None:
            self.write(json.dumps(meta, sort_keys=True).encode("utf-8"), kind=KIND_META)

    def write(self, payload: bytes, host_time: Optional[float] = None, kind: int = KIND_CHUNK,
              wall_time: Optional[float] = None) -> None:
        """Append one record (bytes as they arrived at ``host_time``, monotonic seconds)."""
        if len(payload) > MAX_PAYLOAD:
            for i in range(0, len(payload), MAX_PAYLOAD):
                self.write(payload[i:i + MAX_PAYLOAD], host_time, kind, wall_time)
            return
        t = time.monotonic() if host_time is None else host_time
        w = time.time() if wall_time is None else wall_time
        body = struct.pack("<dd", t, w) + payload
        crc = zlib.crc32(body)
        rec = _HEAD.pack(MARKER, kind, len(payload), crc, t, w) + payload
        self._f.write(rec)
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.records += 1
        self.bytes += len(payload)

    def write_datagram(self, data: bytes, peer: str, host_time: Optional[float] = None) -> None:
        p = peer.encode("utf-8")[:255]
        self.write(bytes([len(p)]) + p + data, host_time, kind=KIND_DATAGRAM)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecordReader:
    """Iterate the valid records of a capture file; counts what it had to skip.

    ``stats`` after iteration: ``records``, ``skipped_bytes`` (damaged records resynced over) and
    ``torn_tail_bytes`` (an incomplete last record, as after a power cut).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.stats = {"records": 0, "skipped_bytes": 0, "torn_tail_bytes": 0}

    def __iter__(self) -> Iterator[Record]:
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise CaptureError(f"cannot read record file {self.path}: {e.strerror or e}") from e
        with f:
            if f.read(len(FILE_MAGIC)) != FILE_MAGIC:
                raise CaptureError(f"{self.path} is not an edge-aether record file (expected magic {FILE_MAGIC!r})")
            yield from self._records(f)

    def _records(self, f: BinaryIO) -> Iterator[Record]:
        # A sliding window of at most two maximal records: memory stays bounded on long captures.
        want = 2 * (HEAD_SIZE + MAX_PAYLOAD)
        data = b""
        pos = 0
        eof = False
        while True:
            if not eof and len(data) - pos < want // 2:
                more = f.read(want - (len(data) - pos))
                eof = not more
                data = data[pos:] + more
                pos = 0
            if pos >= len(data):
                return
            rec, size = _parse_at(data, pos)
            if rec is not None:
                self.stats["records"] += 1
                yield rec
                pos += size
                continue
            nxt = data.find(MARKER, pos + 1)
            if nxt < 0:
                if eof:
                    self.stats["torn_tail_bytes"] += len(data) - pos
                    return
                # Keep the last bytes in case a marker straddles the window edge.
                self.stats["skipped_bytes"] += len(data) - pos - (len(MARKER) - 1)
                pos = len(data) - (len(MARKER) - 1)
                continue
            self.stats["skipped_bytes"] += nxt - pos
            pos = nxt


def _parse_at(data: bytes, pos: int) -> tuple[Optional[Record], int]:
    if len(data) - pos < HEAD_SIZE:
        return None, 0
    marker, kind, length, crc, t, w = _HEAD.unpack_from(data, pos)
    if marker != MARKER or length > MAX_PAYLOAD or kind > KIND_DATAGRAM:
        return None, 0
    end = pos + HEAD_SIZE + length
    if end > len(data):
        return None, 0
    if zlib.crc32(data[pos + 16:end]) != crc:
        return None, 0
    return Record(kind, t, w, data[pos + HEAD_SIZE:end]), HEAD_SIZE + length


def read_records(path: str) -> Iterator[Record]:
    """Shorthand: the valid records of ``path``."""
    return iter(RecordReader(path))
