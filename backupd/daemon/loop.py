"""The shape of the daemon's background threads: a loop woken early by `kick()` and ended by `stop()`."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class BackgroundLoop(ABC):
    """Runs `_loop` on a daemon thread named `thread_name`; `_loop` waits on `self._kick` between rounds
    and returns once `self._stop` is set. Used by the health monitor, the watchdog and the textfile writer."""

    thread_name = "loop"

    def __init__(self) -> None:
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Run a round now instead of at the next interval."""
        self._kick.set()

    def stop(self) -> None:
        """End the loop and wait (up to 5 s) for the thread."""
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @abstractmethod
    def _loop(self) -> None:
        """One thread's whole life: rounds until `self._stop` is set, waiting on `self._kick` between them."""
