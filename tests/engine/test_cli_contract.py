"""The `backupd` command line contract, checked through the installed console script.

- `backup --json` prints an object with (at least) id, source, strategy, parent_id, base_id, created_at,
  logical_bytes, stored_bytes, changed_pages, page_count; ids are strings; an incremental's parent is the
  previous backup whatever its strategy, a differential's the last full; created_at is ISO 8601 UTC;
  stored_bytes is exactly what the backup added to the destination directory (artifact + sidecar).
- `list --json` objects carry the same fields with the same values.
- `restore --at` accepts `Z`, offsets and fractional seconds, picks the newest restore point at or before
  that instant and reports the gap.
- Exit codes: 0 success, 1 the operation failed, 2 bad usage or config. An error is exactly one line on
  stderr (a JSON object with `error` and `code` under --json), never a traceback, and nothing on stdout.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from .dbtools import (SOURCE, assert_clean_error, canonical_dump, cli, cli_many, connect, create_db, destination_files,
                      lose_catalog, make_env)

REQUIRED = {"id", "source", "strategy", "parent_id", "base_id", "created_at", "logical_bytes", "stored_bytes",
            "changed_pages", "page_count"}


def utc(created_at: str) -> datetime:
    t = datetime.fromisoformat(created_at)
    assert t.tzinfo is not None and t.utcoffset() == timedelta(0), f"created_at {created_at!r} is not UTC"
    return t


def add_marker(env, step: int, rows: int = 50) -> None:
    conn = connect(env.db)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE IF NOT EXISTS marker (id INTEGER PRIMARY KEY, step INTEGER, body TEXT)")
    conn.executemany("INSERT INTO marker (step, body) VALUES (?, ?)", [(step, f"{step}-{i}" * 20) for i in range(rows)])
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A WAL source backed up through the CLI as full, differential, incremental, incremental, full,
    incremental, auto, differential; returns (env, [(backup json, files it added, dump at that point)])."""
    env = make_env(tmp_path_factory.mktemp("cli"))
    create_db(env.db, page_size=4096, journal_mode="wal").close()
    taken = []
    for step, strategy in enumerate(["full", "differential", "incremental", "incremental", "full", "incremental",
                                     "auto", "differential"]):
        add_marker(env, step, rows=50 + 200 * (step == 3))
        before = destination_files(env)
        r = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", strategy, "--json")
        assert r.code == 0, r.stderr
        assert r.stderr == ""
        after = destination_files(env)
        assert set(before) <= set(after)
        added = {k: v for k, v in after.items() if k not in before}
        taken.append((r.json(), added, canonical_dump(env.db)))
    return env, taken


def test_backup_json_has_the_contract_fields(chain):
    env, taken = chain
    requested = ["full", "differential", "incremental", "incremental", "full", "incremental", "auto", "differential"]
    last_full = prev = None
    previous_time = None
    for (b, added, _), asked in zip(taken, requested):
        assert REQUIRED <= set(b), REQUIRED - set(b)
        assert isinstance(b["id"], str) and b["id"]
        assert b["source"] == SOURCE
        if asked != "auto":
            assert b["strategy"] == asked, b.get("strategy_reason")
        else:
            assert b["strategy"] in ("full", "incremental", "differential")
            assert b.get("strategy_reason"), "auto must record why it chose its strategy"
        t = utc(b["created_at"])
        assert previous_time is None or t > previous_time
        previous_time = t
        for k in ("logical_bytes", "stored_bytes", "changed_pages", "page_count"):
            assert isinstance(b[k], int) and not isinstance(b[k], bool) and b[k] >= 0, (k, b[k])
        assert b["logical_bytes"] == b["page_count"] * 4096
        assert 0 < b["changed_pages"] <= b["page_count"]
        if b["strategy"] == "full":
            assert b["parent_id"] is None and b["base_id"] is None
            assert b["changed_pages"] == b["page_count"]
            last_full = b["id"]
        elif b["strategy"] == "incremental":
            assert b["parent_id"] == prev and b["base_id"] == last_full  # the previous backup, whatever it was
        else:
            assert b["parent_id"] == last_full and b["base_id"] == last_full
        assert all(isinstance(b[k], str) for k in ("parent_id", "base_id") if b[k] is not None)
        # stored_bytes is what this backup added to the destination: its artifact and its sidecar.
        assert sorted(added) == [f"{SOURCE}/{b['id']}.bkpd", f"{SOURCE}/{b['id']}.manifest"], added
        assert b["stored_bytes"] == sum(added.values())
        prev = b["id"]
    # the incremental right after the differential names the differential as its parent
    assert taken[2][0]["parent_id"] == taken[1][0]["id"] and taken[1][0]["strategy"] == "differential"


def test_list_json_agrees_with_what_backup_printed(chain):
    env, taken = chain
    r = cli("list", "-c", env.config, "--json")
    assert r.code == 0 and r.stderr == ""
    listed = {b["id"]: b for b in r.json()}
    assert list(listed) == [b["id"] for b, _, _ in taken]  # oldest first
    for b, _, _ in taken:
        assert REQUIRED <= set(listed[b["id"]])
        assert {k: listed[b["id"]][k] for k in REQUIRED} == {k: b[k] for k in REQUIRED}
    r = cli("list", "-c", env.config, "--source", SOURCE, "--json")
    assert r.code == 0 and [b["id"] for b in r.json()] == list(listed)


def test_catalog_rebuild_recreates_the_list_from_the_destination(chain):
    env, taken = chain
    before = cli("list", "-c", env.config, "--json").json()
    lose_catalog(env)
    r = cli("list", "-c", env.config, "--json")
    assert r.code == 0 and r.json() == []
    r = cli("catalog", "rebuild", "-c", env.config, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["backups"] == len(taken) and r.json()["problems"] == []
    after = cli("list", "-c", env.config, "--json").json()
    assert [{k: b[k] for k in REQUIRED} for b in after] == [{k: b[k] for k in REQUIRED} for b in before]


def at_forms(t: datetime) -> list[str]:
    """The same instant written with Z, with offsets, with and without fractional seconds."""
    t = t.astimezone(timezone.utc)
    return [
        t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        t.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        t.astimezone(timezone(timedelta(hours=-3))).isoformat(timespec="microseconds"),
    ]


def test_restore_at_picks_the_newest_point_at_or_before(chain, tmp_path):
    env, taken = chain
    times = [utc(b["created_at"]) for b, _, _ in taken]
    cases = []
    for form in at_forms(times[3]):  # exactly at a restore point: that one, gap 0
        cases.append((form, 3, 0.0))
    for i in (0, 3, 6):
        mid = times[i] + (times[i + 1] - times[i]) / 2  # between two points: the older one, gap reported
        cases.append((at_forms(mid)[1], i, (mid - times[i]).total_seconds()))
    after_last = times[-1] + timedelta(seconds=1)
    whole = after_last.replace(microsecond=0) + timedelta(seconds=1)  # no fractional part, with Z
    cases.append((whole.strftime("%Y-%m-%dT%H:%M:%SZ"), len(taken) - 1, (whole - times[-1]).total_seconds()))
    cases.append((whole.astimezone(timezone(timedelta(hours=2))).strftime("%Y-%m-%dT%H:%M:%S+02:00"),
                  len(taken) - 1, (whole - times[-1]).total_seconds()))

    results = cli_many([["restore", "-c", env.config, "--source", SOURCE, "--at", at, "--to", tmp_path / f"at-{n}.db",
                         "--json"] for n, (at, _, _) in enumerate(cases)])
    for n, ((at, want, gap), r) in enumerate(zip(cases, results)):
        out = tmp_path / f"at-{n}.db"
        assert r.code == 0, (at, r.stderr)
        res = r.json()
        assert res["backup_id"] == taken[want][0]["id"], (at, want)
        assert math.isclose(res["gap_s"], gap, abs_tol=1e-5), (at, res["gap_s"], gap)
        assert canonical_dump(out) == taken[want][2]

    # The human output reports the gap too.
    mid = times[1] + (times[2] - times[1]) / 2
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--at", at_forms(mid)[0], "--to", tmp_path / "h.db")
    assert r.code == 0, r.stderr
    assert taken[1][0]["id"] in r.stdout and "before the asked time" in r.stdout, r.stdout


def test_restore_at_before_the_first_backup_fails_clearly(chain, tmp_path):
    env, taken = chain
    first = utc(taken[0][0]["created_at"])
    for at in (at_forms(first - timedelta(microseconds=1))[0], "2001-01-01T00:00:00+01:00"):
        r = cli("restore", "-c", env.config, "--source", SOURCE, "--at", at, "--to", tmp_path / "x.db", "--json")
        err = assert_clean_error(r, 1, as_json=True)
        assert err["code"] == "no_restore_point" and "no restore point" in err["error"], err
        assert not (tmp_path / "x.db").exists()


# --- exit codes and error lines ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    unknown_key = make_env(root / "unknown_key").config
    unknown_key.write_text(unknown_key.read_text() + '\n[tuning]\nfast = true\n')
    bad_level = make_env(root / "bad_level", compression_level=40).config
    broken = make_env(root / "broken").config
    broken.write_text("[state\ndir = 'x'\n")
    no_db = make_env(root / "no_db", db_name="missing.db").config
    not_sqlite = make_env(root / "not_sqlite", db_name="notes.txt")
    not_sqlite.db.write_text("these are not the pages you are looking for\n" * 100)
    return {"unknown_key": unknown_key, "bad_level": bad_level, "broken": broken, "missing": root / "nope.toml",
            "no_db": no_db, "not_sqlite": not_sqlite.config}


def error_cases(env, taken, bad, tmp):
    existing = tmp / "exists.db"
    existing.write_bytes(b"keep me")
    first = taken[0][0]["id"]
    c = env.config
    return [
        # (argv, exit code, error code under --json)
        (["backup", "-c", c, "--source", "nosuch"], 2, "unknown_source"),
        (["backup", "-c", c, "--source", SOURCE, "--destination", "nosuch"], 2, "unknown_destination"),
        (["verify", "-c", c, "--backup", first, "--destination", "nosuch"], 2, "unknown_destination"),
        (["backup", "-c", c, "--source", SOURCE, "--strategy", "weekly"], 2, "bad_usage"),
        (["backup", "-c", c], 2, "bad_usage"),
        (["backup", "--source", SOURCE], 2, "bad_usage"),
        ([], 2, "bad_usage"),
        (["frobnicate"], 2, "bad_usage"),
        (["list", "-c", c, "--source", "nosuch"], 2, "unknown_source"),
        (["backup", "-c", bad["unknown_key"], "--source", SOURCE], 2, "config_invalid"),
        (["backup", "-c", bad["bad_level"], "--source", SOURCE], 2, "config_invalid"),
        (["list", "-c", bad["broken"]], 2, "config_invalid"),
        (["list", "-c", bad["missing"]], 2, "config_invalid"),
        (["restore", "-c", c, "--source", SOURCE, "--backup", first, "--to", existing], 2, "target_exists"),
        (["restore", "-c", c, "--source", SOURCE, "--backup", first, "--at", "2030-01-01T00:00:00Z", "--to",
          tmp / "n.db"], 2, "bad_usage"),
        (["restore", "-c", c, "--source", SOURCE, "--to", tmp / "n.db"], 2, "bad_usage"),
        (["restore", "-c", c, "--source", SOURCE, "--at", "yesterday", "--to", tmp / "n.db"], 2, "bad_usage"),
        (["restore", "-c", c, "--source", SOURCE, "--at", "2030-01-01T00:00:00", "--to", tmp / "n.db"], 2,
         "bad_usage"),
        (["restore", "-c", c, "--source", "nosuch", "--backup", first, "--to", tmp / "n.db"], 2, "unknown_source"),
        (["restore", "-c", c, "--source", SOURCE, "--backup", first, "--to", tmp / "n.db", "--tables", "nosuch"], 2,
         "bad_usage"),
        (["restore", "-c", c, "--source", SOURCE, "--backup", "20200101T000000.000000Z-abcdef", "--to",
          tmp / "n.db"], 1, "not_found"),
        (["backup", "-c", bad["no_db"], "--source", SOURCE], 1, "snapshot_failed"),
        (["backup", "-c", bad["not_sqlite"], "--source", SOURCE], 1, "snapshot_failed"),
    ]


def test_errors_are_one_line_with_the_right_exit_code(chain, bad_configs, tmp_path):
    env, taken = chain
    all_cases = error_cases(env, taken, bad_configs, tmp_path)
    cases = [(argv + ["--json"], code, err_code, True) for argv, code, err_code in all_cases]
    # Without --json the same one line, in words: a sample of every kind of failure is enough.
    cases += [(argv, code, err_code, False) for n, (argv, code, err_code) in enumerate(all_cases) if n % 3 == 0]
    for (argv, code, err_code, as_json), r in zip(cases, cli_many([argv for argv, _, _, _ in cases])):
        err = assert_clean_error(r, code, as_json=as_json)
        assert r.stdout == "", (argv, r.stdout)
        if as_json:
            assert err["code"] == err_code, (argv, err)
    assert (tmp_path / "exists.db").read_bytes() == b"keep me"
    assert not (tmp_path / "n.db").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exists.db"]  # no temp files left by refused restores
