"""Fan-out: one snapshot, every enabled destination; a failing destination does not stop the others,
and the success policy decides whether the backup succeeded (partial otherwise)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .dbtools import cli


def _setup(root: Path, policy: str, parallel: int = 2) -> Path:
    db = root / "src.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 30,) for i in range(3000)])
    conn.commit()
    conn.close()
    (root / "not-a-dir").write_text("a regular file: nothing can be created under it")
    cfg = root / "backupd.toml"
    cfg.write_text(
        '[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
        '[[destinations]]\nname = "good"\nkind = "local"\npath = "good"\n'
        '[[destinations]]\nname = "broken"\nkind = "local"\npath = "not-a-dir/backups"\npriority = 2\n'
        '[[destinations]]\nname = "good2"\nkind = "local"\npath = "good2"\npriority = 3\n'
        f'[fanout]\nsuccess_policy = "{policy}"\nmax_parallel_destinations = {parallel}\n')
    return cfg


@pytest.mark.parametrize("parallel", [1, 3])
def test_policy_all_with_a_failed_copy_is_partial_and_the_good_copies_restore(tmp_path: Path, parallel: int):
    cfg = _setup(tmp_path, "all", parallel)
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json")
    assert proc.code == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "partial"
    assert set(out["failed_destinations"]) == {"broken"}
    assert sorted(out["destinations"]) == ["good", "good2"]
    text = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full")
    assert text.code == 1 and "partial: success policy 'all' not met" in text.stdout
    assert "broken: FAILED" in text.stdout and "good: stored" in text.stdout
    restored = tmp_path / "restored.db"
    r = cli("restore", "-c", str(cfg), "--source", "db", "--backup", out["id"], "--to", str(restored))
    assert r.code == 0, r.stderr
    assert sqlite3.connect(restored).execute("SELECT count(*) FROM t").fetchone()[0] == 3000


def test_policy_any_succeeds_with_warnings(tmp_path: Path):
    cfg = _setup(tmp_path, "any")
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--json")
    assert proc.code == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed_with_warnings" and list(out["failed_destinations"]) == ["broken"]


def test_quorum(tmp_path: Path):
    cfg = _setup(tmp_path, "quorum")
    out = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)
    assert out["status"] == "completed_with_warnings"  # 2 of 3 is a majority


def test_every_copy_failing_fails_the_backup(tmp_path: Path):
    cfg = _setup(tmp_path, "any")
    cfg.write_text(cfg.read_text().replace('path = "good"', 'path = "not-a-dir/a"').replace(
        'path = "good2"', 'path = "not-a-dir/b"'))
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--json")
    assert proc.code == 1
    assert json.loads(proc.stderr)["code"] == "destination_error"
    assert json.loads(cli("list", "-c", str(cfg), "--json").stdout) == []


def test_resync_completes_a_partial_backup_with_the_target_destinations_own_key(tmp_path: Path):
    from backupd.engine.crypto import keygen

    cfg = _setup(tmp_path, "all")
    keygen(tmp_path / "broken.key")
    cfg.write_text(cfg.read_text().replace('path = "not-a-dir/backups"\npriority = 2\n',
                                           'path = "not-a-dir/backups"\npriority = 2\ncompression_level = 9\n'
                                           '[destinations.encryption]\nkey_file = "broken.key"\n'))
    first = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json").stdout)
    conn = sqlite3.connect(tmp_path / "src.db")
    conn.execute("UPDATE t SET body = 'changed' WHERE id % 7 = 0")
    conn.commit()
    conn.close()
    second = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json").stdout)
    assert first["status"] == second["status"] == "partial"

    (tmp_path / "not-a-dir").unlink()  # the destination comes back
    r = cli("resync", "-c", str(cfg), "--json")
    assert r.code == 0, r.stderr
    copied = json.loads(r.stdout)["db"]["copied"]
    assert [c["backup_id"] for c in copied] == [first["id"], second["id"]]
    assert all(c["destination"] == "broken" for c in copied)
    assert {b["id"]: sorted(b["destinations"]) for b in json.loads(cli("list", "-c", str(cfg), "--json").stdout)} \
        == {first["id"]: ["broken", "good", "good2"], second["id"]: ["broken", "good", "good2"]}
    assert cli("resync", "-c", str(cfg)).stdout.startswith("resync: 0 copies made")

    # the resynced copy stands alone: only that destination (and its own key) is configured now
    text = cfg.read_text()
    for name in ("good", "good2"):
        text = text.replace(f'name = "{name}"\nkind = "local"', f'name = "{name}"\nkind = "local"\nenabled = false')
    cfg.write_text(text)
    restored = tmp_path / "alone.db"
    r = cli("restore", "-c", str(cfg), "--source", "db", "--backup", second["id"], "--to", str(restored))
    assert r.code == 0, r.stderr
    assert sqlite3.connect(restored).execute("SELECT count(*) FROM t WHERE body = 'changed'").fetchone()[0] == 428
    assert cli("verify", "-c", str(cfg), "--backup", second["id"], "--level", "standard").code == 0
