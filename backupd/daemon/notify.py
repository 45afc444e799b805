"""sd_notify without libsystemd: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 over $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self) -> None:
        self._addr = os.environ.get("NOTIFY_SOCKET")
        if self._addr and self._addr.startswith("@"):
            self._addr = "\0" + self._addr[1:]  # abstract namespace
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        interval = int(usec) / 2e6 if usec and usec.isdigit() else None
        self.watchdog_interval: float | None = interval if not pid or pid == str(os.getpid()) else None

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines; False when not under systemd (or the send failed)."""
        if not self._addr:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto("\n".join(lines).encode(), self._addr)
            return True
        except OSError:
            return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")
