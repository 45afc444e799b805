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
An OSError from the medium goes through `classify_os_error`, the one errno table every destination
shares, so a full, read-only or stale destination says so with the same code whatever its kind.
`abort()` never raises: a temp file it cannot remove is left for `remove_stale_temp`.
"""

from __future__ import annotations

import builtins
import errno
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from backupd.core.vocab import HealthStatus
from backupd.errors import (DestinationError, DestinationFull, DestinationIOError, DestinationPermissionDenied,
                            DestinationReadOnly, DestinationStale, DestinationUnavailable, NotFound)

TEMP_SUFFIX = ".backupd-tmp"

__all__ = ["Destination", "Upload", "UploadContext", "ObjectInfo", "Health", "NotFound", "TEMP_SUFFIX", "put_bytes",
           "get_bytes", "classify_os_error"]

# errno -> (the typed error, the cause in words, the fix)
_OS_ERRORS: dict[int, tuple[type[DestinationError], str, str]] = {
    errno.ENOSPC: (DestinationFull, "no space left on device", "free space or prune old backups"),
    errno.EDQUOT: (DestinationFull, "disk quota exceeded", "raise the quota or prune old backups"),
    errno.EFBIG: (DestinationFull, "file too large for the filesystem", "use a filesystem without a small file size limit"),
    errno.EROFS: (DestinationReadOnly, "read-only file system",
                  "remount it read-write; a filesystem remounted read-only by itself had an I/O error (see dmesg)"),
    errno.EACCES: (DestinationPermissionDenied, "permission denied", "check the path's owner and mode"),
    errno.EPERM: (DestinationPermissionDenied, "operation not permitted", "check the path's owner, mode and attributes"),
    errno.ESTALE: (DestinationStale, "stale file handle (the share's export changed or went away)",
                   "remount the share; the next run retries"),
    errno.EIO: (DestinationIOError, "input/output error", "check the device and the kernel log (dmesg); the next run retries"),
    errno.ENOTCONN: (DestinationUnavailable, "not connected", "check the share's connection; the next run retries"),
    errno.ETIMEDOUT: (DestinationUnavailable, "timed out", "check the share's connection; the next run retries"),
    errno.EHOSTDOWN: (DestinationUnavailable, "host is down", "check the server; the next run retries"),
    errno.EHOSTUNREACH: (DestinationUnavailable, "no route to host", "check the network; the next run retries"),
    errno.ENETUNREACH: (DestinationUnavailable, "network is unreachable", "check the network; the next run retries"),
    errno.ENETDOWN: (DestinationUnavailable, "network is down", "check the network; the next run retries"),
    errno.ECONNREFUSED: (DestinationUnavailable, "connection refused", "check the server is running; the next run retries"),
    errno.ECONNRESET: (DestinationUnavailable, "connection reset by peer", "check the server; the next run retries"),
    errno.ECONNABORTED: (DestinationUnavailable, "connection aborted", "check the connection; the next run retries"),
    errno.EPIPE: (DestinationUnavailable, "broken pipe (the connection closed)", "check the connection; the next run retries"),
    errno.EAGAIN: (DestinationUnavailable, "resource temporarily unavailable", "the next run retries"),
    errno.EBUSY: (DestinationUnavailable, "device or resource busy", "the next run retries"),
    errno.EINTR: (DestinationUnavailable, "interrupted system call", "the next run retries"),
}


def classify_os_error(exc: OSError, what: str) -> DestinationError:
    """The typed error for `exc` met while doing `what` (which names the destination), e.g.
    ENOSPC while "destination 'usb': writing kb/x.bkpd" -> DestinationFull("destination 'usb': writing
    kb/x.bkpd: no space left on device", hint="free space or prune old backups")."""
    code = exc.errno
    if code is None or (known := _OS_ERRORS.get(code)) is None:
        return DestinationError(f"{what}: {exc.strerror or exc}", details={"errno": code})
    cls, cause, fix = known
    return cls(f"{what}: {cause}", hint=fix, details={"errno": errno.errorcode.get(code, code)})


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
    def status(self) -> HealthStatus:
        if not self.reachable or not self.writable:
            return HealthStatus.UNHEALTHY
        return HealthStatus.DEGRADED if self.problems else HealthStatus.OK


class Upload(Protocol):
    bytes_written: int

    def write(self, data: bytes | memoryview) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...
    def __enter__(self) -> "Upload": ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class UploadContext(ABC):
    """What every Upload does as a context manager: commit when the block succeeds, abort when it raises.
    Subclasses define `commit` and `abort`."""

    @abstractmethod
    def commit(self) -> None:
        """Publish what was written under the key."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written; the key is left as it was."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Destination(Protocol):
    name: str
    kind: str

    def open_write(self, key: str) -> Upload: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def free_space(self) -> int | None: ...
    def health(self) -> Health: ...
    def remove_stale_temp(self, prefix: str = "") -> builtins.list[str]: ...


def put_bytes(dest: Destination, key: str, data: bytes) -> int:
    """Atomically store a small object; returns its size."""
    with dest.open_write(key) as up:
        up.write(data)
    return len(data)


def get_bytes(dest: Destination, key: str) -> bytes:
    with dest.open_read(key) as f:
        return f.read()
