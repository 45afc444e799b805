"""Retention through the engine: the plan from core.retention carried out on a real destination after
every backup and by `backupd prune`, chain-safe, with a reason for every decision."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .dbtools import cli


def _setup(root: Path, retention: str) -> Path:
    conn = sqlite3.connect(root / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 10,) for i in range(500)])
    conn.commit()
    conn.close()
    cfg = root / "backupd.toml"
    cfg.write_text('[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   '[[destinations]]\nname = "local"\nkind = "local"\npath = "backups"\n' + retention)
    return cfg


def _backup(cfg: Path, root: Path, strategy: str) -> str:
    conn = sqlite3.connect(root / "src.db")
    conn.execute("UPDATE t SET body = body || 'x' WHERE id % 13 = 0")
    conn.commit()
    conn.close()
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", strategy, "--json")
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def test_retention_runs_after_every_backup_and_keeps_chains(tmp_path: Path):
    cfg = _setup(tmp_path, "[retention]\nkeep_last = 2\n")
    ids = [_backup(cfg, tmp_path, s) for s in ("full", "incremental", "incremental", "full", "incremental")]
    listed = [b["id"] for b in json.loads(cli("list", "-c", str(cfg), "--json").stdout)]
    assert listed == [ids[3], ids[4]]  # the newest two; the incremental's full is one of them
    files = sorted(p.name for p in (tmp_path / "backups" / "db").iterdir())
    assert files == sorted(f"{i}.{ext}" for i in ids[3:] for ext in ("bkpd", "manifest"))
    r = cli("restore", "-c", str(cfg), "--source", "db", "--backup", ids[4], "--to", str(tmp_path / "r.db"))
    assert r.code == 0, r.stderr


def test_dry_run_explains_and_deletes_nothing(tmp_path: Path):
    cfg = _setup(tmp_path, "")
    ids = [_backup(cfg, tmp_path, s) for s in ("full", "incremental", "full", "incremental")]
    cfg.write_text(cfg.read_text() + "[retention]\nkeep_last = 1\n")
    plan = json.loads(cli("prune", "-c", str(cfg), "--dry-run", "--json").stdout)["db"]
    assert [k["id"] for k in plan["keep"]] == [ids[3], ids[2]]
    assert any("chain" in r for r in plan["keep"][1]["reasons"])  # the full the kept incremental needs
    assert sorted(d["id"] for d in plan["delete"]) == sorted(ids[:2]) and all(d["reasons"] for d in plan["delete"])
    assert len(json.loads(cli("list", "-c", str(cfg), "--json").stdout)) == 4
    text = cli("prune", "-c", str(cfg), "--dry-run").stdout
    assert f"would delete {ids[0]}" in text and f"keep {ids[3]}" in text
    assert cli("prune", "-c", str(cfg)).code == 0
    assert [b["id"] for b in json.loads(cli("list", "-c", str(cfg), "--json").stdout)] == ids[2:]
    assert cli("prune", "-c", str(cfg), "--dry-run").stdout.count("would delete") == 0  # idempotent


def test_copies_on_a_destination_no_longer_configured_are_forgotten_not_retried_forever(tmp_path: Path):
    two = '[[destinations]]\nname = "old"\nkind = "local"\npath = "old"\n'
    cfg = _setup(tmp_path, two)
    first = _backup(cfg, tmp_path, "full")
    cfg.write_text(cfg.read_text().replace(two, "") + "[retention]\nkeep_last = 1\n")  # "old" is gone
    _backup(cfg, tmp_path, "full")
    proc = cli("prune", "-c", str(cfg), "--json")
    assert proc.code == 0, proc.stderr
    assert json.loads(proc.stdout)["db"]["errors"] == []
    assert first not in cli("list", "-c", str(cfg), "--json").stdout
    assert (tmp_path / "old" / "db" / f"{first}.bkpd").exists()  # out of reach, so left in place
