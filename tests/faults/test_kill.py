"""SIGKILL at random instants during every operation that writes: backups of each strategy, prune, resync,
restore --overwrite and catalog rebuild, each run as a real `backupd` process on a real database.

After every kill: no partial artifact is visible, the catalog opens and agrees with the destinations,
every listed restore point restores to exactly the bytes it was taken from, and the next run of the same
operation succeeds and leaves no temp file or orphaned artifact behind.
"""

from __future__ import annotations

import random
import time
import pytest

from tests.engine.dbtools import SOURCE, file_digest

from .conftest import trials
from .tools import (backup, change_source, check_agreement, committed, files, install, leftovers, run_killed,
                    timed)


def outcome(code: int, appeared: set[str]) -> str:
    killed = "killed" if code == -9 else "finished"
    return f"{killed}, {'visible' if appeared else 'nothing new'}"


@pytest.mark.parametrize("seed", [1])
def test_sigkill_during_backups(tmp_path, tally, seed):
    rnd = random.Random(seed)
    inst = install(tmp_path / "i")
    backup(inst, "full")
    took = {}
    for strategy in ("full", "incremental", "differential"):
        start = time.monotonic()
        backup(inst, strategy)
        took[strategy] = time.monotonic() - start
    for _ in range(trials(ci=12, long=120)):
        change_source(inst, rnd)
        strategy = rnd.choice(("full", "incremental", "differential"))

        def one():
            before = set(inst.expected)
            digest = file_digest(inst.db)
            code = run_killed(inst.argv("backup", "--source", SOURCE, "--strategy", strategy),
                              rnd.uniform(0, took[strategy] * 1.1))
            appeared = committed(inst, "local") - before
            assert len(appeared) <= 1, f"one backup run published {len(appeared)} backups"
            inst.expected.update(dict.fromkeys(appeared, digest))
            check_agreement(inst, rnd, before)
            backup(inst, rnd.choice(("incremental", "differential")))
            assert leftovers(inst) == [], f"the next backup left {leftovers(inst)}"
            return f"{strategy}: {outcome(code, appeared)}"

        tally.run(one)
    assert sum(1 for k in tally.outcomes if "killed" in k) or tally.failures, "no trial killed a running backup"


def test_sigkill_during_prune(tmp_path, tally):
    """Backups run without retention, prune under keep_last = 3: every prune has one to three backups to delete."""
    rnd = random.Random(2)
    inst = install(tmp_path / "i", mib=4)
    pruning = inst.variant("prune.toml", "[retention]\nkeep_last = 3\n")
    for strategy in ("full", "incremental", "incremental", "full", "incremental"):
        change_source(inst, rnd)
        backup(inst, strategy)
    took = timed(inst.argv("prune", "--source", SOURCE, config=pruning))
    for _ in range(trials(ci=10, long=60)):
        for _ in range(rnd.randint(1, 3)):
            change_source(inst, rnd)
            backup(inst, rnd.choice(("full", "incremental", "differential")))

        def one():
            before = committed(inst, "local")
            code = run_killed(inst.argv("prune", "--source", SOURCE, config=pruning), rnd.uniform(0, took * 1.5))
            check_agreement(inst, rnd, before)
            r = inst.run("prune", "--source", SOURCE, "--json", config=pruning)
            assert r.code == 0, f"the next prune fails: {r.stderr.strip()}"
            assert leftovers(inst) == [], f"the next prune left {leftovers(inst)}"
            check_agreement(inst, rnd, before)
            return f"{'killed' if code == -9 else 'finished'}, {len(before - committed(inst, 'local'))} deleted"

        tally.run(one)


def break_second_copy(inst, rnd) -> None:
    """One or two backups whose copy on `second` fails (a file stands where its directory should be)."""
    second = inst.dest_dir("second")
    aside = second.with_name("second.aside")
    second.rename(aside)
    second.write_bytes(b"")
    try:
        for _ in range(rnd.randint(1, 2)):
            change_source(inst, rnd)
            r = inst.run("backup", "--source", SOURCE, "--strategy", rnd.choice(("full", "incremental")), "--json")
            assert r.code == 1 and r.json()["status"] == "partial", r.stdout + r.stderr
            inst.expected[r.json()["id"]] = file_digest(inst.db)
    finally:
        second.unlink()
        aside.rename(second)


def test_sigkill_during_resync(tmp_path, tally):
    rnd = random.Random(3)
    inst = install(tmp_path / "i", destinations=("local", "second"), mib=4)
    backup(inst, "full")
    break_second_copy(inst, rnd)
    took = timed(inst.argv("resync", "--source", SOURCE))
    for _ in range(trials(ci=8, long=40)):
        break_second_copy(inst, rnd)

        def one():
            before = committed(inst, "local") | committed(inst, "second")
            code = run_killed(inst.argv("resync", "--source", SOURCE), rnd.uniform(0, took * 1.2))
            check_agreement(inst, rnd, before)
            r = inst.run("resync", "--source", SOURCE, "--json")
            assert r.code == 0 and not r.json()[SOURCE]["failed"], f"the next resync fails: {r.stdout}{r.stderr}"
            assert leftovers(inst) == [], f"the next resync left {leftovers(inst)}"
            assert committed(inst, "second") == committed(inst, "local"), "resync did not complete the copies"
            return "killed" if code == -9 else "finished"

        tally.run(one)


def test_sigkill_during_restore_overwrite(tmp_path, tally):
    """The target always holds the old database or the new one, whole; the next restore completes and tidies."""
    rnd = random.Random(4)
    inst = install(tmp_path / "i")
    ids = []
    for strategy in ("full", "incremental", "differential", "incremental"):
        change_source(inst, rnd)
        ids.append(backup(inst, strategy))
    target = inst.root / "live" / "app.db"
    target.parent.mkdir()
    restore = lambda backup_id: inst.argv("restore", "--source", SOURCE, "--backup", backup_id, "--to", target,
                                          "--overwrite")
    took = timed(restore(ids[0]))
    for _ in range(trials(ci=10, long=60)):
        old = next(i for i in inst.expected if inst.expected[i] == file_digest(target))
        new = rnd.choice([i for i in ids if inst.expected[i] != inst.expected[old]])

        def one():
            code = run_killed(restore(new), rnd.uniform(0, took * 1.2))
            now = file_digest(target)
            assert now in (inst.expected[old], inst.expected[new]), "the target is neither the old nor the new file"
            seen = "new" if now == inst.expected[new] else "old"
            r = inst.run("restore", "--source", SOURCE, "--backup", new, "--to", target, "--overwrite", "--json")
            assert r.code == 0, f"the next restore fails: {r.stderr.strip()}"
            assert file_digest(target) == inst.expected[new], "the next restore gave other bytes"
            stray = sorted(set(files(target.parent)) - {target.name})
            assert not stray, f"the next restore left {stray} beside the target"
            return f"{'killed' if code == -9 else 'finished'}, target {seen}"

        tally.run(one)


def test_sigkill_during_catalog_rebuild(tmp_path, tally):
    """A killed rebuild leaves a catalog that is either the old one or the rebuilt one; the next rebuild
    finds every committed backup and each restores exactly."""
    rnd = random.Random(5)
    inst = install(tmp_path / "i", destinations=("local", "second"), mib=2)
    for strategy in ("full", "incremental", "differential", "full", "incremental", "incremental"):
        change_source(inst, rnd)
        backup(inst, strategy)
    everything = committed(inst, "local")
    rebuild = inst.argv("catalog", "rebuild")
    took = timed(rebuild)
    for _ in range(trials(ci=8, long=40)):
        def one():
            if rnd.random() < 0.5:
                (inst.state / "catalog.db").unlink()
            code = run_killed(rebuild, rnd.uniform(0, took * 1.2))
            r = inst.run("list", "--source", SOURCE, "--json")
            assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
            listed_now = {p["id"] for p in r.json()} if r.code == 0 else set()
            assert listed_now <= everything, "a killed rebuild listed a backup that was never committed"
            r = inst.run("catalog", "rebuild", "--json")
            assert r.code == 0, f"the next rebuild fails: {r.stderr.strip()}"
            points = check_agreement(inst, rnd, set())
            assert {p["id"] for p in points} == everything, "the next rebuild lost restore points"
            return f"{'killed' if code == -9 else 'finished'}, {'listed' if listed_now else 'empty or unreadable'}"

        tally.run(one)
