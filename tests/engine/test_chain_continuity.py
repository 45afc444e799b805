"""A delta is only taken when the chain it extends is complete and readable on every destination with
the keys configured now; otherwise the backup becomes a full and says why."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from backupd.config import load_config
from backupd.engine.backup import run_backup
from backupd.engine.context import open_context
from backupd.engine.crypto import keygen
from backupd.engine.restore import run_restore


def _setup(root: Path, encryption: str) -> Path:
    db = root / "src.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)])
    conn.commit()
    conn.close()
    cfg = root / "backupd.toml"
    cfg.write_text(f'[state]\ndir = "state"\n[[sources]]\nname = "db"\nkind = "sqlite"\npath = "src.db"\n'
                   f'[[destinations]]\nname = "local"\nkind = "local"\npath = "backups"\n{encryption}')
    return cfg


def _backup(cfg: Path, strategy: str):
    ctx = open_context(load_config(cfg))
    try:
        return run_backup(ctx, "db", strategy).manifest
    finally:
        ctx.close()


def _touch(root: Path) -> None:
    conn = sqlite3.connect(root / "src.db")
    conn.execute("UPDATE t SET body = body || 'x' WHERE id % 50 = 0")
    conn.commit()
    conn.close()


def test_a_new_key_starts_a_new_chain(tmp_path: Path):
    keygen(tmp_path / "a.key")
    keygen(tmp_path / "b.key")
    cfg = _setup(tmp_path, '[destinations.encryption]\nkey_file = "a.key"\n')
    _backup(cfg, "full")
    _touch(tmp_path)
    assert _backup(cfg, "incremental").strategy == "incremental"
    cfg.write_text(cfg.read_text().replace('"a.key"', '"b.key"'))
    _touch(tmp_path)
    m = _backup(cfg, "incremental")
    assert m.strategy == "full"
    assert "wrong key" in m.strategy_reason
    _touch(tmp_path)
    after = _backup(cfg, "incremental")
    assert after.strategy == "incremental" and after.parent_id == m.backup_id
    ctx = open_context(load_config(cfg))
    try:
        run_restore(ctx, "db", tmp_path / "out.db", backup_id=after.backup_id)
    finally:
        ctx.close()


def test_turning_encryption_on_starts_a_new_chain(tmp_path: Path):
    keygen(tmp_path / "a.key")
    cfg = _setup(tmp_path, "")
    _backup(cfg, "full")
    cfg.write_text(cfg.read_text() + '[destinations.encryption]\nkey_file = "a.key"\n')
    _touch(tmp_path)
    m = _backup(cfg, "differential")
    assert m.strategy == "full" and "not encrypted" in m.strategy_reason


def test_a_new_destination_without_the_chain_gets_a_full(tmp_path: Path):
    cfg = _setup(tmp_path, "")
    _backup(cfg, "full")
    cfg.write_text(cfg.read_text() + '[[destinations]]\nname = "second"\nkind = "local"\npath = "backups2"\n')
    _touch(tmp_path)
    m = _backup(cfg, "incremental")
    assert m.strategy == "full" and "second has no copy" in m.strategy_reason
    assert sorted(os.listdir(tmp_path / "backups2" / "db")) == sorted(os.listdir(tmp_path / "backups" / "db"))[-2:]
