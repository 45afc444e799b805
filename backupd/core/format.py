"""The artifact container format, version 1: framing, checksums and the version gate (see docs/FORMAT.md).

Pure functions over bytes. Compression and encryption of block bodies live in `backupd.engine.stream`;
this module only frames them:

    preamble (16 B) | header JSON | header digest (32 B) | block* | trailer (56 B)
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from backupd.errors import CorruptArtifact, UnsupportedVersion

MAGIC = b"\x89BKPD\r\n\x1a"
VERSION = 1
PREAMBLE = struct.Struct(">8sHIH")  # magic, version, header_len, reserved
PREAMBLE_SIZE = PREAMBLE.size
DIGEST_SIZE = 32
BLOCK_LEN = struct.Struct(">I")
TRAILER_MAGIC = b"BKPDEND\x00"
TRAILER = struct.Struct(">8sQQ32s")  # magic, block_count, blocks_end, whole-artifact BLAKE2b-256
TRAILER_SIZE = TRAILER.size
MAX_HEADER_LEN = 64 * 1024
MAX_BLOCK_LEN = 64 * 1024 * 1024

KIND_PAGES = 1
KIND_MANIFEST = 2
BLOCK_KINDS = {KIND_PAGES: "pages", KIND_MANIFEST: "manifest"}
PAGE_COUNT = struct.Struct(">I")


def digest(data: bytes, key: bytes = b"") -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE, key=key).digest()


def encode_header(header: dict[str, Any]) -> tuple[bytes, bytes]:
    """Preamble + canonical header JSON + header digest; returns (bytes to write, header digest)."""
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > MAX_HEADER_LEN:
        raise ValueError(f"header too large ({len(body)} bytes)")
    head = PREAMBLE.pack(MAGIC, VERSION, len(body), 0) + body
    d = digest(head)
    return head + d, d


def decode_preamble(raw: bytes) -> int:
    """Check magic and version of the first 16 bytes; return the header length."""
    if len(raw) < PREAMBLE_SIZE:
        raise CorruptArtifact("artifact is truncated: shorter than its 16-byte preamble")
    magic, version, header_len, _ = PREAMBLE.unpack(raw[:PREAMBLE_SIZE])
    if magic != MAGIC:
        raise CorruptArtifact("not a backupd artifact: bad magic bytes")
    if version != VERSION:
        raise UnsupportedVersion(
            f"artifact format version {version} is not supported (this backupd reads version {VERSION})",
            hint="upgrade backupd to a release that reads this format",
            details={"version": version, "supported": [VERSION]},
        )
    if header_len > MAX_HEADER_LEN:
        raise CorruptArtifact(f"artifact header length {header_len} exceeds {MAX_HEADER_LEN}")
    return int(header_len)


def decode_header(preamble: bytes, body: bytes, stored_digest: bytes) -> tuple[dict[str, Any], bytes]:
    """Verify the header digest and parse the JSON; returns (header, digest)."""
    d = digest(preamble + body)
    if d != stored_digest:
        raise CorruptArtifact("artifact header checksum mismatch: the header is corrupt")
    try:
        header = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser goes
        raise CorruptArtifact(f"artifact header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptArtifact("artifact header is not a JSON object")
    return header, d


def block_mac(header_digest: bytes, seq: int, kind: int, payload: bytes) -> bytes:
    """Checksum of an unencrypted block, bound to its artifact (header digest) and position (seq)."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE, key=header_digest)
    h.update(struct.pack(">QB", seq, kind))
    h.update(payload)
    return h.digest()


def seal_plain(header_digest: bytes, seq: int, kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + payload + block_mac(header_digest, seq, kind, payload)


def open_plain(header_digest: bytes, seq: int, body: bytes) -> tuple[int, bytes]:
    """Split and verify an unencrypted block body; returns (kind, payload)."""
    if len(body) < 1 + DIGEST_SIZE:
        raise CorruptArtifact(f"block {seq} is too short ({len(body)} bytes)", details={"block": seq})
    kind, payload, mac = body[0], body[1:-DIGEST_SIZE], body[-DIGEST_SIZE:]
    if block_mac(header_digest, seq, kind, payload) != mac:
        raise CorruptArtifact(f"block {seq} checksum mismatch", details={"block": seq})
    return kind, payload


def frame_block(body: bytes) -> bytes:
    if len(body) > MAX_BLOCK_LEN:
        raise ValueError(f"block body too large ({len(body)} bytes)")
    return BLOCK_LEN.pack(len(body)) + body


def encode_trailer(block_count: int, blocks_end: int, whole_digest: bytes) -> bytes:
    return TRAILER.pack(TRAILER_MAGIC, block_count, blocks_end, whole_digest)


@dataclass(frozen=True)
class Trailer:
    block_count: int
    blocks_end: int
    whole_digest: bytes


def decode_trailer(raw: bytes) -> Trailer:
    if len(raw) != TRAILER_SIZE:
        raise CorruptArtifact("artifact is truncated: trailer missing")
    magic, count, end, whole = TRAILER.unpack(raw)
    if magic != TRAILER_MAGIC:
        raise CorruptArtifact("artifact trailer is corrupt or missing (artifact truncated?)")
    return Trailer(count, end, whole)


def encode_pages(page_numbers: Sequence[int], pages: bytes) -> bytes:
    """Page block payload: u32 count | count x u32 page number | the pages, in that order."""
    n = len(page_numbers)
    return PAGE_COUNT.pack(n) + struct.pack(f">{n}I", *page_numbers) + pages


def decode_pages(payload: bytes, page_size: int) -> tuple[tuple[int, ...], memoryview]:
    """Inverse of encode_pages; checks that the lengths agree."""
    if len(payload) < 4:
        raise CorruptArtifact("page block too short")
    (n,) = PAGE_COUNT.unpack_from(payload)
    if len(payload) != 4 + 4 * n + n * page_size:
        raise CorruptArtifact(
            f"page block length {len(payload)} does not match {n} pages of {page_size} bytes"
        )
    numbers = struct.unpack_from(f">{n}I", payload, 4)
    if any(p < 1 for p in numbers):
        raise CorruptArtifact("page block names page 0")
    return numbers, memoryview(payload)[4 + 4 * n :]
