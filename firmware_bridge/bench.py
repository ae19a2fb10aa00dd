"""``edge-aether bench --only bridge``: decode rates of the firmware bridge, single-threaded.

- ``text_fps``: 384-value ESP32-CSI-Tool lines (the real capture's layout: HT40, space-separated),
  fed to the framer in 4 KiB chunks as a serial port delivers them;
- ``text_esp_csi_fps``: the same for esp-csi quoted comma lists;
- ``binary_fps``: RuView binary frames of 384 values, one per datagram, as UDP delivers them;
- ``binary_stream_fps``: the same frames back to back in a byte stream (binary over serial).

Each number is the median frames/s over repeats (3 with ``--quick``, 7 otherwise).
"""
from __future__ import annotations

import statistics
import time

from .framing import DatagramDecoder, StreamDecoder
from .sim import Simulator, encode

TARGETS = {"text_fps": 20_000.0, "binary_fps": 100_000.0}
#: Distinct simulated frames; the bench input repeats them (decoding cost does not depend on repeats).
DISTINCT = 200


def _frames(fmt: str, n: int) -> list:
    base = list(Simulator(nodes=4, rate_hz=100, fmt=fmt, seed=1, loss=0.0, layout="ht40").frames(min(n, DISTINCT)))
    return [base[i % len(base)] for i in range(n)]


def _median_rate(fn, n_frames: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        got = fn()
        dt = time.perf_counter() - t0
        if got != n_frames:
            raise RuntimeError(f"bench decoded {got} frames, expected {n_frames}")
        rates.append(n_frames / dt)
    return float(statistics.median(rates))


def _stream_rate(data: bytes, n: int, repeats: int, chunk: int = 4096) -> float:
    def run() -> int:
        dec = StreamDecoder()
        got = 0
        for i in range(0, len(data), chunk):
            got += len(dec.feed(data[i:i + chunk], 0.0))
        return got + len(dec.flush())
    return _median_rate(run, n, repeats)


def run(ctx) -> dict:
    repeats = 3 if ctx.quick else 7
    n = 2000 if ctx.quick else 10000
    out: dict = {}

    ctx.progress("bridge: text lines (ESP32-CSI-Tool, 384 values)")
    frames = _frames("esp32-csi-tool", n)
    out["text_fps"] = _stream_rate(b"".join(encode(f) for f in frames), n, repeats)

    ctx.progress("bridge: text lines (esp-csi, 384 values)")
    frames = _frames("esp-csi", n)
    out["text_esp_csi_fps"] = _stream_rate(b"".join(encode(f) for f in frames), n, repeats)

    ctx.progress("bridge: binary frames (RuView, 384 values)")
    frames = _frames("ruview-binary", n)
    packets = [encode(f) for f in frames]

    def run_datagrams() -> int:
        dec = DatagramDecoder()
        got = 0
        for p in packets:
            got += len(dec.feed(p, 0.0))
        return got
    out["binary_fps"] = _median_rate(run_datagrams, n, repeats)
    out["binary_stream_fps"] = _stream_rate(b"".join(packets), n, repeats)

    out["repeats"] = repeats
    out["frames_per_repeat"] = n
    for key, target in TARGETS.items():
        out[f"{key}_target"] = target
        out[f"{key}_meets_target"] = bool(out[key] >= target)
    return out
