"""A damaged or shrunk source is backed up, stored and flagged (issue 8 item 4): real SQLite files with
overwritten b-tree page headers, a row missing from its index, truncated to 0 bytes, or most rows gone;
each backup is `completed_with_warnings`, listed with its warning, kept across a catalog rebuild, and
retention keeps the last good backup however many flagged ones follow."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from .dbtools import cli

ROWS = 2000


def _setup(root: Path, check: str = "quick", retention: str = "") -> Path:
    conn = sqlite3.connect(root / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"value {i} " * 5,) for i in range(ROWS)])
    conn.commit()
    conn.close()
    cfg = root / "backupd.toml"
    cfg.write_text(f'[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   f'source_check = "{check}"\n'
                   '[[destinations]]\nname = "local"\nkind = "local"\npath = "backups"\n' + retention)
    return cfg


def _backup(cfg: Path) -> dict:
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json")
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)


def _corrupt_page_header(db: Path) -> None:
    """Overwrite the b-tree page header of a leaf page of index t_v with garbage (reading the table,
    as counting its rows does, never notices)."""
    conn = sqlite3.connect(db)
    ps = conn.execute("PRAGMA page_size").fetchone()[0]
    page = conn.execute("SELECT pageno FROM dbstat WHERE name = 't_v' AND pagetype = 'leaf' LIMIT 1").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((page - 1) * ps)
        f.write(b"\xff" * 12)


def _drop_row_from_index(db: Path) -> None:
    """Change row 5 while the index is hidden from the schema, so the index keeps the old value only."""
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master WHERE name = 't_v'").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 't_v'")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE t SET v = 'changed' WHERE id = 5")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("INSERT INTO sqlite_master VALUES (?, ?, ?, ?, ?)", row)
    conn.commit()
    conn.close()


def _truncate(db: Path) -> None:
    os.truncate(db, 0)


def _lose_rows(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM t WHERE id > 10")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("damage, check, code", [
    (_corrupt_page_header, "quick", "source_corrupt"),
    (_drop_row_from_index, "full", "source_corrupt"),
    (_truncate, "quick", "source_shrunk"),
    (_lose_rows, "quick", "source_shrunk"),
])
def test_damaged_source_is_stored_flagged_listed_and_kept_apart(tmp_path: Path, damage, check, code):
    cfg = _setup(tmp_path, check, "[retention]\nkeep_last = 1\n")
    good = _backup(cfg)
    assert good["status"] == "completed" and good["warnings"] == []
    damage(tmp_path / "src.db")
    flagged = [_backup(cfg) for _ in range(3)]
    for b in flagged:
        assert b["status"] == "completed_with_warnings"
        assert code in [w.split(":")[0] for w in b["warnings"]]
    listed = json.loads(cli("list", "-c", str(cfg), "--json").stdout)
    # keep_last 1 counts only the good backup; the newest (flagged) one stays as the newest restorable
    assert [b["id"] for b in listed] == [good["id"], flagged[-1]["id"]]
    assert f"WARNING {code}" in cli("list", "-c", str(cfg)).stdout
    assert cli("catalog", "rebuild", "-c", str(cfg)).code == 0
    listed = json.loads(cli("list", "-c", str(cfg), "--json").stdout)
    assert [b["warnings"] != [] for b in listed] == [False, True]  # the flag lives in the sidecar too


def test_quick_check_misses_an_index_row_that_full_finds(tmp_path: Path):
    cfg = _setup(tmp_path, "quick")
    _drop_row_from_index(tmp_path / "src.db")
    assert _backup(cfg)["warnings"] == []
    cfg.write_text(cfg.read_text().replace('source_check = "quick"', 'source_check = "full"'))
    assert "row 5 missing from index t_v" in _backup(cfg)["warnings"][0]


def test_check_off_stores_a_corrupt_source_unflagged(tmp_path: Path):
    cfg = _setup(tmp_path, "off")
    _corrupt_page_header(tmp_path / "src.db")
    assert _backup(cfg)["status"] == "completed"


def test_the_default_check_finds_a_row_missing_from_its_index(tmp_path: Path):
    cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace('source_check = "quick"\n', ""))
    _drop_row_from_index(tmp_path / "src.db")
    b = _backup(cfg)
    assert b["status"] == "completed_with_warnings" and "missing from index t_v" in b["warnings"][0]


def test_verify_warns_about_a_flagged_backup(tmp_path: Path):
    cfg = _setup(tmp_path, check="full")
    _backup(cfg)
    _drop_row_from_index(tmp_path / "src.db")
    flagged = _backup(cfg)["id"]
    proc = cli("verify", "-c", str(cfg), "--backup", flagged, "--json")
    report = json.loads(proc.stdout)
    assert proc.code == 0 and report["verdict"] == "warn", (proc.code, report["verdict"])
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["id"] for c in failed] == ["source_unflagged"] and "source_corrupt" in failed[0]["message"], failed


def test_auto_extends_the_good_chain_instead_of_starting_one_on_a_flagged_source(tmp_path: Path):
    cfg = _setup(tmp_path, check="full")
    with open(cfg, "a") as f:
        f.write("[strategy]\nmax_chain_length = 1\n")
    good = _backup(cfg)["id"]
    _lose_rows(tmp_path / "src.db")
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "auto", "--json")
    result = json.loads(proc.stdout)
    assert result["strategy"] != "full", result  # the chain is at its maximum: unflagged, this would be a full
    assert "flagged (source_shrunk)" in result["strategy_reason"] and result["status"] == "completed_with_warnings"
    listed = json.loads(cli("list", "-c", str(cfg), "--json").stdout)
    assert good in {p["id"] for p in listed}
