"""``edge-aether run``: ESP32 sources -> per-node featuriser -> per-node head stream -> JSON lines.

The frame loop batches: it takes whatever frames are waiting from every source, featurises each
frame with its node's featuriser, advances the node's head stream (one compiled call per frame),
computes class probabilities for the whole batch at once, writes the batch's lines with one write
and one flush, and pings the systemd watchdog. Streams are created on a node's first frame and reset
when the node reboots, skips more than ``input.max_seq_gap`` frames, or is silent for longer than
``input.reset_gap_s`` (DESIGN.md section 3).

Log lines (stderr) and outputs (stdout or ``output.file``) never mix. Exit status: 0 after a normal
stop (SIGTERM/SIGINT, ``--max-frames``, ``--duration``, bounded sources drained), 1 when a source
fails for good at run time (systemd restarts the unit), 78 (EX_CONFIG) for bad settings, a missing
model or an unusable port at start.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import signal
import threading
import time
from typing import Callable, Optional

import numpy as np

from . import config as cfgmod
from .errors import ConfigError, EdgeAetherError
from .sdnotify import SdNotifier
from .sinks import JsonLinesSink, LineFormatter

log = logging.getLogger(__name__)

#: Exit status for bad settings (sysexits EX_CONFIG); the unit does not restart on it.
EXIT_CONFIG = 78
#: Exit status when a source fails at run time (systemd restarts the unit).
EXIT_FAILURE = 1
#: Latency samples kept for the percentiles of one stats interval (a ring: the newest win).
_LAT_RING = 1 << 16
#: Longest blocking read when several sources are polled in turn (seconds).
_MULTI_POLL_S = 0.002
_SCHEMES = ("serial", "udp", "replay", "sim", "pty-sim")


class NodeState:
    """One ESP32 node: its featuriser, its head stream, its counters."""

    __slots__ = ("key", "node", "index", "feat", "stream", "rows", "frames", "outputs", "rejects",
                 "lost", "resets", "last_host", "interval_frames")

    def __init__(self, key, node: str, index: int, feat, stream) -> None:
        self.key, self.node, self.index = key, node, index
        self.feat, self.stream = feat, stream
        self.rows = np.empty((feat.max_rows, feat.recipe.in_dim), np.float32)
        self.frames = self.outputs = self.rejects = self.lost = self.resets = 0
        self.interval_frames = 0
        self.last_host = -1e300


def _check_sources(urls: list) -> None:
    for i, url in enumerate(urls):
        if "://" in url:
            scheme = url.split("://", 1)[0].lower()
            if scheme not in _SCHEMES:
                raise ConfigError(f"input.sources[{i}]: found {url!r}, expected a URL with scheme "
                                  f"{', '.join(s + '://' for s in _SCHEMES)} or a device path")
        elif not url.startswith("/"):
            raise ConfigError(f"input.sources[{i}]: found {url!r}, expected a URL (serial:///dev/..., "
                              "udp://HOST:PORT, replay://FILE, sim://, pty-sim://) or an absolute path")


def _is_serial(url: str) -> bool:
    return url.startswith("serial://") or "://" not in url


class Service:
    """The frame loop and everything it owns (model, featurisers, streams, sources, sink).

    Parameters
    ----------
    settings : config.Settings
        Validated settings.
    head : optional
        An already loaded head (``TemporalHead`` or ``OrtTemporalHead``); default: load
        ``model.path`` with ``model.backend``.
    sink : JsonLinesSink, optional
        Default: ``output.file`` (or stdout).
    notifier : SdNotifier, optional
        Default: from the environment (a no-op outside systemd).
    sources : list, optional
        Already opened sources (tests, bench); default: open ``input.sources``.
    """

    def __init__(self, settings: cfgmod.Settings, head=None, sink: Optional[JsonLinesSink] = None,
                 notifier: Optional[SdNotifier] = None, sources: Optional[list] = None) -> None:
        self.settings = settings
        self.head = head
        self.sink = sink
        self.notifier = notifier if notifier is not None else SdNotifier()
        self.sources = sources
        self._own_sources = sources is None
        self.nodes: dict = {}
        self.node_list: list[NodeState] = []
        self.frames_in = 0
        self.outputs = 0
        self.rejects = 0
        self.failure: Optional[BaseException] = None
        self.ready_time: Optional[float] = None
        self._stop = threading.Event()
        self._stop_reason = ""
        self._lat = np.zeros(_LAT_RING, np.float64)
        self._lat_node = np.zeros(_LAT_RING, np.int32)
        self._lat_n = 0
        self._cap = 0
        self._interval_start = 0.0
        self._interval_outputs = 0
        self._last_drops = 0
        self.latencies_us: Optional[list] = None   # set to a list to keep every latency (bench)

    # -- start ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model, compile every kernel the loop calls, open the sources, send READY=1."""
        s = self.settings
        _check_sources(s["input.sources"])
        if self.head is None:
            self.head = load_head(s["model.path"], s["model.backend"])
        head = self.head
        self.recipe = make_recipe(head, s.recipe_overrides())
        horizon = s["model.horizon"] or head.pattern.horizon or 1024
        if horizon < head.pattern.window:
            raise ConfigError(f"model.horizon: found {horizon}, expected at least the model's window "
                              f"({head.pattern.window}), or 0 for the model's own horizon")
        self.horizon = int(horizon)
        self.class_names = tuple(head.class_names) if head.n_classes else ()
        self.formatter = LineFormatter(self.class_names, s["output.digits"], s["output.embedding"])
        self._warm_up()
        if self.sink is None:
            self.sink = JsonLinesSink(s["output.file"] or None, int(s["output.rotate_mb"] * (1 << 20)),
                                      s["output.keep"])
        if self.sources is None:
            self.sources = open_sources(s["input.sources"], s)
        self._grow(256)
        self._wall_offset = time.time() - time.monotonic()
        self.ready_time = time.monotonic()
        self._interval_start = self.ready_time
        names = ", ".join(getattr(src, "name", "?") for src in self.sources)
        log.info("ready: model %s (%s backend, in_dim %d, horizon %d, recipe %s), sources: %s",
                 getattr(head, "model_path", "given"), s["model.backend"], head.in_dim, self.horizon,
                 self.recipe.id, names)
        self.notifier.ready(f"ready: {len(self.sources)} source(s), waiting for frames")

    def _warm_up(self) -> None:
        """Compile the featuriser's and the head stream's kernels (cached on disk by numba)."""
        from . import features

        features.prepare(self.recipe)
        st = self.head.stream(horizon=self.horizon)
        st.step(np.zeros(self.head.in_dim, np.float32))
        st.reset()

    def _grow(self, n: int) -> None:
        cap = max(n, 2 * self._cap)
        self._cap = cap
        self._logits = np.zeros((cap, max(self.head.n_classes, 1)), np.float32)
        self._emb = np.zeros((cap, self.head.in_dim), np.float32) if self.formatter.embedding else None
        self._host = np.zeros(cap, np.float64)
        self._bnode = np.zeros(cap, np.int32)

    # -- the loop -------------------------------------------------------------------------------
    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop (thread- and signal-safe); it drains, flushes and returns."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Run until stopped or the sources end; returns the exit status."""
        if self.ready_time is None:
            self.start()
        s = self.settings
        notifier = self.notifier
        wd = notifier.watchdog_interval
        max_frames = s["service.max_frames"]
        deadline = self.ready_time + s["service.duration_s"] if s["service.duration_s"] else None
        stats_every = s["service.stats_interval_s"]
        next_stats = self.ready_time + stats_every
        timeout = 0.1 if wd is None else min(0.1, wd / 4)
        next_wd = time.monotonic()
        sources = self.sources
        multi = len(sources) > 1
        turn = 0
        status = 0
        batch_s = s["service.batch_ms"] / 1000.0
        last_batch = 0.0
        try:
            while not self._stop.is_set():
                if batch_s:
                    # Let frames gather: the per-batch costs (wake-ups, write, flush) are shared.
                    wait = last_batch + batch_s - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                    last_batch = time.monotonic()
                frames: list = []
                live = [i for i, src in enumerate(sources) if not src.ended]
                if not live:
                    self.stop("sources ended")
                    break
                if multi:
                    first = live[turn % len(live)]
                    turn += 1
                    frames = [(first, f) for f in sources[first].read(_MULTI_POLL_S)]
                    for i in live:
                        if i != first:
                            frames.extend((i, f) for f in sources[i].read(0.0))
                else:
                    frames = [(live[0], f) for f in sources[live[0]].read(timeout)]
                if frames:
                    self._process(frames, max_frames)
                now = time.monotonic()
                if wd is not None and now >= next_wd:
                    notifier.watchdog()
                    next_wd = now + wd
                if max_frames and self.outputs >= max_frames:
                    self.stop(f"--max-frames {max_frames} reached")
                elif deadline is not None and now >= deadline:
                    self.stop(f"--duration {s['service.duration_s']:g} s reached")
                if now >= next_stats:
                    self.log_stats(now)
                    next_stats = now + stats_every
        except BrokenPipeError:  # the reader of stdout went away (`edge-aether run | head`): a normal end
            self._stop_reason = "output pipe closed"
            self.failure = None
            _silence_stdout()
        except EdgeAetherError as e:
            self.failure = e
            log.error("stopping: %s", e)
            status = EXIT_FAILURE
        except Exception as e:  # firmware_bridge errors (reader threads) and anything unexpected
            self.failure = e
            log.error("stopping: %s: %s", type(e).__name__, e)
            status = EXIT_FAILURE
        notifier.stopping(f"stopping: {self._stop_reason or 'failure'}")
        self._drain(max_frames)
        return status

    def _drain(self, max_frames: int) -> None:
        """Close the sources, process what they still hold, flush and fsync the output."""
        if self._own_sources:
            for src in self.sources or ():
                try:
                    src.close()
                except Exception as e:  # closing must not hide the frames still queued
                    log.warning("closing %s: %s", getattr(src, "name", src), e)
        if self.failure is None and not (max_frames and self.outputs >= max_frames):
            for i, src in enumerate(self.sources or ()):
                for _ in range(64):  # bounded: a closed source's queue only empties
                    try:
                        got = src.read(0.0)
                    except Exception:
                        break
                    if not got:
                        break
                    self._process([(i, f) for f in got], max_frames)
        if self.sink is not None:
            self.sink.close()
        self.log_stats(time.monotonic(), final=True)

    def close(self) -> None:
        """Release what a failed start opened (sources, output file)."""
        if self._own_sources:
            for src in self.sources or ():
                src.close()
        if self.sink is not None:
            self.sink.close()

    def _node(self, src_index: int, frame) -> NodeState:
        key = (src_index, frame.node)
        st = self.nodes.get(key)
        if st is None:
            from .features import NodeFeaturiser

            st = NodeState(key, frame.node, len(self.node_list), NodeFeaturiser(self.recipe),
                           self.head.stream(horizon=self.horizon))
            self.nodes[key] = st
            self.node_list.append(st)
            log.info("new node %s (stream %d)", frame.node, st.index)
        return st

    def _process(self, frames: list, max_frames: int = 0) -> None:
        """Featurise, step and write one batch of (source index, frame)."""
        n = len(frames)
        if n > self._cap:
            self._grow(n)
        logits, emb, host, bnode = self._logits, self._emb, self._host, self._bnode
        has_cls = bool(self.class_names)
        reset_gap = self.settings["input.reset_gap_s"]
        nodes: list = []
        seqs: list = []
        dev: list = []
        j = 0
        left = max_frames - self.outputs if max_frames else -1
        for src_index, fr in frames:
            if left == 0:
                break
            st = self.nodes.get((src_index, fr.node)) or self._node(src_index, fr)
            self.frames_in += 1
            st.frames += 1
            st.interval_frames += 1
            st.lost += fr.lost_before
            if fr.reset or fr.host_time - st.last_host > reset_gap:
                if st.frames > 1:
                    st.resets += 1
                    st.stream.reset()
                fr.reset = True  # the featuriser clears its running state too
            st.last_host = fr.host_time
            rows = st.feat.push(fr, st.rows)
            m = rows.shape[0]
            if m == 0:
                st.rejects += 1
                self.rejects += 1
                continue
            stream = st.stream
            for r in range(m):
                y = stream.step(rows[r])
            if has_cls:
                logits[j] = stream.logits
            if emb is not None:
                emb[j] = y
            host[j] = fr.host_time
            bnode[j] = st.index
            nodes.append(st.node)
            seqs.append(fr.seq)
            dev.append(fr.timestamp_us)
            st.outputs += 1
            j += 1
            left -= 1
        if j == 0:
            return
        probs = None
        if has_cls:
            z = logits[:j]
            z = np.exp(z - z.max(axis=1, keepdims=True))
            probs = z / z.sum(axis=1, keepdims=True)
        ready = time.monotonic()
        lat = (ready - host[:j]) * 1e6
        self._record_latency(lat, bnode[:j])
        text = self.formatter.format(nodes, seqs, dev, host[:j] + self._wall_offset,
                                     lat.astype(np.int64), probs, emb[:j] if emb is not None else None)
        self.sink.write(text, j)
        self.outputs += j

    def _record_latency(self, lat: np.ndarray, idx: np.ndarray) -> None:
        n = lat.shape[0]
        if self.latencies_us is not None:
            self.latencies_us.extend(lat.tolist())
        pos = self._lat_n % _LAT_RING
        if n > _LAT_RING:
            lat, idx, n, pos = lat[-_LAT_RING:], idx[-_LAT_RING:], _LAT_RING, 0
        end = pos + n
        if end <= _LAT_RING:
            self._lat[pos:end] = lat
            self._lat_node[pos:end] = idx
        else:
            k = _LAT_RING - pos
            self._lat[pos:] = lat[:k]
            self._lat_node[pos:] = idx[:k]
            self._lat[:n - k] = lat[k:]
            self._lat_node[:n - k] = idx[k:]
        self._lat_n += n

    # -- stats ----------------------------------------------------------------------------------
    def source_stats(self) -> dict:
        """Summed counters of the sources: dropped (queue), rejected (decoder), lost, reboots."""
        drops = rejected = lost = 0
        for src in self.sources or ():
            try:
                st = src.stats()
            except Exception:
                continue
            drops += int(st.get("dropped_queue", 0))
            rej = st.get("rejected", {})
            rejected += sum(rej.values()) if isinstance(rej, dict) else int(rej or 0)
            lost += int(st.get("lost", 0))
        return {"drops": drops, "decoder_rejects": rejected, "lost": lost}

    def stats(self, now: Optional[float] = None) -> dict:
        """Counters and the current interval's rates and latency percentiles (per node and total)."""
        now = time.monotonic() if now is None else now
        dt = max(now - self._interval_start, 1e-9)
        n = min(self._lat_n, _LAT_RING)
        lat, lnode = self._lat[:n], self._lat_node[:n]
        per_node = {}
        for st in self.node_list:
            sel = lat[lnode == st.index]
            per_node[st.node] = {
                "frames": st.frames, "outputs": st.outputs, "rejects": st.rejects, "lost": st.lost,
                "resets": st.resets, "fps": st.interval_frames / dt,
                "latency_us_p50": float(np.percentile(sel, 50)) if sel.size else None,
                "latency_us_p99": float(np.percentile(sel, 99)) if sel.size else None,
            }
        src = self.source_stats()
        return {"frames_in": self.frames_in, "outputs": self.outputs, "rejects": self.rejects,
                "drops": src["drops"], "decoder_rejects": src["decoder_rejects"], "lost": src["lost"],
                "fps": (self.outputs - self._interval_outputs) / dt,
                "latency_us_p50": float(np.percentile(lat, 50)) if n else None,
                "latency_us_p99": float(np.percentile(lat, 99)) if n else None,
                "nodes": per_node}

    def log_stats(self, now: float, final: bool = False) -> dict:
        d = self.stats(now)

        def ms(v):
            return "-" if v is None else f"{v / 1000:.2f} ms"

        parts = [f"{d['fps']:.1f} frames/s, drops {d['drops']}, rejects {d['rejects'] + d['decoder_rejects']}, "
                 f"lost {d['lost']}, latency p50 {ms(d['latency_us_p50'])} p99 {ms(d['latency_us_p99'])}"]
        for node, nd in d["nodes"].items():
            parts.append(f"{node}: {nd['fps']:.1f}/s lost {nd['lost']} rejects {nd['rejects']} "
                         f"resets {nd['resets']} p50 {ms(nd['latency_us_p50'])} p99 {ms(nd['latency_us_p99'])}")
        if final:
            log.info("stopped (%s): %d frames in, %d outputs, drops %d, rejects %d | %s",
                     self._stop_reason or "failure", d["frames_in"], d["outputs"], d["drops"],
                     d["rejects"] + d["decoder_rejects"], " | ".join(parts))
        else:
            log.info("stats: %s", " | ".join(parts))
            self.notifier.status(f"{len(self.node_list)} nodes, {d['fps']:.1f} frames/s, drops {d['drops']}, "
                                 f"p99 {ms(d['latency_us_p99'])}")
        # a new interval
        self._interval_start = now
        self._interval_outputs = self.outputs
        self._lat_n = 0
        for st in self.node_list:
            st.interval_frames = 0
        self._wall_offset = time.time() - time.monotonic()  # follow NTP steps
        return d


# ---------------------------------------------------------------------------------------------
# Building blocks

def _silence_stdout() -> None:
    """Point stdout at /dev/null so later flushes (ours, the interpreter's at exit) do not raise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def load_head(path: str, backend: str):
    """Load a model file (empty path: the shipped default); ConfigError when it is missing."""
    from .model_store import default_model_path, load_head as load_model

    if not path:
        path = str(default_model_path())
    elif not os.path.isfile(path):
        raise ConfigError(f"model.path: {path} does not exist (or is not a file); pass the .onnx file, "
                          "or leave model.path empty for the shipped default model")
    elif not os.access(path, os.R_OK):
        raise ConfigError(f"model.path: {path} is not readable by this user")
    head = load_model(path, backend=backend)
    head.model_path = path
    return head


def make_recipe(head, overrides: dict):
    """The featuriser recipe: the model's own, with the configured features.* keys applied.

    Raises ModelError when the result is not the recipe the model was made for.
    """
    from .features import DEFAULT_RECIPE, FeatureRecipe, check_recipe

    rec = head.feature_recipe
    if isinstance(rec, str):
        base = FeatureRecipe.from_id(rec).to_dict()
    elif isinstance(rec, dict):
        base = dict(rec)
    else:
        base = DEFAULT_RECIPE.to_dict()
    base.pop("id", None)
    base.pop("in_dim", None)
    base.update(overrides)
    recipe = FeatureRecipe.from_dict(base)
    if rec is not None:
        check_recipe(rec, recipe)
    if recipe.in_dim != head.in_dim:
        from .errors import ModelError
        raise ModelError(f"the model takes in_dim {head.in_dim} but recipe {recipe.id} makes {recipe.in_dim}")
    return recipe


def open_sources(urls: list, settings) -> list:
    """Open every source URL; on a failure, close the ones already open and raise."""
    from firmware_bridge.nodes import NodeTracker
    from firmware_bridge.sources import open_source

    out = []
    try:
        for url in urls:
            opts = {"queue_size": settings["input.queue_size"],
                    "tracker": NodeTracker(max_gap=settings["input.max_seq_gap"])}
            if _is_serial(url) and settings["input.wait_for_port"]:
                opts["wait_for_port"] = True
            out.append(open_source(url, **opts))
    except BaseException:
        for src in out:
            src.close()
        raise
    return out


# ---------------------------------------------------------------------------------------------
# Command line

def configure_run(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the service: read ESP32 CSI sources, featurise every frame, run the temporal head per "
        "node and write one JSON line per frame. Without a config file and without --source it runs "
        "the embedded demo: 4 simulated ESP32 nodes on a pseudo-terminal, read through the serial path.")
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML settings (default: {cfgmod.DEFAULT_CONFIG_PATH} when it exists)")
    parser.add_argument("--no-config", action="store_true", help="ignore the default config file")
    parser.add_argument("--source", action="append", metavar="URL",
                        help="source URL (repeatable; replaces input.sources): serial:///dev/ttyUSB0, "
                             "udp://0.0.0.0:5005, replay://FILE, sim://?nodes=4, pty-sim://?nodes=4")
    parser.add_argument("--wait-for-port", action="store_true", default=None,
                        help="wait for absent serial ports instead of failing")
    parser.add_argument("--model", metavar="MODEL.onnx", help="model file (default: the shipped model)")
    parser.add_argument("--backend", choices=("numba", "onnxruntime"), help="head backend")
    parser.add_argument("--horizon", type=int, metavar="N", help="frames of look-back per node stream")
    parser.add_argument("--out", metavar="FILE", help="write JSON lines to FILE (rotated) instead of stdout")
    parser.add_argument("--embedding", action="store_true", default=None,
                        help="include the head's output vector in every line")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N output lines")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--stats-interval", type=float, metavar="S", help="seconds between stats lines")


def settings_from_args(args: argparse.Namespace) -> cfgmod.Settings:
    overrides = {
        "input.sources": args.source, "input.wait_for_port": args.wait_for_port,
        "model.path": args.model, "model.backend": args.backend, "model.horizon": args.horizon,
        "output.file": args.out, "output.embedding": args.embedding,
        "service.max_frames": args.max_frames, "service.duration_s": args.duration,
        "service.stats_interval_s": args.stats_interval,
    }
    return cfgmod.build(args.config, overrides, use_default_path=not args.no_config)


def _set_log_level(name: str) -> None:
    level = getattr(logging, name.upper())
    for logger_name in ("edge_aether", "firmware_bridge"):
        lg = logging.getLogger(logger_name)
        if lg.getEffectiveLevel() > level or lg.level == logging.NOTSET:
            lg.setLevel(min(level, logging.getLogger().getEffectiveLevel()))


def main_run(args: argparse.Namespace, on_ready: Optional[Callable[[Service], None]] = None) -> int:
    from firmware_bridge.errors import BridgeError

    try:
        settings = settings_from_args(args)
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_CONFIG
    _set_log_level(settings["service.log_level"])
    if settings.demo:
        log.info("no configuration: running the embedded demo (simulated ESP32 nodes on a "
                 "pseudo-terminal, read through the serial path, shipped model)")
    service = Service(settings)

    def on_signal(signum, _frame):
        service.stop(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            service.start()
        except EdgeAetherError as e:  # ConfigError, ModelError: a clear line, no traceback, no restart
            log.error("%s", e)
            service.close()
            return EXIT_CONFIG
        except BridgeError as e:  # a port that is not there (yet): systemd retries after RestartSec
            log.error("%s", e)
            service.close()
            return EXIT_FAILURE
        if on_ready is not None:
            on_ready(service)
        return service.run()  # a closed stdout pipe is a normal end inside run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "NodeState", "Service", "configure_run", "load_head",
           "main_run", "make_recipe", "open_sources"]
