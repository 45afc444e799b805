"""Deleting copies so that a crash never leaves a listed restore point without its files.

The intent to delete is recorded in the catalog first (`Catalog.mark_deleting`): from then on no
listing, restore or chain offers the copy. Then its sidecar goes (no listing of the destination shows
it any more), then its artifact, and last the catalog forgets the copy. A run killed at any point
leaves the intent behind; the next run of the source (every reconcile) finishes it.

A copy that failed half way (its artifact committed, its sidecar not) is no restore point yet and is
removed at once, without an intent (`remove_failed_copy`).
"""

from __future__ import annotations

import structlog

from backupd.core.ids import sidecar_key
from backupd.engine.catalog import Deletion
from backupd.engine.context import EngineContext, Target
from backupd.errors import BackupdError

log = structlog.get_logger("backupd.deletions")


def delete_copies(ctx: EngineContext, intents: list[Deletion]) -> list[str]:
    """Record the intents, then carry out every pending one of their sources; returns what failed (those
    intents stay for the next run). Call with the source lock held."""
    ctx.catalog.mark_deleting(intents)
    errors: list[str] = []
    for source in dict.fromkeys(d.source for d in intents):
        errors += _finish_all(ctx, ctx.catalog.pending_deletions(source))
    return errors


def resume_deletions(ctx: EngineContext, source: str) -> None:
    """Finish the deletions an earlier run of `source` left half done (it was killed, or a destination
    failed); called by every reconcile, with the source lock held. A configured destination this context
    does not write to (disabled, or not chosen) keeps its intents for a prune that does."""
    configured = {c.name for c in ctx.config.destinations}
    pending = [d for d in ctx.catalog.pending_deletions(source)
               if d.destination in ctx.targets or d.destination not in configured]
    if pending:
        errors = _finish_all(ctx, pending)
        log.info("deletions_resumed", source=source, copies=len(pending), failed=len(errors))


def _finish_all(ctx: EngineContext, pending: list[Deletion]) -> list[str]:
    """Delete each copy's files, newest backup first (dependents before what they depend on), and forget
    the copy once they are gone; returns what failed."""
    errors = []
    for d in pending:
        try:
            _finish(ctx, d)
        except BackupdError as exc:
            errors.append(f"{d.destination}: {d.backup_id}: {exc}")
            log.warning("prune_delete_failed", backup_id=d.backup_id, destination=d.destination, error=str(exc))
    return errors


def _finish(ctx: EngineContext, d: Deletion) -> None:
    target = ctx.targets.get(d.destination)
    if target is None and all(c.name != d.destination for c in ctx.config.destinations):
        ctx.catalog.remove_copy(d.backup_id, d.destination)  # out of reach for good: forget it
        log.info("copy_forgotten", backup_id=d.backup_id, destination=d.destination,
                 reason="the destination is no longer configured; its files were left in place")
        return
    if target is None:
        raise BackupdError(f"destination {d.destination!r} is disabled: cannot delete there",
                           hint=f"enable it, or the next prune tries again (`backupctl dest enable {d.destination}`)")
    target.dest.delete(sidecar_key(d.source, d.backup_id))
    target.dest.delete(d.artifact_key)
    ctx.catalog.remove_copy(d.backup_id, d.destination)


def remove_failed_copy(target: Target, source: str, backup_id: str, artifact: str) -> list[str]:
    """Best effort: delete a failed copy's sidecar (in case its commit got half way) then its committed
    artifact; returns the keys deleted. A medium that refuses is logged; the next backup of the source
    removes the orphaned artifact."""
    keys = [sidecar_key(source, backup_id), artifact]
    try:
        for key in keys:
            target.dest.delete(key)
    except BackupdError as exc:
        log.warning("copy_cleanup_failed", destination=target.name, backup_id=backup_id, error=str(exc))
        return []
    return keys
