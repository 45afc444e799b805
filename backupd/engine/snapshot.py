"""Consistent online snapshots of a live SQLite database, read page by page without copying it first.

Rollback-journal mode: a read transaction holds SHARED, so no writer can change the file until we end it.

WAL mode: the snapshot is the database file plus the WAL frames up to the reader's `mxFrame`.
1. Take the WAL checkpoint lock (byte 121 of the -shm file, the same fcntl lock SQLite uses), so no
   checkpoint can rewrite the database file while we read it. Writers keep appending to the WAL.
2. Briefly hold the write lock (BEGIN IMMEDIATE on a second connection) while the reader begins its
   transaction and we read `mxFrame`/`nBackfill` from the wal-index header and index the frames
   1..mxFrame by page number. The write lock makes the reader's snapshot and the index agree.
3. Release the write lock. The reader's read mark keeps the WAL from being restarted, so those frames
   stay intact; when every frame is already backfilled the database file alone is the snapshot.

Our own file descriptors stay open until SQLite's connections are closed: closing any descriptor of a
file drops every POSIX lock the process holds on it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from backupd.core.vocab import SourceCheck
from backupd.errors import SnapshotFailed
from backupd.sqlite_uri import connect as sqlite_connect

SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_HEADER = 32
WAL_FRAME_HEADER = 24
SHM_CKPT_LOCK_OFFSET = 120 + 1  # WALINDEX_LOCK_OFFSET + WAL_CKPT_LOCK
WAL_INDEX_VERSION = 3007000


@dataclass(frozen=True)
class SnapshotInfo:
    page_size: int
    page_count: int
    journal_mode: str
    schema_hash: str
    tables: dict[str, int]
    created_at: datetime
    problems: tuple[str, ...] = ()  # what the source check found, empty when it passed or was off


def schema_and_counts(conn: sqlite3.Connection) -> tuple[str, dict[str, int]]:
    """Hash of sqlite_master and row counts of ordinary tables, as seen by `conn`'s transaction."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name"
    ).fetchall()
    h = hashlib.sha256()
    for row in rows:
        h.update("\x1f".join(row).encode() + b"\x1e")
    counts = {}
    for typ, name, _, sql in rows:
        if typ != "table" or name.startswith("sqlite_") or sql.upper().startswith("CREATE VIRTUAL"):
            continue
        quoted = '"' + name.replace('"', '""') + '"'
        counts[name] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    return h.hexdigest(), counts


CHECK_PRAGMAS: dict[str, str] = {SourceCheck.QUICK: "quick_check", SourceCheck.FULL: "integrity_check"}
MAX_PROBLEMS = 20


def check_source(conn: sqlite3.Connection, mode: str) -> tuple[str, ...]:
    """What `PRAGMA quick_check` ('quick') or `integrity_check` ('full') finds, in `conn`'s transaction."""
    if mode == SourceCheck.OFF:
        return ()
    try:
        rows = conn.execute(f"PRAGMA {CHECK_PRAGMAS[mode]}({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:
        return (str(exc),)
    found = tuple(str(r[0]) for r in rows)
    return () if found == ("ok",) else found


class Snapshot:
    """A consistent view of one database; iterate `chunks()` while it is open."""

    def __init__(self, info: SnapshotInfo, db_fd: int, wal_fd: int | None, wal_pages: dict[int, int]):
        self.info = info
        self._db_fd = db_fd
        self._wal_fd = wal_fd
        self._wal_pages = wal_pages

    def chunks(self, pages_per_chunk: int) -> Iterator[tuple[int, bytes]]:
        """Yield (first page number, bytes of up to `pages_per_chunk` consecutive pages), pages 1..page_count."""
        ps, count = self.info.page_size, self.info.page_count
        overlay = sorted(self._wal_pages)
        oi = 0
        for first in range(1, count + 1, pages_per_chunk):
            n = min(pages_per_chunk, count - first + 1)
            want = n * ps
            data = os.pread(self._db_fd, want, (first - 1) * ps)
            last = first + n - 1
            if len(data) < want or (oi < len(overlay) and overlay[oi] <= last):
                buf = bytearray(data)
                buf.extend(bytes(want - len(buf)))
                while oi < len(overlay) and overlay[oi] <= last:
                    pg = overlay[oi]
                    assert self._wal_fd is not None
                    frame = os.pread(self._wal_fd, ps, self._wal_pages[pg])
                    if len(frame) != ps:
                        raise SnapshotFailed(f"WAL frame for page {pg} is short; the WAL changed under the snapshot")
                    buf[(pg - first) * ps : (pg - first + 1) * ps] = frame
                    oi += 1
                data = bytes(buf)
            yield first, data


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite_connect(path, mode="rw", timeout=timeout, isolation_level=None, check_same_thread=False)


def _lock_checkpoints(shm_fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.lockf(shm_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_CKPT_LOCK_OFFSET, os.SEEK_SET)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SnapshotFailed(
                    "timed out waiting for a running WAL checkpoint to finish",
                    hint="retry; a checkpoint held the database longer than the busy timeout",
                ) from None
            time.sleep(0.01)


def _index_wal(shm_fd: int, wal_fd: int, page_size: int) -> dict[int, int]:
    """Map page number -> file offset of its newest frame among 1..mxFrame, from the wal-index header."""
    shm = os.pread(shm_fd, 136, 0)
    if len(shm) < 136 or shm[0:48] != shm[48:96]:
        raise SnapshotFailed("the WAL index header is unreadable or inconsistent")
    version, _, _, _, _, sz_page, mx_frame = struct.unpack_from("=IIIBBHI", shm, 0)
    n_backfill = struct.unpack_from("=I", shm, 96)[0]
    if version != WAL_INDEX_VERSION or (sz_page if sz_page != 1 else 65536) not in (page_size, 0):
        raise SnapshotFailed(f"unsupported WAL index (version {version}, page size {sz_page})")
    if mx_frame == 0 or n_backfill >= mx_frame:
        return {}
    salt = shm[32:40]
    wal_header = os.pread(wal_fd, WAL_HEADER, 0)
    if wal_header[16:24] != salt:
        raise SnapshotFailed("the WAL file does not match its index (salt mismatch)")
    frame_size = WAL_FRAME_HEADER + page_size
    pages: dict[int, int] = {}
    for i in range(mx_frame):
        off = WAL_HEADER + i * frame_size
        fh = os.pread(wal_fd, WAL_FRAME_HEADER, off)
        if len(fh) != WAL_FRAME_HEADER or fh[8:16] != salt:
            raise SnapshotFailed(f"WAL frame {i + 1} does not belong to the current WAL generation")
        pages[struct.unpack_from(">I", fh)[0]] = off + WAL_FRAME_HEADER
    return pages


def _check_database_file(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise SnapshotFailed(f"source database {path} does not exist", hint="check the source's path in the config") from None
    except OSError as exc:
        raise SnapshotFailed(f"cannot read source database {path}: {exc.strerror}") from None
    if head and head != SQLITE_MAGIC:
        raise SnapshotFailed(f"{path} is not a SQLite database (bad header)")


@contextmanager
def open_snapshot(path: Path, *, now: Callable[[], datetime], busy_timeout: float = 30.0,
                  check: str = "off") -> Iterator[Snapshot]:
    """Hold a consistent snapshot of the database at `path` for the duration of the block; `check`
    ('quick', 'full', 'off') is run inside its read transaction and its findings are `info.problems`."""
    path = Path(path)
    _check_database_file(path)
    deadline = time.monotonic() + busy_timeout
    with ExitStack() as fds, ExitStack() as conns:
        try:
            reader = _connect(path, busy_timeout)
            conns.callback(reader.close)
            mode = reader.execute("PRAGMA journal_mode").fetchone()[0].lower()
            page_size = reader.execute("PRAGMA page_size").fetchone()[0]
            db_fd = os.open(path, os.O_RDONLY)
            fds.callback(os.close, db_fd)
            wal_fd = None
            wal_pages: dict[int, int] = {}
            if mode == "wal":
                shm_fd = os.open(f"{path}-shm", os.O_RDWR)
                fds.callback(os.close, shm_fd)
                wal_fd = os.open(f"{path}-wal", os.O_RDONLY)
                fds.callback(os.close, wal_fd)
                _lock_checkpoints(shm_fd, deadline)
                writer = _connect(path, max(0.1, deadline - time.monotonic()))
                try:
                    writer.execute("BEGIN IMMEDIATE")
                    reader.execute("BEGIN")
                    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    wal_pages = _index_wal(shm_fd, wal_fd, page_size)
                finally:
                    if writer.in_transaction:
                        writer.execute("ROLLBACK")
                    writer.close()
            else:
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
            created_at = now()
            page_count = reader.execute("PRAGMA page_count").fetchone()[0]
            problems = check_source(reader, check)
            try:
                schema_hash, tables = schema_and_counts(reader)
            except sqlite3.DatabaseError as exc:
                if not problems:
                    raise
                schema_hash, tables = "", {}
                problems += (f"counting rows: {exc}",)
        except sqlite3.Error as exc:
            raise SnapshotFailed(f"cannot snapshot {path}: {exc}", hint="is it a SQLite database the service can open read-write?") from None
        except OSError as exc:
            raise SnapshotFailed(f"cannot snapshot {path}: {exc.strerror or exc}") from None
        info = SnapshotInfo(page_size, page_count, mode, schema_hash, tables, created_at, problems)
        yield Snapshot(info, db_fd, wal_fd, wal_pages)
        reader.execute("ROLLBACK")
