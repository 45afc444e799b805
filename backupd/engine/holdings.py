"""The inventory of the catalog (`backupctl inventory`, `backupd inventory`): its rows, the copies
each enabled destination should hold (as resync decides them), summed by core.inventory."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from backupd.core.inventory import BackupRow, CopyRow, summarize
from backupd.engine.catalog import Catalog, CatalogBackup
from backupd.engine.resync import wanted_copies

if TYPE_CHECKING:
    from backupd.config import Config


def _row(b: CatalogBackup) -> BackupRow:
    m = b.manifest
    return BackupRow(m.backup_id, m.source, m.strategy, m.parent_id, m.created_at, m.logical_bytes,
                     tuple(CopyRow(c.destination, c.stored_bytes, c.verified_at) for c in b.copies))


def inventory(catalog: Catalog, config: Config, now: datetime, days: int = 30) -> dict[str, Any]:
    """The inventory of every backup the catalog lists; coverage over the last `days` days."""
    enabled = {d.name for d in config.destinations if d.enabled}
    expected: dict[str, set[str]] = {d: set() for d in enabled}
    every = catalog.backups()
    by_source: dict[str, list[CatalogBackup]] = {}
    for b in every:  # oldest first, as wanted_copies reads them
        by_source.setdefault(b.manifest.source, []).append(b)
    for backups in by_source.values():
        for dest, ids in wanted_copies(backups, config, enabled, now).items():
            expected[dest] |= ids
    return summarize([_row(b) for b in every], expected, [d.name for d in config.destinations], now, days)
