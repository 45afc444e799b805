"""Resync and per-destination retention agree: resync restores only the copies a destination's
`max_count` keeps, so prune -> resync -> prune deletes nothing and copies nothing back (issue 8, item 3)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .dbtools import cli


def _setup(root: Path) -> Path:
    conn = sqlite3.connect(root / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 10,) for i in range(300)])
    conn.commit()
    conn.close()
    cfg = root / "backupd.toml"
    cfg.write_text('[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   '[[destinations]]\nname = "all"\nkind = "local"\npath = "all"\n'
                   '[[destinations]]\nname = "few"\nkind = "local"\npath = "few"\nmax_count = 2\n')
    return cfg


def _sidecars(root: Path, dest: str) -> set[str]:
    return {p.name for p in (root / dest).rglob("*") if p.suffix == ".manifest"}


def test_resync_does_not_restore_copies_the_destinations_retention_prunes(tmp_path: Path):
    cfg = _setup(tmp_path)
    for _ in range(4):
        conn = sqlite3.connect(tmp_path / "src.db")
        conn.execute("UPDATE t SET body = body || 'x' WHERE id % 7 = 0")
        conn.commit()
        conn.close()
        assert cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full").code == 0
    first = cli("prune", "-c", str(cfg), "--json")
    assert first.code == 0, first.stderr
    on_few = _sidecars(tmp_path, "few")
    assert len(on_few) == 2 and len(_sidecars(tmp_path, "all")) == 4

    r = cli("resync", "-c", str(cfg), "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["db"]["copied"] == []
    assert _sidecars(tmp_path, "few") == on_few

    second = json.loads(cli("prune", "-c", str(cfg), "--json").stdout)["db"]
    assert second["delete"] == [] and second["delete_copies"] == []
    assert _sidecars(tmp_path, "few") == on_few
