"""``edge-aether parse | record | sim``: the firmware_bridge commands (routed by edge_aether.cli).

Each command has ``configure_<name>(parser)`` and ``main_<name>(args) -> int``. Bad input ends with
one clear line on stderr and a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np

from .capture import RecordWriter
from .errors import BridgeError
from .frame import CsiFrame
from .nodes import NodeTracker


def _fail(cmd: str, msg: str, code: int = 2) -> int:
    print(f"edge-aether {cmd}: error: {msg}", file=sys.stderr)
    return code


# ---------------------------------------------------------------------------------------------
# parse

def configure_parse(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="text capture, binary capture or record file")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--frames", action="store_true",
                        help="print one JSON line per frame (node, seq, rssi, subcarriers, amplitude, ...)")


def frame_subcarriers(frame: CsiFrame) -> tuple[np.ndarray, np.ndarray]:
    """(subcarrier indices, |H|) of the first 64-subcarrier LTF block's data subcarriers of ``frame``.

    Uses the first antenna's values; empty arrays when the value count matches no known layout.
    """
    from .layouts import first_block_data

    per_ant = frame.n_values // max(1, frame.antennas)
    try:
        pairs, subc = first_block_data(per_ant, frame.first_word_invalid, secondary_channel=frame.secondary_channel,
                                       sig_mode=frame.sig_mode, bandwidth=frame.bandwidth, stbc=frame.stbc,
                                       chip=frame.chip)
    except (ValueError, KeyError):
        return np.zeros(0, np.int16), np.zeros(0)
    iq = frame.iq.astype(np.float64)
    amp = np.hypot(iq[2 * pairs], iq[2 * pairs + 1])  # |H| is the same whichever of the two is imaginary
    return subc, amp


def _frame_json(frame: CsiFrame) -> str:
    subc, amp = frame_subcarriers(frame)
    return json.dumps({
        "node": frame.node, "seq": frame.seq, "rssi": frame.rssi, "n_values": frame.n_values, "fmt": frame.fmt,
        "timestamp_us": frame.timestamp_us, "host_time": round(frame.host_time, 6), "channel": frame.channel,
        "noise_floor": frame.noise_floor, "first_word_invalid": frame.first_word_invalid,
        "lost_before": frame.lost_before, "reset": frame.reset,
        "subcarriers": subc.tolist(), "amplitude": np.round(amp, 3).tolist(),
    }, separators=(",", ":"))


def parse_file(path: str, on_frame=None) -> dict:
    """Decode a whole file and return the summary ``edge-aether parse --json`` prints."""
    from .sources import FileFrames

    ff = FileFrames(path)
    tracker = NodeTracker()
    nodes: Counter = Counter()
    layouts: Counter = Counter()
    formats: Counter = Counter()
    for _, frames in ff.batches():
        for f in frames:
            tracker.update(f)
            nodes[f.node] += 1
            layouts[f.n_values] += 1
            formats[f.fmt] += 1
            if on_frame is not None:
                on_frame(f)
    st = ff.stats()
    out = {"path": path, "kind": "record-file" if ff.is_record_file else "raw",
           "records": st["records"], "lines": st["lines"], "packets": st["packets"], "bytes": st["bytes"],
           "rejected": dict(sorted(st["rejected"].items())), "nodes": dict(nodes),
           "layouts": {str(k): v for k, v in sorted(layouts.items())}, "formats": dict(formats)}
    out.update(tracker.totals())
    if "file" in st:
        out["file"] = st["file"]
    return out


def main_parse(args: argparse.Namespace) -> int:
    if not os.path.exists(args.path):
        return _fail("parse", f"no such file: {args.path}")
    if not os.path.isfile(args.path):
        return _fail("parse", f"not a regular file: {args.path} (to read a port use `edge-aether record`)")
    write = sys.stdout.write
    try:
        summary = parse_file(args.path, (lambda f: write(_frame_json(f) + "\n")) if args.frames else None)
    except BridgeError as e:
        return _fail("parse", str(e))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    elif not args.frames:
        rej = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()) or "none"
        print(f"{summary['path']} ({summary['kind']}): {summary['records']} frames from "
              f"{summary['lines']} lines and {summary['packets']} packets; rejected: {rej}")
        for node, n in summary["nodes"].items():
            print(f"  {node}: {n} frames")
        print("  layouts (values -> frames): " + ", ".join(f"{k} -> {v}" for k, v in summary["layouts"].items()))
        print(f"  lost {summary['lost']}, reboots {summary['reboots']}, timestamp wraps {summary['wraps']}")
    return 0


# ---------------------------------------------------------------------------------------------
# record

def configure_record(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="serial:///dev/ttyUSB0?baud=921600, a device path, udp://0.0.0.0:5005, sim://, pty-sim://")
    parser.add_argument("--out", required=True, metavar="FILE", help="record file to append to")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N decoded frames")
    parser.add_argument("--no-fsync", action="store_true",
                        help="do not fsync each record (faster, but a power cut may lose more than one record)")
    parser.add_argument("--json", action="store_true", help="print the final source stats as JSON")


def main_record(args: argparse.Namespace) -> int:
    from .sources import open_source

    try:
        writer = RecordWriter(args.out, fsync=not args.no_fsync, meta={"source": args.source, "started": time.time()})
    except BridgeError as e:
        return _fail("record", str(e))
    try:
        src = open_source(args.source, record=writer)
    except BridgeError as e:
        writer.close()
        return _fail("record", str(e))
    deadline = None if args.duration is None else time.monotonic() + args.duration
    n = 0
    interrupted = False
    try:
        with src:
            while not src.ended:
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    break
                n += len(src.read(left))
                if args.max_frames is not None and n >= args.max_frames:
                    break
            stats = src.stats()
    except KeyboardInterrupt:
        interrupted = True
        stats = src.stats()
    except BridgeError as e:
        return _fail("record", str(e), 1)
    finally:
        writer.close()
    if args.json:
        print(json.dumps(stats, sort_keys=True, default=str))
    else:
        print(f"recorded {writer.records} records ({writer.bytes} bytes, {stats['frames']} frames) to {args.out}",
              file=sys.stderr)
    return 130 if interrupted else 0


# ---------------------------------------------------------------------------------------------
# sim

def configure_sim(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal and print its path")
    parser.add_argument("--out", metavar="FILE", help="write the bytes to FILE instead (or '-' for stdout)")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="frames per second per node")
    parser.add_argument("--fmt", default="esp-csi", help="esp-csi, esp32-csi-tool, esp-csi-c5c6 or ruview-binary")
    parser.add_argument("--layout", default="ht20", choices=["lltf", "ht20", "ht40"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", type=float, default=0.01, help="probability of a lost frame")
    parser.add_argument("--count", type=int, help="stop after N frames")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of simulated time")
    parser.add_argument("--fast", action="store_true", help="do not pace at --rate (as fast as the reader takes)")
    parser.add_argument("--header", action="store_true", help="print the format's header line first")


def main_sim(args: argparse.Namespace) -> int:
    from .sim import PtySimWriter, Simulator, encode
    from .text import LAYOUT_FIELDS, header_line

    try:
        sim = Simulator(args.nodes, args.rate, args.fmt, args.seed, args.loss, args.layout)
    except ValueError as e:
        return _fail("sim", str(e))
    if args.pty:
        writer = PtySimWriter(sim, count=args.count, duration=args.duration, realtime=not args.fast,
                              header=args.header)
        print(writer.path, flush=True)
        try:
            writer.start()
            while not writer.wait(0.5):
                pass
        finally:
            writer.stop()
        if writer.error is not None:
            return _fail("sim", str(writer.error), 1)
        return 0
    if args.count is None and args.duration is None and (args.out in (None, "-") and sys.stdout.isatty()):
        return _fail("sim", "refusing to write endless binary-ish output to a terminal; "
                            "use --pty, --out FILE, --count or --duration")
    out = sys.stdout.buffer if args.out in (None, "-") else open(args.out, "wb")
    try:
        if args.header and sim.fmt in LAYOUT_FIELDS:
            out.write(header_line(sim.fmt))
        start = time.monotonic()
        for t, frame in sim.timed_frames(args.count):
            if args.duration is not None and t >= args.duration:
                break
            if not args.fast:
                delay = start + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the output, not waiting for a thread
            out.write(encode(frame, sim.fmt))
            if not args.fast:
                out.flush()
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return 0
