"""Sources of frames: serial port, UDP, replay, simulator, simulator on a pseudo-terminal.

Every source is a plain iterator of :class:`CsiFrame` and also offers ``read(timeout)`` (what arrived
within ``timeout`` seconds, possibly nothing), ``stats()``, ``close()`` and the context-manager
protocol. A reader thread does the I/O and hands its results over through a bounded queue. Most
sources decode in that thread and queue frames; the serial source queues the raw byte chunks it read
and decodes them in the consumer's ``read`` (one thread wake-up per batch, decoder caches warm in the
thread that uses the frames). Live sources (serial, UDP, real-time simulator) drop the oldest frame
(serial: chunk) when the consumer falls behind, and count it; file replays and unpaced simulations
wait instead.
A fatal error in the reader thread is raised to the consumer by ``read``/``next`` as a
:class:`SourceError`. Create sources with :func:`open_source` from a URL.
"""
from __future__ import annotations

import json
import logging
import os
import select
import socket
import stat
import threading
import time
from collections import Counter, deque
from typing import Any, Callable, Iterator, Optional, Union
from urllib.parse import parse_qsl, urlsplit

from .capture import KIND_CHUNK, KIND_DATAGRAM, RecordReader, RecordWriter, is_capture_file
from .errors import BridgeError, SourceError
from .frame import CsiFrame
from .framing import DatagramDecoder, StreamDecoder
from .nodes import NodeTracker
from .sim import PtySimWriter, Simulator, canonical_format, encode

log = logging.getLogger(__name__)

DEFAULT_UDP_PORT = 5005
DEFAULT_BAUD = 921600
DEFAULT_QUEUE = 4096
#: How long a serial reader waits, after the first byte, for more to arrive before reading, and
#: between reads while bytes keep coming (ms): one reader wake-up per interval on a busy port.
DEFAULT_COALESCE_MS = 5.0
_READ_SIZE = 1 << 16
#: The tty line discipline buffers 4 KiB. A read shorter than this drained it (no second read is
#: needed); a read this long means bytes come faster than the coalescing wait needs to gather them,
#: and a full buffer stalls the sender, so the next read does not wait.
_TTY_BUF = 4096
#: Bytes the serial source's chunk queue holds per frame of ``queue_size`` (a CSI text line is
#: 0.6-3.5 kB): the default queue keeps 8 MiB, a few seconds of a busy port.
_QUEUE_BYTES_PER_FRAME = 2048


class FrameQueue:
    """Bounded hand-over from the reader thread to the consumer.

    ``drop_oldest``: a full queue drops its oldest frame (counted in ``dropped``); otherwise the
    producer waits for room (until ``stop`` is set).
    """

    def __init__(self, maxlen: int = DEFAULT_QUEUE, drop_oldest: bool = True) -> None:
        self.maxlen = max(1, int(maxlen))
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._q: deque[CsiFrame] = deque()
        self._cv = threading.Condition()
        self._ended = False
        self._error: Optional[BaseException] = None

    def put(self, frames: list[CsiFrame], stop: threading.Event) -> None:
        with self._cv:
            for f in frames:
                while len(self._q) >= self.maxlen:
                    if self.drop_oldest:
                        self._q.popleft()
                        self.dropped += 1
                    else:
                        if stop.is_set():
                            return
                        self._cv.wait(0.1)
                self._q.append(f)
            self._cv.notify_all()

    def get(self, timeout: float) -> list[CsiFrame]:
        """Everything queued, waiting up to ``timeout`` for the first frame; raises a reader error."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cv:
            while not self._q and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            items = list(self._q)
            self._q.clear()
            self._cv.notify_all()
            if not items:
                self._raise_failure()
            return items

    def _raise_failure(self) -> None:
        """Raise the reader's error, if it failed (called with the lock held, nothing queued)."""
        err = self._error
        if err is None:
            return
        if isinstance(err, BridgeError):
            raise err
        raise SourceError(f"reader thread failed: {err!r}") from err

    def finish(self, error: Optional[BaseException] = None) -> None:
        """No more frames will come (``error`` says why, if it is a failure)."""
        with self._cv:
            self._ended = True
            if error is not None and self._error is None:
                self._error = error
            self._cv.notify_all()

    @property
    def ended(self) -> bool:
        with self._cv:
            return self._ended and not self._q


class ChunkQueue(FrameQueue):
    """Bounded hand-over of raw byte chunks ``(data, host_time)`` from a reader thread to the consumer.

    Bounded by bytes: a full queue drops its oldest chunks (counted in ``dropped`` and
    ``dropped_bytes``; the newest chunk is always kept) and marks the gap, so that :meth:`get`
    returns a ``(None, 0.0)`` marker before the chunks that follow it: the line torn by the gap must
    be dropped. The reader puts the same marker when the port goes away. The producer never waits.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(maxlen=1, drop_oldest=True)
        self.max_bytes = max(1, int(max_bytes))
        self.dropped_bytes = 0
        self._bytes = 0
        self._gap = False
        self._waiting = 0
        self._q: deque = deque()
        self._cv = threading.Condition(threading.Lock())

    def put_chunk(self, data: Optional[bytes], host_time: float) -> None:
        """Queue ``data`` read at ``host_time`` (``None``: the stream broke here)."""
        with self._cv:
            q = self._q
            q.append((data, host_time))
            if data is not None:
                self._bytes += len(data)
                while self._bytes > self.max_bytes and len(q) > 1:
                    old = q.popleft()[0]
                    if old is not None:
                        self._bytes -= len(old)
                        self.dropped += 1
                        self.dropped_bytes += len(old)
                    self._gap = True
            if self._waiting:
                self._cv.notify()

    def put(self, frames: list, stop: threading.Event) -> None:  # pragma: no cover - not a frame queue
        raise TypeError("ChunkQueue holds byte chunks: use put_chunk")

    def get(self, timeout: float) -> list:
        """Every queued chunk (after a gap marker if chunks were dropped), waiting up to ``timeout``
        for the first; raises a reader error."""
        with self._cv:
            q = self._q
            if not q and not self._ended and timeout > 0:
                deadline = time.monotonic() + timeout
                self._waiting += 1
                try:
                    while not q and not self._ended:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                finally:
                    self._waiting -= 1
            if not q:
                self._raise_failure()
                return []
            items = list(q)
            q.clear()
            self._bytes = 0
            if self._gap:
                self._gap = False
                items.insert(0, (None, 0.0))
            return items


class FrameSource:
    """Base of all sources: reader thread, bounded queue, bookkeeping, iteration, stats.

    Subclasses implement ``_run()`` (the thread body; it returns when the source is exhausted or
    ``self._stop`` is set) and call ``self._emit(frames)``.
    """

    name = "source"

    def __init__(self, queue_size: int = DEFAULT_QUEUE, drop_oldest: bool = True,
                 record: Union[None, str, RecordWriter] = None, tracker: Optional[NodeTracker] = None) -> None:
        self._queue = FrameQueue(queue_size, drop_oldest)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: deque[CsiFrame] = deque()
        self._thread: Optional[threading.Thread] = None
        self.tracker = tracker or NodeTracker()
        self.frames = 0
        self.reconnects = 0
        if isinstance(record, str):
            record = RecordWriter(record, meta={"source": self.name})
        self.recorder: Optional[RecordWriter] = record

    # -- consumer side ------------------------------------------------------------------------
    def read(self, timeout: float = 0.0) -> list[CsiFrame]:
        """Frames that arrived, waiting at most ``timeout`` seconds for the first; may be empty."""
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out + self._take(0.0)
        return self._take(timeout)

    def _take(self, timeout: float) -> list[CsiFrame]:
        """What the reader handed over, as frames (sources that queue bytes decode here)."""
        return self._queue.get(timeout)

    def __iter__(self) -> Iterator[CsiFrame]:
        return self

    def __next__(self) -> CsiFrame:
        while not self._pending:
            got = self.read(0.5)  # subclasses that forward or check errors do it in read()
            if got:
                self._pending.extend(got)
            elif self._queue.ended:
                raise StopIteration
        return self._pending.popleft()

    @property
    def ended(self) -> bool:
        """True when the source is exhausted (or closed) and everything was consumed."""
        return not self._pending and self._queue.ended

    def close(self) -> None:
        """Stop the reader thread and release the port/socket/file. Idempotent."""
        self._stop.set()
        self._interrupt()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._queue.finish()
        if self.recorder is not None:
            self.recorder.close()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten source must not keep its thread spinning
        try:
            self._stop.set()
        except Exception:
            pass

    def stats(self) -> dict:
        """Counters: frames, records, lines, packets, bytes, rejected (reason -> n), dropped_queue,
        reconnects, lost, reboots, wraps, duplicates, gaps, nodes (node -> counters)."""
        with self._lock:
            d = {"source": self.name, "frames": self.frames, "dropped_queue": self._queue.dropped,
                 "reconnects": self.reconnects}
            d.update(self._decoder_stats())
            d.update(self.tracker.totals())
            d["nodes"] = self.tracker.stats()
        return d

    # -- producer side ------------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"firmware_bridge {self.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, not swallowed
            log.error("%s: reader failed: %r", self.name, e)
            self._queue.finish(e)
            return
        self._queue.finish()

    def _emit(self, frames: list[CsiFrame]) -> None:
        if not frames:
            return
        with self._lock:
            self._account(frames)
        self._queue.put(frames, self._stop)

    def _account(self, frames: list[CsiFrame]) -> None:
        """Fill the bookkeeping fields and count (with ``self._lock`` held)."""
        update = self.tracker.update
        for f in frames:
            update(f)
        self.frames += len(frames)

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake the reader thread out of a blocking call (subclasses)."""

    def _decoder_stats(self) -> dict:
        return {}


# ---------------------------------------------------------------------------------------------
# Serial

def open_serial_port(path: str, baud: int, timeout: float):
    """Open ``path`` with pyserial without moving DTR/RTS (opening must not reset the board).

    The kernel asserts DTR and RTS together when the tty is opened; the ESP32 auto-reset circuit only
    pulls EN/IO0 low when the two lines differ. pyserial's ``dtr=False, rts=False`` would clear them
    one after the other, and the moment between is a reset pulse. So we keep both asserted (pyserial
    then re-asserts what is already asserted: no edge).
    """
    import serial  # pyserial; imported here so parsing files never needs it

    ser = serial.Serial()
    ser.port = path
    ser.baudrate = baud
    ser.timeout = timeout
    ser.dtr = True
    ser.rts = True
    ser.open()
    return ser


class SerialSource(FrameSource):
    """Frames from a serial port (USB CDC/UART bridge), surviving unplug and replug.

    Reads whatever bytes are waiting (never ``readline``), in few wake-ups: the reader blocks until
    the first byte arrives, waits ``coalesce_ms`` more, then takes everything waiting in one read; while
    bytes keep coming it sleeps ``coalesce_ms`` between reads (not after a read that found the tty
    buffer full) and only blocks in ``poll`` again once a read finds nothing. A steady stream thus costs
    one wake-up per ``coalesce_ms``, whatever the record rate. The reader thread only reads: it
    queues the raw chunks (bounded by bytes, ``queue_size`` x 2 KiB; the oldest chunks are dropped
    and counted in ``dropped_chunks``/``dropped_bytes`` when the consumer falls behind), and
    :meth:`read` decodes them in the caller's thread. When the port vanishes the partial line is
    dropped, the loss is logged, and the port is reopened with exponential back-off until it returns
    (``reconnect=False`` makes it a fatal error instead). Iteration never ends by itself.

    pyserial opens and configures the port (baud rate, raw mode, DTR/RTS, see
    :func:`open_serial_port`); on POSIX the reader then waits with ``poll`` and reads the file
    descriptor with ``os.read`` itself. pyserial's ``read`` costs a ``select``, a ``Timeout`` object
    and a ``bytearray`` copy per call, several times what the two system calls cost; its abort pipe
    still wakes the reader for :meth:`close`. Where the port has no file descriptor (not POSIX) the
    reader falls back to pyserial's ``read`` with the same coalescing.

    ``host_time`` of a frame is the earliest time the bytes of the read that completed it can have
    arrived: when the reader woke for the first byte, or, for a read after a coalescing sleep, when
    the previous read ended. A record is thus stamped up to ``coalesce_ms`` early: latencies measured
    from ``host_time`` include the coalescing delay instead of hiding it.

    Parameters
    ----------
    path : str
        Device path (a udev stable name such as ``/dev/serial/by-id/...`` survives replugging best).
    baud : int
        Baud rate (ignored by USB CDC devices).
    wait_for_port : bool
        When the port is absent at start, wait for it instead of raising :class:`SourceError`.
    backoff : tuple of float
        First and largest delay between reconnection attempts, seconds.
    coalesce_ms : float
        Wait after the first byte before reading, milliseconds (0: read at once). Adds at most this
        much latency; saves a wake-up, a read and a decoder call per record it gathers.
    """

    def __init__(self, path: str, baud: int = DEFAULT_BAUD, reconnect: bool = True, wait_for_port: bool = False,
                 backoff: tuple[float, float] = (0.05, 2.0), read_timeout: float = 0.05,
                 coalesce_ms: float = DEFAULT_COALESCE_MS, **kw: Any) -> None:
        self.path = path
        self.name = f"serial:{path}"
        if not coalesce_ms >= 0:
            raise SourceError(f"coalesce_ms={coalesce_ms!r}: expected a number of milliseconds >= 0 (0: off)")
        super().__init__(**kw)
        self._queue = ChunkQueue(self._queue.maxlen * _QUEUE_BYTES_PER_FRAME)
        self.baud = int(baud)
        self.reconnect = reconnect
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.read_timeout = read_timeout
        self.coalesce_s = float(coalesce_ms) / 1000.0
        self.decoder = StreamDecoder(source=path)
        self.connected = threading.Event()
        self.disconnects = 0
        self.reads = 0               # reads that returned bytes (reader wake-ups that did work)
        self.bytes_handed_over = 0  # bytes read and then decoded by read(), or dropped from the queue
        self._bytes_decoded = 0
        self._ser = None
        self._poller = None         # poll object of the open port (POSIX), see _attach
        self._fd = -1
        self._saturated = False     # the last read took a full tty buffer: do not wait before the next
        self._since: Optional[float] = None  # bytes may be waiting since then (None: block in poll)
        try:
            self._ser = open_serial_port(path, self.baud, read_timeout)
            self._attach()
            self.connected.set()
        except Exception as e:  # serial.SerialException derives from OSError/IOError
            if not wait_for_port:
                raise SourceError(f"cannot open serial port {path}: {e}. Check the device path "
                                  f"(ls /dev/serial/by-id/) and that you are in the dialout group") from e
            log.warning("%s: not present yet (%s); waiting for it", self.name, e)
        self._start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the port is open; True if it is."""
        return self.connected.wait(timeout)

    def _interrupt(self) -> None:
        ser = self._ser
        if ser is not None:
            try:
                ser.cancel_read()  # writes to pyserial's abort pipe, which our poll watches too
            except Exception:
                pass

    def _decoder_stats(self) -> dict:
        d = self.decoder.stats.as_dict()
        d["disconnects"] = self.disconnects
        d["connected"] = self.connected.is_set()
        d["reads"] = self.reads
        d["dropped_chunks"] = self._queue.dropped
        d["dropped_bytes"] = self._queue.dropped_bytes
        return d

    def _take(self, timeout: float) -> list[CsiFrame]:
        """Decode the chunks the reader queued (in the caller's thread)."""
        chunks = self._queue.get(timeout)
        if not chunks:
            return []
        dec = self.decoder
        out: list[CsiFrame] = []
        n = 0
        with self._lock:
            for data, t in chunks:
                if data is None:  # the port went away, or chunks were dropped: the line is torn
                    dec.drop_partial()
                    continue
                n += len(data)
                out += dec.feed(data, t)
            self._account(out)
            self._bytes_decoded += n
            self.bytes_handed_over = self._bytes_decoded + self._queue.dropped_bytes
        return out

    def _attach(self) -> None:
        """Use poll + os.read on the port's file descriptor where there is one (POSIX)."""
        self._poller, self._fd = None, -1
        fd = getattr(self._ser, "fd", None)
        if not isinstance(fd, int) or fd < 0 or not hasattr(select, "poll"):
            return
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        abort = getattr(self._ser, "pipe_abort_read_r", None)
        if isinstance(abort, int):
            poller.register(abort, select.POLLIN)
        self._poller, self._fd = poller, fd

    def _read_fd(self) -> tuple[bytes, float]:
        """Read what is waiting: after a coalescing sleep while bytes keep coming, else block (up to
        ``read_timeout``) for the first byte and coalesce. Returns the bytes and the earliest time they
        can have arrived."""
        fd = self._fd
        since = self._since
        if since is None:
            events = self._poller.poll(self.read_timeout * 1000.0)
            if not events:
                return b"", 0.0
            since = time.monotonic()
            for f, _ in events:
                if f != fd:  # the abort pipe: close() wants the thread back
                    try:
                        os.read(f, 1024)
                    except OSError:
                        pass
                    return b"", 0.0
            if self.coalesce_s:
                time.sleep(self.coalesce_s)
        elif not self._saturated:
            time.sleep(self.coalesce_s)
        polled = self._since is None
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:  # nothing came during the sleep (or another process took the bytes)
            data = b""
        if not data:
            self._since = None
            if polled:
                # A vanished device (hang-up) is always "ready" and reads nothing.
                raise OSError("device reports readiness to read but returned no data (disconnected?)")
            return b"", 0.0  # nothing came during the sleep (pyserial sets VMIN=0: no EAGAIN)
        self._saturated = len(data) >= _TTY_BUF
        if self._saturated:
            parts = [data]
            while len(data) >= _TTY_BUF and sum(map(len, parts)) < _READ_SIZE:
                try:
                    data = os.read(fd, _READ_SIZE)
                except BlockingIOError:
                    break
                if not data:
                    break
                parts.append(data)
            data = b"".join(parts)
        # Bytes that come from now on wait for the next read; with no coalescing, poll for them.
        self._since = time.monotonic() if (self.coalesce_s or self._saturated) else None
        return data, since

    def _read_pyserial(self) -> tuple[bytes, float]:
        ser = self._ser
        data = ser.read(ser.in_waiting or 1)
        if not data:
            return b"", 0.0
        now = time.monotonic()
        if self.coalesce_s:
            time.sleep(self.coalesce_s)
        waiting = ser.in_waiting
        if waiting:
            data += ser.read(waiting)
        return data, now

    def _run(self) -> None:
        delay = self.backoff[0]
        first = self._ser is None
        while not self._stop.is_set():
            if self._ser is None:
                try:
                    self._ser = open_serial_port(self.path, self.baud, self.read_timeout)
                    self._attach()
                except Exception as e:
                    self._close_port()
                    log.debug("%s: reopen failed: %s", self.name, e)
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, self.backoff[1])
                    continue
                delay = self.backoff[0]
                if not first:
                    with self._lock:
                        self.reconnects += 1
                    log.warning("%s: port is back; reconnected (reconnect #%d)", self.name, self.reconnects)
                first = False
                self.connected.set()
            try:
                data, now = self._read_fd() if self._poller is not None else self._read_pyserial()
            except Exception as e:
                if self._stop.is_set():
                    break
                self._lost_port(e)
                if not self.reconnect:
                    raise SourceError(f"serial port {self.path} lost: {e}") from e
                continue
            if not data:
                continue
            self.reads += 1
            if self.recorder is not None:
                self.recorder.write(data, now)
            self._queue.put_chunk(data, now)
        self._close_port()

    def _lost_port(self, err: BaseException) -> None:
        log.warning("%s: port lost (%s); dropping the partial line and reconnecting", self.name, err)
        self.connected.clear()
        with self._lock:
            self.disconnects += 1
        self._queue.put_chunk(None, 0.0)  # read() drops the partial line when it gets here
        self._close_port()

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        self._poller, self._fd = None, -1
        self._since, self._saturated = None, False
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------
# UDP

class UdpSource(FrameSource):
    """Frames from UDP datagrams (RuView binary frames, or text lines), default port 5005."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_UDP_PORT, rcvbuf: int = 1 << 20, **kw: Any) -> None:
        self.name = f"udp:{host}:{port}"
        super().__init__(**kw)
        self.decoder = DatagramDecoder(source=self.name)
        try:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            except OSError:
                pass
            self._sock.bind((host, int(port)))
            self._sock.settimeout(0.1)
        except OSError as e:
            raise SourceError(f"cannot listen on UDP {host}:{port}: {e.strerror or e}") from e
        self.address = self._sock.getsockname()
        self._start()

    def _decoder_stats(self) -> dict:
        return self.decoder.as_dict()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data, peer = self._sock.recvfrom(65535)
                except socket.timeout:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                now = time.monotonic()
                peer_s = f"{peer[0]}:{peer[1]}"
                if self.recorder is not None:
                    self.recorder.write_datagram(data, peer_s, now)
                with self._lock:
                    frames = self.decoder.feed(data, now, peer_s)
                self._emit(frames)
        finally:
            self._sock.close()


# ---------------------------------------------------------------------------------------------
# Replay

class FileFrames:
    """Decode a file synchronously, batch by batch: a record file (arrival times kept) or a raw
    text/binary capture. Used by :class:`ReplaySource` and by ``edge-aether parse``.

    ``batches()`` yields ``(recorded_host_time or None, frames)``; frames of a record file carry the
    recorded ``host_time``, frames of a raw file the time they were read.
    """

    def __init__(self, path: str, chunk: int = 65536) -> None:
        if not os.path.isfile(path):
            raise SourceError(f"cannot read {path}: no such file")
        self.path = path
        self.chunk = int(chunk)
        self.is_record_file = is_capture_file(path)
        self.stream = StreamDecoder(source=path)
        self.datagrams = DatagramDecoder(source=path)
        self.reader: Optional[RecordReader] = None
        self.meta: list[dict] = []

    def batches(self) -> Iterator[tuple[Optional[float], list[CsiFrame]]]:
        if self.is_record_file:
            self.reader = RecordReader(self.path)
            last = 0.0
            for rec in self.reader:
                if rec.kind == KIND_CHUNK:
                    last = rec.host_time
                    yield rec.host_time, self.stream.feed(rec.payload, rec.host_time)
                elif rec.kind == KIND_DATAGRAM:
                    last = rec.host_time
                    peer, data = rec.peer_and_data
                    yield rec.host_time, self.datagrams.feed(data, rec.host_time, peer)
                else:
                    try:
                        self.meta.append(json.loads(rec.payload))
                    except ValueError:
                        pass
            yield None, self.stream.flush(last)
            return
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise SourceError(f"cannot read {self.path}: {e.strerror or e}") from e
        with f:
            while True:
                data = f.read(self.chunk)
                if not data:
                    break
                yield None, self.stream.feed(data, time.monotonic())
        yield None, self.stream.flush(time.monotonic())

    def stats(self) -> dict:
        a = self.stream.stats.as_dict()
        b = self.datagrams.as_dict()
        rej = Counter(a["rejected"])
        rej.update(b["rejected"])
        d = {k: a[k] + b[k] for k in ("records", "lines", "packets", "bytes")}
        d["rejected"] = dict(rej)
        if self.reader is not None:
            d["file"] = dict(self.reader.stats)
        return d


class ReplaySource(FrameSource):
    """Frames from a file (see :class:`FileFrames`); the iteration ends at the end of the file.

    ``speed``: 0 (default) replays as fast as the consumer takes frames; 1.0 paces a record file in
    real time by its recorded arrival times (2.0 twice as fast). Raw files are never paced.
    """

    def __init__(self, path: str, speed: float = 0.0, chunk: int = 65536, **kw: Any) -> None:
        self.path = path
        self.name = f"replay:{path}"
        kw.setdefault("drop_oldest", False)
        if kw.get("record") is not None:
            raise SourceError("recording a replay would only copy the file; record a live source instead")
        super().__init__(**kw)
        self.speed = float(speed)
        self.file = FileFrames(path, chunk)
        self._start()

    def _decoder_stats(self) -> dict:
        return self.file.stats()

    def _run(self) -> None:
        start = time.monotonic()
        t0 = None
        batches = self.file.batches()
        while not self._stop.is_set():
            with self._lock:
                item = next(batches, None)
            if item is None:
                return
            t, frames = item
            if t is not None and self.speed > 0:
                if t0 is None:
                    t0 = t
                delay = start + (t - t0) / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            self._emit(frames)


# ---------------------------------------------------------------------------------------------
# Simulators

class SimSource(FrameSource):
    """Frames from simulated nodes, encoded to the wire format and decoded back (no terminal).

    ``realtime`` paces at the simulator's rate and drops the oldest frames when the consumer lags;
    otherwise frames come as fast as they are consumed. ``count``/``duration`` bound the run.
    """

    def __init__(self, sim: Simulator, count: Optional[int] = None, duration: Optional[float] = None,
                 realtime: bool = True, **kw: Any) -> None:
        self.name = f"sim:{sim.nodes}x{sim.rate_hz:g}Hz:{sim.fmt}"
        kw.setdefault("drop_oldest", realtime)
        super().__init__(**kw)
        self.sim = sim
        self.count = count
        self.duration = duration
        self.realtime = realtime
        self.decoder = StreamDecoder(source="sim")
        self._start()

    def _decoder_stats(self) -> dict:
        return self.decoder.stats.as_dict()

    def _run(self) -> None:
        for frame in self.sim.paced_frames(self.count, self.duration, self.realtime, self._stop):
            data = encode(frame, self.sim.fmt)
            now = time.monotonic()
            if self.recorder is not None:
                self.recorder.write(data, now)
            with self._lock:
                frames = self.decoder.feed(data, now)
            self._emit(frames)


class PtySimSource(FrameSource):
    """Simulated nodes written to a real pseudo-terminal and read back through :class:`SerialSource`.

    Ends when a bounded run (``count``/``duration``) has been written and read back completely;
    otherwise runs until closed. ``writer`` and ``serial`` are the two halves.
    """

    def __init__(self, sim: Simulator, count: Optional[int] = None, duration: Optional[float] = None,
                 realtime: bool = True, baud: int = DEFAULT_BAUD, **kw: Any) -> None:
        self.writer = PtySimWriter(sim, count=count, duration=duration, realtime=realtime)
        self.name = f"pty-sim:{self.writer.path}"
        self.serial = SerialSource(self.writer.path, baud=baud, **kw)
        # This object only forwards: it has no thread of its own.
        super().__init__(queue_size=1, tracker=self.serial.tracker)
        self.writer.start()

    @property
    def path(self) -> str:
        return self.writer.path

    def read(self, timeout: float = 0.0) -> list[CsiFrame]:
        if self.writer.error is not None:
            raise self.writer.error
        got = self.serial.read(timeout)
        if not got and self._drained():
            self._queue.finish()
        return got

    def _drained(self) -> bool:
        if not self.writer.done.is_set():
            return False
        return self.serial.bytes_handed_over >= self.writer.bytes_written

    def stats(self) -> dict:
        d = self.serial.stats()
        d["source"] = self.name
        d["sim_frames_written"] = self.writer.frames_written
        d["sim_bytes_written"] = self.writer.bytes_written
        return d

    def close(self) -> None:
        self.serial.close()
        self.writer.stop()
        self._queue.finish()


# ---------------------------------------------------------------------------------------------
# URL factory

_SIM_KEYS = {"nodes": int, "rate": float, "fmt": str, "seed": int, "loss": float, "layout": str,
             "count": int, "duration": float, "realtime": bool, "ts_start": int}
_COMMON_KEYS = {"queue_size": int}


def _coerce(key: str, value: Any, kind: Callable) -> Any:
    if not isinstance(value, str):
        return value
    if kind is bool:
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise SourceError(f"option {key}={value!r}: expected true/false")
    try:
        return kind(value)
    except ValueError:
        raise SourceError(f"option {key}={value!r}: expected {kind.__name__}") from None


def _options(query: str, opts: dict, allowed: dict) -> dict:
    merged: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=False))
    merged.update(opts)
    allowed = {**allowed, **_COMMON_KEYS}
    out = {}
    for k, v in merged.items():
        if k == "record" or k == "tracker":
            out[k] = v
            continue
        if k not in allowed:
            raise SourceError(f"unknown source option {k!r}; accepted: {', '.join(sorted(allowed))}")
        out[k] = _coerce(k, v, allowed[k])
    return out


def _make_sim(o: dict) -> tuple[Simulator, dict]:
    try:
        sim = Simulator(nodes=o.pop("nodes", 4), rate_hz=o.pop("rate", 100.0), fmt=o.pop("fmt", "esp-csi"),
                        seed=o.pop("seed", 0), loss=o.pop("loss", 0.01), layout=o.pop("layout", "ht20"),
                        ts_start=o.pop("ts_start", None))
    except ValueError as e:
        raise SourceError(f"bad simulator option: {e}") from e
    return sim, o


def open_source(url: str, **opts: Any) -> FrameSource:
    """Open a frame source from a URL.

    - ``serial:///dev/ttyUSB0?baud=921600&coalesce_ms=5`` or a plain device path (``coalesce_ms``: see
      :class:`SerialSource`; 0 reads as soon as a byte arrives);
    - ``udp://0.0.0.0:5005``;
    - ``replay://path?speed=1.0`` or a plain path of an existing regular file;
    - ``sim://?nodes=4&rate=100&fmt=esp-csi&seed=0`` (also ``loss``, ``layout``, ``count``,
      ``duration``, ``realtime``);
    - ``pty-sim://?...`` the same simulator written to a real pseudo-terminal and read back through
      the serial source.

    Keyword options override the query string; every source also takes ``queue_size`` and
    ``record`` (a path or :class:`RecordWriter` that receives the raw bytes).
    """
    if "://" not in url:
        if os.path.isfile(url):
            return ReplaySource(url, **_options("", opts, {"speed": float, "chunk": int}))
        st_ok = os.path.exists(url) and stat.S_ISCHR(os.stat(url).st_mode)
        if not st_ok and not opts.get("wait_for_port"):
            raise SourceError(f"{url!r} is neither a file nor a serial device; use serial://, udp://, "
                              f"replay://, sim:// or pty-sim://")
        url = "serial://" + url
    scheme, rest = url.split("://", 1)
    path, _, query = rest.partition("?")
    scheme = scheme.lower()
    if scheme == "serial":
        o = _options(query, opts, {"baud": int, "reconnect": bool, "wait_for_port": bool,
                                   "coalesce_ms": float})
        return SerialSource(path, **o)
    if scheme == "udp":
        o = _options(query, opts, {})
        parts = urlsplit("udp://" + path)
        host = parts.hostname or "0.0.0.0"
        try:
            port = parts.port or DEFAULT_UDP_PORT
        except ValueError:
            raise SourceError(f"bad UDP port in {url!r}") from None
        return UdpSource(host, port, **o)
    if scheme == "replay":
        o = _options(query, opts, {"speed": float, "chunk": int})
        return ReplaySource(path, **o)
    if scheme in ("sim", "pty-sim"):
        keys = dict(_SIM_KEYS)
        if scheme == "pty-sim":
            keys.update({"baud": int, "coalesce_ms": float})
        o = _options(query, opts, keys)
        sim, o = _make_sim(o)
        cls = SimSource if scheme == "sim" else PtySimSource
        return cls(sim, **o)
    raise SourceError(f"unknown source scheme {scheme!r} in {url!r}; expected serial, udp, replay, sim or pty-sim")


__all__ = ["ChunkQueue", "FrameQueue", "FrameSource", "PtySimSource", "ReplaySource", "SerialSource", "SimSource",
           "UdpSource", "FileFrames", "canonical_format", "open_serial_port", "open_source"]
