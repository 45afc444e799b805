"""The backup lifecycle on a real sshd: full and incremental backups to an SFTP destination, then
disaster recovery: with an empty state dir, `catalog rebuild` from the server, list and restore."""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
from pathlib import Path

from backupd.engine.catalog import Catalog
from tests.servers.sshd import running_sshd, sshd_server  # noqa: F401 - sshd_server: the fixture a test asks for

from .dbtools import cli


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, body FROM t ORDER BY id").fetchall()


def test_backups_to_sftp_and_disaster_recovery_with_an_empty_state_dir(sshd_server, tmp_path: Path):
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 30,) for i in range(3000)])
    assert cli("keygen", str(tmp_path / "backup.key")).code == 0
    remote = sshd_server.root / f"dr-{secrets.token_hex(6)}"
    cfg = tmp_path / "backupd.toml"
    cfg.write_text(
        '[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
        '[[destinations]]\nname = "offsite"\nkind = "sftp"\n'
        f'host = "{sshd_server.host}"\nport = {sshd_server.port}\nuser = "{sshd_server.user}"\n'
        f'key_file = "{sshd_server.client_key_file}"\nknown_hosts = "{sshd_server.known_hosts}"\npath = "{remote}"\n'
        '[destinations.encryption]\nkey_file = "backup.key"\n'
    )
    full = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json")
    assert full.code == 0, full.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE t SET body = 'changed' WHERE id % 50 = 0")
    incremental = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "incremental", "--json")
    assert incremental.code == 0, incremental.stderr
    latest = json.loads(incremental.stdout)["id"]
    expected = _rows(db)
    assert not any(p.name.endswith(".backupd-tmp") for p in remote.rglob("*"))

    shutil.rmtree(tmp_path / "state")  # the machine is lost: only the config and the key remain
    db.unlink()
    rebuilt = cli("catalog", "rebuild", "-c", str(cfg), "--json")
    assert rebuilt.code == 0, rebuilt.stderr
    listed = json.loads(cli("list", "-c", str(cfg), "--json").stdout)
    assert latest in json.dumps(listed) and len(listed) == 2
    restored = tmp_path / "restored.db"
    r = cli("restore", "-c", str(cfg), "--source", "db", "--backup", latest, "--to", str(restored))
    assert r.code == 0, r.stderr
    assert _rows(restored) == expected


def test_a_verify_that_cannot_reach_the_server_keeps_the_copy_verified(tmp_path: Path):
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 30,) for i in range(500)])
    with running_sshd() as server:
        cfg = tmp_path / "backupd.toml"
        cfg.write_text(
            '[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
            '[[destinations]]\nname = "offsite"\nkind = "sftp"\n'
            f'host = "{server.host}"\nport = {server.port}\nuser = "{server.user}"\n'
            f'key_file = "{server.client_key_file}"\nknown_hosts = "{server.known_hosts}"\n'
            f'path = "{server.root / "v"}"\n'
        )
        backup = json.loads(cli("backup", "-c", str(cfg), "--source", "db", "--json").stdout)["id"]
        assert cli("verify", "-c", str(cfg), "--backup", backup, "--level", "standard").code == 0

        def verified_at() -> str | None:
            catalog = Catalog(tmp_path / "state" / "catalog.db")
            try:
                return catalog.get(backup).copies[0].verified_at
            finally:
                catalog.close()

        before = verified_at()
        assert before is not None
        server.stop()
        assert cli("verify", "-c", str(cfg), "--backup", backup, "--level", "standard").code == 1
        assert verified_at() == before  # an unreachable server says nothing about the copy
