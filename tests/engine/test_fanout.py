"""Fan-out: one snapshot, every enabled destination; a failing destination does not stop the others,
and the success policy decides whether the backup succeeded (partial otherwise)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

BACKUPD = Path(sys.executable).with_name("backupd")


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


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BACKUPD), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("parallel", [1, 3])
def test_policy_all_with_a_failed_copy_is_partial_and_the_good_copies_restore(tmp_path: Path, parallel: int):
    cfg = _setup(tmp_path, "all", parallel)
    proc = _cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "partial"
    assert set(out["failed_destinations"]) == {"broken"}
    assert sorted(out["destinations"]) == ["good", "good2"]
    text = _cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full")
    assert text.returncode == 1 and "partial: success policy 'all' not met" in text.stdout
    assert "broken: FAILED" in text.stdout and "good: stored" in text.stdout
    restored = tmp_path / "restored.db"
    r = _cli("restore", "-c", str(cfg), "--source", "db", "--backup", out["id"], "--to", str(restored))
    assert r.returncode == 0, r.stderr
    assert sqlite3.connect(restored).execute("SELECT count(*) FROM t").fetchone()[0] == 3000


def test_policy_any_succeeds_with_warnings(tmp_path: Path):
    cfg = _setup(tmp_path, "any")
    proc = _cli("backup", "-c", str(cfg), "--source", "db", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed_with_warnings" and list(out["failed_destinations"]) == ["broken"]


def test_quorum(tmp_path: Path):
    cfg = _setup(tmp_path, "quorum")
    out = json.loads(_cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)
    assert out["status"] == "completed_with_warnings"  # 2 of 3 is a majority


def test_every_copy_failing_fails_the_backup(tmp_path: Path):
    cfg = _setup(tmp_path, "any")
    cfg.write_text(cfg.read_text().replace('path = "good"', 'path = "not-a-dir/a"').replace(
        'path = "good2"', 'path = "not-a-dir/b"'))
    proc = _cli("backup", "-c", str(cfg), "--source", "db", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["code"] == "destination_error"
    assert json.loads(_cli("list", "-c", str(cfg), "--json").stdout) == []
