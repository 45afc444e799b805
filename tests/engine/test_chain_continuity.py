"""A delta is only written where the chain it extends is complete and readable with the keys configured
now; a destination lacking it is named and brought up by resync; with no such destination the backup
becomes a full and says why."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from backupd.config import load_config
from backupd.engine.backup import run_backup
from backupd.engine.context import open_context
from backupd.engine.crypto import keygen
from backupd.engine.restore import run_restore
from backupd.engine.resync import resync


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


def test_a_destination_without_the_chain_does_not_force_a_full_on_the_others(tmp_path: Path):
    """Issue 8 item 2: the delta goes to the destination holding the chain, the one lacking it is named
    in the reason and brought up by resync, after which deltas go to both."""
    cfg = _setup(tmp_path, "")
    _backup(cfg, "full")
    cfg.write_text(cfg.read_text() + '[[destinations]]\nname = "second"\nkind = "local"\npath = "backups2"\n')
    _touch(tmp_path)
    ctx = open_context(load_config(cfg))
    try:
        result = run_backup(ctx, "db", "auto")
    finally:
        ctx.close()
    m = result.manifest
    assert m.strategy in ("incremental", "differential"), m.strategy_reason
    assert "destination second lacks the chain" in m.strategy_reason and "delta on local" in m.strategy_reason
    assert [c.destination for c in result.copies] == ["local"] and "lacks the chain" in result.failed["second"]
    ctx = open_context(load_config(cfg))
    try:
        copied = resync(ctx, "db").copied
        assert len(copied) == 2 and {c["destination"] for c in copied} == {"second"}
    finally:
        ctx.close()
    _touch(tmp_path)
    after = _backup(cfg, "auto")
    assert after.strategy != "full" and "lacks" not in after.strategy_reason, after.strategy_reason
    cfg.write_text(cfg.read_text().replace('path = "backups"\n', 'path = "backups"\nenabled = false\n', 1))
    ctx = open_context(load_config(cfg))
    try:
        run_restore(ctx, "db", tmp_path / "out.db", backup_id=after.backup_id)
    finally:
        ctx.close()
