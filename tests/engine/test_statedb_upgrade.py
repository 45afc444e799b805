"""The state database upgrades in place (issue 9): a state dir made by release 7c53354 opens with today's
code, every row kept, and the schema at the latest version.

The fixture `tests/fixtures/state-7c53354/catalog.db` was written by that release's CLI and daemon (see
`tests/fixtures/make_state_7c53354.py`). Also: a file from a newer backupd is refused with a typed error
naming the fix, a migration that fails leaves the file as it was, two processes opening an old file at
once migrate it once, and `backupd catalog rebuild` of a damaged old file keeps what it can and upgrades it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backupd.config.overlay import Change, DestinationOverlay
from backupd.daemon.store import DaemonStore
from backupd.engine.catalog import Catalog
from backupd.errors import StateCorrupt, StateTooNew
from backupd.state.connection import StateConnection
from backupd.state.db import StateDB, schema_version
from backupd.state.migrations import MIGRATIONS
from backupd.state.repair import repair

from .dbtools import assert_clean_error, canonical_dump, cli, integrity, make_env
from .test_catalog_recovery import malformed_page

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "state-7c53354" / "catalog.db"
LATEST = len(MIGRATIONS)
NOTES = "notes"  # the source of the fixture
KEPT_AS_THEY_WERE = ("backups", "copies", "deletions", "schedules", "schedule_fires", "runtime_destinations")


@pytest.fixture
def old_state(tmp_path) -> Path:
    """A copy of the state database as release 7c53354 left it."""
    path = tmp_path / "state" / "catalog.db"
    path.parent.mkdir()
    shutil.copyfile(FIXTURE, path)
    return path


def raw(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, read with plain sqlite3."""
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: db.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall() for n in names}
    finally:
        db.close()


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return schema_version(db)
    finally:
        db.close()


def test_the_fixture_is_what_release_7c53354_writes(old_state):
    before = raw(old_state)
    assert version_of(old_state) == 0 and before["meta"] == [("schema_version", "1")]
    assert {n: len(before[n]) for n in (*KEPT_AS_THEY_WERE, "jobs", "daemon_jobs")} == {
        "backups": 3, "copies": 3, "deletions": 1, "schedules": 1, "schedule_fires": 2, "runtime_destinations": 2,
        "jobs": 2, "daemon_jobs": 1}


def test_a_state_dir_of_release_7c53354_upgrades_in_place_keeping_every_row(old_state):
    before = raw(old_state)
    state = StateDB(old_state)
    assert state.upgraded == (0, LATEST)
    state.close()
    after = raw(old_state)
    assert version_of(old_state) == LATEST and integrity(old_state) == ["ok"]
    assert {n: after[n] for n in KEPT_AS_THEY_WERE} == {n: before[n] for n in KEPT_AS_THEY_WERE}
    assert "meta" not in after and "daemon_jobs" not in after  # user_version and the one job table replace them

    catalog = Catalog(old_state)
    try:
        deleting = {r[0] for r in before["deletions"]}
        listed = catalog.backups(NOTES)
        assert [b.backup_id for b in listed] == [r[0] for r in before["backups"] if r[0] not in deleting]
        assert [b.manifest.to_json().decode() for b in listed] == [r[6] for r in before["backups"] if r[0] not in deleting]
        outcomes = {(r[0], r[1]): (r[9], r[10], r[11]) for r in before["copies"]}
        assert {(b.backup_id, c.destination): (c.verified_at, c.failed_at, c.sample_offset)
                for b in listed for c in b.copies} == {k: v for k, v in outcomes.items() if k[0] not in deleting}
        assert [(d.backup_id, d.destination, d.source, d.artifact_key) for d in catalog.pending_deletions(NOTES)] \
            == [r[:4] for r in before["deletions"]]
        oneshot = sorted(catalog.jobs(), key=lambda j: j["started_at"])
        assert [(j["job_id"], j["kind"], j["source"], j["status"], j["pid"], j["started_at"], j["finished_at"],
                 j["error"], j["result"]) for j in oneshot] == \
            [(*r[:8], json.loads(r[8])) for r in sorted(before["jobs"], key=lambda r: r[5])]
    finally:
        catalog.close()

    store = DaemonStore(old_state)
    try:
        daemon_jobs = [json.loads(r[8]) for r in before["daemon_jobs"]]
        assert store.jobs() == daemon_jobs and store.job(daemon_jobs[0]["job_id"]) == daemon_jobs[0]
        assert store.runtime_schedules() == [(n, json.loads(s), bool(p)) for n, o, s, p in before["schedules"]]
        assert store.paused() == {"hourly"}
        assert {n: store.last_fire(n).isoformat() for n, _ in before["schedule_fires"]} == dict(before["schedule_fires"])
    finally:
        store.close()

    overlay = DestinationOverlay(old_state.parent)
    try:
        assert overlay.changes() == [Change(n, json.loads(s) if s else None, None if e is None else bool(e),
                                            None if f is None else bool(f))
                                     for n, s, e, f in before["runtime_destinations"]]
    finally:
        overlay.close()

    again = StateDB(old_state)
    assert again.upgraded is None  # current now: nothing more to do
    again.close()


def test_the_one_job_table_keeps_each_runners_jobs_apart(old_state):
    catalog, store = Catalog(old_state), DaemonStore(old_state)
    try:
        daemon_ids = {j["job_id"] for j in store.jobs()}
        job_id = catalog.job_started("backup", NOTES)
        assert job_id in {j["job_id"] for j in catalog.jobs()} and {j["job_id"] for j in store.jobs()} == daemon_ids
        assert store.job(job_id) is None and store.fail_unfinished("restart", datetime.now(timezone.utc)) == []  # a live one-shot run is not the daemon's
        catalog.job_finished(job_id, "completed", result={"id": "b"})
        assert [(j["status"], j["result"]) for j in catalog.jobs() if j["job_id"] == job_id] == [("completed", {"id": "b"})]
        assert catalog.fail_interrupted_jobs() == []
    finally:
        catalog.close()
        store.close()


def test_a_state_database_from_a_newer_backupd_is_refused_naming_the_fix(old_state, tmp_path):
    StateDB(old_state).close()
    db = sqlite3.connect(old_state)
    db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.close()
    before = canonical_dump(old_state)
    for open_it in (lambda: StateDB(old_state), lambda: Catalog(old_state), lambda: DaemonStore(old_state),
                    lambda: DestinationOverlay(old_state.parent)):
        with pytest.raises(StateTooNew) as exc:
            open_it()
        err = exc.value
        assert (err.code, err.exit_code, err.retryable) == ("state_too_new", 1, False)
        assert f"schema version {LATEST + 1}" in str(err) and f"up to {LATEST}" in str(err)
        assert "newer backupd" in str(err) and "backupd catalog rebuild" in str(err)
        assert err.details == {"path": str(old_state), "version": LATEST + 1, "known": LATEST}
    assert canonical_dump(old_state) == before and version_of(old_state) == LATEST + 1

    env = make_env(tmp_path / "env")
    env.state.mkdir()
    shutil.copyfile(old_state, env.state / "catalog.db")
    err = assert_clean_error(cli("list", "-c", env.config, "--json"), 1, as_json=True)
    assert err["code"] == "state_too_new" and "newer backupd" in err["error"], err


def _boom(db: StateConnection) -> None:
    db.execute("DELETE FROM backups")
    db.execute("CREATE TABLE half_done (x)")
    raise RuntimeError("a step that fails")


def test_a_migration_that_fails_leaves_the_file_as_it_was(old_state):
    before = canonical_dump(old_state)
    with pytest.raises(RuntimeError, match="a step that fails"):
        StateDB(old_state, steps=(*MIGRATIONS, _boom))
    assert canonical_dump(old_state) == before and version_of(old_state) == 0  # the earlier steps are undone too
    state = StateDB(old_state)
    assert state.upgraded == (0, LATEST)
    state.close()


def test_damage_met_while_migrating_is_state_corrupt_and_rebuild_keeps_and_upgrades_the_rest(old_state):
    malformed_page(old_state, "jobs")  # the one-shot jobs are unreadable; the daemon's are intact
    before = intact_rows(old_state)
    with pytest.raises(StateCorrupt, match="backupd catalog rebuild"):
        DaemonStore(old_state)
    assert version_of(old_state) == 0 and intact_rows(old_state) == before

    repaired = repair(old_state.parent, datetime.now(timezone.utc))
    assert repaired is not None and "jobs" in repaired.lost and repaired.kept["daemon_jobs"] == 1
    assert version_of(old_state) == 0  # the tables it kept are in that version's shape
    store = DaemonStore(old_state)
    try:
        assert [j["job_id"] for j in store.jobs()] == [r[0] for r in before["daemon_jobs"]]
    finally:
        store.close()
    assert version_of(old_state) == LATEST


def intact_rows(path: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    try:
        return {n: db.execute(f'SELECT * FROM "{n}"').fetchall() for n in ("daemon_jobs", "runtime_destinations")}
    finally:
        db.close()


def test_repair_keeps_the_schema_version_and_the_indexes(old_state):
    StateDB(old_state).close()
    indexes = sorted(r[0] for r in sqlite3.connect(old_state).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    assert "jobs_by_runner" in indexes
    malformed_page(old_state, "backups")
    assert repair(old_state.parent, datetime.now(timezone.utc)) is not None
    assert version_of(old_state) == LATEST
    assert sorted(r[0] for r in sqlite3.connect(old_state).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")) == indexes
    state = StateDB(old_state)
    assert state.upgraded is None
    state.close()


OPENER = """
import sys, time
from pathlib import Path
from backupd.state.db import StateDB
from backupd.state.migrations import MIGRATIONS

def slow(db):
    time.sleep(1.0)  # the other process reaches the open meanwhile
    db.execute("CREATE TABLE opened_by (pid)")  # a second run of this step would fail: the table exists

go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
state = StateDB(Path(sys.argv[1]), steps=(*MIGRATIONS, slow))
print("upgraded:", state.upgraded)
state.close()
"""


def test_two_processes_opening_an_old_file_at_once_migrate_it_once(old_state, tmp_path):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(old_state), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)  # both are waiting for the go
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = sorted(line for out, _ in outs for line in out.splitlines() if line.startswith("upgraded: "))
    assert said == sorted([f"upgraded: (0, {LATEST + 1})", "upgraded: None"]), outs
    assert version_of(old_state) == LATEST + 1
    assert len(raw(old_state)["jobs"]) == 3  # each job moved once


def test_the_two_runners_records_never_overwrite_each_other(tmp_path):
    """A daemon job and a one-shot run that drew the same id are two records (the key is runner and id)."""
    from backupd.state.jobs import JobHistory

    state = StateDB(tmp_path / "catalog.db")
    record = {"job_id": "j20261204T030000-abcdef", "kind": "backup", "source": "app", "created_at": "2026-12-04"}
    JobHistory(state, "daemon").save({**record, "status": "completed"})
    JobHistory(state, "process").save({**record, "status": "running", "pid": 4242})
    assert JobHistory(state, "daemon").get(record["job_id"])["status"] == "completed"
    assert JobHistory(state, "process").get(record["job_id"])["status"] == "running"
    state.close()


def test_a_new_state_database_is_created_not_upgraded(tmp_path):
    state = StateDB(tmp_path / "state" / "catalog.db")
    assert (state.created, state.upgraded) == (True, None) and version_of(state.path) == LATEST
    state.close()
    again = StateDB(tmp_path / "state" / "catalog.db")
    assert (again.created, again.upgraded) == (False, None)
    again.close()
