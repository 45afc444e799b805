"""Restore reads each chain member from the first copy by priority, and moves to the next copy when
one fails its checksum or is gone — saying so — instead of failing the restore."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from backupd.config import load_config
from backupd.engine.context import open_context
from backupd.engine.reading import copies_in_order

from .dbtools import cli


def _source(root: Path, rows: int) -> None:
    """src.db: `rows` rows of 800 random bytes (about 1 KiB a row)."""
    conn = sqlite3.connect(root / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    conn.executemany("INSERT INTO t (body) VALUES (randomblob(800))", [()] * rows)
    conn.commit()
    conn.close()


def test_a_corrupt_first_copy_falls_back_to_the_next(tmp_path: Path):
    _source(tmp_path, 3000)
    cfg = tmp_path / "backupd.toml"
    cfg.write_text('[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   '[[destinations]]\nname = "first"\nkind = "local"\npath = "first"\npriority = 1\n'
                   '[[destinations]]\nname = "second"\nkind = "local"\npath = "second"\npriority = 2\n')
    backup = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)
    artifact = tmp_path / "first" / "db" / f"{backup['id']}.bkpd"
    raw = bytearray(artifact.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a block in the middle fails its checksum after earlier blocks were written
    artifact.write_bytes(bytes(raw))
    proc = cli("-v", "restore", "-c", str(cfg), "--source", "db", "--backup", backup["id"],
                "--to", str(tmp_path / "r.db"), "--json")
    assert proc.code == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    fell_back = [e for e in events if e.get("event") == "restore_copy_failed"]
    assert fell_back and fell_back[0]["destination"] == "first" and fell_back[0]["next_destination"] == "second"
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    (tmp_path / "second" / "db" / f"{backup['id']}.bkpd").unlink()  # now no good copy is left
    proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", backup["id"], "--to", str(tmp_path / "r2.db"))
    assert proc.code == 1 and not (tmp_path / "r2.db").exists()


def test_restore_plan_names_the_copy_of_every_member_and_fails_on_a_gap(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "src.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 200,)] * 500)
    conn.commit()
    cfg = tmp_path / "backupd.toml"
    cfg.write_text('[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   '[[destinations]]\nname = "a"\nkind = "local"\npath = "a"\npriority = 2\n'
                   '[[destinations]]\nname = "b"\nkind = "local"\npath = "b"\npriority = 1\n')
    full = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json").stdout)
    conn.execute("UPDATE t SET body = 'y' WHERE id < 50")
    conn.commit()
    conn.close()
    inc = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "incremental", "--json").stdout)
    plan = json.loads(cli("restore", "-c", str(cfg), "--source", "db", "--backup", inc["id"], "--plan", "--json").stdout)
    assert [(m["id"], m["destination"], m["fallbacks"]) for m in plan["chain"]] == \
        [(full["id"], "b", ["a"]), (inc["id"], "b", ["a"])]
    assert not list(tmp_path.glob("*.db-restore*"))
    for d in ("a", "b"):  # the full is gone everywhere: the plan says so before anything is written
        for f in (tmp_path / d / "db").glob(f"{full['id']}.*"):
            f.unlink()
    proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", inc["id"], "--plan", "--json")
    assert proc.code == 1
    assert json.loads(proc.stderr)["code"] == "missing_chain_member"


def test_most_reliable_reads_the_most_recently_verified_copy_first(tmp_path: Path):
    _source(tmp_path, 500)
    head = '[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
    dests = ('[[destinations]]\nname = "fast"\nkind = "local"\npath = "fast"\npriority = 1\nenabled = {}\n'
             '[[destinations]]\nname = "sure"\nkind = "local"\npath = "sure"\npriority = 2\n')
    cfg = tmp_path / "backupd.toml"
    cfg.write_text(head + dests.format("true"))
    backup = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)
    cfg.write_text(head + dests.format("false"))  # only "sure" is read, so only its copy gets verified
    assert cli("verify", "-c", str(cfg), "--backup", backup["id"], "--level", "standard").code == 0
    cfg.write_text(head + dests.format("true"))

    def first_read(*extra: str) -> str:
        proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", backup["id"], "--plan", "--json", *extra)
        assert proc.code == 0, proc.stderr
        return json.loads(proc.stdout)["chain"][0]["destination"]

    assert first_read() == "fast"  # priority by default: "sure"'s verification only breaks ties
    assert first_read("--copy-selection", "most_reliable") == "sure"
    cfg.write_text(head + dests.format("true") + '[restore]\ncopy_selection = "most_reliable"\n')
    assert first_read() == "sure"
    assert first_read("--copy-selection", "priority") == "fast"


def test_a_copy_that_fails_validation_loses_its_verification(tmp_path: Path):
    _source(tmp_path, 2000)
    head = ('[state]\ndir = "state"\n[restore]\ncopy_selection = "most_reliable"\n'
            '[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n')
    dests = ('[[destinations]]\nname = "a"\nkind = "local"\npath = "a"\nenabled = {}\n'
             '[[destinations]]\nname = "b"\nkind = "local"\npath = "b"\nenabled = {}\n')
    cfg = tmp_path / "backupd.toml"

    def use(a: bool, b: bool) -> None:
        cfg.write_text(head + dests.format(str(a).lower(), str(b).lower()))

    def verify() -> int:
        return cli("verify", "-c", str(cfg), "--backup", backup["id"], "--level", "standard").code

    def first_read() -> str:
        proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", backup["id"], "--plan", "--json")
        return json.loads(proc.stdout)["chain"][0]["destination"]

    use(True, True)
    backup = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)
    use(False, True)
    assert verify() == 0
    use(True, False)
    assert verify() == 0
    use(True, True)
    assert first_read() == "a"  # verified last
    artifact = tmp_path / "a" / "db" / f"{backup['id']}.bkpd"
    raw = bytearray(artifact.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    artifact.write_bytes(bytes(raw))
    use(True, False)
    assert verify() == 1
    use(True, True)
    assert first_read() == "b"  # a's copy failed: it is read last now


def _two_copies(tmp_path: Path, selection: str = "most_reliable") -> tuple[Path, dict]:
    """A backup of src.db on destinations a (priority 1) and b (priority 2), neither verified yet."""
    _source(tmp_path, 2000)
    cfg = tmp_path / "backupd.toml"
    cfg.write_text(f'[state]\ndir = "state"\n[restore]\ncopy_selection = "{selection}"\n'
                   '[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   '[[destinations]]\nname = "a"\nkind = "local"\npath = "a"\npriority = 1\n'
                   '[[destinations]]\nname = "b"\nkind = "local"\npath = "b"\npriority = 2\n')
    return cfg, json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)


def _first_read(cfg: Path, backup_id: str) -> str:
    proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", backup_id, "--plan", "--json")
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout)["chain"][0]["destination"]


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("selection", ["most_reliable", "priority"])
def test_a_copy_that_failed_validation_is_read_after_an_unverified_one(tmp_path: Path, selection: str):
    """Issue 8: with no verified copy, the copy known to be bad was still read first."""
    cfg, backup = _two_copies(tmp_path, selection)
    assert _first_read(cfg, backup["id"]) == "a"
    _flip(tmp_path / "a" / "db" / f"{backup['id']}.bkpd")
    assert cli("verify", "-c", str(cfg), "--backup", backup["id"], "--level", "standard").code == 1  # reads a
    assert _first_read(cfg, backup["id"]) == "b"  # b was never verified, but a is known to be damaged


def test_a_copy_that_fails_its_checksum_mid_restore_is_read_last_afterwards(tmp_path: Path):
    cfg, backup = _two_copies(tmp_path, "priority")
    _flip(tmp_path / "a" / "db" / f"{backup['id']}.bkpd")
    proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", backup["id"], "--to", str(tmp_path / "r.db"))
    assert proc.code == 0, proc.stderr  # fell back to b
    assert _first_read(cfg, backup["id"]) == "b"  # the next restore does not try the damaged copy first


def test_a_per_operation_copy_selection_is_the_contexts_and_leaves_the_config_as_it_is(tmp_path: Path):
    """A restore's own `copy_selection` (the daemon's `restore.create`, the CLI's --copy-selection) is a
    parameter of its engine context: the config, its allowed dirs among it, stays as it is."""
    _source(tmp_path, 500)
    head = ('[state]\ndir = "state"\n[restore]\nallowed_dirs = ["restores"]\n'
            '[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n')
    dests = ('[[destinations]]\nname = "fast"\nkind = "local"\npath = "fast"\npriority = 1\nenabled = {}\n'
             '[[destinations]]\nname = "sure"\nkind = "local"\npath = "sure"\npriority = 2\n')
    cfg = tmp_path / "backupd.toml"
    cfg.write_text(head + dests.format("true"))
    backup = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)
    cfg.write_text(head + dests.format("false"))  # only "sure" is read, so only its copy gets verified
    assert cli("verify", "-c", str(cfg), "--backup", backup["id"], "--level", "standard").code == 0
    cfg.write_text(head + dests.format("true"))
    config = load_config(cfg)
    for selection, first in ((None, "fast"), ("priority", "fast"), ("most_reliable", "sure")):
        ctx = open_context(config, copy_selection=selection)
        try:
            recorded = next(b for b in ctx.catalog.backups("db") if b.backup_id == backup["id"])
            assert [t.name for t, _ in copies_in_order(ctx, recorded)][0] == first, selection
            assert ctx.copy_selection == (selection or "priority") and ctx.config is config
        finally:
            ctx.close()
    assert config.restore.copy_selection == "priority" and config.restore_dirs() == [tmp_path / "restores"]
