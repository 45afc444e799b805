"""The one interface every notifier kind delivers through."""

from __future__ import annotations

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

    def left(self) -> float:
        """Seconds left; TimeoutError once there are none."""
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining
