"""Reading the pages of a backup back from a destination, verified, with the copy to read chosen by
`[restore] copy_selection` or the operation's own (core.copy_order)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from backupd.core import format as fmt
from backupd.core.copy_order import CopyState, order_copies
from backupd.core.manifest import Manifest
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext, Target
from backupd.engine.stream import ArtifactReader
from backupd.errors import CorruptArtifact, MissingChainMember, NotFound


def copies_in_order(ctx: EngineContext, backup: CatalogBackup, destination: str | None = None
                    ) -> list[tuple[Target, Copy]]:
    """Every readable copy of `backup` (only the one on `destination` when given), in the order to try
    them, as the context's copy selection says (core.copy_order: a copy that failed validation comes last)."""
    found = [(t, c) for t in ctx.enabled_targets() for c in backup.copies
             if c.destination == t.name and destination in (None, t.name)]
    return order_copies(found, ctx.copy_selection, _state)


def _state(found: tuple[Target, Copy]) -> CopyState:
    target, copy = found
    return CopyState(target.name, target.priority, copy.verified_at, copy.failed_at)


def choose_copy(ctx: EngineContext, backup: CatalogBackup, destination: str | None = None) -> tuple[Target, Copy]:
    """The copy to read first (see copies_in_order)."""
    found = copies_in_order(ctx, backup, destination)
    if found:
        return found[0]
    where = f"destination {destination}" if destination else "any configured destination"
    raise MissingChainMember(
        f"backup {backup.backup_id} has no copy on {where}",
        hint="add the destination that holds it to the config, or run `backupd catalog rebuild`",
        details={"missing": backup.backup_id},
    )


def iter_page_blocks(
    target: Target, copy: Copy, expect: Manifest, prefetch: bool = False
) -> Iterator[tuple[tuple[int, ...], memoryview]]:
    """Yield (page numbers, pages) per block of one artifact; after the last block, check its manifest.

    Raises CorruptArtifact naming the backup and the block when anything does not verify.
    """
    what = f"backup {expect.backup_id} ({copy.artifact_key} on {target.name})"
    try:
        f = target.dest.open_read(copy.artifact_key)
    except NotFound:
        raise MissingChainMember(
            f"{what} is missing from the destination",
            hint="run `backupd catalog rebuild`, then restore a restore point whose chain is complete",
            details={"missing": expect.backup_id, "destination": target.name},
        ) from None
    with f:
        reader = ArtifactReader(f, target.keyring, what=what)
        h = reader.header
        if h.get("kind") != "artifact" or h.get("backup_id") != expect.backup_id or h.get("page_size") != expect.page_size:
            raise CorruptArtifact(f"{what}: header describes another backup", details={"backup_id": expect.backup_id})
        for seq, kind, payload in reader.blocks(prefetch):
            if kind == fmt.KIND_PAGES:
                try:
                    numbers, pages = fmt.decode_pages(payload, expect.page_size)
                except CorruptArtifact as exc:
                    raise CorruptArtifact(f"{what}: block {seq}: {exc.message}", details={"block": seq}) from None
                yield numbers, pages
            elif Manifest.from_dict(_json(payload)) != expect:
                raise CorruptArtifact(f"{what}: embedded manifest differs from the sidecar")


def _json(payload: bytes):
    try:
        return json.loads(payload)
    except ValueError:
        raise CorruptArtifact("embedded manifest is not valid JSON") from None
