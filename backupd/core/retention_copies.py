"""Retention's per destination limits: which copies of a source's globally kept backups stay.

`plan_copies` is steps 1-3 of "Per destination limits" in `core.retention`'s docstring: each
destination's window (max_count, max_age_days), kept backups with no live copy deleted whole unless
safe, chains held together per destination, and the last copy of a kept backup.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .retention import BackupInfo, RetentionPlan, RetentionPolicy


def plan_copies(
    items: list[BackupInfo],
    kept: list[BackupInfo],
    direct: set[str],
    safe: set[str],
    chains: Mapping[str, tuple[list[str], str | None]],
    policy: RetentionPolicy,
    now: datetime,
    plan: RetentionPlan,
) -> dict[str, list[str]]:
    """Apply the destination limits to the copies of one source's globally kept backups (newest
    first; `direct` are the ones a rule keeps, the others are kept for a chain): fill
    plan.keep_copies / plan.delete_copies, and return the kept backups that no copy keeps, and the
    chain members no surviving backup needs any more (backup id -> reasons), which are deleted whole."""
    limited = {d: lim for d, lim in policy.per_destination.items() if lim.active}
    if not limited:
        return {}
    within: dict[tuple[str, str], list[str]] = {}
    over: dict[tuple[str, str], list[str]] = {}
    for dest in sorted(limited):
        limits = limited[dest]
        # the window counts every backup of the source on the destination, kept globally or not
        for i, b in enumerate(b for b in items if dest in b.destinations):
            ok: list[str] = []
            bad: list[str] = []
            if limits.max_count is not None:
                if i < limits.max_count:
                    ok.append(f"max_count {i + 1}/{limits.max_count}")
                else:
                    bad.append(f"max_count {limits.max_count}: copy {i + 1} on {dest}")
            if limits.max_age_days is not None:
                age = now - b.created_at
                if age <= timedelta(days=limits.max_age_days):
                    ok.append(f"max_age_days {limits.max_age_days} ({age.days} days old)")
                else:
                    bad.append(f"max_age_days {limits.max_age_days}: {age.days} days old on {dest}")
            if bad:
                over[(b.backup_id, dest)] = bad
            else:
                within[(b.backup_id, dest)] = ok

    def live(b: BackupInfo) -> bool:
        return not b.destinations or any(d not in limited or (b.backup_id, d) in within for d in b.destinations)

    surviving = {b.backup_id for b in kept if b.backup_id in direct and (live(b) or b.backup_id in safe)}
    for backup_id in list(surviving):
        surviving.update(chains[backup_id][0])
    expired = {
        b.backup_id: ["every copy is over its destination's limits"]
        + [r for d in sorted(b.destinations) for r in over[(b.backup_id, d)]]
        if b.backup_id in direct else ["only backups deleted for their destination limits needed it"]
        for b in kept
        if b.backup_id not in surviving
    }

    held: dict[tuple[str, str], list[str]] = {}  # copies over a limit that stay anyway

    def hold_chain(backup_id: str, dest: str) -> None:
        for member in chains[backup_id][0][:-1]:
            key = (member, dest)
            if key in over and key not in held:
                held[key] = [f"needed by {backup_id} on {dest} (chain)"]

    for backup_id, dest in within:
        if backup_id in surviving:
            hold_chain(backup_id, dest)
    for b in kept:
        copies = [(b.backup_id, d) for d in sorted(b.destinations)]
        if b.backup_id in surviving and copies and all(key in over and key not in held for key in copies):
            held[copies[0]] = ["last copy of a kept backup"]
            hold_chain(*copies[0])

    for b in kept:
        if b.backup_id not in surviving:
            continue
        for dest in sorted(b.destinations & limited.keys()):
            key = (b.backup_id, dest)
            if key in within:
                plan.keep_copies[key] = within[key]
            elif key in held:
                plan.keep_copies[key] = held[key]
            else:
                plan.delete_copies[key] = over[key]
    return expired
