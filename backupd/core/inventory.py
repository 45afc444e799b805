"""The inventory: what the catalog holds, summed by source, strategy and destination.

A pure function of catalog rows. A *restore point* is a backup whose whole chain is in the catalog (on a
destination: whose whole chain that destination holds). Stored bytes count every copy; logical bytes
count each backup once (on a destination: the backups it holds). A chain length is the number of
backups the newest restore needs. A copy is missing from a destination when the backup is meant for it
and its retention keeps it there (`expected`, what resync would copy) but the destination lacks it.
Verification coverage is the share of backups with a copy verified in the last `days` days.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backupd.core import chain


@dataclass(frozen=True)
class CopyRow:
    destination: str
    stored_bytes: int
    verified_at: str | None = None  # ISO 8601 with a timezone


@dataclass(frozen=True)
class BackupRow:
    backup_id: str
    source: str
    strategy: str
    parent_id: str | None
    created_at: str  # ISO 8601 with a timezone
    logical_bytes: int
    copies: tuple[CopyRow, ...]


def _totals() -> dict[str, int]:
    return {"backups": 0, "restore_points": 0, "stored_bytes": 0, "logical_bytes": 0}


def _complete(b: BackupRow, by_id: Mapping[str, BackupRow]) -> bool:
    return chain.walk(b, by_id)[1] is None


def _chain_length(rows: list[BackupRow], by_id: Mapping[str, BackupRow]) -> int:
    """The number of backups the newest of `rows` needs (as far as `by_id` has them); 0 without any."""
    newest = chain.newest(rows)
    return len(chain.walk(newest, by_id)[0]) if newest is not None else 0


def summarize(backups: Iterable[BackupRow], expected: Mapping[str, set[str]], destinations: Iterable[str],
              now: datetime, days: int = 30) -> dict[str, Any]:
    """The inventory (a JSON object) of `backups`; `expected`: destination -> the backup ids it should
    hold; `destinations` every configured one (listed even when empty)."""
    rows = sorted(backups, key=lambda b: (chain.created(b), b.backup_id))
    by_id = {b.backup_id: b for b in rows}
    since = now - timedelta(days=days)
    totals = _totals()
    by_source: dict[str, dict[str, Any]] = {}
    by_strategy: dict[str, dict[str, int]] = {}
    by_dest: dict[str, dict[str, Any]] = {d: {**_totals(), "missing": [], "chain_length": {}}
                                          for d in [*destinations, *expected]}
    verified = 0
    for b in rows:
        point = _complete(b, by_id)
        src = by_source.setdefault(b.source, {**_totals(), "oldest": None, "newest": None, "chain_length": 0,
                                              "verified": 0})
        for t in (totals, src, by_strategy.setdefault(b.strategy, _totals())):
            t["backups"] += 1
            t["restore_points"] += int(point)
            t["stored_bytes"] += sum(c.stored_bytes for c in b.copies)
            t["logical_bytes"] += b.logical_bytes
        if point:
            src["oldest"] = src["oldest"] or b.created_at
            src["newest"] = b.created_at
        if any(c.verified_at and datetime.fromisoformat(c.verified_at) >= since for c in b.copies):
            verified += 1
            src["verified"] += 1
        for c in b.copies:
            d = by_dest.setdefault(c.destination, {**_totals(), "missing": [], "chain_length": {}})
            d["backups"] += 1
            d["stored_bytes"] += c.stored_bytes
            d["logical_bytes"] += b.logical_bytes
    for name, d in by_dest.items():
        held = {b.backup_id: b for b in rows if any(c.destination == name for c in b.copies)}
        d["restore_points"] = sum(_complete(b, held) for b in held.values())
        d["missing"] = [i for i in by_id if i in expected.get(name, set()) and i not in held]
        for source in sorted({b.source for b in held.values()}):
            d["chain_length"][source] = _chain_length([b for b in held.values() if b.source == source], held)
    for source, src in by_source.items():
        src["chain_length"] = _chain_length([b for b in rows if b.source == source], by_id)
    coverage = verified / len(rows) if rows else None
    return {"totals": totals, "by_source": by_source, "by_strategy": by_strategy, "by_destination": by_dest,
            "verification": {"days": days, "backups": len(rows), "verified": verified, "coverage": coverage}}
