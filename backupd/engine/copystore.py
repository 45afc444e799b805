"""The copy store: publishing one copy of a backup on a destination, reading one back verified, and
the chain of backups a restore point needs (resolved in core.chain).

Publishing: the artifact is written and committed first, then its sidecar; a copy exists on a
destination once its sidecar does. A copy that fails is removed at once (`CopyWriter.discard`: its
temp file, or its artifact when the sidecar failed); a crash in between leaves an orphaned artifact,
which no listing shows and the next reconcile of its source removes (engine/inventory.py).

Reading: `CopyReader` checks that the artifact's header names the backup; its blocks authenticate as
they are read (AEAD tag or keyed checksum), page blocks decode into page numbers and pages, and the
trailer is checked after the last block. Anything that does not verify raises CorruptArtifact naming
the copy and, when known, the block. `read_pages` also checks the embedded manifest.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Generator, Iterator
from concurrent.futures import Executor
from contextlib import closing
from typing import Any, BinaryIO, cast

from backupd.core import chain
from backupd.core import format as fmt
from backupd.core.ids import artifact_key, sidecar_key
from backupd.core.manifest import Manifest, Sidecar
from backupd.destinations.base import Upload
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import EngineContext, Target
from backupd.engine.deletions import remove_failed_copy
from backupd.engine.prefetch import background
from backupd.engine.stream import ArtifactReader, ArtifactWriter
from backupd.errors import CorruptArtifact, MissingChainMember, NotFound

PREFETCH_DEPTH = 4  # blocks read and authenticated ahead of the decompressing thread


def chain_of(ctx: EngineContext, backup_id: str) -> list[CatalogBackup]:
    """The catalog's backups needed to restore `backup_id`, full first; MissingChainMember names a gap."""
    return chain.resolve_chain(backup_id, {b.backup_id: b for b in ctx.catalog.backups()})


class CopyWriter:
    """One copy of a backup being written to `target`: `add_pages`, then `publish`; `discard` on failure.

    The artifact's upload is open from construction on (under `key`, by default the backup's own)."""

    def __init__(self, target: Target, source: str, backup_id: str, page_size: int, executor: Executor,
                 key: str | None = None):
        self.target = target
        self.key = key or artifact_key(source, backup_id)
        self._source, self._backup_id = source, backup_id
        self._header = {"backup_id": backup_id, "source": source, "page_size": page_size}
        self._executor = executor
        self._published = False  # from the artifact's commit to the sidecar's
        self._upload = target.dest.open_write(self.key)
        try:
            self._artifact = self._writer(self._upload, "artifact")
        except BaseException:
            self._upload.abort()
            raise

    def _writer(self, upload: Upload, kind: str) -> ArtifactWriter:
        return ArtifactWriter(upload, {**self._header, "kind": kind}, level=self.target.compression_level,
                              keyring=self.target.keyring, executor=self._executor)

    def add_pages(self, page_numbers: list[int] | range, pages: bytes) -> None:
        """Queue one block of pages for the artifact."""
        self._artifact.add_pages(page_numbers, pages)

    def publish(self, manifest: Manifest) -> Copy:
        """Finish and commit the artifact, then write its sidecar: the copy exists from then on."""
        size, digest = self._artifact.finish(manifest.to_json())
        self._upload.commit()
        self._published = True
        sc = Sidecar(manifest, self.key, size, digest, self.target.compression_level, self.target.keyring is not None)
        with self.target.dest.open_write(sidecar_key(self._source, self._backup_id)) as up:
            w = self._writer(up, "sidecar")
            w.finish(sc.to_json())
        self._published = False
        return Copy.from_sidecar(self.target.name, sc, w.size)

    def discard(self) -> list[str]:
        """Remove what this copy wrote: abort its upload, or delete an artifact committed without its
        sidecar; returns the keys deleted. What the medium refuses to delete now, the next backup of
        the source removes."""
        self._upload.abort()
        if not self._published:
            return []
        self._published = False
        return remove_failed_copy(self.target, self._source, self._backup_id, self.key)


class CopyReader:
    """One copy of a backup, open for reading from `f`: the header is verified to name the backup at once."""

    def __init__(self, target: Target, key: str, manifest: Manifest, f: BinaryIO):
        self.what = f"backup {manifest.backup_id} ({key} on {target.name})"
        self._page_size = manifest.page_size
        self.reader = ArtifactReader(f, target.keyring, what=self.what)
        h = self.reader.header
        if h.get("kind") != "artifact" or h.get("backup_id") != manifest.backup_id or h.get("page_size") != manifest.page_size:
            raise CorruptArtifact(f"{self.what}: header describes another backup ({h.get('kind')} {h.get('backup_id')})",
                                  details={"backup_id": manifest.backup_id})
        self.block_count = 0  # blocks authenticated so far, the manifest block included
        self.manifest_payload: bytes | None = None  # the embedded manifest, once its block is read

    @property
    def header(self) -> dict[str, Any]:
        """The artifact's header, checked to describe this copy's backup."""
        return self.reader.header

    def page_blocks(self, prefetch: bool = False, sample: Collection[int] | None = None
                    ) -> Iterator[tuple[int, tuple[int, ...], memoryview]]:
        """Authenticate every block; yield (block, page numbers, pages) of the page blocks in `sample`
        (every one when None), decompressed and decoded. The manifest block, last, is kept in
        `manifest_payload`, then the trailer is checked. With `prefetch`, reading and authentication
        run on a background thread a few blocks ahead of decompression."""
        raw = self.reader.raw_blocks()
        both = cast("Generator[tuple[int, int, bytes], None, None]", background(raw, PREFETCH_DEPTH) if prefetch else raw)
        with closing(both) as blocks:
            for seq, kind, compressed in blocks:
                self.block_count += 1
                if kind != fmt.KIND_PAGES:
                    self.manifest_payload = bytes(self.reader.decompress(compressed, seq))
                    continue
                if sample is not None and seq not in sample:
                    continue
                payload = self.reader.decompress(compressed, seq)
                try:
                    numbers, pages = fmt.decode_pages(payload, self._page_size)
                except CorruptArtifact as exc:
                    raise CorruptArtifact(f"{self.what}: block {seq}: {exc.message}", details={"block": seq}) from None
                yield seq, numbers, pages


def read_pages(target: Target, copy: Copy, expect: Manifest, prefetch: bool = False
               ) -> Iterator[tuple[tuple[int, ...], memoryview]]:
    """Yield (page numbers, pages) per block of one copy; after the last block, check its embedded
    manifest against `expect`. MissingChainMember when the artifact is gone, CorruptArtifact naming the
    backup and the block when anything does not verify."""
    try:
        f = target.dest.open_read(copy.artifact_key)
    except NotFound:
        raise MissingChainMember(
            f"backup {expect.backup_id} ({copy.artifact_key} on {target.name}) is missing from the destination",
            hint="run `backupd catalog rebuild`, then restore a restore point whose chain is complete",
            details={"missing": expect.backup_id, "destination": target.name},
        ) from None
    with f:
        c = CopyReader(target, copy.artifact_key, expect, f)
        for _, numbers, pages in c.page_blocks(prefetch):
            yield numbers, pages
        if c.manifest_payload is None or decode_manifest(c.manifest_payload, c.what) != expect:
            raise CorruptArtifact(f"{c.what}: embedded manifest differs from the sidecar")


def decode_manifest(payload: bytes, what: str) -> Manifest:
    """The manifest embedded in the artifact `what`; CorruptArtifact naming it when it does not decode."""
    try:
        return Manifest.from_dict(json.loads(payload))
    except ValueError as exc:
        raise CorruptArtifact(f"{what}: embedded manifest: not valid JSON ({exc})") from None
    except CorruptArtifact as exc:
        raise CorruptArtifact(f"{what}: embedded manifest: {exc.message}") from None
