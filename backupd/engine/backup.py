"""Running one backup: snapshot once, pick the pages the strategy needs, stream them to every destination.

A backup becomes visible on a destination when the copy store publishes it there (engine/copystore.py:
its artifact is committed, then its sidecar); the catalog and the page-hash cache are updated after that.
What the new backup builds on is found by engine/bases.py. A copy that fails
removes what it wrote at once (its temp file, or its artifact when the sidecar failed); a crash at any
point leaves temp files or an orphaned artifact, which the next backup of the source removes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import structlog
from structlog.contextvars import bound_contextvars

from backupd.core import chain
from backupd.core.ids import new_backup_id
from backupd.core.manifest import Manifest
from backupd.core.metadata import check_metadata
from backupd.core.source_health import flagged_strategy, source_warnings
from backupd.core.strategy import AutoPolicy, ChangeMeasure, choose_strategy, policy_met
from backupd.core.vocab import REQUESTED_STRATEGIES, JobKind, JobStatus, RequestedStrategy, Strategy
from backupd.destinations.base import classify_os_error
from backupd.engine.bases import Bases, find_bases, stream_cache
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext, Target
from backupd.engine.copystore import CopyWriter
from backupd.engine.inventory import reconcile
from backupd.engine.pagecache import HASH_SIZE, PageHashes, chunk_hashes
from backupd.engine.progress import ProgressSink, Reporter
from backupd.engine.snapshot import Snapshot, open_snapshot
from backupd.errors import BackupdError, Cancelled, MissingChainMember, UsageError, aggregate

log = structlog.get_logger("backupd.backup")
BLOCK_TARGET = 1024 * 1024


def changed_in_chunk(old: bytes, new: bytes) -> list[int]:
    """Indexes of the pages whose hash in `new` differs from `old` (missing from `old` counts as changed)."""
    if old == new:
        return []
    return [i for i in range(len(new) // HASH_SIZE)
            if old[i * HASH_SIZE : (i + 1) * HASH_SIZE] != new[i * HASH_SIZE : (i + 1) * HASH_SIZE]]


def _measure(snap: Snapshot, bases: Bases, pages_per_chunk: int) -> ChangeMeasure:
    """Count pages changed since the previous backup and since the full, in a hashing pre-pass."""
    ps = snap.info.page_size
    since_last = since_full = 0
    for first, data in snap.chunks(pages_per_chunk):
        hashes = chunk_hashes(data, ps)
        n = len(data) // ps
        if bases.last_hashes is not None:
            since_last += len(changed_in_chunk(bases.last_hashes.range(first, n), hashes))
        if bases.full_hashes is not None:
            since_full += len(changed_in_chunk(bases.full_hashes.range(first, n), hashes))
    return ChangeMeasure(snap.info.page_count, since_last if bases.last_hashes is not None else None,
                         since_full if bases.full_hashes is not None else None, bases.chain_length)


def _decide(requested: str, snap: Snapshot, bases: Bases, policy: AutoPolicy, ppc: int) -> tuple[str, str]:
    if requested == RequestedStrategy.FULL:
        return "full", "full requested"
    if requested == RequestedStrategy.AUTO:
        sizes = {h.page_size for h in (bases.last_hashes, bases.full_hashes) if h is not None}
        if sizes - {snap.info.page_size}:
            return "full", f"the page size changed to {snap.info.page_size} (VACUUM with a new page_size)"
        if bases.prev is not None and bases.full_hashes is None and bases.why_unusable:
            return "full", f"auto: {bases.why_unusable}; taking a full backup"
        return choose_strategy(_measure(snap, bases, ppc), policy)
    compare = bases.last_hashes if requested == RequestedStrategy.INCREMENTAL else bases.full_hashes
    if compare is None:
        why = bases.why_unusable or "no usable base"
        return "full", f"{requested} requested, but {why}; taking a full backup"
    if compare.page_size != snap.info.page_size:
        return "full", (f"{requested} requested, but the page size changed from {compare.page_size} to"
                        f" {snap.info.page_size} (VACUUM with a new page_size); taking a full backup")
    return requested, f"{requested} requested"


def _extendable(bases: Bases, page_size: int) -> str | None:
    """The delta the existing chain can take now, if any."""
    if bases.last_hashes is not None and bases.last_hashes.page_size == page_size:
        return "incremental"
    if bases.full_hashes is not None and bases.full_hashes.page_size == page_size:
        return "differential"
    return None


def run_backup(
    ctx: EngineContext,
    source: str,
    strategy: str = RequestedStrategy.AUTO,
    *,
    tags: tuple[str, ...] = (),
    description: str = "",
    metadata: dict[str, Any] | None = None,
    progress: ProgressSink | None = None,
    job_id: str | None = None,
    destinations: Sequence[str] | None = None,
) -> BackupResult:
    """Back up one source to every enabled destination (or to the chosen `destinations`); returns the
    recorded backup and how each copy went.

    Without `job_id` the run is recorded as a job in the catalog; the daemon passes the id of the job
    it already records."""
    if strategy not in REQUESTED_STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r} (expected {', '.join(REQUESTED_STRATEGIES)})")
    try:
        metadata = check_metadata(metadata or {})
    except ValueError as exc:
        raise UsageError(f"metadata: {exc}", hint="give --meta KEY=VALUE (repeatable)") from None
    src = ctx.config.source(source)
    chosen = tuple(sorted(set(destinations or ())))
    writing = ctx.only(chosen) if chosen else ctx
    with ctx.source_lock(source):
        ctx.catalog.fail_interrupted_jobs()
        own_job = job_id is None
        jid = ctx.catalog.job_started(JobKind.BACKUP, source) if job_id is None else job_id
        with bound_contextvars(job_id=jid, source=source):
            try:
                result = _backup(writing, src, strategy, tags, description, metadata, chosen, Reporter(progress))
            except BaseException as exc:
                if own_job:
                    ctx.catalog.job_finished(jid, JobStatus.FAILED, error=str(exc))
                log.error("backup_failed", error=str(exc), code=getattr(exc, "code", type(exc).__name__))
                raise
            if own_job:
                ctx.catalog.job_finished(jid, JobStatus.COMPLETED, result=result.to_json())
    _prune_after(ctx, source)
    return result


@dataclass(frozen=True)
class BackupResult(CatalogBackup):
    """A recorded backup plus how its fan-out went: `failed` maps destinations to what went wrong."""

    failed: dict[str, str] = field(default_factory=dict)
    policy: str = "all"

    @property
    def status(self) -> str:
        if not self.failed:
            return JobStatus.COMPLETED_WITH_WARNINGS if self.manifest.warnings else JobStatus.COMPLETED
        met = policy_met(len(self.copies), len(self.copies) + len(self.failed), self.policy)
        return JobStatus.COMPLETED_WITH_WARNINGS if met else JobStatus.PARTIAL

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["status"] = self.status
        if self.failed:
            d["failed_destinations"] = dict(self.failed)
        return d


class _Copy:
    """One destination's share of a backup. Its failures are recorded, not raised, so the other
    destinations carry on; only cancellation and errors of the source itself stop the backup."""

    def __init__(self, target: Target):
        self.target = target
        self.error: BackupdError | None = None
        self.writer: CopyWriter | None = None
        self.copy: Copy | None = None

    def attempt(self, fn: Callable[[], None]) -> None:
        if self.error is not None:
            return
        try:
            fn()
        except Cancelled:
            self.discard()
            raise
        except (BackupdError, OSError) as exc:
            if isinstance(exc, OSError):
                exc = classify_os_error(exc, f"destination {self.target.name!r}: writing the backup")
            self.error = exc
            removed = self.discard()
            log.warning("destination_copy_failed", destination=self.target.name, error=str(exc),
                        code=getattr(exc, "code", type(exc).__name__), removed=removed)

    def add_pages(self, page_numbers: list[int] | range, data: bytes) -> None:
        assert self.writer is not None  # attempt() runs nothing for a copy that failed to start
        self.writer.add_pages(page_numbers, data)

    def discard(self) -> list[str]:
        """Remove what this copy wrote (a failed copy keeps nothing until the next backup); returns the keys removed."""
        return self.writer.discard() if self.writer is not None else []


def _source_warnings(source: str, info, prev: Manifest | None) -> tuple[str, ...]:
    """The snapshot's source check and its size against the previous backup, logged as events."""
    warnings = source_warnings(info.problems, info.page_count, info.tables,
                               prev.page_count if prev else None, prev.tables if prev else None)
    previous = prev.backup_id if prev else None
    for w in warnings:
        code, why = w.split(": ", 1)
        if code == "source_corrupt":
            log.warning("source_corrupt", source=source, detail=why, previous_backup_id=previous)
        else:
            log.warning("source_shrunk", source=source, detail=why, previous_backup_id=previous)
    return warnings


def _prune_after(ctx: EngineContext, source: str) -> None:
    """Retention runs after every backup; its failures are logged, never the backup's."""
    from backupd.engine.prune import has_policy, run_prune

    if not has_policy(ctx.config):
        return
    try:
        run_prune(ctx, source, dry_run=False)
    except BackupdError as exc:
        log.warning("prune_failed", source=source, error=str(exc))


def _backup(ctx, src, requested, tags, description, metadata, chosen: tuple[str, ...], rep: Reporter) -> BackupResult:
    started = time.monotonic()
    rep.phase("reconciling")
    reconcile(ctx, src.name)
    need_last = requested in ("incremental", "auto")
    need_full = requested in ("differential", "auto")
    bases = find_bases(ctx, src.name, need_last, need_full, chosen)
    policy = AutoPolicy(ctx.config.strategy.max_chain_length, ctx.config.strategy.full_change_ratio,
                        ctx.config.strategy.differential_cost_ratio)
    fanout = ctx.config.fanout
    copies = [_Copy(t) for t in ctx.enabled_targets()]
    # against the newest unflagged backup, so every one of a run of empty backups is flagged
    good = [b.manifest for b in ctx.catalog.backups(src.name) if not b.manifest.warnings]
    with open_snapshot(src.path, now=ctx.now, check=src.source_check) as snap:
        info = snap.info
        warnings = _source_warnings(src.name, info, good[-1] if good else None)
        ppc = max(1, BLOCK_TARGET // info.page_size)
        rep.phase("measuring", info.page_size * info.page_count)
        strategy, reason = _decide(requested, snap, bases, policy, ppc)
        strategy, reason = flagged_strategy(strategy, reason, warnings, requested, _extendable(bases, info.page_size))
        if strategy != Strategy.FULL:
            reason = _skip_lacking(copies, bases.lacking, reason)
        backup_id = new_backup_id(info.created_at, secrets.token_hex(3))
        if strategy == Strategy.FULL:
            parent_id = base_id = None
            compare = None
        elif strategy == Strategy.INCREMENTAL:
            assert bases.prev is not None and bases.full is not None  # a delta is chosen only on top of both
            parent_id, base_id, compare = bases.prev.backup_id, bases.full.backup_id, bases.last_hashes
        else:
            assert bases.full is not None
            parent_id = base_id = bases.full.backup_id
            compare = bases.full_hashes
        log.info("backup_started", backup_id=backup_id, strategy=strategy, reason=reason,
                 destinations=[c.target.name for c in copies if c.error is None])
        new_hashes = PageHashes.empty(backup_id, info.page_size, info.page_count)
        manifest: Manifest | None = None
        step = fanout.max_parallel_destinations
        for i in range(0, len(copies), step):  # each batch is one pass over the snapshot
            batch = copies[i : i + step]
            rep.phase("writing", info.page_size * info.page_count)
            changed = _write_batch(ctx, src.name, backup_id, info, batch, snap, compare, new_hashes, ppc, rep)
            if manifest is None:
                manifest = Manifest(
                    backup_id=backup_id, source=src.name, strategy=strategy, parent_id=parent_id, base_id=base_id,
                    created_at=info.created_at.isoformat(), page_size=info.page_size, page_count=info.page_count,
                    changed_pages=changed, journal_mode=info.journal_mode, schema_hash=info.schema_hash,
                    tables=info.tables, strategy_reason=reason, tags=tuple(tags), description=description,
                    metadata=metadata, destinations=chosen, warnings=warnings,
                )
            rep.phase("committing")
            _commit_batch(batch, manifest)
    done = [c.copy for c in copies if c.copy is not None]
    failed = {c.target.name: str(c.error) for c in copies if c.error is not None}
    if not done:
        raise aggregate([c.error for c in copies if c.error is not None])
    assert manifest is not None  # some copy was done, so a batch ran
    ctx.catalog.record_backup(manifest, done)
    cache = stream_cache(chosen)
    ctx.pagecache.save(src.name, "last" + cache, new_hashes)
    if strategy == Strategy.FULL:
        ctx.pagecache.save(src.name, "full" + cache, new_hashes)
    result = BackupResult(manifest, tuple(done), failed, fanout.success_policy)
    log.info("backup_completed", backup_id=backup_id, strategy=strategy, parent_id=parent_id,
             changed_pages=manifest.changed_pages, page_count=info.page_count, logical_bytes=manifest.logical_bytes,
             stored_bytes=result.stored_bytes, status=result.status, failed_destinations=failed,
             duration_s=round(time.monotonic() - started, 3))
    return result


def _skip_lacking(copies: list[_Copy], lacking: dict[str, str], reason: str) -> str:
    """A delta is not written to a destination lacking its chain: that copy fails with the reason,
    so resync (automatic in the daemon) brings it up; returns the backup's reason, naming them."""
    _, note = chain.delta_destinations([c.target.name for c in copies], lacking)
    for c in copies:
        if c.target.name in lacking:
            c.error = MissingChainMember(
                f"destination {c.target.name!r} lacks the chain ({lacking[c.target.name]}): no delta written there",
                hint="`backupd resync` copies the chain and this backup onto it (the daemon does so itself)",
                details={"destination": c.target.name})
    return f"{reason}; {note}" if note else reason


def _write_batch(ctx, source, backup_id, info, batch: list[_Copy], snap, compare, new_hashes, ppc, rep) -> int:
    """Stream the pages to every copy of the batch; returns how many pages the backup stores."""
    for c in batch:
        def start(c: _Copy = c) -> None:
            c.writer = CopyWriter(c.target, source, backup_id, info.page_size, ctx.executor)
        c.attempt(start)

    def send(page_numbers: list[int] | range, data: bytes) -> None:
        for c in batch:
            c.attempt(partial(c.add_pages, page_numbers, data))

    try:
        return _stream_pages(snap, compare, new_hashes, send, ppc, rep)
    except BaseException:
        for c in batch:
            c.discard()
        raise


def _commit_batch(batch: list[_Copy], manifest: Manifest) -> None:
    """Publish each copy (its artifact, then its sidecar): the backup exists on a destination from then on."""
    for c in batch:
        def finish(c: _Copy = c) -> None:
            assert c.writer is not None  # attempt() runs nothing for a copy that failed to start
            c.copy = c.writer.publish(manifest)
        c.attempt(finish)


def _stream_pages(snap: Snapshot, compare: PageHashes | None, new_hashes: PageHashes,
                  emit: Callable[[Any, bytes], None], ppc: int, rep: Reporter) -> int:
    """Hash every page, `emit` blocks of the ones `compare` lacks (all when None); returns their count."""
    ps = snap.info.page_size
    numbers: list[int] = []
    buf = bytearray()
    changed = 0

    for first, data in snap.chunks(ppc):
        n = len(data) // ps
        hashes = chunk_hashes(data, ps)
        new_hashes.set_range(first, hashes)
        rep.advance(len(data))
        if compare is None:
            emit(range(first, first + n), data)
            changed += n
            continue
        for i in changed_in_chunk(compare.range(first, n), hashes):
            numbers.append(first + i)
            buf += data[i * ps : (i + 1) * ps]
        if len(numbers) >= ppc:
            changed += len(numbers)
            emit(numbers, bytes(buf))
            numbers, buf = [], bytearray()
    if numbers:
        changed += len(numbers)
        emit(numbers, bytes(buf))
    return changed
