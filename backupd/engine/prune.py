"""Prune: plan retention (core.retention) from the catalog and carry the plan out on the destinations.

A backup is removed sidecar first (from then on no listing shows it), then its artifact; dependents go
before the backups they depend on, so a crash at any point leaves only complete chains visible.
Temp files left by crashed uploads are removed too (the source lock makes that safe).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from backupd.core.ids import sidecar_key
from backupd.core.retention import BackupInfo, DestinationLimits, RetentionPlan, RetentionPolicy, plan_retention
from backupd.engine.catalog import Catalog, CatalogBackup, Copy
from backupd.engine.context import EngineContext
from backupd.engine.inventory import reconcile
from backupd.errors import BackupdError

log = structlog.get_logger("backupd.prune")


def policy_from(config) -> RetentionPolicy:
    r = config.retention
    limits = {d.name: DestinationLimits(d.max_age_days, d.max_count) for d in config.destinations
              if d.max_age_days is not None or d.max_count is not None}
    return RetentionPolicy(keep_last=r.keep_last, keep_daily=r.keep_daily, keep_weekly=r.keep_weekly,
                           keep_monthly=r.keep_monthly, keep_yearly=r.keep_yearly, per_destination=limits)


def _info(b: CatalogBackup) -> BackupInfo:
    verified = [datetime.fromisoformat(c.verified_at) for c in b.copies if c.verified_at]
    return BackupInfo(b.backup_id, b.manifest.source, b.strategy, b.parent_id, datetime.fromisoformat(b.created_at),
                      max(verified) if verified else None, frozenset(c.destination for c in b.copies),
                      tuple(b.manifest.destinations))


def plan_prune(catalog: Catalog, config, source: str, now: datetime) -> RetentionPlan:
    """The retention plan for one source's backups, as the catalog knows them."""
    return plan_retention([_info(b) for b in catalog.backups(source)], policy_from(config), now)


def has_policy(config) -> bool:
    p = policy_from(config)
    return bool(p.rules() or p.per_destination)


def _remove_copy(ctx: EngineContext, backup: CatalogBackup, copy: Copy) -> None:
    target = ctx.targets.get(copy.destination)
    if target is None and all(d.name != copy.destination for d in ctx.config.destinations):
        ctx.catalog.remove_copy(backup.backup_id, copy.destination)  # out of reach for good: forget it
        log.info("copy_forgotten", backup_id=backup.backup_id, destination=copy.destination,
                 reason="the destination is no longer configured; its files were left in place")
        return
    if target is None:
        raise BackupdError(f"destination {copy.destination!r} is disabled: cannot delete there",
                           hint=f"enable it, or the next prune tries again (`backupctl dest enable {copy.destination}`)")
    target.dest.delete(sidecar_key(backup.manifest.source, backup.backup_id))
    target.dest.delete(copy.artifact_key)
    ctx.catalog.remove_copy(backup.backup_id, copy.destination)


def run_prune(ctx: EngineContext, source: str, *, dry_run: bool) -> dict:
    """Plan retention for `source` and, unless `dry_run`, apply it; returns the plan with what was done."""
    with ctx.source_lock(source):
        if not dry_run:
            reconcile(ctx, source)
        plan = plan_prune(ctx.catalog, ctx.config, source, ctx.now())
        out = {"source": source, "dry_run": dry_run, **plan.to_json(), "errors": []}
        if dry_run:
            return out
        by_id = {b.backup_id: b for b in ctx.catalog.backups(source)}
        doomed = [(by_id[i], c) for i in plan.delete for c in by_id[i].copies]
        doomed += [(by_id[i], c) for (i, d) in plan.delete_copies for c in by_id[i].copies if c.destination == d]
        doomed.sort(key=lambda bc: bc[0].created_at, reverse=True)  # dependents before what they depend on
        for backup, copy in doomed:
            try:
                _remove_copy(ctx, backup, copy)
            except BackupdError as exc:
                out["errors"].append(f"{copy.destination}: {backup.backup_id}: {exc}")
                log.warning("prune_delete_failed", backup_id=backup.backup_id, destination=copy.destination,
                            error=str(exc))
        log.info("prune_completed", source=source, kept=len(plan.keep), deleted=len(plan.delete),
                 copies_deleted=len(plan.delete_copies), errors=len(out["errors"]))
        return out
