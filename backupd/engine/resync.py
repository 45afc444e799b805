"""Resync: give every enabled destination the copies it lacks, so a partial backup becomes whole.
A backup sent to chosen destinations (its manifest's `destinations`) is only completed on those.

A copy is rebuilt from one on another destination (chosen like a restore chooses): its blocks are
read and verified with the source destination's key, then re-compressed and re-sealed with the
target's level and key, and published by the copy store (artifact first, sidecar last — a copy exists
only once its sidecar does; an artifact whose sidecar could not be written is deleted at once).
A copy that failed validation is rewritten the same way, when another destination holds one that did not.
Only copies the destination's retention keeps (`max_count`, `max_age_days`) are restored, so resync and
prune never undo each other.
Backups are copied oldest first, so a destination never holds a delta without the chain before it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from backupd.core import chain
from backupd.core.copy_order import FAILED, CopyState
from backupd.core.retention import kept_on
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext, Target
from backupd.engine.copystore import CopyReader, CopyWriter
from backupd.engine.inventory import reconcile
from backupd.engine.prune import _info, policy_from
from backupd.engine.reading import copies_in_order
from backupd.errors import BackupdError, Cancelled, CorruptArtifact, MissingChainMember

if TYPE_CHECKING:
    from backupd.config import Config

log = structlog.get_logger("backupd.resync")


@dataclass
class ResyncReport:
    copied: list[dict] = field(default_factory=list)  # {"backup_id", "destination", "bytes"}
    failed: list[dict] = field(default_factory=list)  # {"backup_id", "destination", "error"}

    def to_json(self) -> dict:
        return {"copied": self.copied, "failed": self.failed}


def copy_backup(ctx: EngineContext, backup: CatalogBackup, target: Target) -> Copy:
    """Write `backup` to `target` from another destination's copy; returns the new copy."""
    others = [(t, c) for t, c in copies_in_order(ctx, backup) if t.name != target.name]
    if not others:
        raise MissingChainMember(f"backup {backup.backup_id} has no copy on another destination to copy from",
                                 hint="take a new backup of its source", details={"missing": backup.backup_id})
    src_target, src_copy = others[0]
    m = backup.manifest
    with src_target.dest.open_read(src_copy.artifact_key) as f:
        reader = CopyReader(src_target, src_copy.artifact_key, m, f)
        writer = CopyWriter(target, m.source, m.backup_id, m.page_size, ctx.executor, key=src_copy.artifact_key)
        try:
            for _, numbers, pages in reader.page_blocks(prefetch=True):
                writer.add_pages(list(numbers), bytes(pages))
            if reader.manifest_payload != m.to_json():
                raise CorruptArtifact(f"backup {m.backup_id} on {src_target.name}: its manifest differs from the catalog's")
            return writer.publish(m)
        except BaseException:
            writer.discard()
            raise


def _damaged(copy: Copy) -> bool:
    """Its latest validation found it damaged: resync rewrites it from another copy."""
    return CopyState(copy.destination, 0, copy.verified_at, copy.failed_at).standing == FAILED


def meant_for(backups: list[CatalogBackup], enabled: set[str]) -> dict[str, set[str]]:
    """backup id -> the enabled destinations it belongs on: the ones it was sent to (every enabled one
    unless it was sent to chosen destinations), and those of every backup whose chain needs it, so a
    destination never gets a delta without the backups it applies on. `backups` oldest first."""
    sent = {b.backup_id: (set(b.manifest.destinations) & enabled if b.manifest.destinations else set(enabled))
            for b in backups}
    return chain.spread_to_chains(sent, backups)


def wanted_copies(backups: list[CatalogBackup], config: Config, enabled: set[str], now: datetime) -> dict[str, set[str]]:
    """enabled destination -> the backups (of one source, oldest first) meant for it whose copy there its
    retention keeps: what resync copies onto it when it lacks them (and the inventory calls missing)."""
    meant = meant_for(backups, enabled)
    infos, policy = [_info(b) for b in backups], policy_from(config)
    return {name: kept_on(infos, policy, now, name, {i for i, d in meant.items() if name in d}) for name in enabled}


def resync(ctx: EngineContext, source: str) -> ResyncReport:
    """Copy every backup of `source` that an enabled destination it was meant for, and whose retention
    keeps it, lacks onto it (oldest first)."""
    report = ResyncReport()
    with ctx.source_lock(source):
        reconcile(ctx, source)
        broken: set[str] = set()  # a destination that failed once this run is left for the next one
        backups = ctx.catalog.backups(source)
        retained = wanted_copies(backups, ctx.config, {t.name for t in ctx.enabled_targets()}, ctx.now())
        for backup in backups:
            healthy = {c.destination for c in backup.copies if not _damaged(c)}
            have = healthy if healthy else {c.destination for c in backup.copies}  # rewrite only from a sound copy
            for target in ctx.enabled_targets():
                if target.name in have or target.name in broken or backup.backup_id not in retained[target.name]:
                    continue
                started = time.monotonic()
                try:
                    copy = copy_backup(ctx, backup, target)
                except Cancelled:
                    raise
                except (BackupdError, OSError) as exc:
                    broken.add(target.name)
                    report.failed.append({"backup_id": backup.backup_id, "destination": target.name, "error": str(exc)})
                    log.warning("resync_copy_failed", backup_id=backup.backup_id, destination=target.name,
                                error=str(exc))
                    continue
                kept = [c for c in backup.copies if c.destination != target.name]  # a rewritten copy replaces its old self
                ctx.catalog.record_backup(backup.manifest, [*kept, copy])
                report.copied.append({"backup_id": backup.backup_id, "destination": target.name,
                                      "bytes": copy.stored_bytes})
                log.info("resync_copied", backup_id=backup.backup_id, destination=target.name,
                         stored_bytes=copy.stored_bytes, duration_s=round(time.monotonic() - started, 3))
    return report
