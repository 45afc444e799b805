"""A prune that dies between deleting a copy's files and forgetting it in the catalog leaves no phantom:
`list` never offers a restore point whose files are gone, and the next run finishes the deletion.

Two ways to stop prune in that window, both real: the artifact is a bind mount, so unlinking it fails
with EBUSY right after the sidecar went; and the real `backupd prune` process is SIGKILLed at random
instants of its deletion phase (0-6 ms after its first sidecar disappears: without the deletion
intents about 40% of such kills left a phantom). After each, every listed point must restore.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from backupd.engine.backup import run_backup
from backupd.engine.restore import run_restore

from .dbtools import (BACKUPD, SOURCE, Env, canonical_dump, cli, create_db, engine, fill_text, leftovers, make_env,
                      sidecar_ids)

STRATEGIES = ("full", "incremental", "incremental", "full", "differential", "full")  # keep_last = 1 deletes 5


def _change(db: Path, i: int) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"backup {i} row {r} " * 20,) for r in range(200)])
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An installation holding six backups (three chains) and a config whose retention keeps one."""
    env = make_env(tmp_path_factory.mktemp("prune-crash") / "env", encrypted=False)
    conn = create_db(env.db)
    fill_text(conn, "docs", 0.5, seed=5)
    conn.close()
    dumps = {}
    for i, strategy in enumerate(STRATEGIES):
        _change(env.db, i)
        with engine(env) as ctx:
            backup_id = run_backup(ctx, SOURCE, strategy).backup_id
        dumps[backup_id] = canonical_dump(env.db)
    env.config.write_text(env.config.read_text() + "\n[retention]\nkeep_last = 1\n")
    return env, dumps


def clone(env: Env, root: Path) -> Env:
    shutil.copytree(env.root, root, symlinks=True)
    return Env(root, root / env.config.name, root / env.db.name, root / "backups", root / "state")


def listed(env) -> list[str]:
    r = cli("list", "-c", env.config, "--source", SOURCE, "--json")
    assert r.code == 0, r.stderr
    return [b["id"] for b in r.json()]


def assert_every_listed_point_restores(env, dumps: dict, ids: list[str]) -> None:
    with engine(env) as ctx:
        for backup_id in ids:
            out = env.root / f"check-{backup_id}.db"
            run_restore(ctx, SOURCE, out, backup_id=backup_id)  # raises on a missing artifact or sidecar
            assert canonical_dump(out) == dumps[backup_id], backup_id
            out.unlink()


def assert_destination_and_catalog_agree(env) -> None:
    assert set(listed(env)) == sidecar_ids(env)
    assert leftovers(env) == ([], [])


def test_a_prune_stopped_between_sidecar_and_catalog_offers_nothing_it_deleted(template, tmp_path):
    template_env, dumps = template
    env = clone(template_env, tmp_path / "env")
    before = listed(env)
    newest = before[-1]
    doomed = before[:-1]
    busy = env.source_dir / f"{doomed[-1]}.bkpd"  # the first copy prune deletes (newest first)
    subprocess.run(["mount", "--bind", str(env.root / "backupd.toml"), str(busy)], check=True)
    try:
        r = cli("prune", "-c", env.config, "--source", SOURCE, "--json")
        assert r.code == 1, (r.stdout, r.stderr)  # the busy artifact is reported, not silently kept
        assert f"{doomed[-1]}" in r.stdout and "busy" in r.stdout.lower(), r.stdout
        assert not (env.source_dir / f"{doomed[-1]}.manifest").exists()  # its sidecar went first
        assert listed(env) == [newest]  # the half-deleted backup is not offered
        assert_every_listed_point_restores(env, dumps, [newest])
        with engine(env) as ctx:
            assert ctx.catalog.get(doomed[-1]) is None  # nor is it a restore point or a chain's member
    finally:
        subprocess.run(["umount", str(busy)], check=True)
    r = cli("prune", "-c", env.config, "--source", SOURCE, "--json")  # the intent is finished now
    assert r.code == 0, (r.stdout, r.stderr)
    assert listed(env) == [newest]
    assert sidecar_ids(env) == {newest}
    assert_destination_and_catalog_agree(env)


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.0005)
    return False


def test_sigkill_at_random_instants_of_prune_leaves_every_listed_point_restorable(template, tmp_path):
    template_env, dumps = template
    rnd = random.Random(8)
    outcomes = []
    for trial in range(8):
        env = clone(template_env, tmp_path / f"t{trial}")
        all_sidecars = sidecar_ids(env)
        proc = subprocess.Popen([str(BACKUPD), "prune", "-c", str(env.config), "--source", SOURCE, "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert _wait(lambda: sidecar_ids(env) != all_sidecars or proc.poll() is not None, timeout=60)
            time.sleep(rnd.uniform(0, 0.006) if trial else 0)  # its five deletions take a few ms
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        outcomes.append(proc.returncode)
        ids = listed(env)
        assert_every_listed_point_restores(env, dumps, ids)
        r = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", "incremental", "--json")
        assert r.code == 0, r.stderr  # the next run finishes what the killed prune had decided
        assert_destination_and_catalog_agree(env)
        shutil.rmtree(env.root)
    print("prune exit codes:", outcomes)
    assert sum(code == -signal.SIGKILL for code in outcomes) >= 4, outcomes
