"""The catalog keeps every copy of a backup when another copy of it is recorded (as reconcile does
when it finds a sidecar the catalog lacks)."""

from __future__ import annotations

from pathlib import Path

from backupd.core.manifest import Manifest
from backupd.engine.catalog import Catalog, Copy, Deletion


def _copy(destination: str) -> Copy:
    return Copy(destination, "db/x.bkpd", 100, 10, "ab" * 32, 3, True)


def test_recording_a_copy_keeps_the_others_and_forgetting_a_destination_drops_only_its_copies(tmp_path: Path):
    m = Manifest("20261126T120000.000000Z-aaaaaa", "db", "full", None, None, "2026-11-26T12:00:00+00:00",
                 4096, 10, 10, "wal", "h", {"t": 1})
    catalog = Catalog(tmp_path / "catalog.db")
    try:
        catalog.record_backup(m, [_copy("near")])
        catalog.record_backup(m, [_copy("far")])
        assert sorted(c.destination for c in catalog.get(m.backup_id).copies) == ["far", "near"]
        assert catalog.forget_destination("far") == []
        catalog.record_backup(m, [_copy("far")])  # found again on "far"
        assert sorted(c.destination for c in catalog.get(m.backup_id).copies) == ["far", "near"]
        catalog.forget_destination("near")
        assert catalog.forget_destination("far") == [m.backup_id] and catalog.get(m.backup_id) is None
    finally:
        catalog.close()


def test_a_copy_marked_for_deletion_is_offered_nowhere_until_forgotten_and_the_mark_survives_a_rebuild(tmp_path: Path):
    m = Manifest("20261126T120000.000000Z-aaaaaa", "db", "full", None, None, "2026-11-26T12:00:00+00:00",
                 4096, 10, 10, "wal", "h", {"t": 1})
    catalog = Catalog(tmp_path / "catalog.db")
    try:
        catalog.record_backup(m, [_copy("near"), _copy("far")])
        catalog.mark_deleting([Deletion(m.backup_id, "far", "db", "db/x.bkpd")])
        assert [c.destination for c in catalog.get(m.backup_id).copies] == ["near"]
        catalog.mark_deleting([Deletion(m.backup_id, "near", "db", "db/x.bkpd")])
        assert catalog.get(m.backup_id) is None and catalog.backups("db") == [] and catalog.newest_per_source() == {}
        catalog.replace_all([(m, [_copy("near"), _copy("far")])])  # a rebuild that found both sidecars
        assert catalog.backups() == []
        assert [d.destination for d in catalog.pending_deletions("db")] == ["far", "near"]
        catalog.remove_copy(m.backup_id, "far")
        assert [d.destination for d in catalog.pending_deletions("db")] == ["near"]
        catalog.remove_copy(m.backup_id, "near")
        assert catalog.pending_deletions("db") == [] and catalog.get(m.backup_id) is None
    finally:
        catalog.close()
