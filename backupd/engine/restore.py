"""Restoring a backup: resolve its chain, write each page once (newest version first), validate, then
move the file into place atomically. A failure at any step removes the temp file and leaves the
target untouched.
"""

from __future__ import annotations

import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from glob import escape as glob_escape
from pathlib import Path

import structlog

from backupd.core import chain
from backupd.engine.catalog import CatalogBackup, pid_alive
from backupd.destinations.local import fsync_dir
from backupd.engine.context import EngineContext
from backupd.engine.inventory import Unreadable, reconcile, unreadable_error
from backupd.engine.progress import ProgressSink, Reporter
from backupd.engine.copystore import read_pages
from backupd.engine.reading import choose_copy, copies_in_order
from backupd.engine.restored_checks import check_restored
from backupd.engine.tables import copy_tables
from backupd.errors import (CorruptArtifact, DestinationError, MissingChainMember, NoRestorePoint, NotFound,
                            PathTooLong,
                            RestoreFailed, TargetExists, UsageError)

log = structlog.get_logger("backupd.restore")
TEMP_SUFFIX = ".backupd-restore-tmp"
SIDE_SUFFIX = "-journal"  # the longest suffix SQLite adds to a database's name for its side files


@dataclass(frozen=True)
class RestorePlan:
    target: CatalogBackup
    chain: list[CatalogBackup]
    gap: timedelta | None  # for --at: how far before the asked instant the restore point is


def plan_restore(ctx: EngineContext, source: str, *, backup_id: str | None = None, at: datetime | None = None) -> RestorePlan:
    """Pick the restore point and its chain; reconciles with the destinations when the catalog lacks it."""
    ctx.config.source(source)
    if (backup_id is None) == (at is None):
        raise UsageError("give exactly one of --backup ID or --at TIME")
    unreadable: list[Unreadable] = []
    for attempt in (0, 1):
        backups = ctx.catalog.backups(source)
        by_id = {b.backup_id: b for b in backups}
        if backup_id is not None and backup_id in by_id:
            return RestorePlan(by_id[backup_id], chain.resolve_chain(backup_id, by_id), None)
        if at is not None and backups:
            target, gap = chain.restore_point_at(backups, at)
            return RestorePlan(target, chain.resolve_chain(target.backup_id, by_id), gap)
        if attempt == 0:
            with ctx.source_lock(source):
                unreadable = reconcile(ctx, source)
    if backup_id is not None:
        cannot_read = unreadable_error(f"backup {backup_id}", [u for u in unreadable if u.backup_id == backup_id])
        if cannot_read is not None:
            raise cannot_read
        raise NotFound(f"backup {backup_id} of source {source!r} not found on any destination",
                       hint="list restore points with `backupd list`")
    cannot_read = unreadable_error(f"no readable restore point of source {source!r}", unreadable)
    if cannot_read is not None:
        raise cannot_read
    assert at is not None  # exactly one of backup_id and at, checked above
    raise NoRestorePoint(f"no restore point at or before {at.isoformat()}",
                         hint="list restore points with `backupd list` and pick a later time")


def describe_plan(ctx: EngineContext, plan: RestorePlan) -> dict:
    """Which copy each chain member would be read from (and the fallbacks), after checking that each
    copy still exists; MissingChainMember when a member is missing everywhere. Writes nothing."""
    chain = []
    for member in plan.chain:
        copies = [(t, c) for t, c in copies_in_order(ctx, member) if _present(t, c)]
        if not copies:
            raise MissingChainMember(
                f"backup {member.backup_id} of the chain is missing on every configured destination",
                hint="restore a restore point whose chain is complete, or add the destination holding it",
                details={"missing": member.backup_id},
            )
        chain.append({"id": member.backup_id, "strategy": member.strategy, "destination": copies[0][0].name,
                      "artifact_key": copies[0][1].artifact_key, "stored_bytes": copies[0][1].stored_bytes,
                      "fallbacks": [t.name for t, _ in copies[1:]]})
    return {"backup_id": plan.target.backup_id, "gap_s": plan.gap.total_seconds() if plan.gap is not None else None,
            "chain": chain}


def _present(target, copy) -> bool:
    try:
        target.dest.stat(copy.artifact_key)
        return True
    except (NotFound, DestinationError):
        return False


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    path: Path
    chain: list[str]
    gap: timedelta | None
    tables: list[str] | None
    bytes_written: int
    duration_s: float

    def to_json(self) -> dict:
        return {"backup_id": self.backup_id, "path": str(self.path), "chain": self.chain,
                "gap_s": self.gap.total_seconds() if self.gap is not None else None,
                "tables": self.tables, "bytes_written": self.bytes_written, "duration_s": round(self.duration_s, 3)}


def _limits(directory: Path) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) of the file system holding `directory`; Linux's usual values when it cannot say."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX"), os.pathconf(directory, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _temp_stem(path: Path) -> str:
    """The target's name as temp files carry it, cut (by bytes) so the temp name and its -journal fit NAME_MAX."""
    room = _limits(path.parent)[0] - len(SIDE_SUFFIX) - len(f"..{2**22}-{'0' * 8}{TEMP_SUFFIX}")
    return os.fsdecode(os.fsencode(path.name)[:room])


def _temp_beside(path: Path) -> Path:
    """`.<name>.<pid>-<random>.backupd-restore-tmp`: the pid lets a later restore tell a dead one's leftovers."""
    return path.with_name(f".{_temp_stem(path)}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def check_target_length(to: Path) -> None:
    """PathTooLong when `to` (absolute), its temp file or SQLite's -journal beside either passes NAME_MAX or PATH_MAX."""
    name_max, path_max = _limits(to.parent)
    for part in to.parts[1:-1]:
        if len(os.fsencode(part)) > name_max:
            raise PathTooLong(f"restore target {to}: directory name {part[:40]!r}… is {len(os.fsencode(part))} bytes, "
                              f"longer than the {name_max} bytes the file system allows",
                              hint="choose a shorter path for --to")
    name = len(os.fsencode(to.name))
    if name > name_max - len(SIDE_SUFFIX):
        raise PathTooLong(f"restore target {to}: its file name is {name} bytes; at most {name_max - len(SIDE_SUFFIX)} "
                          f"leave room for the {SIDE_SUFFIX} file SQLite keeps beside a database "
                          f"(the file system allows {name_max})", hint="choose a shorter file name for --to")
    longest = len(os.fsencode(_temp_beside(to))) + len(SIDE_SUFFIX)
    if longest >= path_max:
        raise PathTooLong(f"restore target {to}: the path is {len(os.fsencode(to))} bytes; with the temp file and "
                          f"SQLite's {SIDE_SUFFIX} beside it that passes the {path_max} bytes the file system allows",
                          hint="choose a shorter path for --to")


def remove_dead_restore_temps(target: Path) -> list[Path]:
    """Delete temp files beside `target` left by restores whose process no longer exists."""
    removed = []
    prefix = f".{_temp_stem(target)}."
    for p in target.parent.glob(f".{glob_escape(_temp_stem(target))}.*{TEMP_SUFFIX}*"):
        middle = p.name[len(prefix):].split(TEMP_SUFFIX)[0]
        pid = middle.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.info("leftovers_removed", restore_temp_files=[str(p) for p in removed])
    return removed


def _remove_db_files(path: Path, *, main: bool = True) -> None:
    """Remove a database's -wal, -shm and -journal files, and the database itself unless `main` is False."""
    for suffix in ("", "-wal", "-shm", "-journal")[0 if main else 1:]:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def materialize(ctx: EngineContext, plan: RestorePlan, out: Path, rep: Reporter) -> int:
    """Write the database of `plan.target` into the new file `out` (not yet fsynced); returns bytes written.

    Members are read newest first and each page is written once: the first version met is the newest.
    """
    m = plan.target.manifest
    ps, count = m.page_size, m.page_count
    written = bytearray(count)  # one flag per page
    rep.phase("restoring", ps * count)
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, ps * count)
        for member in reversed(plan.chain):
            _read_member(ctx, member, fd, ps, written, rep)
        missing = written.find(0)
        if missing != -1:
            raise CorruptArtifact(
                f"the chain of backup {m.backup_id} does not contain page {missing + 1} of its {count} pages",
                hint="the full backup of this chain is incomplete; verify it with `backupd verify`",
            )
    finally:
        os.close(fd)
    return ps * count


def _read_member(ctx: EngineContext, member: CatalogBackup, fd: int, ps: int, written: bytearray,
                 rep: Reporter) -> None:
    """Apply one chain member, moving to the next copy when one fails its checksum or its transfer.

    Pages already written came from authenticated blocks, so the next copy only fills what is left."""
    candidates = copies_in_order(ctx, member)
    if not candidates:
        choose_copy(ctx, member)  # raises MissingChainMember with the explanation
    for n, (target, copy) in enumerate(candidates):
        try:
            for numbers, pages in read_pages(target, copy, member.manifest, prefetch=True):
                _write_fresh_pages(fd, numbers, pages, ps, written, rep)
            return
        except (CorruptArtifact, MissingChainMember, DestinationError) as exc:
            if isinstance(exc, CorruptArtifact):  # damaged, not merely unreachable: read it last from now on
                ctx.catalog.mark_failed(member.backup_id, target.name)
            if n == len(candidates) - 1:
                raise
            log.warning("restore_copy_failed", backup_id=member.backup_id, destination=target.name,
                        next_destination=candidates[n + 1][0].name, error=str(exc))


def _write_fresh_pages(fd: int, numbers: tuple[int, ...], pages: memoryview, ps: int, written: bytearray,
                       rep: Reporter) -> None:
    """pwrite the pages not written yet (within the page count), coalescing consecutive runs."""
    n, count = len(numbers), len(written)
    if not n:
        return
    first = numbers[0]
    if numbers[-1] <= count and numbers == tuple(range(first, first + n)) and written.find(1, first - 1, first - 1 + n) == -1:
        os.pwrite(fd, pages, (first - 1) * ps)
        written[first - 1 : first - 1 + n] = b"\x01" * n
        rep.advance(n * ps)
        return
    run_start, run_len = 0, 0
    for i, pgno in enumerate(numbers):
        fresh = pgno <= count and not written[pgno - 1]
        if fresh:
            written[pgno - 1] = 1
            if run_len and numbers[run_start + run_len - 1] == pgno - 1 and run_start + run_len == i:
                run_len += 1
                continue
        if run_len:
            os.pwrite(fd, pages[run_start * ps : (run_start + run_len) * ps], (numbers[run_start] - 1) * ps)
            rep.advance(run_len * ps)
        run_start, run_len = (i, 1) if fresh else (0, 0)
    if run_len:
        os.pwrite(fd, pages[run_start * ps : (run_start + run_len) * ps], (numbers[run_start] - 1) * ps)
        rep.advance(run_len * ps)


def check_target(to: Path, overwrite: bool) -> None:
    """Refuse a target before anything is read (the daemon, before it queues the job): too long a
    name, an existing file without `overwrite` (TargetExists), a directory."""
    check_target_length(to)
    if to.exists() and not overwrite:
        raise TargetExists(f"{to} already exists", hint="choose a new path, or pass --overwrite to replace it")
    if to.is_dir():
        raise UsageError(f"{to} is a directory; give the path of the database file to create")


def run_restore(
    ctx: EngineContext,
    source: str,
    to: Path,
    *,
    backup_id: str | None = None,
    at: datetime | None = None,
    tables: list[str] | None = None,
    overwrite: bool = False,
    progress: ProgressSink | None = None,
) -> RestoreResult:
    """Restore a backup (or the restore point at `at`) to `to`; see the module docstring."""
    started = time.monotonic()
    to = Path(to).absolute()
    check_target(to, overwrite)
    if overwrite and Path(f"{to}-wal").exists() and Path(f"{to}-wal").stat().st_size > 0:
        raise RestoreFailed(
            f"{to} has a non-empty WAL ({to}-wal): it is in use",
            hint="stop its writers (or run PRAGMA wal_checkpoint(TRUNCATE)) before restoring over it",
        )
    if not to.parent.is_dir():
        raise UsageError(f"directory {to.parent} does not exist")
    plan = plan_restore(ctx, source, backup_id=backup_id, at=at)
    remove_dead_restore_temps(to)
    m = plan.target.manifest
    if tables is not None:
        missing = [t for t in tables if t not in m.tables]
        if missing:
            raise UsageError(f"backup {m.backup_id} has no table(s) {', '.join(missing)}"
                             f" (it has: {', '.join(sorted(m.tables)) or 'none'})")
    rep = Reporter(progress)
    log.info("restore_started", source=source, backup_id=m.backup_id, chain=[b.backup_id for b in plan.chain],
             to=str(to), tables=tables)
    full_tmp = _temp_beside(to)
    final_tmp = full_tmp
    try:
        nbytes = materialize(ctx, plan, full_tmp, rep)
        if tables is not None:
            final_tmp = _temp_beside(to)
            copy_tables(full_tmp, final_tmp, tables)
            _remove_db_files(full_tmp)
            nbytes = os.stat(final_tmp).st_size  # the file installed, not the whole database it was copied from
        rep.phase("validating")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync") as pool:
            flushed = pool.submit(_fsync_file, final_tmp)  # disk-bound, overlaps the CPU-bound checks
            check_restored(final_tmp, m, tables)
            flushed.result()
        _remove_db_files(final_tmp, main=False)
        _install(final_tmp, to, overwrite)
    except BaseException as exc:
        _remove_db_files(full_tmp)
        _remove_db_files(final_tmp)
        log.error("restore_failed", source=source, backup_id=m.backup_id, error=str(exc),
                  code=getattr(exc, "code", type(exc).__name__))
        raise
    result = RestoreResult(m.backup_id, to, [b.backup_id for b in plan.chain], plan.gap, tables, nbytes,
                           time.monotonic() - started)
    log.info("restore_completed", source=source, **{k: v for k, v in result.to_json().items() if k != "path"},
             path=str(to))
    return result


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, to: Path, overwrite: bool) -> None:
    """Move the validated file into place: replace atomically (keeping the replaced file's mode and
    owner), or refuse to clobber a file that appeared meanwhile. New files are created mode 0600."""
    if overwrite:
        try:
            st = os.stat(to)
            os.chmod(tmp, st.st_mode & 0o7777)
            os.chown(tmp, st.st_uid, st.st_gid)
        except (FileNotFoundError, PermissionError):
            pass  # no old file, or not ours to give away: the new file keeps our owner
        _remove_db_files(to, main=False)
        os.replace(tmp, to)
    else:
        try:
            os.link(tmp, to)
        except FileExistsError:
            raise TargetExists(f"{to} appeared during the restore", hint="choose a new path or pass --overwrite") from None
        os.unlink(tmp)
    fsync_dir(to.parent)
