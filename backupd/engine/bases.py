"""What a new backup can build on: the previous backup of its stream, its chain's full, and the page
hashes of both (from the page-hash cache, else rebuilt by reading the chain back from a destination).

A stream is the backups sent to the same chosen destinations (or to every enabled one); each extends its
own chain with its own page-hash cache. A destination lacking the chain, or unable to extend it with the
key configured now, takes no delta (`lacking`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from backupd.core import chain
from backupd.engine.catalog import CatalogBackup
from backupd.engine.context import EngineContext
from backupd.engine.copystore import chain_of, read_pages
from backupd.engine.pagecache import PageHashes, page_hash
from backupd.engine.reading import choose_copy
from backupd.engine.stream import ArtifactReader
from backupd.errors import BackupdError

log = structlog.get_logger("backupd.backup")


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
    members = chain_of(ctx, backup_id)
    target_m = members[-1].manifest
    ph = PageHashes.empty(backup_id, target_m.page_size, 0)
    for member in members:
        ph.resize(member.manifest.page_count)
        target, copy = choose_copy(ctx, member)
        for numbers, pages in read_pages(target, copy, member.manifest):
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
    cache = stream_cache(chosen)
    last_h, why_last = _load_hashes(ctx, source, "last" + cache, prev) if need_last else (None, "")
    full_h, why_full = _load_hashes(ctx, source, "full" + cache, members[0]) if need_full else (None, "")
    return Bases(prev, members[0], last_h, full_h, len(members) - 1, why_last or why_full, lacking)


def stream_cache(chosen: tuple[str, ...]) -> str:
    """What the page-hash cache names of a stream end with: "" for every enabled destination."""
    return "@" + "+".join(chosen) if chosen else ""
