"""Restore: to a new path, over an existing file (only when told, atomically, keeping the old file when
anything fails), selected tables only, by time, and across growth and shrinkage of the database."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta

import pytest

from backupd.engine.backup import run_backup
from backupd.engine.restore import run_restore
from backupd.errors import NoRestorePoint, TargetExists

from .dbtools import (SOURCE, TEMP_SUFFIX, assert_clean_error, canonical_dump, cli, connect, create_db, engine,
                      integrity, make_env)


def leftover_temps(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".") or p.name.endswith("-tmp")
            or TEMP_SUFFIX in p.name]


def populate(conn, seed: int, rows: int, blob: int) -> None:
    rnd = random.Random(seed)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE IF NOT EXISTS docs (id INTEGER PRIMARY KEY, title TEXT, body BLOB)")
    conn.executemany("INSERT INTO docs (title, body) VALUES (?, ?)",
                     [(f"doc {seed}-{i}", rnd.randbytes(blob)) for i in range(rows)])
    conn.execute("COMMIT")


def page_count(conn) -> int:
    return conn.execute("PRAGMA page_count").fetchone()[0]


@pytest.fixture
def env(tmp_path):
    return make_env(tmp_path / "install")


# --- to a new path; growth and shrinkage ----------------------------------------------------------


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_growth_and_shrinkage_between_backups_restore_exactly(env, tmp_path, journal_mode):
    conn = create_db(env.db, page_size=4096, journal_mode=journal_mode)
    steps = []  # (strategy, page count, dump)

    def backup(strategy):
        dump = canonical_dump(conn)
        with engine(env) as ctx:
            m = run_backup(ctx, SOURCE, strategy).manifest
        assert m.strategy == strategy, m.strategy_reason
        assert m.page_count == page_count(conn)
        steps.append((m.backup_id, m.page_count, dump))

    populate(conn, 1, 50, 300)
    backup("full")
    populate(conn, 2, 40, 20_000)  # growth: overflow chains
    backup("incremental")
    conn.execute("DELETE FROM docs WHERE length(body) > 1000")
    conn.execute("VACUUM")  # shrinkage
    backup("incremental")
    populate(conn, 3, 30, 30_000)  # growth past everything before
    backup("differential")
    conn.execute("DELETE FROM docs WHERE id % 2 = 0")
    conn.execute("VACUUM")
    backup("incremental")
    conn.execute("DROP TABLE docs")
    conn.execute("VACUUM")  # down to almost nothing
    backup("differential")
    conn.close()

    counts = [c for _, c, _ in steps]
    assert counts[1] > counts[0] and counts[2] < counts[1] and counts[3] > counts[1], counts
    assert counts[4] < counts[3] and counts[5] < counts[4], counts

    with engine(env) as ctx:
        for i, (backup_id, count, dump) in enumerate(steps):
            out = tmp_path / f"new-{i}.db"
            res = run_restore(ctx, SOURCE, out, backup_id=backup_id)
            assert res.path == out and res.backup_id == backup_id
            assert out.stat().st_size == count * 4096
            assert integrity(out) == ["ok"]
            assert canonical_dump(out) == dump, f"step {i}"
    assert leftover_temps(tmp_path) == []


# --- over an existing file --------------------------------------------------------------------------


@pytest.fixture
def chain(env):
    """A rollback-journal source with a full and an incremental; returns (env, full id, incremental id, dumps)."""
    conn = create_db(env.db, page_size=4096, journal_mode="delete")
    populate(conn, 1, 200, 500)
    with engine(env) as ctx:
        full = run_backup(ctx, SOURCE, "full").backup_id
        dump_full = canonical_dump(conn)
        conn.execute("UPDATE docs SET title = 'changed' WHERE id % 7 = 0")
        inc = run_backup(ctx, SOURCE, "incremental").backup_id
        dump_inc = canonical_dump(conn)
    conn.close()
    return env, full, inc, {full: dump_full, inc: dump_inc}


def make_old_target(path) -> bytes:
    conn = connect(path)
    conn.execute("CREATE TABLE precious (x)")
    conn.execute("INSERT INTO precious VALUES ('the old file')")
    conn.close()
    return path.read_bytes()


def test_restore_refuses_an_existing_target_without_overwrite(chain, tmp_path):
    env, full, inc, dumps = chain
    target = tmp_path / "live.db"
    old = make_old_target(target)
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", inc, "--to", target, "--json")
    err = assert_clean_error(r, 2, as_json=True)
    assert err["code"] == "target_exists" and "--overwrite" in err["error"]
    assert target.read_bytes() == old
    with engine(env) as ctx, pytest.raises(TargetExists):
        run_restore(ctx, SOURCE, target, backup_id=inc)
    assert target.read_bytes() == old
    assert leftover_temps(tmp_path) == []


def test_overwrite_replaces_the_file_atomically(chain, tmp_path):
    env, full, inc, dumps = chain
    target = tmp_path / "live.db"
    old = make_old_target(target)
    (tmp_path / "live.db-shm").write_bytes(b"\0" * 32768)  # a stale -shm from an earlier life
    with open(target, "rb") as reader_of_old_file:
        r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", inc, "--to", target, "--overwrite",
                "--json")
        assert r.code == 0, r.stderr
        # Replaced by rename, not rewritten in place: a reader of the old file still sees all of it.
        assert reader_of_old_file.read() == old
    assert canonical_dump(target) == dumps[inc]
    assert integrity(target) == ["ok"]
    assert not (tmp_path / "live.db-shm").exists() or (tmp_path / "live.db-shm").stat().st_size != 32768
    assert leftover_temps(tmp_path) == []


def flip_byte(path, where: float) -> None:
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        off = int(size * where)
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


@pytest.mark.parametrize("damage", ["flipped_byte_in_delta", "flipped_byte_in_full", "missing_full_artifact"])
def test_failed_overwrite_keeps_the_old_file(chain, tmp_path, damage):
    env, full, inc, dumps = chain
    artifact = {"full": env.source_dir / f"{full}.bkpd", "inc": env.source_dir / f"{inc}.bkpd"}
    if damage == "flipped_byte_in_delta":
        flip_byte(artifact["inc"], 0.5)
    elif damage == "flipped_byte_in_full":
        flip_byte(artifact["full"], 0.7)
    else:
        artifact["full"].unlink()
    target = tmp_path / "live.db"
    old = make_old_target(target)
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", inc, "--to", target, "--overwrite",
            "--json")
    err = assert_clean_error(r, 1, as_json=True)
    assert err["code"] in ("corrupt_artifact", "not_found", "missing_chain_member"), err
    assert target.read_bytes() == old, "a failed restore must leave the old file untouched"
    assert leftover_temps(tmp_path) == []


def test_overwrite_keeps_the_old_file_when_validation_fails(env, tmp_path):
    # A backup of a database that is already damaged (its freelist count lies) restores page for page,
    # and then fails post-restore validation: the file it would replace must survive.
    conn = create_db(env.db, page_size=4096, journal_mode="delete")
    populate(conn, 1, 30, 100)
    conn.close()
    raw = bytearray(env.db.read_bytes())
    raw[36:40] = (7).to_bytes(4, "big")  # header: total freelist pages
    env.db.write_bytes(bytes(raw))
    assert integrity(env.db) != ["ok"]
    with engine(env) as ctx:
        backup_id = run_backup(ctx, SOURCE, "full").backup_id
    target = tmp_path / "live.db"
    old = make_old_target(target)
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", target, "--overwrite",
            "--json")
    err = assert_clean_error(r, 1, as_json=True)
    assert err["code"] == "restore_failed" and "validation" in err["error"], err
    assert target.read_bytes() == old
    assert leftover_temps(tmp_path) == []
    # And without --overwrite, nothing appears at a new path either.
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", tmp_path / "new.db")
    assert_clean_error(r, 1, as_json=False)
    assert not (tmp_path / "new.db").exists()
    assert leftover_temps(tmp_path) == []


# --- selected tables ----------------------------------------------------------------------------------


def test_tables_restores_only_the_named_tables_and_their_indexes(env, tmp_path):
    conn = create_db(env.db, page_size=4096, journal_mode="wal")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
    conn.execute("CREATE INDEX a_n ON a (n)")
    conn.execute("CREATE INDEX a_expr ON a (lower(name)) WHERE n > 3")
    conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY AUTOINCREMENT, a_id INTEGER, payload BLOB)")
    conn.execute("CREATE INDEX b_a ON b (a_id)")
    conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, secret TEXT)")
    conn.execute("CREATE INDEX c_secret ON c (secret)")
    conn.executemany("INSERT INTO a (name, n) VALUES (?, ?)", [(f"Name{i}", i % 10) for i in range(300)])
    conn.executemany("INSERT INTO b (a_id, payload) VALUES (?, ?)", [(i % 300, os.urandom(i % 700)) for i in range(500)])
    conn.executemany("INSERT INTO c (secret) VALUES (?)", [(f"s{i}",) for i in range(100)])
    conn.execute("DELETE FROM b WHERE id > 480")  # the AUTOINCREMENT counter stays at 500
    conn.execute("COMMIT")
    with engine(env) as ctx:
        run_backup(ctx, SOURCE, "full")
        conn.execute("UPDATE a SET n = n + 1 WHERE id % 3 = 0")
        conn.execute("DELETE FROM c WHERE id < 50")
        inc = run_backup(ctx, SOURCE, "incremental")
    full_dump = canonical_dump(conn)
    conn.close()

    out = tmp_path / "ab.db"
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", inc.backup_id, "--to", out,
            "--tables", "a,b", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["tables"] == ["a", "b"]
    assert r.json()["bytes_written"] == out.stat().st_size < env.db.stat().st_size  # the file written, not the whole
    assert integrity(out) == ["ok"]
    got = canonical_dump(out)
    assert set(got["rows"]) == {"a", "b", "sqlite_sequence"}
    assert got["rows"]["a"] == full_dump["rows"]["a"] and got["rows"]["b"] == full_dump["rows"]["b"]
    assert got["rows"]["sqlite_sequence"] == [(1, "b", 500)]

    def definitions(dump, tables):
        return sorted((t, n, tbl, sql) for t, n, tbl, _, sql in dump["master"] if tbl in tables)

    assert definitions(got, {"a", "b"}) == definitions(full_dump, {"a", "b"})  # tables, indexes, autoindexes
    assert definitions(got, {"c"}) == []
    conn = connect(out)
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT id FROM a WHERE n = 4").fetchall()
    conn.close()
    assert any("a_n" in row[-1] for row in plan), plan  # the index is there and usable


def test_tables_with_an_unknown_table_is_a_usage_error_listing_the_tables(env, tmp_path):
    conn = create_db(env.db, page_size=4096, journal_mode="wal")
    conn.execute("CREATE TABLE alpha (x)")
    conn.execute("CREATE TABLE beta (y)")
    conn.close()
    with engine(env) as ctx:
        backup_id = run_backup(ctx, SOURCE, "full").backup_id
    out = tmp_path / "x.db"
    for tables in ("gamma", "alpha,gamma"):
        r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", out,
                "--tables", tables, "--json")
        err = assert_clean_error(r, 2, as_json=True)
        assert "gamma" in err["error"] and "alpha" in err["error"] and "beta" in err["error"], err
        assert not out.exists()
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", out, "--tables", " , ")
    assert_clean_error(r, 2, as_json=False)
    assert leftover_temps(tmp_path) == []


# --- by time ----------------------------------------------------------------------------------------


def test_restore_at_before_the_first_backup_fails_clearly(env, tmp_path):
    create_db(env.db, page_size=4096, journal_mode="wal").close()
    out = tmp_path / "x.db"
    # No backup at all yet.
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--at", "2030-01-01T00:00:00Z", "--to", out)
    line = assert_clean_error(r, 1, as_json=False)
    assert "no restore point" in line
    with engine(env) as ctx:
        first = run_backup(ctx, SOURCE, "full")
        with pytest.raises(NoRestorePoint):
            run_restore(ctx, SOURCE, out, at=datetime.fromisoformat(first.created_at) - timedelta(microseconds=1))
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--at", "2001-01-01T00:00:00.5-07:00", "--to", out,
            "--json")
    err = assert_clean_error(r, 1, as_json=True)
    assert err["code"] == "no_restore_point" and "2001-01-01" in err["error"], err
    assert not out.exists() and leftover_temps(tmp_path) == []
