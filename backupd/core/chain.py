"""Chains: which backups a restore needs, and which restore point serves a moment in time.

A full backup starts a chain; an incremental depends on the previous backup of its source, a
differential on the last full. `parent_id` names that dependency, so a chain is the parent walk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from backupd.core.vocab import Strategy
from backupd.errors import MissingChainMember, NoRestorePoint


class Link(Protocol):
    """What a parent walk reads of a backup."""

    @property
    def backup_id(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def parent_id(self) -> str | None: ...


class BackupLike(Link, Protocol):
    @property
    def created_at(self) -> str: ...


B = TypeVar("B", bound="BackupLike")
L = TypeVar("L", bound="Link")


def created(b: BackupLike) -> datetime:
    return datetime.fromisoformat(b.created_at)


def resolve_chain(target_id: str, by_id: Mapping[str, B]) -> list[B]:
    """The backups needed to restore `target_id`, full first; MissingChainMember names the gap."""
    if target_id not in by_id:
        raise MissingChainMember(f"backup {target_id} is not known", details={"missing": target_id})
    members, gap = walk(by_id[target_id], by_id)
    if gap is not None:
        raise gap
    return members


def walk(target: L, by_id: Mapping[str, L]) -> tuple[list[L], MissingChainMember | None]:
    """The chain of `target` full first, as far as the parent walk gets, and the gap that stopped it
    (None when the chain is complete)."""
    target_id = target.backup_id
    chain = [target]
    while chain[-1].strategy != Strategy.FULL:
        parent = chain[-1].parent_id
        if parent is None or parent not in by_id:
            chain.reverse()
            return chain, MissingChainMember(
                f"backup {target_id} needs {parent}, which is missing (needed by {chain[0].backup_id})",
                hint="restore an older or newer restore point whose chain is complete, or rebuild the catalog",
                details={"missing": parent, "needed_by": chain[0].backup_id, "target": target_id},
            )
        if len(chain) > len(by_id):
            chain.reverse()
            return chain, MissingChainMember(f"backup {target_id} has a cyclic chain")
        chain.append(by_id[parent])
    chain.reverse()
    return chain, None


def spread_to_chains(wanted: Mapping[str, set[str]], backups: Iterable[B]) -> dict[str, set[str]]:
    """`wanted` (backup id -> where it is wanted) grown so that a backup is wanted wherever one whose
    chain needs it is. `backups` oldest first."""
    out = {k: set(v) for k, v in wanted.items()}
    for b in reversed(list(backups)):  # newest first: a dependent before what it depends on
        if b.parent_id in out and b.backup_id in out:
            out[b.parent_id] |= out[b.backup_id]
    return out


def restore_point_at(backups: Iterable[B], at: datetime) -> tuple[B, timedelta]:
    """The newest backup created at or before `at`, and how far before `at` it is."""
    candidates = [b for b in backups if created(b) <= at]
    if not candidates:
        raise NoRestorePoint(
            f"no restore point at or before {at.isoformat()}",
            hint="list restore points with `backupd list` and pick a later time",
        )
    best = max(candidates, key=lambda b: (created(b), b.backup_id))
    return best, at - created(best)


def newest(backups: Iterable[B]) -> B | None:
    return max(backups, key=lambda b: (created(b), b.backup_id), default=None)


def delta_destinations(destinations: Iterable[str], lacking: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """Where a delta goes when `lacking` (destination -> why) cannot extend the chain: every other
    destination, so one lacking the chain never forces a full onto those that hold it; () when none
    holds it (a full everywhere). Also the note for the backup's recorded reason."""
    holders = tuple(d for d in destinations if d not in lacking)
    if not holders or not lacking:
        return holders, ""
    why = "; ".join(f"destination {d} lacks the chain ({r})" for d, r in sorted(lacking.items()))
    return holders, f"{why}: delta on {', '.join(holders)}, resync brings {', '.join(sorted(lacking))} up"
