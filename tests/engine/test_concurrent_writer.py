"""Snapshots of a database another process keeps writing equal some committed state of it.

The writer process (tests/engine/dbtools.py `writer_main`) moves money between accounts (the balances
always sum to TOTAL), inserts and deletes filler blobs of up to several pages (so pages change, the file
grows and, with its occasional VACUUM, shrinks) and appends a ledger row carrying its transaction number
and the filler totals, all in one transaction. In WAL mode it also checkpoints (PASSIVE often, TRUNCATE
now and then) with a tiny wal_autocheckpoint, to race the snapshot's checkpoint lock.

While it runs, full, incremental, differential and auto backups are taken; each restored copy must pass
integrity_check, satisfy the invariant, and hold a transaction number between the ones read just before
and just after its backup. In WAL mode the writer must keep committing while a snapshot is held.
"""

from __future__ import annotations

import time

import pytest

from backupd.engine.backup import run_backup
from backupd.engine.restore import run_restore

from .dbtools import (SOURCE, bank_state, check_bank, current_txn, engine, init_bank, integrity, make_env,
                      running_writer, wait_for)

STRATEGIES = ["full", "incremental", "incremental", "differential", "auto", "full", "incremental", "differential",
              "incremental", "auto"] * 2


@pytest.mark.parametrize(("journal_mode", "page_size", "rounds"), [("wal", 4096, 20), ("delete", 4096, 20),
                                                                     ("wal", 65536, 8), ("delete", 512, 8)])
def test_backups_under_a_concurrent_writer_restore_committed_states(tmp_path, journal_mode, page_size, rounds):
    run_backups_under_writer(tmp_path, journal_mode, page_size, STRATEGIES[:rounds])


def run_backups_under_writer(tmp_path, journal_mode: str, page_size: int, strategies: list[str], seed: int = 11):
    wal = journal_mode == "wal"
    env = make_env(tmp_path, encrypted=True)
    init_bank(env.db, journal_mode=journal_mode, page_size=page_size, filler_mib=6)
    taken = []  # (backup id, strategy, txn before, txn after)
    progressed_in_snapshot = []  # WAL: writer commits seen while the snapshot was held

    with engine(env) as ctx, running_writer(env.db, tmp_path, seed=seed):
        assert wait_for(lambda: current_txn(env.db) >= 10, timeout=20), "the writer did not start committing"
        for strategy in strategies:
            held: dict[str, int] = {}

            def inside_snapshot(p, held=held):
                # Called by the backup while its snapshot is open.
                if p.phase == "writing" and "start" not in held:
                    if wal:
                        held["start"] = start = current_txn(env.db)
                        wait_for(lambda: current_txn(env.db) >= start + 3, timeout=10, interval=0.005)
                    else:
                        # A reader in this process would queue behind the blocked writer: just give the
                        # writer time to reach its commit and wait on our SHARED lock.
                        time.sleep(0.05)
                        held["start"] = -1
                elif p.phase == "committing" and wal and "end" not in held:
                    held["end"] = current_txn(env.db)

            before = current_txn(env.db)
            b = run_backup(ctx, SOURCE, strategy, progress=inside_snapshot)
            after = current_txn(env.db)
            assert "start" in held, "the backup never reported its writing phase"
            if wal:
                progressed_in_snapshot.append(held["end"] - held["start"])
            taken.append((b.backup_id, b.strategy, before, after))

        for i, (backup_id, strategy, before, after) in enumerate(taken):
            out = tmp_path / f"restored-{i}.db"
            run_restore(ctx, SOURCE, out, backup_id=backup_id)
            assert integrity(out) == ["ok"], (i, strategy)
            state = bank_state(out)
            check_bank(state)
            assert before <= state["txn"] <= after, (i, strategy, before, state["txn"], after)

    strategies = {s for _, s, _, _ in taken}
    assert {"full", "incremental", "differential"} <= strategies, strategies
    live = bank_state(env.db)
    check_bank(live)
    assert live["txn"] >= taken[-1][3]
    if wal:
        # The writer kept committing while every snapshot was held: it was never blocked for a whole backup.
        assert all(n >= 3 for n in progressed_in_snapshot), progressed_in_snapshot
