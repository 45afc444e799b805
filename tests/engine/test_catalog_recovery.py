"""Disaster recovery through `backupd catalog rebuild` (issue 8, items 1 and 13).

- With another key, rebuild lists every sidecar it could not read with its reason ("wrong key ... key id A,
  configured key id B"), counts them and exits 1; restore and verify of such a backup say "wrong key"
  instead of "not found on any destination".
- A missing, damaged ("file is not a database", a malformed page) or half-written catalog.db stops every
  command with `state_corrupt` naming `backupd catalog rebuild`, never `internal error`; rebuild moves the
  damaged file aside, says so, keeps the rows it can still read (a destination added at run time) and
  recreates the catalog from the destinations. Real SQLite files, the real CLI.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import pytest

from backupd.config import load_config
from backupd.config.overlay import DestinationOverlay, with_runtime_destinations
from backupd.daemon.store import DaemonStore
from backupd.engine.backup import run_backup
from backupd.engine.catalog import Catalog
from backupd.errors import StateCorrupt

from .dbtools import SOURCE, assert_clean_error, cli, create_db, engine, fill_text, lose_catalog, make_env, sidecar_ids


@pytest.fixture
def backed_up(tmp_path):
    """An encrypted env with three full backups on its local destination."""
    env = make_env(tmp_path / "env")
    conn = create_db(env.db)
    fill_text(conn, "notes", 0.2)
    conn.close()
    with engine(env) as ctx:
        ids = [run_backup(ctx, SOURCE, "full").backup_id for _ in range(3)]
    return env, ids


def catalog_path(env) -> Path:
    return env.state / "catalog.db"


# -- item 1: the wrong key ---------------------------------------------------------------------------
def test_rebuild_with_a_wrong_key_names_every_unreadable_sidecar_and_fails(backed_up):
    env, ids = backed_up
    lose_catalog(env)
    (env.root / "backup.key").write_bytes(bytes(range(100, 132)))  # another key, still mode 0600

    r = cli("catalog", "rebuild", "-c", env.config, "--json")
    assert r.code == 1, (r.stdout, r.stderr)
    report = r.json()
    assert report["backups"] == 0 and report["unreadable"] == len(ids) == len(report["problems"])
    assert sorted(p["backup_id"] for p in report["problems"]) == sorted(ids)
    for p in report["problems"]:
        assert p["destination"] == "local" and p["code"] == "wrong_key"
        assert p["error"].startswith("wrong key: ") and "key id" in p["error"] and "configured key id" in p["error"]

    text = cli("catalog", "rebuild", "-c", env.config)
    assert text.code == 1
    lines = text.stdout.splitlines()
    assert lines[0] == f"catalog rebuilt: 0 backups; {len(ids)} sidecars could not be read:"
    assert sorted(line.split(": ", 1)[0].strip() for line in lines[1:]) == sorted(
        f"local:{SOURCE}/{i}.manifest" for i in ids)
    assert all("wrong key" in line for line in lines[1:])


def test_restore_and_verify_of_a_backup_only_another_key_opens_say_wrong_key(backed_up):
    env, ids = backed_up
    lose_catalog(env)
    (env.root / "backup.key").write_bytes(bytes(range(100, 132)))
    restore = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", ids[0], "--to", env.root / "r.db",
                  "--json")
    err = assert_clean_error(restore, 1, as_json=True)
    assert err["code"] == "wrong_key" and "wrong key" in err["error"] and ids[0] in err["error"], err
    assert not (env.root / "r.db").exists()
    at = cli("restore", "-c", env.config, "--source", SOURCE, "--at", "2100-01-01T00:00:00Z", "--to",
             env.root / "r.db", "--json")
    assert assert_clean_error(at, 1, as_json=True)["code"] == "wrong_key"
    verify = cli("verify", "-c", env.config, "--backup", ids[-1], "--json")
    err = assert_clean_error(verify, 1, as_json=True)
    assert err["code"] == "wrong_key" and "configured key id" in err["error"], err


def test_rebuild_with_the_right_key_after_a_wrong_one_recovers_everything(backed_up):
    env, ids = backed_up
    lose_catalog(env)
    key = env.root / "backup.key"
    right = key.read_bytes()
    key.write_bytes(bytes(32))
    assert cli("catalog", "rebuild", "-c", env.config).code == 1
    key.write_bytes(right)
    r = cli("catalog", "rebuild", "-c", env.config, "--json")
    assert r.code == 0 and r.json()["backups"] == len(ids) and r.json()["problems"] == [], r.stdout


# -- item 13: a damaged state database ----------------------------------------------------------------
def _checkpointed(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not what backupd wrote\n" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def half_written(path: Path) -> None:
    """The first page and a half of the file only, as an interrupted copy leaves it."""
    _checkpointed(path)
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    path.write_bytes(data[: page_size * 3 // 2])


def malformed_page(path: Path, table: str = "backups") -> None:
    """Garbage over the root page of `table`: the rest of the file (schema, other tables) stays readable."""
    _checkpointed(path)
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    db.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(bytes([0x0D, 0xFF]) * (page_size // 2))


DAMAGE = pytest.mark.parametrize("damage", [not_a_database, half_written, malformed_page],
                                 ids=["not-a-database", "half-written", "malformed-page"])


@DAMAGE
def test_a_damaged_state_database_names_the_fix_and_rebuild_recovers(backed_up, damage):
    env, ids = backed_up
    damage(catalog_path(env))

    for argv in (["list"], ["backup", "--source", SOURCE], ["prune"],
                 ["restore", "--source", SOURCE, "--backup", ids[0], "--to", str(env.root / "r.db")]):
        for as_json in (True, False):
            r = cli(*argv, "-c", env.config, *(["--json"] if as_json else []))
            err = assert_clean_error(r, 1, as_json=as_json)
            message = err["error"] if as_json else err
            assert "internal error" not in message and "backupd catalog rebuild" in message, message
            if as_json:
                assert err["code"] == "state_corrupt" and err["details"]["path"] == str(catalog_path(env))

    r = cli("catalog", "rebuild", "-c", env.config, "--json")
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["backups"] == len(ids) and report["problems"] == []
    moved = Path(report["state_db"]["moved_to"])
    assert moved.parent == env.state and moved.name.startswith("catalog.db.damaged-") and moved.exists()
    assert report["state_db"]["path"] == str(catalog_path(env)) and report["state_db"]["problem"]
    listed = cli("list", "-c", env.config, "--json")
    assert listed.code == 0 and [b["id"] for b in listed.json()] == ids
    assert cli("backup", "-c", env.config, "--source", SOURCE).code == 0
    again = cli("catalog", "rebuild", "-c", env.config, "--json")  # the new file is sound: nothing moved
    assert again.code == 0 and again.json()["state_db"] is None and again.json()["backups"] == len(ids) + 1


def test_rebuild_says_what_it_moved_aside_and_keeps_a_destination_added_at_run_time(backed_up, tmp_path):
    env, ids = backed_up
    overlay = DestinationOverlay(env.state)
    overlay.add("usb", {"name": "usb", "kind": "local", "path": str(tmp_path / "usb"),
                        "encryption": {"key_file": str(env.root / "backup.key")}})
    overlay.close()
    on_usb = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", "full", "--json").json()["id"]
    malformed_page(catalog_path(env), "backups")  # the backups are unreadable, the overlay's table is intact

    r = cli("catalog", "rebuild", "-c", env.config)
    assert r.code == 0, r.stderr
    first, last = r.stdout.splitlines()
    assert first.startswith(f"state database {catalog_path(env)} was damaged (")
    assert "moved aside to " in first and "kept " in first and "runtime_destinations (1 rows)" in first
    assert last == f"catalog rebuilt: {len(ids) + 1} backups"
    config = with_runtime_destinations(load_config(env.config)).config
    assert [d.name for d in config.destinations] == ["local", "usb"]
    listed = {b["id"]: b["destinations"] for b in cli("list", "-c", env.config, "--json").json()}
    assert listed[on_usb] == ["local", "usb"]


def test_rebuild_refuses_to_move_the_file_while_the_daemon_holds_it(backed_up):
    env, _ = backed_up
    not_a_database(catalog_path(env))
    fd = os.open(env.state / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = cli("catalog", "rebuild", "-c", env.config, "--json")
        err = assert_clean_error(r, 1, as_json=True)
        assert err["code"] == "state_corrupt" and "daemon (pid 4242)" in err["error"] and "stop" in err["error"]
        assert sorted(p.name for p in env.state.iterdir() if p.name.startswith("catalog.db")) == ["catalog.db"]
    finally:
        os.close(fd)


@pytest.mark.parametrize("damage", [not_a_database, half_written], ids=["not-a-database", "half-written"])
def test_every_opener_of_the_state_database_raises_state_corrupt(backed_up, damage):
    env, _ = backed_up
    damage(catalog_path(env))
    openers = [lambda: Catalog(catalog_path(env)).backups(), lambda: DaemonStore(catalog_path(env)).jobs(),
               lambda: DestinationOverlay(env.state).changes(),
               lambda: with_runtime_destinations(load_config(env.config))]
    for open_and_read in openers:
        with pytest.raises(StateCorrupt, match="backupd catalog rebuild") as exc:
            open_and_read()
        assert exc.value.code == "state_corrupt" and exc.value.exit_code == 1


def test_damage_met_after_the_open_is_state_corrupt_too(backed_up):
    env, _ = backed_up
    malformed_page(catalog_path(env))
    catalog = Catalog(catalog_path(env))  # the schema is readable: the open succeeds
    try:
        assert len(catalog.jobs()) == 3  # and the tables left intact stay usable
        with pytest.raises(StateCorrupt):
            catalog.backups()
    finally:
        catalog.close()


def test_a_missing_state_database_is_rebuilt_without_fuss(backed_up):
    env, ids = backed_up
    lose_catalog(env)
    r = cli("catalog", "rebuild", "-c", env.config, "--json")
    assert r.code == 0 and r.json()["backups"] == len(ids) and r.json()["state_db"] is None
    assert {b["id"] for b in cli("list", "-c", env.config, "--json").json()} == sidecar_ids(env)
