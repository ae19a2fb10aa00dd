"""systemd's notify protocol (sd_notify(3)) without libsystemd: datagrams to ``$NOTIFY_SOCKET``.

The service sends ``READY=1`` once it can process frames, ``WATCHDOG=1`` from the frame loop itself
(so a hung loop stops the pings and systemd restarts the unit), ``STATUS=...`` with rates, and
``STOPPING=1`` on shutdown. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Mapping, Optional

log = logging.getLogger(__name__)


class SdNotifier:
    """Sender of sd_notify messages.

    Parameters
    ----------
    env : mapping, optional
        Where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (default ``os.environ``).
        A path starting with ``@`` is an abstract-namespace socket.
    """

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]
        elif addr.startswith("/"):
            self.address = addr
        elif addr:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; notifications off", addr)
        self.watchdog_usec = 0
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: Optional[socket.socket] = None
        self._failed = False
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self._sock is not None

    @property
    def watchdog_interval(self) -> Optional[float]:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when off."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, message: str) -> bool:
        """Send one datagram (newline-separated ``KEY=VALUE`` assignments); True if it was sent."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError as e:
            if not self._failed:  # say it once; the service keeps running without the manager
                log.warning("sd_notify to %r failed: %s", self.address, e)
                self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


__all__ = ["SdNotifier"]
