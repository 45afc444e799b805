"""The checks of one copy of one chain member, at the quick and standard levels (see validate.py):
its header, size, whole-artifact checksum, blocks, embedded manifest and page numbers.

Each check takes the member and `corrupt`, the recommendation for a damaged copy, and returns an
`Outcome`; a `BackupdError` it raises becomes a failed check (engine/rules.py run_check). The
artifact is read through the copy store (engine/copystore.py), which verifies it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from backupd.core import format as fmt
from backupd.core import validation_report as R
from backupd.core.manifest import Manifest, Sidecar
from backupd.core.sampling import Sample
from backupd.core.validation_report import MAX_LISTED
from backupd.core.vocab import Strategy
from backupd.engine.catalog import CatalogBackup, Copy
from backupd.engine.context import Target
from backupd.engine.copystore import CopyReader, decode_manifest
from backupd.errors import CorruptArtifact

READ_CHUNK = 1024 * 1024


class PageScan:
    """Page numbers met in one artifact: out of range, repeated, and which of 1..page_count were seen."""

    def __init__(self, page_count: int):
        self.page_count = page_count
        self.seen = bytearray(page_count)  # one flag per page, as restore keeps
        self.total = 0
        self.out_of_range: list[dict[str, int]] = []
        self.out_of_range_count = 0
        self.repeated: list[dict[str, int]] = []
        self.repeated_count = 0

    def add(self, block: int, numbers: tuple[int, ...]) -> None:
        n = len(numbers)
        self.total += n
        if not n:
            return
        first = numbers[0]
        if (1 <= first and first + n - 1 <= self.page_count and numbers == tuple(range(first, first + n))
                and self.seen.find(1, first - 1, first - 1 + n) == -1):
            self.seen[first - 1 : first - 1 + n] = b"\x01" * n
            return
        for pgno in numbers:
            if not 1 <= pgno <= self.page_count:
                self.out_of_range_count += 1
                if len(self.out_of_range) < MAX_LISTED:
                    self.out_of_range.append({"block": block, "page": pgno})
            elif self.seen[pgno - 1]:
                self.repeated_count += 1
                if len(self.repeated) < MAX_LISTED:
                    self.repeated.append({"block": block, "page": pgno})
            else:
                self.seen[pgno - 1] = 1

    def first_missing(self) -> int | None:
        i = self.seen.find(0)
        return None if i == -1 else i + 1


@dataclass
class ChainMember:
    """One backup of the chain, the copy of it being checked, and what has been learnt about that copy."""

    backup: CatalogBackup
    target: Target | None = None
    copy: Copy | None = None
    unreadable: str = ""  # why its artifact cannot be read at all; "" when it can
    unreadable_code: str = "missing_chain_member"
    sidecar: Sidecar | None = None  # the destination's sidecar, once it verified
    header_ok: bool = False
    blocks_ok: bool = False
    pages: PageScan | None = None
    embedded_manifest: bytes | None = None
    block_count: int | None = None  # blocks (pages and manifest), once the whole-artifact check counted them
    sample: Sample | None = None  # the page blocks a sampled run reads in depth; None: all

    @property
    def id(self) -> str:
        return self.backup.backup_id

    @property
    def manifest(self) -> Manifest:
        return self.backup.manifest

    @property
    def key(self) -> str:
        assert self.copy is not None
        return self.copy.artifact_key

    @property
    def where(self) -> dict[str, Any]:
        return {"backup_id": self.id, "destination": self.target.name if self.target else None,
                "key": self.copy.artifact_key if self.copy else None}

    @property
    def short(self) -> str:
        return f"{self.id} on {self.target.name}" if self.target is not None else self.id

    @property
    def what(self) -> str:
        if self.target is None or self.copy is None:
            return f"backup {self.id}"
        return f"backup {self.id} ({self.copy.artifact_key} on {self.target.name})"

    def recorded(self) -> tuple[int, str, str]:
        """(artifact size, artifact digest, who recorded them): the destination's sidecar when it
        verified, else the catalog's copy of it."""
        if self.sidecar is not None:
            return self.sidecar.artifact_size, self.sidecar.artifact_digest, "sidecar"
        assert self.copy is not None
        return self.copy.artifact_size, self.copy.artifact_digest, "catalog"


def header(m: ChainMember) -> R.Outcome:
    assert m.target is not None
    with m.target.dest.open_read(m.key) as f:
        enc = CopyReader(m.target, m.key, m.manifest, f).header.get("encryption")
    m.header_ok = True
    how = f"encrypted, key id {enc.get('key_id')} is the configured key" if enc else "not encrypted"
    return R.Outcome.ok(f"{m.short}: format version {fmt.VERSION}, header verifies, {how}",
                        version=fmt.VERSION, encrypted=bool(enc))


def size(m: ChainMember, corrupt: str) -> R.Outcome:
    assert m.target is not None
    size = m.target.dest.stat(m.key).size
    recorded, _, by = m.recorded()
    if size == recorded:
        return R.Outcome.ok(f"{m.short}: {size} bytes, as its {by} records", size=size, recorded=recorded)
    how = "truncated" if size < recorded else "longer than written"
    return R.Outcome.fail(f"{m.what}: {size} bytes, but its {by} records {recorded} ({how})",
                          corrupt,
                          code="corrupt_artifact", size=size, recorded=recorded, recorded_by=by)


def checksum(m: ChainMember, corrupt: str) -> R.Outcome:
    assert m.target is not None
    size = m.target.dest.stat(m.key).size
    if size < fmt.PREAMBLE_SIZE + fmt.TRAILER_SIZE:
        raise CorruptArtifact(f"{m.what}: artifact is truncated to {size} bytes")
    with m.target.dest.open_read(m.key) as f:
        scan = ArtifactScan(f, size - fmt.TRAILER_SIZE, m.what)
        trailer = fmt.decode_trailer(read_up_to(f, fmt.TRAILER_SIZE))
    computed = scan.digest
    _, recorded, by = m.recorded()
    details = {"computed": computed, "trailer": trailer.whole_digest.hex(), "recorded": recorded,
               "recorded_by": by, "blocks": scan.blocks}
    problems = []
    if computed != trailer.whole_digest.hex():
        problems.append("the checksum of its bytes differs from its trailer's")
    if computed != recorded:
        problems.append(f"the checksum of its bytes differs from the one its {by} records")
    if scan.problem:
        problems.append(scan.problem)
    elif trailer.block_count != scan.blocks:
        problems.append(f"its trailer counts {trailer.block_count} blocks, it holds {scan.blocks}")
    if trailer.blocks_end != size - fmt.TRAILER_SIZE:
        problems.append(f"its trailer says the blocks end at byte {trailer.blocks_end}, "
                        f"the artifact has {size - fmt.TRAILER_SIZE} bytes before it")
    if problems:
        return R.Outcome.fail(f"{m.what}: whole-artifact check failed: " + "; ".join(problems),
                              corrupt, code="corrupt_artifact", **details)
    m.block_count = scan.blocks
    return R.Outcome.ok(f"{m.short}: BLAKE2b-256 {computed[:16]}… equals its trailer's and its {by}'s, "
                        f"{scan.blocks} blocks as counted", **details)


def blocks(m: ChainMember) -> R.Outcome:
    """Every block authenticates (the encrypted stream chains them, so all are read); the page blocks
    of `m.sample` (all when None) are also decompressed and their page numbers collected."""
    assert m.target is not None
    m.pages = scan = PageScan(m.manifest.page_count)
    checked = 0
    with m.target.dest.open_read(m.key) as f:
        c = CopyReader(m.target, m.key, m.manifest, f)
        try:
            for seq, numbers, _ in c.page_blocks(prefetch=True, sample=m.sample.blocks if m.sample else None):
                checked += 1
                scan.add(seq, numbers)
        finally:
            m.embedded_manifest = c.manifest_payload
    count = c.block_count
    m.blocks_ok = True
    how = "AEAD tags" if c.header.get("encryption") else "keyed checksums"
    text = f"{m.short}: {count} blocks ({scan.total} pages) verified by {how}, trailer matches"
    if m.sample is None:
        return R.Outcome.ok(text, blocks=count, pages=scan.total)
    return R.Outcome.ok(f"{text}; sampled: {checked} of {count - 1} page blocks decompressed and read",
                        blocks=count, pages=scan.total, sampled_blocks=sorted(m.sample.blocks))


def embedded_manifest(m: ChainMember, corrupt: str) -> R.Outcome:
    assert m.embedded_manifest is not None and m.target is not None
    embedded = decode_manifest(m.embedded_manifest, m.what)
    against, by = (m.sidecar.manifest, "sidecar") if m.sidecar is not None else (m.manifest, "catalog")
    if embedded == against:
        return R.Outcome.ok(f"{m.short}: embedded manifest equals the {by}'s", against=by)
    differs = sorted(k for k, v in embedded.to_dict().items() if against.to_dict().get(k) != v)
    return R.Outcome.fail(f"{m.what}: embedded manifest differs from the {by}'s in {', '.join(differs)}",
                          corrupt,
                          code="corrupt_artifact", against=by, fields=differs)


def page_numbers(m: ChainMember, corrupt: str) -> R.Outcome:
    assert m.pages is not None and m.target is not None
    scan, man = m.pages, m.manifest
    problems: list[str] = []
    details: dict[str, Any] = {"pages": scan.total, "page_count": man.page_count}
    if scan.out_of_range_count:
        first = scan.out_of_range[0]
        problems.append(f"{scan.out_of_range_count} page number(s) outside 1..{man.page_count} "
                        f"(first: page {first['page']} in block {first['block']})")
        details.update(block=first["block"], out_of_range=scan.out_of_range)
    if scan.repeated_count:
        first = scan.repeated[0]
        problems.append(f"{scan.repeated_count} page(s) stored twice (first: page {first['page']} "
                        f"in block {first['block']})")
        details.setdefault("block", first["block"])
        details["repeated"] = scan.repeated
    whole = m.blocks_ok and m.sample is None  # a sampled run did not read every block's pages
    if whole and scan.total != man.changed_pages:
        problems.append(f"{scan.total} pages stored, the manifest records {man.changed_pages}")
    missing = scan.first_missing() if whole and man.strategy == Strategy.FULL else None
    if missing is not None:
        problems.append(f"the full backup lacks page {missing} of {man.page_count}")
        details["missing_page"] = missing
    if problems:
        return R.Outcome.fail(f"{m.what}: " + "; ".join(problems),
                              corrupt,
                              code="corrupt_artifact", **details)
    of = "" if m.sample is None else " (in the sampled blocks)"
    return R.Outcome.ok(f"{m.short}: {scan.total} page numbers within 1..{man.page_count}{of}", **details)


class ArtifactScan:
    """One streamed pass over an artifact's bytes before its trailer (`end`): their BLAKE2b-256, and the
    block framing walked by length prefix, without decrypting or decompressing anything."""

    def __init__(self, f: BinaryIO, end: int, what: str):
        self._f, self._what = f, what
        self._hash = hashlib.blake2b(digest_size=fmt.DIGEST_SIZE)
        self.offset = 0
        self.blocks = 0
        self.problem = ""
        _, _, header_len, _ = fmt.PREAMBLE.unpack(self._take(fmt.PREAMBLE_SIZE))
        body_start = fmt.PREAMBLE_SIZE + header_len + fmt.DIGEST_SIZE
        if body_start > end:
            self.problem = f"its header length {header_len} runs past its trailer"
        else:
            self._skip(body_start - self.offset)
            while self.offset < end:
                if self.offset + fmt.BLOCK_LEN.size > end:
                    self.problem = f"block {self.blocks}'s length prefix runs into the trailer"
                    break
                (n,) = fmt.BLOCK_LEN.unpack(self._take(fmt.BLOCK_LEN.size))
                if self.offset + n > end:
                    self.problem = f"block {self.blocks} claims {n} bytes, which run past the trailer"
                    break
                self._skip(n)
                self.blocks += 1
        self._skip(end - self.offset)
        self.digest = self._hash.hexdigest()

    def _take(self, n: int) -> bytes:
        data = read_up_to(self._f, n)
        if len(data) < n:
            raise CorruptArtifact(f"{self._what}: artifact shrank while being read")
        self._hash.update(data)
        self.offset += n
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            n -= len(self._take(min(READ_CHUNK, n)))


def read_up_to(f: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data

