"""Running one backup: snapshot once, pick the pages the strategy needs, stream them to every destination.

A backup becomes visible on a destination when its sidecar is committed, which happens only after its
artifact is committed; the catalog and the page-hash cache are updated after that. A copy that fails
removes what it wrote at once (its temp file, or its artifact when the sidecar failed); a crash at any
point leaves temp files or an orphaned artifact, which the next backup of the source removes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog
from structlog.contextvars import bound_contextvars

from backupd.core import chain
from backupd.core.ids import artifact_key, new_backup_id, sidecar_key
from backupd.core.manifest import Manifest, Sidecar
from backupd.core.metadata import check_metadata
from backupd.core.source_health import flagged_strategy, source_warnings
from backupd.core.strategy import AutoPolicy, ChangeMeasure, choose_strategy, policy_met
from backupd.core.vocab import REQUESTED_STRATEGIES, JobStatus
from backupd.destinations.base import classify_os_error
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext
from backupd.engine.deletions import remove_failed_copy
from backupd.engine.inventory import reconcile
from backupd.engine.pagecache import HASH_SIZE, PageHashes, chunk_hashes, page_hash
from backupd.engine.progress import ProgressSink, Reporter
from backupd.engine.reading import choose_copy, iter_page_blocks
from backupd.engine.snapshot import Snapshot, open_snapshot
from backupd.engine.stream import ArtifactReader, ArtifactWriter
from backupd.errors import BackupdError, Cancelled, MissingChainMember, UsageError

log = structlog.get_logger("backupd.backup")
BLOCK_TARGET = 1024 * 1024


@dataclass
class Bases:
    """What a delta can be computed against."""

    prev: CatalogBackup | None
    full: CatalogBackup | None
    last_hashes: PageHashes | None
    full_hashes: PageHashes | None
    chain_length: int
    why_unusable: str
    lacking: dict[str, str] = field(default_factory=dict)  # destinations that cannot take a delta, and why


def hashes_from_destination(ctx: EngineContext, backup_id: str) -> PageHashes:
    """Rebuild the page hashes as of `backup_id` by reading its chain back from a destination."""
    by_id = {b.backup_id: b for b in ctx.catalog.backups()}
    members = chain.resolve_chain(backup_id, by_id)
    target_m = members[-1].manifest
    ph = PageHashes.empty(backup_id, target_m.page_size, 0)
    for member in members:
        ph.resize(member.manifest.page_count)
        target, copy = choose_copy(ctx, member)
        for numbers, pages in iter_page_blocks(target, copy, member.manifest):
            ps = member.manifest.page_size
            for i, pgno in enumerate(numbers):
                if pgno <= member.manifest.page_count:
                    ph.set(pgno, page_hash(pages[i * ps : (i + 1) * ps]))
    return ph


def _load_hashes(ctx: EngineContext, source: str, which: str, backup: CatalogBackup) -> tuple[PageHashes | None, str]:
    """The page hashes as of `backup`: from the cache `which`, or another cache holding the same backup
    (a chain that just branched off), else rebuilt from a destination."""
    for name in dict.fromkeys((which, "last", "full")):
        cached = ctx.pagecache.load(source, name, backup.backup_id)
        if cached is not None:
            return cached, ""
    try:
        ph = hashes_from_destination(ctx, backup.backup_id)
    except BackupdError as exc:
        reason = f"page-hash cache for {backup.backup_id} is missing and could not be rebuilt: {exc}"
        log.warning("page_cache_unrecoverable", which=which, backup_id=backup.backup_id, error=str(exc))
        return None, reason
    ctx.pagecache.save(source, which, ph)
    log.info("page_cache_rebuilt", which=which, backup_id=backup.backup_id, pages=ph.page_count)
    return ph, ""


def _why_chain_cannot_grow(ctx: EngineContext, members: list[CatalogBackup]) -> dict[str, str]:
    """The enabled destinations on which a delta on top of `members` would not be restorable, and why.

    A destination must hold the whole chain, and its newest member must be readable with the key
    configured now (a delta written with a new key on top of an old-key chain would need both)."""
    lacking: dict[str, str] = {}
    copies = {c.destination: c for c in members[-1].copies}
    for t in ctx.enabled_targets():
        missing = next((m for m in members if all(c.destination != t.name for c in m.copies)), None)
        if missing is not None:
            lacking[t.name] = f"it has no copy of {missing.backup_id} of the chain"
            continue
        try:
            with t.dest.open_read(copies[t.name].artifact_key) as f:
                ArtifactReader(f, t.keyring, what=f"backup {members[-1].backup_id} on {t.name}")
        except BackupdError as exc:
            lacking[t.name] = f"the chain cannot be extended on it: {exc}"
    return lacking


def find_bases(ctx: EngineContext, source: str, need_last: bool, need_full: bool,
               chosen: tuple[str, ...] = ()) -> Bases:
    """The backups a new one may build on. The previous backup is the newest of the same stream (sent
    to the same `chosen` destinations, or () for every enabled one), so a schedule sending hourly to a
    local disk and one sending nightly off-site each extend their own chain, with its own page-hash
    cache; a stream's first backup builds on the newest one every destination it writes to holds."""
    history = ctx.catalog.backups(source)
    by_id = {b.backup_id: b for b in history}
    same = [b for b in history if b.manifest.destinations == chosen]
    if not same:
        names = {t.name for t in ctx.enabled_targets()}
        same = [b for b in history if names <= {c.destination for c in b.copies}]
    prev = chain.newest(same)
    if prev is None:
        return Bases(None, None, None, None, 0, "no earlier backup of this source")
    try:
        members = chain.resolve_chain(prev.backup_id, by_id)
    except BackupdError as exc:
        return Bases(prev, None, None, None, 0, f"the newest backup's chain is broken: {exc}")
    if not (need_last or need_full):
        return Bases(prev, members[0], None, None, len(members) - 1, "")
    lacking = _why_chain_cannot_grow(ctx, members)
    for name, why in lacking.items():
        log.warning("chain_not_extendable", backup_id=prev.backup_id, destination=name, reason=why)
    holders, _ = chain.delta_destinations([t.name for t in ctx.enabled_targets()], lacking)
    if not holders:
        why = "; ".join(f"destination {d}: {r}" for d, r in lacking.items()) or "no enabled destination"
        return Bases(prev, members[0], None, None, len(members) - 1, why)
    cache = _stream_cache(chosen)
    last_h, why_last = _load_hashes(ctx, source, "last" + cache, prev) if need_last else (None, "")
    full_h, why_full = _load_hashes(ctx, source, "full" + cache, members[0]) if need_full else (None, "")
    return Bases(prev, members[0], last_h, full_h, len(members) - 1, why_last or why_full, lacking)


def _stream_cache(chosen: tuple[str, ...]) -> str:
    """What the page-hash cache names of a stream end with: "" for every enabled destination."""
    return "@" + "+".join(chosen) if chosen else ""


def changed_in_chunk(old: bytes, new: bytes) -> list[int]:
    """Indexes of the pages whose hash in `new` differs from `old` (missing from `old` counts as changed)."""
    if old == new:
        return []
    return [i for i in range(len(new) // HASH_SIZE)
            if old[i * HASH_SIZE : (i + 1) * HASH_SIZE] != new[i * HASH_SIZE : (i + 1) * HASH_SIZE]]


def _measure(snap: Snapshot, bases: Bases, pages_per_chunk: int) -> ChangeMeasure:
    """Count pages changed since the previous backup and since the full, in a hashing pre-pass."""
    ps = snap.info.page_size
    since_last = 0 if bases.last_hashes is not None else None
    since_full = 0 if bases.full_hashes is not None else None
    for first, data in snap.chunks(pages_per_chunk):
        hashes = chunk_hashes(data, ps)
        n = len(data) // ps
        if bases.last_hashes is not None:
            since_last += len(changed_in_chunk(bases.last_hashes.range(first, n), hashes))
        if bases.full_hashes is not None:
            since_full += len(changed_in_chunk(bases.full_hashes.range(first, n), hashes))
    return ChangeMeasure(snap.info.page_count, since_last, since_full, bases.chain_length)


def _decide(requested: str, snap: Snapshot, bases: Bases, policy: AutoPolicy, ppc: int) -> tuple[str, str]:
    if requested == "full":
        return "full", "full requested"
    if requested == "auto":
        sizes = {h.page_size for h in (bases.last_hashes, bases.full_hashes) if h is not None}
        if sizes - {snap.info.page_size}:
            return "full", f"the page size changed to {snap.info.page_size} (VACUUM with a new page_size)"
        if bases.prev is not None and bases.full_hashes is None and bases.why_unusable:
            return "full", f"auto: {bases.why_unusable}; taking a full backup"
        return choose_strategy(_measure(snap, bases, ppc), policy)
    compare = bases.last_hashes if requested == "incremental" else bases.full_hashes
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
    strategy: str = "auto",
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
        if own_job:
            job_id = ctx.catalog.job_started("backup", source)
        with bound_contextvars(job_id=job_id, source=source):
            try:
                result = _backup(writing, src, strategy, tags, description, metadata, chosen, Reporter(progress))
            except BaseException as exc:
                if own_job:
                    ctx.catalog.job_finished(job_id, "failed", error=str(exc))
                log.error("backup_failed", error=str(exc), code=getattr(exc, "code", type(exc).__name__))
                raise
            if own_job:
                ctx.catalog.job_finished(job_id, "completed", result=result.to_json())
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

    def __init__(self, target):
        self.target = target
        self.error: BaseException | None = None
        self.upload = None
        self.writer: ArtifactWriter | None = None
        self.copy: Copy | None = None
        self.published: tuple[str, str] | None = None  # (source, backup id) from artifact commit to sidecar commit

    def attempt(self, fn) -> None:
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

    def discard(self) -> list[str]:
        """Remove what this copy wrote (a failed copy keeps nothing until the next backup); returns
        the keys removed. What the medium refuses to delete now, the next backup of the source removes."""
        if self.upload is not None:
            self.upload.abort()
        if self.published is None:
            return []
        (source, backup_id), self.published = self.published, None
        return remove_failed_copy(self.target, source, backup_id, artifact_key(source, backup_id))


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
        if strategy != "full":
            reason = _skip_lacking(copies, bases.lacking, reason)
        backup_id = new_backup_id(info.created_at, secrets.token_hex(3))
        if strategy == "full":
            parent_id = base_id = None
            compare = None
        elif strategy == "incremental":
            parent_id, base_id, compare = bases.prev.backup_id, bases.full.backup_id, bases.last_hashes
        else:
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
            _commit_batch(ctx, src.name, backup_id, info, batch, manifest)
    done = [c.copy for c in copies if c.copy is not None]
    failed = {c.target.name: str(c.error) for c in copies if c.error is not None}
    if not done:
        first = next(c.error for c in copies if c.error is not None)
        raise first
    ctx.catalog.record_backup(manifest, done)
    cache = _stream_cache(chosen)
    ctx.pagecache.save(src.name, "last" + cache, new_hashes)
    if strategy == "full":
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
    header = {"kind": "artifact", "backup_id": backup_id, "source": source, "page_size": info.page_size}
    for c in batch:
        def start(c=c) -> None:
            c.upload = c.target.dest.open_write(artifact_key(source, backup_id))
            c.writer = ArtifactWriter(c.upload, header, level=c.target.compression_level,
                                      keyring=c.target.keyring, executor=ctx.executor)
        c.attempt(start)

    def send(page_numbers, data: bytes) -> None:
        for c in batch:
            c.attempt(lambda c=c: c.writer.add_pages(page_numbers, data))

    try:
        return _stream_pages(snap, compare, new_hashes, send, ppc, rep)
    except BaseException:
        for c in batch:
            if c.upload is not None:
                c.upload.abort()
        raise


def _commit_batch(ctx, source, backup_id, info, batch: list[_Copy], manifest: Manifest) -> None:
    """Finish and commit each artifact, then its sidecar: the backup exists on a destination from then on."""
    for c in batch:
        def finish(c=c) -> None:
            size, digest = c.writer.finish(manifest.to_json())
            c.upload.commit()
            c.published = (source, backup_id)
            sc = Sidecar(manifest, artifact_key(source, backup_id), size, digest, c.target.compression_level,
                         c.target.keyring is not None)
            with c.target.dest.open_write(sidecar_key(source, backup_id)) as up:
                w = ArtifactWriter(up, {"kind": "sidecar", "backup_id": backup_id, "source": source,
                                        "page_size": info.page_size},
                                   level=c.target.compression_level, keyring=c.target.keyring, executor=ctx.executor)
                w.finish(sc.to_json())
            c.published = None
            c.copy = Copy.from_sidecar(c.target.name, sc, w.size)
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
