"""A backup process killed with SIGKILL mid-write leaves no visible artifact and a consistent catalog;
the next backup succeeds and removes the leftovers.

`backupd backup` runs as a real subprocess on a ~32 MiB database and is killed at different moments:
the instant its temp artifact appears, and after random delays that land in hashing, writing,
committing, the sidecar, the catalog update or not at all. Every outcome must be either "no new backup"
or "a complete, restorable backup".
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time

import pytest

from backupd.engine.catalog import Catalog

from .dbtools import (BACKUPD, SOURCE, TEMP_SUFFIX, cli, create_db, destination_files, file_digest, fill_text,
                      leftovers, make_env, sidecar_ids, wait_for)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """An installation whose rollback-journal source holds ~32 MiB of text; (env, digest of the source file)."""
    env = make_env(tmp_path_factory.mktemp("crash"), compression_level=3)
    conn = create_db(env.db, page_size=4096, journal_mode="delete")
    fill_text(conn, "docs", 32, seed=3)
    conn.close()
    return env, file_digest(env.db)


def listed_ids(env) -> list[str]:
    r = cli("list", "-c", env.config, "--source", SOURCE, "--json")
    assert r.code == 0, r.stderr
    return [b["id"] for b in r.json()]


def catalog_ids(env) -> list[str]:
    catalog = Catalog(env.state / "catalog.db")
    try:
        return [b.backup_id for b in catalog.backups(SOURCE)]
    finally:
        catalog.close()


def start_backup(env, strategy: str) -> subprocess.Popen:
    return subprocess.Popen([str(BACKUPD), "backup", "-c", str(env.config), "--source", SOURCE,
                             "--strategy", strategy, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def temp_files(env) -> list[str]:
    return [f for f in destination_files(env) if f.endswith(TEMP_SUFFIX)]


def kill(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return proc.returncode


def assert_catalog_consistent(env) -> list[dict]:
    """The catalog opens, passes integrity_check and lists only backups whose sidecar exists; returns its jobs."""
    path = env.state / "catalog.db"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    catalog = Catalog(path)
    try:
        on_disk = sidecar_ids(env)
        for b in catalog.backups(SOURCE):
            assert b.backup_id in on_disk, f"catalog lists {b.backup_id}, which has no sidecar"
        return catalog.jobs()
    finally:
        catalog.close()


def assert_restores_source(env, backup_id: str, digest: str, name: str) -> None:
    out = env.root / f"{name}.db"
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", out, "--json")
    assert r.code == 0, r.stderr
    assert file_digest(out) == digest  # rollback-journal source: the restored file is the same bytes
    out.unlink()


def assert_next_backup_cleans_up(env, digest: str, strategy: str, name: str) -> str:
    r = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", strategy, "--json")
    assert r.code == 0, r.stderr
    backup_id = r.json()["id"]
    assert leftovers(env) == ([], []), "temp files or orphaned artifacts survived the next backup"
    assert_restores_source(env, backup_id, digest, name)
    return backup_id


def test_sigkill_mid_write_leaves_no_visible_artifact(big):
    env, digest = big
    before_listed, before_sidecars = listed_ids(env), sidecar_ids(env)
    before_files = {f for f in destination_files(env) if not f.endswith(TEMP_SUFFIX)}

    proc = start_backup(env, "full")
    try:
        assert wait_for(lambda: temp_files(env), timeout=30, interval=0.001), "no temp artifact ever appeared"
    finally:
        code = kill(proc)
    assert code == -signal.SIGKILL, f"the backup finished before it could be killed: {code}"
    assert temp_files(env), "the partial artifact should still be there, under its temp name"

    # Nothing new is visible: no committed object, no listed backup.
    assert {f for f in destination_files(env) if not f.endswith(TEMP_SUFFIX)} == before_files
    assert sidecar_ids(env) == before_sidecars
    assert listed_ids(env) == before_listed
    killed_job = [j for j in assert_catalog_consistent(env) if j["pid"] == proc.pid]
    assert [(j["kind"], j["status"]) for j in killed_job] == [("backup", "running")]  # left by the dead process

    new_id = assert_next_backup_cleans_up(env, digest, "full", "after-kill")
    assert listed_ids(env) == [*before_listed, new_id]
    killed_job = [j for j in assert_catalog_consistent(env) if j["pid"] == proc.pid]
    assert [j["status"] for j in killed_job] == ["failed"], killed_job


def write_phase_seconds(env, strategy: str) -> float:
    """How long a backup of `strategy` runs from the moment its temp artifact appears until it exits."""
    proc = start_backup(env, strategy)
    assert wait_for(lambda: temp_files(env) or proc.poll() is not None, timeout=30, interval=0.001)
    start = time.monotonic()
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    return time.monotonic() - start


@pytest.mark.parametrize("seed", [1])
def test_sigkill_at_any_moment_gives_no_backup_or_a_complete_one(big, seed):
    env, digest = big
    rnd = random.Random(seed)
    took = {s: write_phase_seconds(env, s) for s in ("full", "incremental", "differential")}
    # (strategy, fraction of its measured run time after the temp artifact appears at which to kill it);
    # None: the instant its artifact is committed (before the sidecar). Fractions near 1 hit the sidecar,
    # the catalog and the page-hash cache, or miss the process altogether: every outcome is allowed.
    moments = [("full", rnd.uniform(0.0, 0.3)), ("incremental", rnd.uniform(0.0, 0.6)), ("full", None),
               ("full", rnd.uniform(0.4, 0.8)), ("differential", rnd.uniform(0.0, 0.8)), ("full", 0.97)]
    outcomes = []
    for i, (strategy, fraction) in enumerate(moments):
        listed_before, sidecars_before = set(catalog_ids(env)), sidecar_ids(env)
        artifacts_before = {f for f in destination_files(env) if f.endswith(".bkpd")}
        proc = start_backup(env, strategy)
        try:
            if fraction is None:
                wait_for(lambda: {f for f in destination_files(env) if f.endswith(".bkpd")} - artifacts_before,
                         timeout=30, interval=0.0005)
            else:
                wait_for(lambda: temp_files(env) or proc.poll() is not None, timeout=30, interval=0.001)
                time.sleep(fraction * took[strategy])
        finally:
            code = kill(proc) if proc.poll() is None else proc.wait()

        new_sidecars = sidecar_ids(env) - sidecars_before
        new_listed = set(listed_ids(env)) - listed_before
        assert new_listed <= new_sidecars, "the catalog lists a backup the destination does not hold"
        assert len(new_sidecars) <= 1
        assert_catalog_consistent(env)
        for backup_id in new_sidecars:  # a backup that became visible must be complete and restorable
            assert_restores_source(env, backup_id, digest, f"visible-{i}")
        outcomes.append((strategy, fraction, code, "complete" if new_sidecars else "none"))
        r = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", "incremental", "--json")
        assert r.code == 0, r.stderr
        assert leftovers(env) == ([], []), "temp files or orphaned artifacts survived the next backup"
    assert_restores_source(env, r.json()["id"], digest, "last")
    print(outcomes)

    assert sum(code == -signal.SIGKILL for _, _, code, _ in outcomes) >= 3, outcomes


# --- a restore killed mid-way -------------------------------------------------------------------------

RESTORE_TEMP = ".backupd-restore-tmp"


def any_backup(env) -> str:
    r = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", "incremental", "--json")
    assert r.code == 0, r.stderr
    return r.json()["id"]


def start_restore(env, backup_id: str, target) -> subprocess.Popen:
    return subprocess.Popen([str(BACKUPD), "restore", "-c", str(env.config), "--source", SOURCE, "--backup",
                             backup_id, "--to", str(target), "--overwrite", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def restore_temps(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(RESTORE_TEMP))


def kill_restores(env, backup_id: str, digest: str, target, delays) -> list[tuple]:
    """Kill `restore --overwrite` at each delay after its temp file appears; the target must then hold
    exactly its old bytes or exactly the restored database (put back to old for the next round).
    Returns (delay, exit code, "old" | "new") per round."""
    old = target.read_bytes()
    seen = []
    for delay in delays:
        temps_before = set(restore_temps(target.parent))
        proc = start_restore(env, backup_id, target)
        try:
            wait_for(lambda: set(restore_temps(target.parent)) - temps_before or proc.poll() is not None,
                     timeout=30, interval=0.001)
            time.sleep(delay)
        finally:
            code = kill(proc) if proc.poll() is None else proc.wait()
        if target.read_bytes() == old:
            state = "old"
        else:
            assert file_digest(target) == digest, f"killed after {delay}s: the target is neither old nor new"
            state = "new"
            target.write_bytes(old)
        seen.append((delay, code, state))
    return seen


def test_sigkill_during_restore_overwrite_leaves_the_old_file_or_the_new_one(big, tmp_path):
    env, digest = big
    backup_id = any_backup(env)
    target = tmp_path / "live.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE precious (x)")
    conn.close()
    seen = kill_restores(env, backup_id, digest, target, [0.0, 0.05, 0.2, 0.4])
    assert any(code == -signal.SIGKILL and state == "old" for _, code, state in seen), seen

    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", target, "--overwrite")
    assert r.code == 0, r.stderr
    assert file_digest(target) == digest


def test_next_restore_removes_a_killed_restores_temp_file(big, tmp_path):
    env, digest = big
    backup_id = any_backup(env)
    target = tmp_path / "live.db"
    target.write_bytes(b"")
    kill_restores(env, backup_id, digest, target, [0.0])
    assert restore_temps(tmp_path), "the killed restore should have left its temp file"
    r = cli("restore", "-c", env.config, "--source", SOURCE, "--backup", backup_id, "--to", target, "--overwrite")
    assert r.code == 0, r.stderr
    assert restore_temps(tmp_path) == []
