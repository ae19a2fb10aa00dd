"""Simulated ESP32 nodes: plausible CSI in any wire format, and a pseudo-terminal to serve it on.

The channel of each node is a few static multipath components plus one reflector moving back and
forth (a person walking), with a random common phase and timing offset per frame (as the radio's
CFO/STO give), additive noise, quantised to int8 like ESP-IDF, and occasional lost frames (their
sequence numbers are skipped). Everything is drawn from one seeded generator: same seed, same bytes.
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import deque
from typing import Iterator, Optional

import numpy as np

from .binary import encode_csi_packet
from .errors import SourceError
from .frame import FMT_CSI_TOOL, FMT_ESP_CSI, FMT_ESP_CSI_C6, FMT_RUVIEW, CsiFrame
from .text import LAYOUT_FIELDS, encode_line, header_line

#: Accepted names for formats (the canonical ``FMT_*`` names plus short aliases).
FORMAT_ALIASES = {
    FMT_ESP_CSI: FMT_ESP_CSI, "esp_csi": FMT_ESP_CSI,
    FMT_CSI_TOOL: FMT_CSI_TOOL, "csi-tool": FMT_CSI_TOOL,
    FMT_ESP_CSI_C6: FMT_ESP_CSI_C6, "c6": FMT_ESP_CSI_C6, "c5": FMT_ESP_CSI_C6,
    FMT_RUVIEW: FMT_RUVIEW, "ruview": FMT_RUVIEW, "binary": FMT_RUVIEW,
}

#: Simulated buffer layouts: name -> list of (block width, data subcarrier indices) per LTF block.
_HT20_DATA = [k for k in range(-28, 29) if k != 0]
_LLTF_DATA = [k for k in range(-26, 27) if k != 0]
_HT40_DATA = [k for k in range(-58, 59) if abs(k) > 1]
LAYOUTS = {
    "lltf": [(64, _LLTF_DATA)],
    "ht20": [(64, _LLTF_DATA), (64, _HT20_DATA)],
    "ht40": [(64, _LLTF_DATA), (128, _HT40_DATA)],
}
_SPACING_HZ = 312_500.0
_C = 299_792_458.0


def canonical_format(fmt: str) -> str:
    """The ``FMT_*`` name for ``fmt`` (aliases accepted); ``ValueError`` naming the choices otherwise."""
    try:
        return FORMAT_ALIASES[fmt.lower()]
    except KeyError:
        raise ValueError(f"unknown wire format {fmt!r}; expected one of {sorted(set(FORMAT_ALIASES.values()))}") from None


def encode(frame: CsiFrame, fmt: Optional[str] = None, base64_data: bool = False) -> bytes:
    """The bytes a node running firmware ``fmt`` (default ``frame.fmt``) would send for ``frame``."""
    fmt = canonical_format(fmt or frame.fmt)
    if fmt == FMT_RUVIEW:
        return encode_csi_packet(frame)
    return encode_line(frame, fmt, base64_data)


class Simulator:
    """N simulated ESP32 nodes sending CSI at ``rate_hz`` each.

    Parameters
    ----------
    nodes : int
        Number of nodes.
    rate_hz : float
        Frames per second per node (the nodes are interleaved in time).
    fmt : str
        Wire format of the generated frames (see :data:`FORMAT_ALIASES`).
    seed : int
        Seed of the one random generator; equal seeds give equal frames.
    loss : float
        Probability that a frame is lost (its sequence number is skipped).
    layout : str
        ``"ht20"`` (LLTF + HT-LTF, 256 values, the default), ``"lltf"`` (128) or ``"ht40"`` (384).
    ts_start : int, optional
        First device timestamp (µs) of every node; random per node by default.
    """

    def __init__(self, nodes: int = 4, rate_hz: float = 100.0, fmt: str = FMT_ESP_CSI, seed: int = 0,
                 loss: float = 0.01, layout: str = "ht20", ts_start: Optional[int] = None) -> None:
        if nodes < 1 or nodes > 255:
            raise ValueError(f"nodes={nodes}; expected 1..255")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz={rate_hz}; expected > 0")
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r}; expected one of {sorted(LAYOUTS)}")
        self.nodes = nodes
        self.rate_hz = float(rate_hz)
        self.fmt = canonical_format(fmt)
        self.seed = seed
        self.loss = float(loss)
        self.layout = layout
        self.ts_start = ts_start

    def frames(self, count: Optional[int] = None) -> Iterator[CsiFrame]:
        """The frames that reach the wire (lost ones skipped), in time order; endless if ``count`` is None."""
        for _, frame in self.timed_frames(count):
            yield frame

    def timed_frames(self, count: Optional[int] = None) -> Iterator[tuple[float, CsiFrame]]:
        """``(t, frame)`` with ``t`` the send time in seconds from the start of the simulation."""
        rng = np.random.default_rng(self.seed)
        blocks = LAYOUTS[self.layout]
        nodes = [self._make_node(i, rng) for i in range(self.nodes)]
        period = 1.0 / self.rate_hz
        emitted = 0
        k = 0
        while count is None or emitted < count:
            for i, nd in enumerate(nodes):
                t = k * period + i * period / self.nodes
                nd["seq"] = (nd["seq"] + 1) & 0xFFFFFFFF
                if rng.random() < self.loss:
                    continue
                frame = self._frame(nd, t, blocks, rng)
                yield t, frame
                emitted += 1
                if count is not None and emitted >= count:
                    return
            k += 1

    def paced_frames(self, count: Optional[int] = None, duration: Optional[float] = None,
                     realtime: bool = True, stop: Optional[threading.Event] = None) -> Iterator[CsiFrame]:
        """Frames bounded by ``count`` and ``duration`` (seconds of simulated time); with ``realtime``
        each is yielded at its send time on the monotonic clock. Ends early once ``stop`` is set."""
        stop = stop or threading.Event()
        t0 = time.monotonic()
        for t, frame in self.timed_frames(count):
            if duration is not None and t >= duration:
                return
            if realtime:
                delay = t0 + t - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
            if stop.is_set():
                return
            yield frame

    # -- internals ----------------------------------------------------------------------------
    def _make_node(self, i: int, rng: np.random.Generator) -> dict:
        n_static = 3
        return {
            "i": i,
            "mac": f"24:0a:c4:{(self.seed >> 8) & 0xFF:02x}:{self.seed & 0xFF:02x}:{i:02x}",
            "seq": -1,
            "ts0": int(rng.integers(0, 1 << 32)) if self.ts_start is None else int(self.ts_start),
            "delays": rng.uniform(5e-9, 150e-9, n_static),
            "gains": rng.uniform(0.2, 1.0, n_static) * np.exp(2j * np.pi * rng.random(n_static)),
            "move_f": rng.uniform(0.2, 0.8),          # Hz, walking back and forth
            "move_amp": rng.uniform(0.3, 1.0),        # metres
            "move_base": rng.uniform(2.0, 6.0),       # metres of extra path
            "refl": rng.uniform(0.1, 0.4),
            "rssi": int(rng.integers(-70, -40)),
        }

    def _frame(self, nd: dict, t: float, blocks: list, rng: np.random.Generator) -> CsiFrame:
        path = nd["move_base"] + nd["move_amp"] * np.sin(2 * np.pi * nd["move_f"] * t)
        delays = np.append(nd["delays"], 2 * path / _C)
        gains = np.append(nd["gains"], nd["refl"])
        sto = rng.normal(0.0, 5e-9)                 # timing offset: a random linear phase slope
        cpo = np.exp(2j * np.pi * rng.random())      # common phase offset
        parts = []
        for width, data in blocks:
            half = width // 2
            ks = np.r_[0:half, -half:0]
            h = (gains[None, :] * np.exp(-2j * np.pi * ks[:, None] * _SPACING_HZ * (delays[None, :] + sto))).sum(1)
            h = h * cpo * 28.0 / max(1e-9, np.abs(gains).sum())
            h = h + rng.normal(0.0, 0.8, width) + 1j * rng.normal(0.0, 0.8, width)
            mask = np.isin(ks, data)
            h = np.where(mask, h, 0)
            pair = np.empty((width, 2))
            pair[:, 0] = h.imag  # ESP-IDF prints the imaginary part first
            pair[:, 1] = h.real
            parts.append(np.clip(np.rint(pair), -128, 127).astype(np.int8).ravel())
        iq = np.concatenate(parts)
        ts = (nd["ts0"] + int(round(t * 1e6))) & 0xFFFFFFFF
        rssi = nd["rssi"] + int(rng.integers(-2, 3))
        ht = self.layout != "lltf"
        if self.fmt == FMT_RUVIEW:
            return CsiFrame(node=f"id:{nd['i']}", iq=iq, fmt=FMT_RUVIEW, seq=nd["seq"], rssi=rssi,
                            noise_floor=-95, channel=6, node_id=nd["i"], antennas=1,
                            extra={"freq_mhz": 2437})
        return CsiFrame(
            node="mac:" + nd["mac"], iq=iq, fmt=self.fmt, seq=None if self.fmt == FMT_CSI_TOOL else nd["seq"],
            rssi=rssi, raw_timestamp=ts, noise_floor=-95, channel=6,
            sig_mode=None if self.fmt == FMT_ESP_CSI_C6 else int(ht),
            bandwidth=None if self.fmt == FMT_ESP_CSI_C6 else int(self.layout == "ht40"),
            secondary_channel=None if self.fmt == FMT_ESP_CSI_C6 else int(self.layout == "ht40"),
            stbc=None if self.fmt == FMT_ESP_CSI_C6 else 0,
            first_word_invalid=self.fmt == FMT_CSI_TOOL, mac=nd["mac"],
        )


class PtySimWriter:
    """Serve a :class:`Simulator`'s bytes on a pseudo-terminal, as if an ESP32 were on USB.

    ``path`` is the slave device to open with the serial source. The writer thread stops by itself
    after ``count`` frames or ``duration`` seconds (whichever comes first); :meth:`stop` stops it
    early and closes the terminal (the "USB unplugged" event). ``written`` holds the frames written,
    in order (the most recent ``keep``).

    Parameters
    ----------
    realtime : bool
        Pace frames at the simulator's rate; otherwise write as fast as the reader takes them.
    header : bool
        Print the format's header line first (text formats), as firmware does at boot.
    """

    def __init__(self, sim: Simulator, count: Optional[int] = None, duration: Optional[float] = None,
                 realtime: bool = True, header: bool = False, keep: int = 100_000) -> None:
        self.sim = sim
        self.count = count
        self.duration = duration
        self.realtime = realtime
        self.header = header
        self.written: deque[CsiFrame] = deque(maxlen=keep)
        self.frames_written = 0
        self.bytes_written = 0
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)

    def start(self) -> "PtySimWriter":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"pty-sim {self.path}", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the bounded run has finished writing; True if it has."""
        return self.done.wait(timeout)

    def stop(self) -> None:
        """Stop writing and close the pseudo-terminal (readers then see the port vanish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def __enter__(self) -> "PtySimWriter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                return False
            _, w, _ = select.select([], [self._master], [], 0.05)
            if not w:
                continue
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                continue
            view = view[n:]
        self.bytes_written += len(data)
        return True

    def _run(self) -> None:
        try:
            if self.header and self.sim.fmt in LAYOUT_FIELDS:
                self._write_all(header_line(self.sim.fmt))
            for frame in self.sim.paced_frames(self.count, self.duration, self.realtime, self._stop):
                if not self._write_all(encode(frame, self.sim.fmt)):
                    break
                self.written.append(frame)
                self.frames_written += 1
        except OSError as e:  # the terminal was closed under us
            if not self._stop.is_set():
                self.error = SourceError(f"pty simulator {self.path}: write failed: {e}")
        finally:
            self.done.set()
