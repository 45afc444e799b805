"""The backup lifecycle on a real smbd: full and incremental backups to an SMB destination, then
disaster recovery with an empty state dir (`catalog rebuild`, list, restore)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.servers.smbd import smb_server  # noqa: F401 - the fixture the test asks for

BACKUPD = Path(sys.executable).with_name("backupd")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BACKUPD), *args], capture_output=True, text=True, timeout=120, env=env)


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, body FROM t ORDER BY id").fetchall()


def test_backups_to_smb_and_disaster_recovery_with_an_empty_state_dir(smb_server, tmp_path: Path):
    env = {**os.environ, "BACKUPD_SMB_PASSWORD": smb_server.password}
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 30,) for i in range(3000)])
    assert _cli("keygen", str(tmp_path / "backup.key"), env=env).returncode == 0
    folder = f"dr-{secrets.token_hex(6)}"
    cfg = tmp_path / "backupd.toml"
    cfg.write_text(
        '[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
        '[[destinations]]\nname = "nas-direct"\nkind = "smb"\n'
        f'server = "{smb_server.host}"\nport = {smb_server.port}\nshare = "{smb_server.share}"\n'
        f'path = "{folder}"\nuser = "{smb_server.user}"\npassword_env = "BACKUPD_SMB_PASSWORD"\n'
        '[destinations.encryption]\nkey_file = "backup.key"\n'
    )
    full = _cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json", env=env)
    assert full.returncode == 0, full.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE t SET body = 'changed' WHERE id % 50 = 0")
    incremental = _cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "incremental", "--json", env=env)
    assert incremental.returncode == 0, incremental.stderr
    assert json.loads(incremental.stdout)["strategy"] == "incremental"
    latest = json.loads(incremental.stdout)["id"]
    expected = _rows(db)
    assert not any(p.name.endswith(".backupd-tmp") for p in (smb_server.share_dir / folder).rglob("*"))

    shutil.rmtree(tmp_path / "state")  # the machine is lost: only the config and the key remain
    db.unlink()
    rebuilt = _cli("catalog", "rebuild", "-c", str(cfg), "--json", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["backups"] == 2
    restored = tmp_path / "restored.db"
    r = _cli("restore", "-c", str(cfg), "--source", "db", "--backup", latest, "--to", str(restored), env=env)
    assert r.returncode == 0, r.stderr
    assert _rows(restored) == expected
