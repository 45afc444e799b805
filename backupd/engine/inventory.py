"""What the destinations hold: reading sidecars, reconciling the catalog with them, rebuilding it.

Destinations are the truth: a backup exists on a destination once its sidecar does. An artifact without
a sidecar is the leftover of an interrupted backup and is removed by the next backup of its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from backupd.core.ids import parse_key
from backupd.core.manifest import Sidecar
from backupd.engine.catalog import Copy
from backupd.engine.context import EngineContext, Target
from backupd.engine.deletions import resume_deletions
from backupd.engine.stream import ArtifactReader
from backupd.errors import BackupdError, CorruptArtifact

log = structlog.get_logger("backupd.inventory")


def read_sidecar(target: Target, key: str) -> tuple[Sidecar, int]:
    """Read and verify one sidecar; returns it and its size in bytes."""
    with target.dest.open_read(key) as f:
        reader = ArtifactReader(f, target.keyring, what=f"sidecar {key} on {target.name}")
        if reader.header.get("kind") != "sidecar":
            raise CorruptArtifact(f"{key} on {target.name} is not a sidecar")
        payload = b""
        for _, _, payload in reader.blocks():
            pass
        size = reader.bytes_read
    sidecar = Sidecar.from_json(payload)
    parsed = parse_key(key)
    if parsed is None or parsed.backup_id != sidecar.manifest.backup_id or parsed.source != sidecar.manifest.source:
        raise CorruptArtifact(f"sidecar {key} on {target.name} describes another backup ({sidecar.manifest.backup_id})")
    return sidecar, size


@dataclass(frozen=True)
class Unreadable:
    """A sidecar on a destination that could not be read, and why (a wrong key, damage, ...)."""

    destination: str
    key: str
    error: BackupdError

    @property
    def backup_id(self) -> str | None:
        parsed = parse_key(self.key)
        return parsed.backup_id if parsed else None

    def __str__(self) -> str:
        return f"{self.destination}:{self.key}: {self.error}"

    def to_json(self) -> dict[str, object]:
        return {"destination": self.destination, "key": self.key, "backup_id": self.backup_id,
                "code": self.error.code, "error": str(self.error)}


@dataclass
class Scan:
    sidecars: dict[str, tuple[Sidecar, int]] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)  # artifacts whose sidecar is missing
    problems: list[Unreadable] = field(default_factory=list)


def scan(target: Target, source: str | None = None) -> Scan:
    """List one destination's backups (of one source, or all); unreadable sidecars become problems."""
    out = Scan()
    objects = target.dest.list(f"{source}/" if source else "")
    parsed = [(o, parse_key(o.key)) for o in objects]
    sidecar_ids = {p.backup_id for _, p in parsed if p and p.kind == "sidecar"}
    for o, p in parsed:
        if p is None:
            continue
        if p.kind == "artifact" and p.backup_id not in sidecar_ids:
            out.orphans.append(o.key)
        elif p.kind == "sidecar":
            try:
                out.sidecars[p.backup_id] = read_sidecar(target, o.key)
            except BackupdError as exc:
                out.problems.append(Unreadable(target.name, o.key, exc))
    return out


def reconcile(ctx: EngineContext, source: str) -> list[Unreadable]:
    """Bring the catalog in line with the destinations for one source; remove crash leftovers.

    Returns the sidecars that could not be read. Call with the source lock held: it deletes temp files
    and orphaned artifacts of that source, and finishes the deletions an interrupted prune left.
    """
    resume_deletions(ctx, source)
    unreadable: list[Unreadable] = []
    for target in ctx.enabled_targets():
        try:
            removed = target.dest.remove_stale_temp(f"{source}/")
            found = scan(target, source)
            for key in found.orphans:
                target.dest.delete(key)
        except BackupdError as exc:  # unreachable, or refusing writes (read-only, full): the others go on
            log.warning("destination_unreachable", destination=target.name, error=str(exc))
            continue
        if removed or found.orphans:
            log.info("leftovers_removed", destination=target.name, source=source,
                     temp_files=removed, orphan_artifacts=found.orphans)
        for problem in found.problems:
            log.warning("sidecar_unreadable", destination=target.name, problem=str(problem))
        unreadable += found.problems
        known = {b.backup_id: b for b in ctx.catalog.backups(source)}
        for backup_id, (sidecar, size) in found.sidecars.items():
            have = known.get(backup_id)
            if have is None or all(c.destination != target.name for c in have.copies):
                ctx.catalog.record_backup(sidecar.manifest, [Copy.from_sidecar(target.name, sidecar, size)])
                log.info("catalog_entry_imported", destination=target.name, backup_id=backup_id)
        for backup_id, b in known.items():
            if any(c.destination == target.name for c in b.copies) and backup_id not in found.sidecars:
                if not any(p.backup_id == backup_id for p in found.problems):
                    ctx.catalog.remove_copy(backup_id, target.name)
                    log.warning("catalog_copy_vanished", destination=target.name, backup_id=backup_id)
    return unreadable


def unreadable_error(what: str, problems: list[Unreadable]) -> BackupdError | None:
    """The error to give for `what` (a backup, a source's restore points) that exists only as the sidecars
    in `problems`: the first one's own error (WrongKey for a wrong key), naming the copies; None if none."""
    if not problems:
        return None
    first = problems[0].error
    where = ", ".join(f"{p.destination}:{p.key}" for p in problems[:5]) + (" ..." if len(problems) > 5 else "")
    count = f"{len(problems)} sidecar{'s' if len(problems) > 1 else ''}"
    return type(first)(f"{what}: {count} on the destinations cannot be read ({where}): {first.message}",
                       hint=first.hint, details={**first.details, "unreadable": [p.to_json() for p in problems]})


REBUILD_LOCK_WAIT_S = 300.0  # how long rebuild waits for a running backup, prune or resync of a source


def rebuild_catalog(ctx: EngineContext) -> dict[str, object]:
    """Recreate every backup and copy entry from the destinations' sidecars alone.

    Holds every configured source's lock, as backup, prune and resync do, so that none of them changes
    a destination between the scan and the catalog write (a backup a prune deleted is not re-added).
    """
    entries: dict[str, tuple] = {}
    problems: list[Unreadable] = []
    with ctx.all_sources_locked(REBUILD_LOCK_WAIT_S):
        for target in ctx.enabled_targets():
            found = scan(target)
            problems += found.problems
            for backup_id, (sidecar, size) in found.sidecars.items():
                manifest, copies = entries.setdefault(backup_id, (sidecar.manifest, []))
                copies.append(Copy.from_sidecar(target.name, sidecar, size))
        n = ctx.catalog.replace_all(entries.values())
    for problem in problems:
        log.warning("sidecar_unreadable", destination=problem.destination, problem=str(problem))
    log.info("catalog_rebuilt", backups=n, problems=len(problems))
    return {"backups": n, "unreadable": len(problems), "problems": [p.to_json() for p in problems]}
