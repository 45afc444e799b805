"""Helpers for the engine tests: real SQLite databases, a real config, the real CLI, and a writer process.

Nothing here mocks the engine. `Env` is one isolated installation (config, key, state dir, destination
dir, source database) in a directory; `canonical_dump` is the logical content two databases are
compared by. Run as a script (`python dbtools.py writer ...`), this module is the concurrent writer
process of `test_concurrent_writer.py`; that part uses the standard library only.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SOURCE = "db"
KEY_BYTES = bytes(range(7, 39))
BACKUPD = Path(sys.executable).with_name("backupd")
TEMP_SUFFIX = ".backupd-tmp"


# --- an isolated installation ------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    root: Path
    config: Path
    db: Path
    dest: Path  # the local destination's directory
    state: Path

    @property
    def source_dir(self) -> Path:
        """Where this source's artifacts and sidecars live on the destination."""
        return self.dest / SOURCE


def make_env(root: Path, *, encrypted: bool = True, compression_level: int = 1, db_name: str = "src.db",
             strategy_toml: str = "") -> Env:
    """Write a key file and a config (one sqlite source `db`, one local destination) under `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    encryption = ""
    if encrypted:
        key = root / "backup.key"
        key.write_bytes(KEY_BYTES)
        os.chmod(key, 0o600)
        encryption = '[destinations.encryption]\nkey_file = "backup.key"\n'
    text = (
        '[state]\ndir = "state"\n\n'
        f'[[sources]]\nname = "{SOURCE}"\nkind = "sqlite"\npath = "{db_name}"\n\n'
        f'[[destinations]]\nname = "local"\nkind = "local"\npath = "backups"\ncompression_level = {compression_level}\n'
        f"{encryption}\n{strategy_toml}"
    )
    config = root / "backupd.toml"
    config.write_text(text)
    return Env(root, config, root / db_name, root / "backups", root / "state")


@contextmanager
def engine(env: Env) -> Iterator[Any]:
    """An EngineContext for `env`, always closed."""
    from backupd.config import load_config
    from backupd.engine.context import open_context

    ctx = open_context(load_config(env.config))
    try:
        yield ctx
    finally:
        ctx.close()


def lose_catalog(env: Env) -> None:
    """Delete the catalog (and its WAL files), as a lost state dir would."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{env.state / 'catalog.db'}{suffix}").unlink(missing_ok=True)


def lose_pagecache(env: Env) -> None:
    d = env.state / "pagecache"
    if d.exists():
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def destination_files(env: Env) -> dict[str, int]:
    """Every file under the destination dir (temp files included), relative path -> size."""
    out = {}
    if env.dest.exists():
        for dirpath, _, files in os.walk(env.dest):
            for fn in files:
                p = Path(dirpath) / fn
                try:
                    out[p.relative_to(env.dest).as_posix()] = p.stat().st_size
                except FileNotFoundError:  # renamed or removed by a backup running right now
                    continue
    return out


def leftovers(env: Env) -> tuple[list[str], list[str]]:
    """(temp files, artifacts without a sidecar) on the destination."""
    files = destination_files(env)
    temps = sorted(f for f in files if f.endswith(TEMP_SUFFIX))
    orphans = sorted(f for f in files if f.endswith(".bkpd") and f[: -len(".bkpd")] + ".manifest" not in files)
    return temps, orphans


def sidecar_ids(env: Env) -> set[str]:
    """Backup ids that have a committed sidecar on the destination."""
    if not env.source_dir.exists():
        return set()
    return {p.name[: -len(".manifest")] for p in env.source_dir.iterdir() if p.name.endswith(".manifest")}


# --- databases ------------------------------------------------------------------------------------


def connect(path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN/COMMIT)."""
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def create_db(path: Path, *, page_size: int = 4096, journal_mode: str = "wal") -> sqlite3.Connection:
    """Create an empty database with `page_size` in `journal_mode`; returns an open connection."""
    conn = connect(path)
    conn.execute(f"PRAGMA page_size = {int(page_size)}")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v)")
    got = conn.execute(f"PRAGMA journal_mode = {journal_mode}").fetchone()[0]
    assert got.lower() == journal_mode.lower(), got
    assert conn.execute("PRAGMA page_size").fetchone()[0] == page_size
    return conn


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def canonical_dump(conn_or_path: sqlite3.Connection | Path | str) -> dict[str, Any]:
    """The logical content of a database: sqlite_master (rootpages included) and every table's rows by rowid."""
    own = not isinstance(conn_or_path, sqlite3.Connection)
    conn = connect(Path(conn_or_path)) if own else conn_or_path
    try:
        conn.execute("BEGIN")
        master = conn.execute(
            "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        rows = {}
        for typ, name, _, _, sql in master:
            if typ == "table" and not (sql or "").upper().startswith("CREATE VIRTUAL"):
                rows[name] = conn.execute(f"SELECT rowid, * FROM {_q(name)} ORDER BY rowid").fetchall()
        conn.execute("COMMIT")
        return {"master": master, "rows": rows}
    finally:
        if own:
            conn.close()


def integrity(path: Path) -> list[str]:
    """PRAGMA integrity_check's rows (['ok'] when healthy)."""
    conn = connect(path)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    finally:
        conn.close()


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fill_text(conn: sqlite3.Connection, table: str, mib: float, *, seed: int = 1, row_bytes: int = 4000) -> None:
    """Fill `table` with about `mib` MiB of compressible-ish random text (hex)."""
    rnd = random.Random(seed)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} (id INTEGER PRIMARY KEY, body TEXT)")
    n = int(mib * 1024 * 1024 / row_bytes)
    conn.execute("BEGIN")
    for start in range(0, n, 500):
        conn.executemany(f"INSERT INTO {_q(table)} (body) VALUES (?)",
                         [(rnd.randbytes(row_bytes // 2).hex(),) for _ in range(min(500, n - start))])
    conn.execute("COMMIT")


# --- the real CLI ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error(self) -> dict[str, Any]:
        """The one JSON error line a --json command printed on stderr."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected exactly one stderr line, got {self.stderr!r}"
        return json.loads(lines[0])


def cli(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> CliResult:
    """Run the installed `backupd` with `args`."""
    p = subprocess.run([str(BACKUPD), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return CliResult(p.returncode, p.stdout, p.stderr)


def cli_many(argvs: list[list], workers: int = 2) -> list[CliResult]:
    """Run several independent `backupd` invocations concurrently (startup dominates); results in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda argv: cli(*argv), argvs))


def assert_clean_error(r: CliResult, code: int, *, as_json: bool) -> dict[str, Any] | str:
    """An error exit: the given code, exactly one stderr line, no traceback; returns the parsed line."""
    assert r.code == code, f"exit {r.code} (expected {code}); stderr={r.stderr!r} stdout={r.stdout!r}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got {r.stderr!r}"
    if as_json:
        err = json.loads(lines[0])
        assert isinstance(err, dict) and isinstance(err.get("error"), str) and isinstance(err.get("code"), str), err
        assert err["error"] and err["code"]
        return err
    assert lines[0].startswith("backupd: error: "), lines[0]
    return lines[0]


# --- the concurrent writer process ----------------------------------------------------------------

ACCOUNTS = 40
OPENING_BALANCE = 1000
TOTAL = ACCOUNTS * OPENING_BALANCE


def init_bank(path: Path, *, journal_mode: str, page_size: int = 4096, filler_mib: float = 4.0) -> None:
    """The writer's database: accounts summing to TOTAL, filler rows of random blobs, and a meta row whose
    counters (transactions, filler rows, filler bytes) every transaction keeps in step."""
    conn = create_db(path, page_size=page_size, journal_mode=journal_mode)
    rnd = random.Random(7)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, account INTEGER, body BLOB)")
    conn.execute("CREATE INDEX filler_account ON filler (account)")
    conn.execute("CREATE TABLE ledger (txn INTEGER PRIMARY KEY, filler_rows INTEGER, filler_bytes INTEGER)")
    conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, OPENING_BALANCE) for i in range(ACCOUNTS)])
    rows, nbytes, target = 0, 0, int(filler_mib * 1024 * 1024)
    while nbytes < target:
        size = rnd.choice((200, 900, 3000, 9000))
        conn.execute("INSERT INTO filler (account, body) VALUES (?, ?)", (rnd.randrange(ACCOUNTS), rnd.randbytes(size)))
        rows, nbytes = rows + 1, nbytes + size
    conn.execute("INSERT INTO ledger VALUES (0, ?, ?)", (rows, nbytes))
    conn.execute("COMMIT")
    conn.close()


def bank_state(path_or_conn: Path | sqlite3.Connection) -> dict[str, int]:
    """The invariant's inputs as one read transaction sees them."""
    own = not isinstance(path_or_conn, sqlite3.Connection)
    conn = connect(Path(path_or_conn)) if own else path_or_conn
    try:
        conn.execute("BEGIN")
        total, accounts = conn.execute("SELECT sum(balance), count(*) FROM accounts").fetchone()
        rows, nbytes = conn.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM filler").fetchone()
        txn, want_rows, want_bytes = conn.execute(
            "SELECT txn, filler_rows, filler_bytes FROM ledger ORDER BY txn DESC LIMIT 1").fetchone()
        conn.execute("COMMIT")
    finally:
        if own:
            conn.close()
    return {"total": total, "accounts": accounts, "rows": rows, "bytes": nbytes, "txn": txn,
            "ledger_rows": want_rows, "ledger_bytes": want_bytes}


def check_bank(state: dict[str, int]) -> None:
    assert state["total"] == TOTAL and state["accounts"] == ACCOUNTS, state
    assert (state["rows"], state["bytes"]) == (state["ledger_rows"], state["ledger_bytes"]), state


def current_txn(path: Path) -> int:
    """The writer's committed transaction count, read without blocking (WAL mode)."""
    conn = connect(path, timeout=5)
    try:
        return conn.execute("SELECT max(txn) FROM ledger").fetchone()[0]
    finally:
        conn.close()


def writer_main(db: str, stop_file: str, seed: int, pause: float = 0.002) -> int:
    """Move money between accounts and churn filler rows until `stop_file` exists; returns commits made.

    Every transaction: one transfer, a few filler inserts (random sizes up to several pages) and deletes,
    and a new ledger row carrying the transaction number and the filler totals. Every few transactions a
    PASSIVE checkpoint, now and then a TRUNCATE one, rarely a VACUUM (shrinks the file).
    """
    rnd = random.Random(seed)
    conn = connect(Path(db), timeout=60)
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA synchronous = NORMAL")
    wal = conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    if wal:
        conn.execute("PRAGMA wal_autocheckpoint = 16")
    txn = conn.execute("SELECT max(txn) FROM ledger").fetchone()[0]
    while not os.path.exists(stop_file):
        conn.execute("BEGIN IMMEDIATE")
        a, b = rnd.sample(range(ACCOUNTS), 2)
        amount = rnd.randrange(1, 200)
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
        _, rows, nbytes = conn.execute("SELECT txn, filler_rows, filler_bytes FROM ledger WHERE txn = ?", (txn,)).fetchone()
        for _ in range(rnd.randrange(0, 4)):
            size = rnd.choice((50, 700, 2500, 6000, 20000))
            conn.execute("INSERT INTO filler (account, body) VALUES (?, ?)", (a, rnd.randbytes(size)))
            rows, nbytes = rows + 1, nbytes + size
        for (fid, size) in conn.execute(
            "SELECT id, length(body) FROM filler WHERE id >= (SELECT abs(random()) % (max(id) + 1) FROM filler)"
            " LIMIT ?", (rnd.randrange(0, 4),)
        ).fetchall():
            conn.execute("DELETE FROM filler WHERE id = ?", (fid,))
            rows, nbytes = rows - 1, nbytes - size
        txn += 1
        conn.execute("INSERT INTO ledger VALUES (?, ?, ?)", (txn, rows, nbytes))
        conn.execute("DELETE FROM ledger WHERE txn < ?", (txn - 50,))
        conn.execute("COMMIT")
        if wal and txn % 5 == 0:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if wal and txn % 37 == 0:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        if txn % 400 == 0:
            conn.execute("VACUUM")
        time.sleep(pause)  # an application writer, not a benchmark: leave rollback-mode readers a gap
    conn.close()
    return txn


@contextmanager
def running_writer(db: Path, workdir: Path, *, seed: int = 1) -> Iterator[subprocess.Popen]:
    """Run `writer_main` in a separate process for the duration of the block; it must exit cleanly."""
    stop = workdir / f"stop-writer-{seed}"
    stop.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, "writer", str(db), str(stop), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        stop.write_text("stop")
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == 0, f"writer failed ({proc.returncode}): {err}"


def wait_for(predicate, timeout: float, interval: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "writer":
    print(writer_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
