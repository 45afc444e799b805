"""Writing and reading artifacts as streams, in bounded memory.

ArtifactWriter compresses ~1 MiB blocks on a small thread pool (zstd releases the GIL), seals them in
order (secretstream or a keyed BLAKE2b checksum) and hashes every byte for the trailer. ArtifactReader
verifies as it goes and raises CorruptArtifact naming the block at fault.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import zstandard

from backupd.core import format as fmt
from backupd.destinations.base import Upload
from backupd.engine.crypto import ABYTES, Keyring, Opener, Sealer
from backupd.engine.prefetch import background
from backupd.errors import CorruptArtifact, UnsupportedVersion, WrongKey

MAX_PLAIN_BLOCK = 16 * 1024 * 1024
_local = threading.local()


def _compress(level: int, kind: int, payload: bytes) -> bytes:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
    return bytes([kind]) + c.compress(payload)


class ArtifactWriter:
    """Frames blocks into `upload`; the caller commits the upload after `finish()`."""

    def __init__(
        self,
        upload: Upload,
        header: dict[str, Any],
        *,
        level: int,
        keyring: Keyring | None,
        executor: Executor,
        max_pending: int = 4,
    ):
        self._up = upload
        self._level = level
        self._executor = executor
        self._max_pending = max_pending
        self._pending: deque[Future[None]] = deque()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifact-writer")
        self._hash = hashlib.blake2b(digest_size=fmt.DIGEST_SIZE)
        self._sealer: Sealer | None = None
        header = dict(header, compression="zstd", encryption=None)
        if keyring is not None:
            key, enc = keyring.for_writing()
            self._sealer = Sealer(key)
            header["encryption"] = dict(enc, stream_header=self._sealer.stream_header.hex())
        raw, self._header_digest = fmt.encode_header(header)
        self._seq = 0
        self.size = 0
        self._emit(raw)

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self._up.write(data)
        self.size += len(data)

    def _write_block(self, kind_and_payload: bytes, final: bool = False) -> None:
        if self._sealer is not None:
            body = self._sealer.seal(kind_and_payload, self._header_digest, final)
        else:
            kind, payload = kind_and_payload[0], kind_and_payload[1:]
            body = kind_and_payload + fmt.block_mac(self._header_digest, self._seq, kind, payload)
        self._emit(fmt.frame_block(body))
        self._seq += 1

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def add_pages(self, page_numbers: list[int] | range, pages: bytes) -> None:
        """Queue one block of pages: compressed on the pool, then sealed and written in order on this
        artifact's writer thread. Blocks while `max_pending` blocks are in flight."""
        payload = fmt.encode_pages(page_numbers, pages)
        compressed = self._executor.submit(_compress, self._level, fmt.KIND_PAGES, payload)
        self._pending.append(self._writer.submit(lambda: self._write_block(compressed.result())))
        self._drain(self._max_pending)

    def finish(self, manifest_json: bytes) -> tuple[int, str]:
        """Write the manifest block and trailer; returns (artifact size, whole-artifact digest hex)."""
        self._drain(0)
        self._writer.shutdown(wait=True)
        self._write_block(_compress(self._level, fmt.KIND_MANIFEST, manifest_json), final=True)
        whole = self._hash.digest()
        blocks_end = self.size
        self._up.write(fmt.encode_trailer(self._seq, blocks_end, whole))
        self.size += fmt.TRAILER_SIZE
        return self.size, whole.hex()


class _HashingReader:
    def __init__(self, f: BinaryIO, what: str):
        self._f = f
        self._what = what
        self.hash = hashlib.blake2b(digest_size=fmt.DIGEST_SIZE)
        self.offset = 0

    def exact(self, n: int, hashed: bool = True) -> bytes:
        data = self._f.read(n)
        while len(data) < n:
            more = self._f.read(n - len(data))
            if not more:
                raise CorruptArtifact(
                    f"{self._what} is truncated at byte {self.offset + len(data)}",
                    details={"offset": self.offset + len(data)},
                )
            data += more
        if hashed:
            self.hash.update(data)
        self.offset += n
        return data

    def at_eof(self) -> bool:
        return self._f.read(1) == b""


class ArtifactReader:
    """Verifying reader: `header` is available at once; iterate `blocks()` for (kind, payload)."""

    def __init__(self, f: BinaryIO, keyring: Keyring | None, what: str = "artifact"):
        self._r = _HashingReader(f, what)
        self._what = what
        pre = self._r.exact(fmt.PREAMBLE_SIZE)
        try:
            header_len = fmt.decode_preamble(pre)
            body = self._r.exact(header_len)
            stored = self._r.exact(fmt.DIGEST_SIZE)
            self.header, self._header_digest = fmt.decode_header(pre, body, stored)
        except (CorruptArtifact, UnsupportedVersion) as exc:
            if exc.message.startswith(what):
                raise
            raise type(exc)(f"{what}: {exc.message}", hint=exc.hint, details=exc.details) from None
        self.page_size = self.header.get("page_size")
        self._opener: Opener | None = None
        enc = self.header.get("encryption")
        if enc is None and keyring is not None:
            raise CorruptArtifact(
                f"{what} is not encrypted, but its destination requires encryption: refusing it, since anyone"
                " who can write to the destination could have planted it",
                hint="if this destination held unencrypted backups before encryption was configured,"
                " remove [destinations.encryption] temporarily to read them",
            )
        if enc is not None:
            if not isinstance(enc, dict):
                raise CorruptArtifact(f"{what}: malformed encryption header")
            if keyring is None:
                raise WrongKey(
                    f"wrong key: {what} is encrypted (key id {enc.get('key_id')}) but no key is configured",
                    hint="add [destinations.encryption] with the key this backup was made with",
                )
            try:
                stream_header = bytes.fromhex(enc["stream_header"])
            except (KeyError, ValueError, TypeError):
                raise CorruptArtifact(f"{what}: malformed stream header") from None
            self._opener = Opener(keyring.for_reading(enc), stream_header)
        self.whole_digest: str | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes consumed so far: the artifact's size once `blocks()` has finished (no seek or tell needed)."""
        return self._r.offset

    def decompress(self, data: bytes, seq: int) -> bytes:
        """One payload from `raw_blocks()`, decompressed (what `blocks()` yields)."""
        dctx = getattr(_local, "decompressor", None)
        if dctx is None:
            dctx = _local.decompressor = zstandard.ZstdDecompressor()
        try:
            return dctx.decompress(data, max_output_size=MAX_PLAIN_BLOCK)
        except zstandard.ZstdError as exc:
            raise CorruptArtifact(f"{self._what}: block {seq} does not decompress ({exc})", details={"block": seq}) from None

    def raw_blocks(self) -> Iterator[tuple[int, int, bytes]]:
        """Yield (seq, kind, compressed payload) of authenticated blocks; after the last, check the trailer."""
        try:
            yield from self._raw_blocks()
        except CorruptArtifact as exc:
            if exc.message.startswith(self._what):
                raise
            raise CorruptArtifact(f"{self._what}: {exc.message}", hint=exc.hint, details=exc.details) from None

    def _raw_blocks(self) -> Iterator[tuple[int, int, bytes]]:
        seq = 0
        while True:
            (n,) = fmt.BLOCK_LEN.unpack(self._r.exact(4))
            if n > fmt.MAX_BLOCK_LEN or n < 1:
                raise CorruptArtifact(f"{self._what}: block {seq} has an impossible length {n}", details={"block": seq})
            body = self._r.exact(n)
            if self._opener is not None:
                if n < ABYTES + 1:
                    raise CorruptArtifact(f"{self._what}: block {seq} is too short", details={"block": seq})
                plain, final = self._opener.open(body, self._header_digest, seq)
                kind, payload = plain[0], plain[1:]
            else:
                kind, payload = fmt.open_plain(self._header_digest, seq, body)
                final = kind == fmt.KIND_MANIFEST
            if kind not in fmt.BLOCK_KINDS:
                raise CorruptArtifact(f"{self._what}: block {seq} has unknown kind {kind}", details={"block": seq})
            if final != (kind == fmt.KIND_MANIFEST):
                raise CorruptArtifact(f"{self._what}: block {seq} is misplaced", details={"block": seq})
            yield seq, kind, payload
            seq += 1
            if final:
                break
        self._check_trailer(seq)

    def blocks(self, prefetch: bool = False, depth: int = 4) -> Iterator[tuple[int, int, bytes]]:
        """Yield (seq, kind, decompressed payload); the manifest block comes last, then the trailer is checked.

        With `prefetch`, reading, hashing and authentication run on a background thread `depth` blocks
        ahead, while this thread decompresses (zstd's one-shot decompression holds the GIL, so a pool
        would only add contention)."""
        ahead = background(self.raw_blocks(), depth) if prefetch else None
        try:
            for seq, kind, payload in ahead or self.raw_blocks():
                yield seq, kind, self.decompress(payload, seq)
        finally:
            if ahead is not None:
                ahead.close()

    def _check_trailer(self, count: int) -> None:
        whole = self._r.hash.digest()
        end = self._r.offset
        trailer = fmt.decode_trailer(self._r.exact(fmt.TRAILER_SIZE, hashed=False))
        if trailer.block_count != count or trailer.blocks_end != end:
            raise CorruptArtifact(f"{self._what}: trailer does not match the blocks read")
        if trailer.whole_digest != whole:
            raise CorruptArtifact(f"{self._what}: whole-artifact checksum mismatch")
        if not self._r.at_eof():
            raise CorruptArtifact(f"{self._what}: unexpected bytes after the trailer")
        self.whole_digest = whole.hex()
