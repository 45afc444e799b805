"""A backup sent to chosen destinations (a schedule's or request's `destinations`): it is written there
only, says so in its manifest, extends the chain of its stream (the backups sent to the same
destinations; the first builds on the newest backup they all hold), and resync does not spread it to
the others."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backupd.config import load_config
from backupd.engine.backup import run_backup
from backupd.engine.context import open_context
from backupd.engine.resync import resync
from backupd.engine.restore import run_restore
from backupd.errors import UnknownDestination, UsageError

BACKUPD = Path(sys.executable).with_name("backupd")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    conn = sqlite3.connect(tmp_path / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)])
    conn.commit()
    conn.close()
    path = tmp_path / "backupd.toml"
    path.write_text('[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                    '[[destinations]]\nname = "near"\nkind = "local"\npath = "near"\n'
                    '[[destinations]]\nname = "far"\nkind = "local"\npath = "far"\npriority = 2\n'
                    '[[destinations]]\nname = "off"\nkind = "local"\npath = "off"\nenabled = false\n')
    return path


def _touch(root: Path, n: int) -> None:
    conn = sqlite3.connect(root / "src.db")
    conn.execute("UPDATE t SET body = body || ? WHERE id % 40 = 0", (str(n),))
    conn.commit()
    conn.close()


def _copies(root: Path, backup_id: str) -> list[str]:
    return sorted(d for d in ("near", "far") if (root / d / "db" / f"{backup_id}.manifest").exists())


def test_chosen_destinations_get_the_backup_and_keep_their_own_chain(cfg: Path, tmp_path: Path):
    ctx = open_context(load_config(cfg))
    try:
        both = run_backup(ctx, "db", "full").manifest
        _touch(tmp_path, 1)
        near1 = run_backup(ctx, "db", "incremental", destinations=["near"]).manifest
        assert near1.strategy == "incremental" and near1.parent_id == both.backup_id
        assert near1.destinations == ("near",) and _copies(tmp_path, near1.backup_id) == ["near"]
        _touch(tmp_path, 2)
        far1 = run_backup(ctx, "db", "incremental", destinations=["far"]).manifest
        assert far1.strategy == "incremental" and far1.parent_id == both.backup_id  # far's newest, not near1
        _touch(tmp_path, 3)
        near2 = run_backup(ctx, "db", "incremental", destinations=["near"]).manifest
        assert near2.parent_id == near1.backup_id
        _touch(tmp_path, 4)
        every = run_backup(ctx, "db", "incremental").manifest  # the default stream's newest: `both`
        assert every.strategy == "incremental" and every.parent_id == both.backup_id
        assert every.destinations == () and _copies(tmp_path, every.backup_id) == ["far", "near"]

        assert resync(ctx, "db").to_json() == {"copied": [], "failed": []}  # nothing was meant elsewhere
        assert _copies(tmp_path, near2.backup_id) == ["near"]
        for backup, name in ((near2, "n2.db"), (far1, "f1.db")):
            run_restore(ctx, "db", tmp_path / name, backup_id=backup.backup_id)
        assert sqlite3.connect(tmp_path / "n2.db").execute("SELECT count(*) FROM t").fetchone()[0] == 2000

        with pytest.raises(UnknownDestination, match="unknown destination 'nowhere'"):
            run_backup(ctx, "db", "auto", destinations=["nowhere"])
        with pytest.raises(UsageError, match="destination 'off' is disabled"):
            run_backup(ctx, "db", "auto", destinations=["off"])
    finally:
        ctx.close()


def test_a_partial_backup_to_chosen_destinations_is_completed_on_those_only(cfg: Path, tmp_path: Path):
    ctx = open_context(load_config(cfg))
    try:
        run_backup(ctx, "db", "full", destinations=["near"])
        (tmp_path / "far").write_text("not a directory")  # far cannot take a copy now
        partial = run_backup(ctx, "db", "full", destinations=["near", "far"])
        assert partial.status == "partial" and set(partial.failed) == {"far"}
        (tmp_path / "far").unlink()
        report = resync(ctx, "db").to_json()
        assert [(c["backup_id"], c["destination"]) for c in report["copied"]] == [(partial.backup_id, "far")]
    finally:
        ctx.close()


def test_the_cli_sends_to_the_destinations_named(cfg: Path, tmp_path: Path):
    proc = subprocess.run([str(BACKUPD), "backup", "-c", str(cfg), "--source", "db", "--destination", "far", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _copies(tmp_path, json.loads(proc.stdout)["id"]) == ["far"]
    bad = subprocess.run([str(BACKUPD), "backup", "-c", str(cfg), "--source", "db", "--destination", "off"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "destination 'off' is disabled" in bad.stderr


def test_retention_after_a_backup_to_chosen_destinations_prunes_everywhere(cfg: Path, tmp_path: Path):
    ctx = open_context(load_config(cfg))
    try:
        old = run_backup(ctx, "db", "full").manifest
        run_backup(ctx, "db", "full")
    finally:
        ctx.close()
    cfg.write_text(cfg.read_text() + "[retention]\nkeep_last = 1\n")
    ctx = open_context(load_config(cfg))
    try:
        run_backup(ctx, "db", "full", destinations=["near"])  # retention runs after it, on every destination
        assert _copies(tmp_path, old.backup_id) == []
        assert ctx.catalog.get(old.backup_id) is None
    finally:
        ctx.close()


def test_resync_gives_a_new_destination_the_chain_a_delta_needs_across_streams(cfg: Path, tmp_path: Path):
    ctx = open_context(load_config(cfg))
    try:
        full = run_backup(ctx, "db", "full", destinations=["near", "far"]).manifest  # a chosen stream
        _touch(tmp_path, 1)
        inc = run_backup(ctx, "db", "incremental").manifest  # the default stream's first: builds on it
        assert inc.parent_id == full.backup_id
    finally:
        ctx.close()
    cfg.write_text(cfg.read_text().replace('name = "off"\nkind = "local"\npath = "off"\nenabled = false',
                                           'name = "off"\nkind = "local"\npath = "off"'))
    ctx = open_context(load_config(cfg))
    try:
        copied = [(c["backup_id"], c["destination"]) for c in resync(ctx, "db").to_json()["copied"]]
        assert copied == [(full.backup_id, "off"), (inc.backup_id, "off")]  # the parent too, first
        run_restore(ctx, "db", tmp_path / "r.db", backup_id=inc.backup_id)
    finally:
        ctx.close()
