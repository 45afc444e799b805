"""Property: restoring any backup gives exactly the database as it was when that backup was taken.

Random sequences of inserts, updates, deletes, VACUUM, growth through big blobs (overflow pages),
shrinkage through delete + VACUUM, page size changes (VACUUM in rollback-journal mode), schema changes
(CREATE TABLE / INDEX, DROP TABLE), WAL checkpoints and reconnects are interleaved with backups of every
strategy, and with the loss of the page-hash cache or of the whole catalog (rebuilt, or left for the
engine to reconcile). At the end every backup is restored and compared with the canonical dump taken
when it was made. Runs in WAL and rollback-journal mode, at page sizes 512, 4096 and 65536, encrypted
or not.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backupd.engine.backup import run_backup
from backupd.engine.inventory import rebuild_catalog
from backupd.engine.restore import run_restore

from .dbtools import SOURCE, canonical_dump, connect, create_db, integrity, lose_catalog, lose_pagecache, make_env

TABLES = ("t0", "t1", "t2")
SIZES = ("tiny", "small", "page", "big")
STRATEGIES = ("full", "incremental", "differential", "auto")
PAGE_SIZES = (512, 4096, 65536)
BYTES_PER_OP = 1_000_000  # cap on the blob bytes one insert or update writes

seeds = st.integers(0, 2**32 - 1)
tables = st.sampled_from(TABLES)
sizes = st.sampled_from(SIZES)
backup_op = st.tuples(st.just("backup"), st.sampled_from(STRATEGIES))
operation = st.one_of(
    st.tuples(st.just("insert"), tables, st.integers(1, 30), sizes, seeds),
    st.tuples(st.just("update"), tables, st.integers(1, 4), st.integers(0, 3), sizes, seeds),
    st.tuples(st.just("delete"), tables, st.integers(1, 4), st.integers(0, 3)),
    st.just(("vacuum",)),
    st.tuples(st.just("create_table"), tables),
    st.tuples(st.just("create_index"), tables),
    st.tuples(st.just("drop_table"), tables),
    st.tuples(st.just("checkpoint"), st.sampled_from(("PASSIVE", "RESTART", "TRUNCATE"))),
    st.tuples(st.just("page_size"), st.sampled_from(PAGE_SIZES)),
    st.just(("reopen",)),
    st.just(("lose_pagecache",)),
    st.tuples(st.just("lose_catalog"), st.booleans()),
    backup_op,
    backup_op,
    backup_op,
)


def blob_size(kind: str, page_size: int, rnd: random.Random) -> int:
    if kind == "tiny":
        return rnd.randrange(0, 16)
    if kind == "small":
        return rnd.randrange(20, 400)
    if kind == "page":
        return rnd.randrange(page_size // 2, page_size)
    return rnd.randrange(2 * page_size, 4 * page_size)  # an overflow chain: the file grows


def mixed_value(rnd: random.Random):
    return rnd.choice([None, rnd.randrange(-(2**40), 2**40), rnd.random() * 1e6, rnd.randbytes(8).hex(), "é" * 3])


def ensure_table(conn, table: str) -> None:
    autoinc = " AUTOINCREMENT" if table == "t2" else ""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY{autoinc}, k INTEGER, x, b BLOB)")


class Scenario:
    """One database, its backupd installation, and the backups taken so far with the dumps they must restore."""

    def __init__(self, root: Path, journal_mode: str, page_size: int, encrypted: bool):
        self.env = make_env(root, encrypted=encrypted)
        self.page_size = page_size
        self.journal_mode = journal_mode
        self.conn = create_db(self.env.db, page_size=page_size, journal_mode=journal_mode)
        self.ctx = self._open()
        self.taken: list[tuple[str, dict]] = []
        self.last_full: str | None = None
        self.page_sizes: dict[str, int] = {}  # backup id -> page size at that backup

    def _open(self):
        from backupd.config import load_config
        from backupd.engine.context import open_context

        return open_context(load_config(self.env.config))

    def close(self) -> None:
        self.conn.close()
        self.ctx.close()

    def apply(self, op: tuple) -> None:
        name, args = op[0], op[1:]
        getattr(self, f"op_{name}")(*args)

    # edits ---------------------------------------------------------------------------------------
    def op_insert(self, table: str, n: int, size: str, seed: int) -> None:
        rnd = random.Random(seed)
        c = self.conn
        c.execute("BEGIN")
        ensure_table(c, table)
        written = 0
        for _ in range(n):
            blob = rnd.randbytes(blob_size(size, self.page_size, rnd))
            c.execute(f"INSERT INTO {table} (k, x, b) VALUES (?, ?, ?)", (rnd.randrange(1000), mixed_value(rnd), blob))
            written += len(blob)
            if written > BYTES_PER_OP:
                break
        c.execute("COMMIT")

    def op_update(self, table: str, m: int, r: int, size: str, seed: int) -> None:
        rnd = random.Random(seed)
        c = self.conn
        c.execute("BEGIN")
        ensure_table(c, table)
        written = 0
        for (rowid,) in c.execute(f"SELECT id FROM {table} WHERE id % ? = ?", (m, r % m)).fetchall():
            blob = rnd.randbytes(blob_size(size, self.page_size, rnd))
            c.execute(f"UPDATE {table} SET k = k + 1, x = ?, b = ? WHERE id = ?", (mixed_value(rnd), blob, rowid))
            written += len(blob)
            if written > BYTES_PER_OP:
                break
        c.execute("COMMIT")

    def op_delete(self, table: str, m: int, r: int) -> None:
        self.conn.execute("BEGIN")
        ensure_table(self.conn, table)
        self.conn.execute(f"DELETE FROM {table} WHERE id % ? = ?", (m, r % m))
        self.conn.execute("COMMIT")

    def op_vacuum(self) -> None:
        self.conn.execute("VACUUM")

    def op_create_table(self, table: str) -> None:
        ensure_table(self.conn, table)

    def op_create_index(self, table: str) -> None:
        self.conn.execute("BEGIN")
        ensure_table(self.conn, table)
        self.conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_kx ON {table} (k, x)")
        self.conn.execute("COMMIT")

    def op_drop_table(self, table: str) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")

    def op_checkpoint(self, mode: str) -> None:
        self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    def op_page_size(self, page_size: int) -> None:
        # VACUUM rebuilds the file with the new page size in rollback-journal mode (WAL mode keeps its size).
        self.conn.execute(f"PRAGMA page_size = {page_size}")
        self.conn.execute("VACUUM")
        self.page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        assert self.page_size == page_size or self.journal_mode == "wal"

    def op_reopen(self) -> None:
        # Closing the last connection of a WAL database checkpoints it and removes the WAL.
        self.conn.close()
        self.conn = connect(self.env.db)

    # lost state ------------------------------------------------------------------------------------
    def op_lose_pagecache(self) -> None:
        lose_pagecache(self.env)

    def op_lose_catalog(self, rebuild: bool) -> None:
        self.ctx.close()
        lose_catalog(self.env)
        self.ctx = self._open()
        if rebuild:
            report = rebuild_catalog(self.ctx)
            assert report["backups"] == len(self.taken) and not report["problems"], report

    # backups -----------------------------------------------------------------------------------------
    def op_backup(self, requested: str) -> None:
        dump = canonical_dump(self.conn)
        prev = self.taken[-1][0] if self.taken else None
        m = run_backup(self.ctx, SOURCE, requested).manifest
        assert m.page_size == self.page_size
        assert m.page_count * m.page_size == self.page_count_bytes()
        if prev is None or requested == "full":
            assert m.strategy == "full", m.strategy_reason
        elif requested in ("incremental", "differential"):
            base = prev if requested == "incremental" else self.last_full
            if self.page_sizes[base] != m.page_size:
                assert m.strategy == "full" and "page size changed" in m.strategy_reason, m.strategy_reason
            else:
                # A lost page-hash cache is rebuilt from the destination; nothing here forces a full.
                assert m.strategy == requested, m.strategy_reason
        self.page_sizes[m.backup_id] = m.page_size
        if m.strategy == "full":
            assert m.parent_id is None and m.base_id is None
            self.last_full = m.backup_id
        elif m.strategy == "incremental":
            assert m.parent_id == prev and m.base_id == self.last_full
        else:
            assert m.parent_id == self.last_full and m.base_id == self.last_full
        assert 0 <= m.changed_pages <= m.page_count
        self.taken.append((m.backup_id, dump))

    def page_count_bytes(self) -> int:
        ps = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return ps * self.conn.execute("PRAGMA page_count").fetchone()[0]

    # the property ------------------------------------------------------------------------------------
    def check_every_backup_restores(self, lose_catalog_first: bool) -> None:
        if lose_catalog_first:
            self.op_lose_catalog(rebuild=False)  # restore reconciles with the destination on its own
        for i, (backup_id, dump) in enumerate(self.taken):
            out = self.env.root / f"restored-{i}.db"
            res = run_restore(self.ctx, SOURCE, out, backup_id=backup_id)
            assert res.backup_id == backup_id
            assert integrity(out) == ["ok"], f"backup #{i} {backup_id}"
            assert canonical_dump(out) == dump, f"backup #{i} {backup_id} (chain {res.chain}) restores other content"


def run_scenario(journal_mode: str, page_size: int, ops: list[tuple], encrypted: bool, lose_catalog_first: bool):
    with tempfile.TemporaryDirectory(prefix="backupd-prop-") as tmp:
        s = Scenario(Path(tmp), journal_mode, page_size, encrypted)
        try:
            for op in [*ops, ("backup", "incremental")]:
                s.apply(op)
            s.check_every_backup_restores(lose_catalog_first)
        finally:
            s.close()


GROW_SHRINK_GROW = [
    ("insert", "t0", 20, "small", 1),
    ("backup", "full"),
    ("insert", "t1", 10, "big", 2),  # growth
    ("backup", "incremental"),
    ("delete", "t1", 1, 0),
    ("vacuum",),  # shrinkage
    ("backup", "differential"),
    ("insert", "t2", 8, "big", 3),  # growth again, past the full's page count
    ("backup", "incremental"),
    ("drop_table", "t0"),
    ("vacuum",),
    ("backup", "auto"),
]
LOST_STATE = [
    ("insert", "t0", 30, "page", 4),
    ("backup", "full"),
    ("update", "t0", 3, 1, "small", 5),
    ("lose_pagecache",),
    ("backup", "incremental"),
    ("create_index", "t0"),
    ("lose_catalog", True),
    ("backup", "differential"),
    ("insert", "t1", 5, "big", 6),
    ("lose_catalog", False),
    ("lose_pagecache",),
    ("backup", "differential"),
    ("checkpoint", "TRUNCATE"),
    ("reopen",),
    ("backup", "auto"),
]


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    page_size=st.sampled_from(PAGE_SIZES),
    ops=st.lists(operation, min_size=1, max_size=20),
    encrypted=st.booleans(),
    lose_catalog_first=st.booleans(),
)
@example(page_size=512, ops=GROW_SHRINK_GROW, encrypted=False, lose_catalog_first=False)
@example(page_size=4096, ops=LOST_STATE, encrypted=True, lose_catalog_first=True)
@example(page_size=65536, ops=GROW_SHRINK_GROW + LOST_STATE, encrypted=True, lose_catalog_first=False)
def test_every_backup_restores_the_database_as_it_was(journal_mode, page_size, ops, encrypted, lose_catalog_first):
    run_scenario(journal_mode, page_size, ops, encrypted, lose_catalog_first)
