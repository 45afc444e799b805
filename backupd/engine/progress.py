"""Progress of a job: phase, bytes done of total, percentage, rate and ETA."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Progress:
    phase: str = "starting"
    done_bytes: int = 0
    total_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def percent(self) -> float:
        return 100.0 * self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def rate(self) -> float:
        """Bytes per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.done_bytes / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        r = self.rate
        return (self.total_bytes - self.done_bytes) / r if r > 0 and self.total_bytes else None

    def to_dict(self) -> dict:
        return {"phase": self.phase, "done_bytes": self.done_bytes, "total_bytes": self.total_bytes,
                "percent": round(self.percent, 1), "rate": round(self.rate), "eta_s": self.eta_s}


ProgressSink = Callable[[Progress], None]


class Reporter:
    """Updates one Progress and tells a sink, at most every `interval` seconds (and on phase changes)."""

    def __init__(self, sink: ProgressSink | None, interval: float = 0.2):
        self.progress = Progress()
        self._sink = sink
        self._interval = interval
        self._last = 0.0

    def phase(self, name: str, total_bytes: int = 0) -> None:
        self.progress = Progress(phase=name, total_bytes=total_bytes)
        self._emit(force=True)

    def advance(self, nbytes: int) -> None:
        self.progress.done_bytes += nbytes
        self._emit()

    def _emit(self, force: bool = False) -> None:
        if self._sink is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self._interval or self.progress.done_bytes >= self.progress.total_bytes:
            self._last = now
            self._sink(self.progress)
