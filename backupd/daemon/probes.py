"""Machine load for the dispatch gate. `PsutilProbe` reads the real machine; `FileProbe` reads a JSON
file (`{"cpu_percent": .., "load_per_core": .., "free_memory": ..}`) so tests can drive the gate
through a running daemon without touching the machine — selected by $BACKUPD_LOAD_PROBE_FILE."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import psutil

from backupd.core.gate import Load


class LoadProbe(Protocol):
    def sample(self) -> Load: ...


class PsutilProbe:
    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # prime: the first reading is meaningless

    def sample(self) -> Load:
        load1 = os.getloadavg()[0]
        return Load(
            cpu_percent=psutil.cpu_percent(interval=None),
            load_per_core=load1 / (os.cpu_count() or 1),
            free_memory=psutil.virtual_memory().available,
        )


class FileProbe:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fallback = PsutilProbe()

    def sample(self) -> Load:
        try:
            d = json.loads(self.path.read_text())
            real = self._fallback.sample()
            return Load(
                cpu_percent=float(d.get("cpu_percent", real.cpu_percent)),
                load_per_core=float(d.get("load_per_core", real.load_per_core)),
                free_memory=int(d.get("free_memory", real.free_memory)),
            )
        except (OSError, ValueError, TypeError):
            return self._fallback.sample()


def default_probe() -> LoadProbe:
    path = os.environ.get("BACKUPD_LOAD_PROBE_FILE")
    return FileProbe(Path(path)) if path else PsutilProbe()
