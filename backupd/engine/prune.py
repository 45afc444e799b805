"""Prune: plan retention (core.retention) from the catalog and carry the plan out on the destinations.

Every copy the plan deletes is first marked in the catalog (engine/deletions.py), so neither `list` nor
a restore offers it again, then removed sidecar first, then its artifact, dependents before what they
depend on; a crash at any point leaves the intent, which the next run of the source finishes.
Temp files left by crashed uploads are removed too (the source lock makes that safe).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from backupd.core.retention import BackupInfo, DestinationLimits, RetentionPlan, RetentionPolicy, plan_retention
from backupd.engine.catalog import Catalog, CatalogBackup, Deletion
from backupd.engine.context import EngineContext
from backupd.engine.deletions import delete_copies
from backupd.engine.inventory import reconcile

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
                      tuple(b.manifest.destinations), bool(b.manifest.warnings))


def plan_prune(catalog: Catalog, config, source: str, now: datetime) -> RetentionPlan:
    """The retention plan for one source's backups, as the catalog knows them."""
    return plan_retention([_info(b) for b in catalog.backups(source)], policy_from(config), now)


def has_policy(config) -> bool:
    p = policy_from(config)
    return bool(p.rules() or p.per_destination)


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
        out["errors"] = delete_copies(ctx, [Deletion(b.backup_id, c.destination, source, c.artifact_key)
                                            for b, c in doomed])
        log.info("prune_completed", source=source, kept=len(plan.keep), deleted=len(plan.delete),
                 copies_deleted=len(plan.delete_copies), errors=len(out["errors"]))
        return out
