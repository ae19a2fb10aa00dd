"""End to end: simulated ESP32 nodes on real pseudo-terminals, through the service's own frame loop.

Three processes, so that each number belongs to what it names:

* a load generator (``python -m edge_aether.bench.e2e load ...``) pre-encodes the simulated nodes'
  CSI lines (4 nodes per pseudo-terminal, like one receiver board per USB port), then writes them
  paced in real time; its CPU is not the service's;
* a measuring process (``... measure ...``) runs ``edge_aether.service.Service`` on those ports
  (serial sources, featurisers, head streams, JSON lines to /dev/null) and reports frames/s, drops,
  latency from bytes arrived to output ready, CPU time per frame of the whole process (reader
  threads included) and peak RSS;
* ``edge-aether run`` subprocesses with a ``NOTIFY_SOCKET`` time launch -> READY=1 with an empty
  (``cold_start_s``) and a filled (``warm_start_s``) ``NUMBA_CACHE_DIR``.

Keys: ``e2e_fps``, ``e2e_cpu_us_per_frame``, ``e2e_cpu_percent``, ``e2e_latency_us_p50``,
``e2e_latency_us_p99``, ``e2e_drops``, ``e2e_loop_cpu_us_per_frame`` (the frame loop's thread alone;
the rest is firmware_bridge's reader threads), ``rss_mb``, ``max_nodes_100hz`` (the largest node count in
4, 8, 16, 32, 64 at 100 Hz with no drops, the achieved rate within 3 % and the process below 90 % of
one core; with ``--quick`` only 16 is tried after 4), ``cold_start_s``, ``warm_start_s``.
With ``--quick`` the cold start runs alongside the throughput runs (``cold_start_concurrent``).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

RATE_HZ = 100.0
NODES = 4
NODES_PER_PORT = 4
SEARCH = (4, 8, 16, 32, 64)
_PY = sys.executable


def _repo_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------------
# start-up time

def time_to_ready(cache_dir: str, model: str | None, timeout: float = 600.0) -> float:
    """Seconds from launching ``edge-aether run`` (embedded demo source) to its READY=1."""
    with tempfile.TemporaryDirectory(prefix="ea-notify-") as d:
        path = os.path.join(d, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        cmd = [_PY, "-m", "edge_aether.cli", "run", "--no-config", "--out", os.devnull]
        if model:
            cmd += ["--model", model]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=_repo_env({"NOTIFY_SOCKET": path, "NUMBA_CACHE_DIR": cache_dir}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while True:
                left = t0 + timeout - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace")[-1000:] if proc.poll() is not None else ""
                    raise RuntimeError(f"edge-aether run did not report READY=1: {err}")
                sock.settimeout(min(left, 0.5))
                try:
                    msg = sock.recv(4096).decode()
                except socket.timeout:
                    continue
                if "READY=1" in msg.split("\n"):
                    return time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stderr.close()
            sock.close()


# ---------------------------------------------------------------------------------------------
# load generator (child process)

def _load_main(nodes: int, rate: float, seconds: float, per_port: int, seed: int) -> int:
    import tty

    from firmware_bridge.sim import Simulator, encode

    schedule = []
    ports = []
    for p, first in enumerate(range(0, nodes, per_port)):
        k = min(per_port, nodes - first)
        sim = Simulator(nodes=k, rate_hz=rate, seed=seed + p, loss=0.0)
        for t, frame in sim.timed_frames():
            if t >= seconds:
                break
            schedule.append((t + p * 1e-4, p, encode(frame, sim.fmt)))
        master, slave = os.openpty()
        tty.setraw(slave)
        ports.append((master, slave, os.ttyname(slave)))
    schedule.sort(key=lambda e: e[0])
    print(json.dumps({"paths": [p[2] for p in ports], "frames": len(schedule)}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    t0 = time.monotonic()
    late = 0.0
    i, n = 0, len(schedule)
    while i < n:
        now = time.monotonic() - t0
        t = schedule[i][0]
        if t > now:
            time.sleep(t - now)  # pacing the simulated radios
            continue
        late = max(late, now - t)
        while i < n and schedule[i][0] <= now:
            _, p, data = schedule[i]
            os.write(ports[p][0], data)
            i += 1
    print(json.dumps({"written": n, "late_max_ms": late * 1e3}), flush=True)
    sys.stdin.read()  # keep the terminals open until the measurer is done
    return 0


# ---------------------------------------------------------------------------------------------
# measuring process (child process)

def _rss_mb() -> tuple[float, float]:
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def _measure_one(head, nodes: int, seconds: float, rate: float, per_port: int, seed: int) -> dict:
    import numpy as np

    from edge_aether import config as cfgmod
    from edge_aether.service import Service
    from edge_aether.sinks import JsonLinesSink

    gen = subprocess.Popen([_PY, "-m", "edge_aether.bench.e2e", "load", str(nodes), str(rate), str(seconds),
                            str(per_port), str(seed)], env=_repo_env(), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(gen.stdout.readline())
        settings = cfgmod.build(None, {
            "input.sources": [f"serial://{p}" for p in info["paths"]],
            "service.max_frames": info["frames"], "service.duration_s": seconds + 3.0,
            "service.stats_interval_s": 3600.0, "service.log_level": "warning",
        }, use_default_path=False)
        svc = Service(settings, head=head, sink=JsonLinesSink(os.devnull))
        svc.latencies_us = []
        svc.start()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        c0, m0, t0 = time.process_time(), time.thread_time(), time.monotonic()
        svc.ready_time = t0  # the duration counts from the first frame sent
        svc.run()
        c1, m1, t1 = time.process_time(), time.thread_time(), time.monotonic()
        src = svc.source_stats()
        gen.stdin.close()
        done = json.loads(gen.stdout.readline() or "{}")
    finally:
        if gen.poll() is None:
            try:
                gen.wait(10)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
    lat = np.asarray(svc.latencies_us, np.float64)
    written = int(done.get("written", info["frames"]))
    elapsed = max(t1 - t0, 1e-9)
    return {
        "nodes": nodes, "frames_written": written, "outputs": svc.outputs,
        "drops": max(0, written - svc.outputs - svc.rejects),
        "queue_drops": src["drops"],
        "fps": svc.outputs / elapsed, "target_fps": nodes * rate,
        "cpu_us_per_frame": (c1 - c0) / max(svc.outputs, 1) * 1e6,
        "cpu_percent": (c1 - c0) / elapsed * 100.0,
        "loop_cpu_us_per_frame": (m1 - m0) / max(svc.outputs, 1) * 1e6,
        "latency_us_p50": float(np.percentile(lat, 50)) if lat.size else None,
        "latency_us_p99": float(np.percentile(lat, 99)) if lat.size else None,
        "generator_late_max_ms": done.get("late_max_ms"),
    }


def _measure_main(model: str, plan: list, rate: float, per_port: int, quick_cap: int) -> int:
    from edge_aether.service import load_head

    head = load_head(model or "", "numba")
    results = []
    for i, (nodes, seconds) in enumerate(plan):
        r = _measure_one(head, nodes, seconds, rate, per_port, seed=10 + i)
        if i == 0:
            r["rss_mb"], r["rss_peak_mb"] = _rss_mb()
        results.append(r)
        print(json.dumps(r), flush=True)
        if i > 0 and not _keeps_up(r):
            break
    return 0


def _keeps_up(r: dict) -> bool:
    return r["drops"] == 0 and r["fps"] >= 0.97 * r["target_fps"] and r["cpu_percent"] < 90.0


# ---------------------------------------------------------------------------------------------
# the bench section

def run(ctx) -> dict:
    quick = bool(getattr(ctx, "quick", False))
    progress = getattr(ctx, "progress", lambda msg: None)
    model = getattr(ctx, "model", None) or ""
    seconds = 3.0 if quick else 10.0
    search_s = 2.0 if quick else 5.0
    cap = 16 if quick else SEARCH[-1]
    steps = (16,) if quick else SEARCH  # --quick checks the 16-node target directly
    plan = [(NODES, seconds)] + [(n, search_s) for n in steps if NODES < n <= cap]
    out: dict = {}
    cold_dir = tempfile.mkdtemp(prefix="ea-numba-cold-")
    cold_proc = None
    if quick:  # cold start alongside the throughput runs, to stay near 30 s
        progress("e2e: cold start (alongside)")
        cold_proc = subprocess.Popen([_PY, "-c", "import sys, json; from edge_aether.bench.e2e import "
                                      "time_to_ready; print(json.dumps(time_to_ready(sys.argv[1], sys.argv[2] or None)))",
                                      cold_dir, model], env=_repo_env(), stdout=subprocess.PIPE, text=True)
    else:
        progress("e2e: cold start")
        out["cold_start_s"] = time_to_ready(cold_dir, model or None)
    progress(f"e2e: {NODES} nodes at {RATE_HZ:g} Hz for {seconds:g} s, then up to {cap} nodes")
    proc = subprocess.run([_PY, "-m", "edge_aether.bench.e2e", "measure", model, json.dumps(plan), str(RATE_HZ),
                           str(NODES_PER_PORT), str(cap)], env=_repo_env(), capture_output=True, text=True,
                          timeout=600)
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not rows:
        raise RuntimeError(f"e2e measurement failed: {proc.stderr[-2000:]}")
    base = rows[0]
    out.update({
        "e2e_fps": base["fps"], "e2e_cpu_us_per_frame": base["cpu_us_per_frame"],
        "e2e_cpu_percent": base["cpu_percent"], "e2e_loop_cpu_us_per_frame": base["loop_cpu_us_per_frame"], "e2e_latency_us_p50": base["latency_us_p50"],
        "e2e_latency_us_p99": base["latency_us_p99"], "e2e_drops": base["drops"],
        "e2e_nodes": NODES, "e2e_rate_hz": RATE_HZ, "e2e_seconds": seconds,
        "rss_mb": base["rss_peak_mb"],
    })
    best = NODES if _keeps_up(base) else 0
    for r in rows[1:]:
        out[f"e2e_cpu_us_per_frame_{r['nodes']}n"] = r["cpu_us_per_frame"]
        if not _keeps_up(r):
            break
        best = r["nodes"]
    out["max_nodes_100hz"] = best
    out["max_nodes_100hz_capped"] = best >= cap
    if cold_proc is not None:
        text, _ = cold_proc.communicate(timeout=600)
        out["cold_start_s"] = float(json.loads(text.strip().splitlines()[-1]))
        out["cold_start_concurrent"] = True
    progress("e2e: warm start")
    out["warm_start_s"] = time_to_ready(cold_dir, model or None)
    import shutil

    shutil.rmtree(cold_dir, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    if argv and argv[0] == "load":
        nodes, rate, seconds, per_port, seed = argv[1:6]
        return _load_main(int(nodes), float(rate), float(seconds), int(per_port), int(seed))
    if argv and argv[0] == "measure":
        model, plan, rate, per_port, cap = argv[1:6]
        return _measure_main(model, [tuple(p) for p in json.loads(plan)], float(rate), int(per_port), int(cap))
    from edge_aether.bench import BenchContext

    quick = "--quick" in argv
    print(json.dumps(run(BenchContext(quick=quick, progress=lambda m: print(m, file=sys.stderr))), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
