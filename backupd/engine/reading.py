"""Which copy of a backup to read, as `[restore] copy_selection` or the operation's own says (core.copy_order); the copy store
(engine/copystore.py) reads it, verified."""

from __future__ import annotations

from backupd.core.copy_order import CopyState, order_copies
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext, Target
from backupd.errors import MissingChainMember


def copies_in_order(ctx: EngineContext, backup: CatalogBackup, destination: str | None = None
                    ) -> list[tuple[Target, Copy]]:
    """Every readable copy of `backup` (only the one on `destination` when given), in the order to try
    them, as the context's copy selection says (core.copy_order: a copy that failed validation comes last)."""
    found = [(t, c) for t in ctx.enabled_targets() for c in backup.copies
             if c.destination == t.name and destination in (None, t.name)]
    return order_copies(found, ctx.copy_selection, _state)


def _state(found: tuple[Target, Copy]) -> CopyState:
    target, copy = found
    return CopyState(target.name, target.priority, copy.verified_at, copy.failed_at)


def choose_copy(ctx: EngineContext, backup: CatalogBackup, destination: str | None = None) -> tuple[Target, Copy]:
    """The copy to read first (see copies_in_order)."""
    found = copies_in_order(ctx, backup, destination)
    if found:
        return found[0]
    where = f"destination {destination}" if destination else "any configured destination"
    raise MissingChainMember(
        f"backup {backup.backup_id} has no copy on {where}",
        hint="add the destination that holds it to the config, or run `backupd catalog rebuild`",
        details={"missing": backup.backup_id},
    )
