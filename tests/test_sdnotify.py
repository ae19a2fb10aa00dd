"""sd_notify datagrams: path and abstract sockets, watchdog interval, no-op outside systemd."""
from __future__ import annotations

import os
import socket

from edge_aether.sdnotify import SdNotifier


def _receiver(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_path_socket_receives_each_message(tmp_path):
    path = str(tmp_path / "n.sock")
    rx = _receiver(path)
    n = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    assert n.enabled and n.watchdog_interval == 1.5
    assert n.ready("up") and n.watchdog() and n.status("4 nodes") and n.stopping()
    got = [rx.recv(1024).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=up", "WATCHDOG=1", "STATUS=4 nodes", "STOPPING=1"]
    n.close()
    rx.close()


def test_abstract_socket(tmp_path):
    name = f"edge-aether-test-{os.getpid()}"
    rx = _receiver("\0" + name)
    n = SdNotifier({"NOTIFY_SOCKET": "@" + name})
    assert n.ready()
    assert rx.recv(1024) == b"READY=1"
    rx.close()


def test_no_socket_is_a_no_op_and_watchdog_pid_must_match():
    n = SdNotifier({})
    assert not n.enabled and n.watchdog_interval is None and n.ready() is False
    other = SdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval is None


def test_a_vanished_manager_does_not_raise(tmp_path):
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.watchdog() is False and n.watchdog() is False
