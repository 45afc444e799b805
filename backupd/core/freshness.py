"""Freshness of a source: is its newest restorable backup, held by enough destinations, recent enough?

Pure: the daemon's watchdog gives the backups as `Restorable` (when each was taken, on which
destinations an undamaged copy of it lies) and the source's `max_age` and `min_copies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable


@dataclass(frozen=True)
class Restorable:
    """One backup of a source: when it was taken and the destinations holding a good copy of it."""

    created_at: datetime
    destinations: frozenset[str]


@dataclass(frozen=True)
class Freshness:
    """The verdict: `newest` is the newest backup with copies on >= min_copies destinations (None: none),
    `age_s` its age (None without one); stale when there is none or it is older than max_age."""

    stale: bool
    newest: datetime | None
    age_s: float | None
    max_age_s: float


def freshness(backups: Iterable[Restorable], max_age_s: float, min_copies: int, now: datetime) -> Freshness:
    """The freshness of a source whose backups are `backups`, at `now`."""
    newest = max((b.created_at for b in backups if len(b.destinations) >= min_copies), default=None)
    if newest is None:
        return Freshness(True, None, None, max_age_s)
    age = (now - newest).total_seconds()
    return Freshness(age > max_age_s, newest, age, max_age_s)
