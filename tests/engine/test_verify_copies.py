"""Which copies `backupd verify` checks (--destination, --all-copies, --sample), what it recommends
when another destination holds a good copy, and how resync rewrites a copy that failed validation.
Real SQLite sources and catalogs, the real `backupd` CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from backupd.core.sampling import runs_to_cover
from backupd.engine.catalog import Catalog
from backupd.state.migrations import RELEASE_7C53354 as SCHEMA

from .dbtools import cli


def _setup(tmp_path: Path, rows: int = 2000) -> tuple[Path, str]:
    """src.db (about 1 KiB of random bytes a row) backed up to destinations a (priority 1) and b (2)."""
    conn = sqlite3.connect(tmp_path / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    conn.executemany("INSERT INTO t (body) VALUES (randomblob(1000))", [()] * rows)
    conn.commit()
    conn.close()
    cfg = tmp_path / "backupd.toml"
    cfg.write_text('[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   '[[destinations]]\nname = "a"\nkind = "local"\npath = "a"\npriority = 1\n'
                   '[[destinations]]\nname = "b"\nkind = "local"\npath = "b"\npriority = 2\n')
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--json")
    assert proc.code == 0, proc.stderr
    return cfg, json.loads(proc.stdout)["id"]


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _verify(cfg: Path, backup_id: str, *extra: str) -> tuple[int, dict]:
    proc = cli("verify", "-c", str(cfg), "--backup", backup_id, "--level", "standard", "--json", *extra)
    assert proc.stdout, proc.stderr
    return proc.code, json.loads(proc.stdout)


def _copies(tmp_path: Path, backup_id: str) -> dict[str, tuple]:
    conn = sqlite3.connect(tmp_path / "state" / "catalog.db")
    try:
        return {d: (v, f, o) for d, v, f, o in conn.execute(
            "SELECT destination, verified_at, failed_at, sample_offset FROM copies WHERE backup_id = ?", (backup_id,))}
    finally:
        conn.close()


def test_damage_with_a_good_copy_elsewhere_recommends_resync_and_resync_rewrites_it(tmp_path: Path):
    """Issue 8 item 10: validation recommended a new full although destination b held a good copy."""
    cfg, bid = _setup(tmp_path)
    _flip(tmp_path / "a" / "db" / f"{bid}.bkpd")
    code, report = _verify(cfg, bid)  # reads a, the first by priority
    assert code == 1 and report["verdict"] == "fail"
    assert report["recommendations"] and all("resync" in r and "from the one on b" in r
                                             for r in report["recommendations"]), report["recommendations"]
    assert not any("new full" in r for r in report["recommendations"])
    assert _copies(tmp_path, bid)["a"][1] is not None  # a's copy is recorded as failed

    proc = cli("resync", "-c", str(cfg), "--json")
    assert proc.code == 0, proc.stderr
    assert [(c["backup_id"], c["destination"]) for c in json.loads(proc.stdout)["db"]["copied"]] == [(bid, "a")]
    code, report = _verify(cfg, bid, "--all-copies")
    assert code == 0 and report["verdict"] == "pass", report
    assert {d: (v is not None, f) for d, (v, f, _) in _copies(tmp_path, bid).items()} == {
        "a": (True, None), "b": (True, None)}
    assert json.loads(cli("resync", "-c", str(cfg), "--json").stdout)["db"]["copied"] == []


def test_only_copy_damaged_still_recommends_a_new_full(tmp_path: Path):
    cfg, bid = _setup(tmp_path, rows=300)
    _flip(tmp_path / "a" / "db" / f"{bid}.bkpd")
    _flip(tmp_path / "b" / "db" / f"{bid}.bkpd")
    code, report = _verify(cfg, bid, "--all-copies")
    assert code == 1
    assert report["recommendations"] and all("new full" in r for r in report["recommendations"]), report
    assert all(f is not None for _, f, _ in _copies(tmp_path, bid).values())


def test_all_copies_finds_damage_on_a_copy_that_is_not_read_first(tmp_path: Path):
    cfg, bid = _setup(tmp_path)
    _flip(tmp_path / "b" / "db" / f"{bid}.bkpd")
    code, report = _verify(cfg, bid)
    assert code == 0 and {c["details"].get("destination") for c in report["checks"]} == {None, "a"}
    code, report = _verify(cfg, bid, "--all-copies")
    assert code == 1
    failed = {(c["id"], c["details"]["destination"]) for c in report["checks"] if c["status"] == "fail"}
    assert failed and all(dest == "b" for _, dest in failed), failed
    assert any("on destination b from the one on a" in r for r in report["recommendations"])
    state = _copies(tmp_path, bid)
    assert state["a"][0] is not None and state["a"][1] is None  # the good copy is verified
    assert state["b"][0] is None and state["b"][1] is not None  # the damaged one failed


def test_destination_checks_the_copies_there_only(tmp_path: Path):
    cfg, bid = _setup(tmp_path)
    _flip(tmp_path / "a" / "db" / f"{bid}.bkpd")
    code, report = _verify(cfg, bid, "--destination", "b")
    assert code == 0, report
    assert {c["details"].get("destination") for c in report["checks"] if "destination" in c["details"]} == {"b"}
    proc = cli("verify", "-c", str(cfg), "--backup", bid, "--level", "deep", "--destination", "b")
    assert proc.code == 0, proc.stdout  # the deep restore reads b only, never the damaged a
    code, report = _verify(cfg, bid, "--destination", "a")
    assert code == 1
    proc = cli("verify", "-c", str(cfg), "--backup", bid, "--destination", "c", "--json")
    assert proc.code == 2 and json.loads(proc.stderr)["code"] == "unknown_destination"


def test_successive_sampled_runs_cover_every_block(tmp_path: Path):
    cfg, bid = _setup(tmp_path, rows=9000)  # ~9 MiB of random rows: 9 page blocks or so
    percent = 30
    covered: set[int] = set()
    blocks = None
    for _ in range(runs_to_cover(percent)):
        code, report = _verify(cfg, bid, "--destination", "a", "--sample", str(percent))
        assert code == 0 and report["sample_percent"] == percent
        [check] = [c for c in report["checks"] if c["id"] == "blocks_authentic"]
        blocks = check["details"]["blocks"] - 1  # the last block is the manifest
        assert len(check["details"]["sampled_blocks"]) == -(-blocks * percent // 100)
        covered |= set(check["details"]["sampled_blocks"])
    assert blocks is not None and blocks >= 5
    assert covered == set(range(blocks))
    assert _copies(tmp_path, bid)["a"][2] != 0 and _copies(tmp_path, bid)["b"][2] == 0


def test_metadata_is_kept_in_the_sidecar_and_listed(tmp_path: Path):
    cfg, _ = _setup(tmp_path, rows=100)
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--meta", "ticket=OPS-7", "--meta", "by=ops team",
               "--validate", "standard", "--json")
    assert proc.code == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert made["metadata"] == {"ticket": "OPS-7", "by": "ops team"} and made["validation"]["verdict"] == "pass"
    (tmp_path / "state" / "catalog.db").unlink()  # the destinations alone know it
    assert cli("catalog", "-c", str(cfg), "rebuild").code == 0
    listed = {b["id"]: b["metadata"] for b in json.loads(cli("list", "-c", str(cfg), "--json").stdout)}
    assert listed[made["id"]] == made["metadata"]
    assert "by=ops team  ticket=OPS-7" in cli("list", "-c", str(cfg)).stdout
    bad = cli("backup", "-c", str(cfg), "--source", "db", "--meta", "ticket", "--json")
    assert bad.code == 2 and "expected KEY=VALUE" in json.loads(bad.stderr)["error"]
    assert len(json.loads(cli("list", "-c", str(cfg), "--json").stdout)) == 2, "a refused backup stores nothing"


def test_a_catalog_written_before_copy_outcomes_gains_their_columns(tmp_path: Path):
    path = tmp_path / "catalog.db"
    old = SCHEMA.replace("    failed_at TEXT,\n", "").replace("    sample_offset INTEGER NOT NULL DEFAULT 0,\n", "")
    conn = sqlite3.connect(path)
    conn.executescript(old)
    conn.execute("INSERT INTO backups VALUES ('b', 's', 'full', NULL, NULL, 't', '{}')")
    conn.execute("INSERT INTO copies VALUES ('b', 'a', 'k', 1, 1, 'd', 3, 0, 't', NULL)")
    conn.commit()
    conn.close()
    Catalog(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT failed_at, sample_offset FROM copies").fetchall() == [(None, 0)]
    conn.close()
