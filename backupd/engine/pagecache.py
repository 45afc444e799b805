"""The page-hash cache: the xxh3-128 of every page as of a backup, kept per source in the state dir.

`last` holds the hashes at the source's newest backup (incrementals compare with it), `full` those at
its newest full (differentials compare with it). Each file names the backup it describes; a file that
is missing, corrupt or names another backup is not used, and the caller rebuilds it from the destination.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import xxhash

HASH_SIZE = 16
MAGIC = b"BKPDHASH1\n"
_LEN = struct.Struct(">I")


def page_hash(page: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(page)


def chunk_hashes(data: bytes, page_size: int) -> bytes:
    """The concatenated hashes of the consecutive pages in `data`."""
    mv = memoryview(data)
    h = xxhash.xxh3_128_digest
    return b"".join([h(mv[i : i + page_size]) for i in range(0, len(mv), page_size)])


@dataclass
class PageHashes:
    backup_id: str
    page_size: int
    hashes: bytearray

    @property
    def page_count(self) -> int:
        return len(self.hashes) // HASH_SIZE

    @classmethod
    def empty(cls, backup_id: str, page_size: int, page_count: int) -> "PageHashes":
        return cls(backup_id, page_size, bytearray(page_count * HASH_SIZE))

    def resize(self, page_count: int) -> None:
        del self.hashes[page_count * HASH_SIZE :]
        self.hashes.extend(bytes(page_count * HASH_SIZE - len(self.hashes)))

    def differs(self, pgno: int, digest: bytes) -> bool:
        """True when page `pgno` (1-based) is new or its hash differs."""
        i = (pgno - 1) * HASH_SIZE
        return i + HASH_SIZE > len(self.hashes) or self.hashes[i : i + HASH_SIZE] != digest

    def range(self, first: int, n: int) -> bytes:
        """The hashes of pages first..first+n-1 (shorter when the list ends before)."""
        return bytes(self.hashes[(first - 1) * HASH_SIZE : (first - 1 + n) * HASH_SIZE])

    def set_range(self, first: int, digests: bytes) -> None:
        self.hashes[(first - 1) * HASH_SIZE : (first - 1) * HASH_SIZE + len(digests)] = digests

    def set(self, pgno: int, digest: bytes) -> None:
        i = (pgno - 1) * HASH_SIZE
        self.hashes[i : i + HASH_SIZE] = digest


class PageHashCache:
    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir) / "pagecache"

    def _path(self, source: str, which: str) -> Path:
        return self.dir / f"{source}.{which}.hashes"

    def load(self, source: str, which: str, backup_id: str) -> PageHashes | None:
        """The cached hashes for `backup_id`, or None when absent, corrupt or for another backup.

        Reads the file into one buffer that becomes the hash list: no copies of a list that grows
        with the database."""
        try:
            with open(self._path(source, which), "rb") as f:
                buf = bytearray(os.fstat(f.fileno()).st_size)
                if f.readinto(buf) != len(buf):
                    return None
        except OSError:
            return None
        start = len(MAGIC) + _LEN.size
        if len(buf) < start + 32 or not buf.startswith(MAGIC):
            return None
        with memoryview(buf) as mv:
            if hashlib.blake2b(mv[:-32], digest_size=32).digest() != mv[-32:]:
                return None
            (hlen,) = _LEN.unpack_from(mv, len(MAGIC))
            try:
                header = json.loads(mv[start : start + hlen].tobytes())
            except ValueError:
                return None
        del buf[-32:]
        del buf[: start + hlen]
        if not isinstance(header, dict) or header.get("backup_id") != backup_id:
            return None
        if len(buf) != header.get("page_count", -1) * HASH_SIZE:
            return None
        return PageHashes(backup_id, header["page_size"], buf)

    def save(self, source: str, which: str, ph: PageHashes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        header = json.dumps(
            {"backup_id": ph.backup_id, "page_size": ph.page_size, "page_count": ph.page_count, "hash": "xxh3_128"}
        ).encode()
        path = self._path(source, which)
        tmp = path.with_name(path.name + ".tmp")
        check = hashlib.blake2b(digest_size=32)
        with open(tmp, "wb") as f:
            for part in (MAGIC, _LEN.pack(len(header)), header, ph.hashes):
                check.update(part)
                f.write(part)
            f.write(check.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
