"""The one interface every notifier kind delivers through."""

from __future__ import annotations

import socket
import threading
import time
from abc import ABC, abstractmethod

from backupd.core.events import Event


class DeliveryFailed(Exception):
    """An attempt that did not deliver. `gone`: the receiver said the endpoint is gone for good (HTTP
    410), so the notifier is disabled; otherwise the outbox retries it later."""

    def __init__(self, message: str, *, gone: bool = False):
        super().__init__(message)
        self.message = message
        self.gone = gone


class Transport(ABC):
    """Delivers events to one configured notifier."""

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def send(self, event: Event, *, timeout: float) -> None:
        """Deliver `event` within `timeout` seconds; raise DeliveryFailed when it was not delivered."""


class Deadline:
    """One attempt's `timeout` as a point in time: each step of a delivery gets what is left of it."""

    def __init__(self, timeout: float):
        self.timeout, self.end = timeout, time.monotonic() + timeout
        self.expired = False  # a guarded socket was shut down because the time was up
        self._guarded: dict[int, threading.Timer] = {}

    def left(self) -> float:
        """Seconds left; TimeoutError once there are none."""
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    def guard(self, sock: socket.socket) -> None:
        """Shut `sock` down when the time is up: a receiver that trickles a byte at a time, each within
        the socket's own timeout, cannot hold the attempt past its end."""
        if id(sock) in self._guarded:
            return

        def cut() -> None:
            self.expired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already

        timer = threading.Timer(max(self.end - time.monotonic(), 0.0), cut)
        timer.daemon = True
        self._guarded[id(sock)] = timer
        timer.start()

    def close(self) -> None:
        """The attempt is over: no guard fires any more."""
        for timer in self._guarded.values():
            timer.cancel()
