"""The one interface every destination implements, and the errors it may raise.

Keys are relative POSIX paths such as `kb/20261126T160055.123456Z-3f9a1c.bkpd`.
Contract (tests/destinations/contract.py checks it on every implementation):
- `open_write(key)` returns an Upload; nothing is visible under `key` until `commit()` returns,
  and then the whole object is, durably. `abort()` (or an exception in the `with` block) leaves
  nothing visible. Writing over an existing key replaces it atomically.
- `open_read(key)` streams an object; a missing key raises `NotFound`.
- `list(prefix)` returns committed objects only (never temp files), sorted by key.
- `delete(key)` is idempotent.
- `stat(key)` raises `NotFound` on a missing key.
- `free_space()` is bytes available, or None when the medium cannot tell.
- `health()` probes reachability and writability with a real write and delete.
- `remove_stale_temp(prefix)` deletes every temp file under `prefix`, whatever its age (what a crashed
  process or a dropped connection left), and returns their keys. Call it only when no upload under
  `prefix` is live: the engine does, for `<source>/`, with the source lock held.
Transient failures (a retry may help) raise DestinationUnavailable; permanent ones DestinationError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

from backupd.errors import NotFound

TEMP_SUFFIX = ".backupd-tmp"

__all__ = ["Destination", "Upload", "UploadContext", "ObjectInfo", "Health", "NotFound", "TEMP_SUFFIX", "put_bytes", "get_bytes"]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Health:
    reachable: bool
    writable: bool
    free_bytes: int | None
    latency_ms: float
    problems: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if not self.reachable or not self.writable:
            return "unhealthy"
        return "degraded" if self.problems else "ok"


class Upload(Protocol):
    bytes_written: int

    def write(self, data: bytes | memoryview) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...
    def __enter__(self) -> "Upload": ...
    def __exit__(self, exc_type, exc, tb) -> None: ...


class UploadContext:
    """What every Upload does as a context manager: commit when the block succeeds, abort when it raises.
    Subclasses define `commit` and `abort`."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Destination(Protocol):
    name: str
    kind: str

    def open_write(self, key: str) -> Upload: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def list(self, prefix: str = "") -> list[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def free_space(self) -> int | None: ...
    def health(self) -> Health: ...
    def remove_stale_temp(self, prefix: str = "") -> list[str]: ...


def put_bytes(dest: Destination, key: str, data: bytes) -> int:
    """Atomically store a small object; returns its size."""
    with dest.open_write(key) as up:
        up.write(data)
    return len(data)


def get_bytes(dest: Destination, key: str) -> bytes:
    with dest.open_read(key) as f:
        return f.read()
