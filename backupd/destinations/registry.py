"""Destination kind -> factory. New kinds register here and nowhere else."""

from __future__ import annotations

from typing import Any, Callable

from backupd.destinations.base import Destination
from backupd.destinations.local import LocalDestination

FACTORIES: dict[str, Callable[[Any], Destination]] = {
    "local": lambda cfg: LocalDestination(cfg.name, cfg.path),
}


def open_destination(cfg: Any) -> Destination:
    """Build the destination a `DestinationConfig` describes."""
    return FACTORIES[cfg.kind](cfg)
