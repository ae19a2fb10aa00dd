"""`edge-aether run` as systemd runs it: a real NOTIFY_SOCKET, the watchdog, SIGTERM, exit status,
and an output file that loses nothing."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NotifySocket:
    """The service manager's end: a unix datagram socket that collects notify messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[str] = []

    def wait_for(self, key: str, timeout: float, proc=None) -> float:
        """Collect messages until one contains ``key`` (e.g. 'READY=1'); return its arrival time."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key} within {timeout} s; got {self.messages}")
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"service exited ({proc.returncode}) before {key}: "
                                     f"{proc.stderr.read().decode(errors='replace')[-2000:]}")
            self.sock.settimeout(min(left, 0.5))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append(msg)
            if key in msg.split("\n"):
                return time.monotonic()

    def close(self) -> None:
        self.sock.close()


def _run(args, env_extra, tmp_path):
    env = dict(os.environ, **env_extra)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.Popen([sys.executable, "-m", "edge_aether.cli", "run", "--no-config", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_notify_ready_watchdog_stopping_and_nothing_lost(tmp_path):
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    out = tmp_path / "out.jsonl"
    proc = _run(["--source", "pty-sim://?nodes=2&rate=200&seed=5", "--out", str(out),
                 "--stats-interval", "0.3"],
                {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"}, tmp_path)
    try:
        ns.wait_for("READY=1", timeout=180, proc=proc)   # first run compiles (numba caches on disk)
        ns.wait_for("WATCHDOG=1", timeout=10, proc=proc)
        ns.wait_for("WATCHDOG=1", timeout=10, proc=proc)
        deadline = time.monotonic() + 20
        while not (out.exists() and out.stat().st_size > 4000):
            assert time.monotonic() < deadline, "no output lines while frames flow"
            time.sleep(0.02)  # polling the output file with a deadline
        ns.wait_for("WATCHDOG=1", timeout=10, proc=proc)  # still pinging while frames flow
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        ns.wait_for("STOPPING=1", timeout=10, proc=None)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t_term
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()
    assert rc == 0, err[-3000:]
    assert took < 5.0
    assert any(m.startswith("STATUS=") and "frames/s" in m for m in ns.messages)
    lines = out.read_text().split("\n")
    assert lines[-1] == ""  # the file ends with a complete line
    objs = [json.loads(t) for t in lines[:-1]]
    m = re.search(r"stopped \(signal SIGTERM\): (\d+) frames in, (\d+) outputs, drops (\d+), rejects (\d+)", err)
    assert m, err[-3000:]
    frames_in, outputs, drops, rejects = map(int, m.groups())
    assert len(objs) == outputs == frames_in - rejects
    assert drops == 0
    assert {o["node"] for o in objs} == {"mac:24:0a:c4:00:05:00", "mac:24:0a:c4:00:05:01"}


def test_unknown_key_is_one_clear_line(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[input]\nsources = ["sim://"]\nbuad = 115200\n')
    proc = subprocess.run([sys.executable, "-m", "edge_aether.cli", "run", "--config", str(cfg)],
                          cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == 78
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "unknown key 'input.buad'" in err[0] and "sources" in err[0], err
    assert proc.stdout == b""
