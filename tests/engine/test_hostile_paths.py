"""Paths SQLite would read as URIs: any directory name (every byte but `/` and NUL) under a source, the
state dir, a destination or a restore target works, and nothing is created outside the directory asked for.
Too long a restore target is a clear `bad_usage` error, not an internal error."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backupd.engine.backup import run_backup
from backupd.engine.restore import run_restore
from backupd.engine.validate import validate_backup
from backupd.errors import PathTooLong
from backupd.sqlite_uri import connect, sqlite_uri

from .dbtools import SOURCE, assert_clean_error, canonical_dump, cli, create_db, engine, make_env

# Bytes SQLite's URI parser or a shell treats specially come often; any other byte but "/" and NUL may too.
SPECIAL = list(b"#?%&=:;+@ ~'\"\\*[]\n\t") + [0x80, 0xFF, 0xC3]
name_bytes = st.lists(st.sampled_from(SPECIAL) | st.integers(1, 255).filter(lambda b: b != 0x2F),
                      min_size=1, max_size=40).map(bytes).filter(lambda b: b not in (b".", b".."))
FAR_FUTURE = "2100-01-01T00:00:00Z"


def tree(root: Path) -> set[bytes]:
    """Every path under `root`, as bytes (names need not be UTF-8)."""
    out = set()
    for dirpath, dirs, files in os.walk(os.fsencode(root)):
        out.update(os.path.join(dirpath, n) for n in dirs + files)
    return out


def populate(db: Path) -> None:
    conn = create_db(db)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE INDEX notes_body ON notes (body)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i} " * 20,) for i in range(300)])
    conn.execute("CREATE TABLE other (x)")
    conn.executemany("INSERT INTO other VALUES (?)", [(os.urandom(500),) for _ in range(200)])
    conn.close()


@given(st.lists(name_bytes, min_size=1, max_size=4), st.booleans())
@example([b"a#b", b"c?mode=ro"], True)
@example([b"%25", b"%"], False)
def test_sqlite_uri_escapes_every_byte_and_decodes_to_the_path(parts, absolute):
    path = (b"/" if absolute else b"") + b"/".join(parts)
    uri = sqlite_uri(os.fsdecode(path), mode="ro")
    assert uri.isascii() and "#" not in uri and uri.count("?") == 1 and uri.endswith("?mode=ro")
    body = uri[len("file://" if absolute else "file:"):-len("?mode=ro")]
    assert uri.startswith("file://") == absolute and unquote_to_bytes(body) == path


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(name_bytes, min_size=1, max_size=3))
@example(parts=[b"a#b"])
@example(parts=[b"a?b"])
@example(parts=[b"a%25b", b"%"])
def test_connect_opens_exactly_the_path_and_creates_nothing_else(tmp_path, parts):
    base = tmp_path / os.urandom(4).hex()
    directory = Path(os.fsdecode(os.path.join(os.fsencode(base), *parts)))
    directory.mkdir(parents=True)
    before = tree(tmp_path)
    conn = connect(directory / "x.db", mode="rwc", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert tree(tmp_path) - before == {os.fsencode(directory / "x.db")}


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    env = make_env(tmp_path_factory.mktemp("hostile") / "install")
    populate(env.db)
    with engine(env) as ctx:
        backup_id = run_backup(ctx, SOURCE, "full").manifest.backup_id
    return env, backup_id, canonical_dump(env.db)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(name_bytes, min_size=1, max_size=2), tables=st.booleans())
@example(parts=[b"a#b"], tables=False)
@example(parts=[b"a?b"], tables=True)
@example(parts=[b"a%b"], tables=False)
@example(parts=[b"a%25b"], tables=True)
def test_restore_into_any_directory_writes_only_the_target(backed_up, tmp_path, parts, tables):
    env, backup_id, dump = backed_up
    outside = tmp_path / os.urandom(4).hex()
    directory = Path(os.fsdecode(os.path.join(os.fsencode(outside), *parts)))
    directory.mkdir(parents=True)
    before = tree(tmp_path)
    to = directory / "restored.db"
    with engine(env) as ctx:
        result = run_restore(ctx, SOURCE, to, backup_id=backup_id, tables=["notes"] if tables else None)
    assert tree(tmp_path) - before == {os.fsencode(to)}, "a file appeared outside the target"
    got = canonical_dump(to)
    if tables:
        assert got["rows"] == {"notes": dump["rows"]["notes"]}
    else:
        assert got == dump
    assert result.bytes_written == to.stat().st_size


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=name_bytes)
@example(name=b"src%25#?x")
def test_source_state_and_destination_under_any_directory(tmp_path, name):
    root = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path / os.urandom(4).hex()), name)))
    env = make_env(root)  # the source, state dir and destination all live under `root`
    populate(env.db)
    with engine(env) as ctx:
        first = run_backup(ctx, SOURCE, "full").manifest.backup_id
        conn = sqlite3.connect(env.db)
        conn.execute("UPDATE notes SET body = 'changed' WHERE id < 50")
        conn.commit()
        conn.close()
        second = run_backup(ctx, SOURCE, "incremental").manifest
        assert second.parent_id == first, second.strategy_reason
        assert validate_backup(ctx, second.backup_id, "deep").verdict == "pass"
        run_restore(ctx, SOURCE, root / "restored.db", backup_id=second.backup_id)
    assert canonical_dump(root / "restored.db") == canonical_dump(env.db)


def test_cli_restore_under_hash_and_question_mark_creates_no_stray_file(backed_up, tmp_path):
    env, backup_id, dump = backed_up
    for name in ("a#b", "a?b", "50%", "%2e"):
        (tmp_path / name).mkdir()
        before = tree(tmp_path)
        r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", tmp_path / name / "r.db")
        assert r.code == 0, r.stderr
        assert tree(tmp_path) - before == {os.fsencode(tmp_path / name / "r.db")}
        assert canonical_dump(tmp_path / name / "r.db") == dump


@pytest.mark.parametrize("to", [
    "z" * 256,  # longer than NAME_MAX
    "z" * 250,  # fits NAME_MAX, but SQLite's -journal beside it would not
    "/".join(["d" * 200] * 25) + "/r.db",  # longer than PATH_MAX
])
def test_cli_restore_to_too_long_a_path_is_bad_usage(backed_up, tmp_path, to):
    env, backup_id, _ = backed_up
    before = tree(tmp_path)
    r = cli("restore", "-c", env.config, "--json", "--source", SOURCE, "--backup", backup_id, "--to", tmp_path / to)
    err = assert_clean_error(r, 2, as_json=True)
    assert err["code"] == "bad_usage" and "bytes" in err["error"] and "internal" not in err["error"], err
    assert tree(tmp_path) == before


def test_a_long_name_that_fits_restores_with_a_shortened_temp_name(backed_up, tmp_path):
    env, backup_id, dump = backed_up
    to = tmp_path / ("n" * 247)  # the longest name that leaves room for -journal on a 255-byte file system
    with engine(env) as ctx:
        run_restore(ctx, SOURCE, to, backup_id=backup_id)
        run_restore(ctx, SOURCE, to, backup_id=backup_id, tables=["other"], overwrite=True)
        with pytest.raises(PathTooLong):
            run_restore(ctx, SOURCE, tmp_path / ("n" * 248), backup_id=backup_id)
    assert canonical_dump(to)["rows"] == {"other": dump["rows"]["other"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [to.name]
