"""A directory on a local filesystem: temp file + fsync + rename + directory fsync."""

from __future__ import annotations

import builtins
import io
import os
import secrets
import stat
import time
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from backupd.destinations.base import TEMP_SUFFIX, Health, ObjectInfo, UploadContext, classify_os_error
from backupd.destinations.probe import PROBE_DATA, PROBE_PREFIX, probe_name
from backupd.errors import DestinationError, NotFound

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


# What open/stat/unlink raise for a key that names no object: nothing there, a directory (a prefix of
# other keys, not an object), or a path under an object ("kb/x" when "kb" is an object).
_NO_OBJECT = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _check_key(key: str) -> PurePosixPath:
    # split by hand: PurePosixPath would silently drop "." and empty parts ("kb/./x", "kb//x", "kb/")
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    p = PurePosixPath(key)
    if p.name.startswith(".") or p.name.endswith(TEMP_SUFFIX):
        raise ValueError(f"object key {key!r} uses a reserved name")
    return p


def _check_prefix(prefix: str) -> str:
    """A listing prefix is a folder inside the root: relative, no '.' or '..' parts."""
    if prefix.startswith("/") or any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"invalid prefix {prefix!r}")
    return prefix


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalUpload(UploadContext):
    """Writes `.<name>.<random>.backupd-tmp` beside the target; commit fsyncs and renames it into place."""

    def __init__(self, dest: "LocalDestination", key: str, sync_dir: bool):
        self._final = dest.root / key
        self._tmp = self._final.with_name(f".{self._final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        self._sync_dir = sync_dir
        self._what = f"destination {dest.name!r}: writing {key}"
        try:
            self._final.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self._tmp, "xb", buffering=0)
        except OSError as exc:
            raise classify_os_error(exc, self._what) from None
        self.bytes_written = 0
        self._done = False

    def write(self, data: bytes | memoryview) -> None:
        try:
            view = memoryview(data)
            while view:
                n = self._f.write(view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise classify_os_error(exc, self._what) from None
        self.bytes_written += len(data)

    def commit(self) -> None:
        try:
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self._final)
            if self._sync_dir:
                fsync_dir(self._final.parent)
        except OSError as exc:
            self.abort()
            raise classify_os_error(exc, self._what) from None
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._f.close()
        except OSError:
            pass  # the write that failed already said why
        try:
            os.unlink(self._tmp)
        except OSError:
            pass  # gone already, or the medium refuses (read-only): remove_stale_temp takes it later


class _Reader(io.FileIO):
    """A file whose read errors (EIO from a failing disk, ESTALE from a share) are classified like the rest."""

    def __init__(self, path: Path, what: str):
        super().__init__(path, "rb")
        self._what = what

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        try:
            return super().readinto(buffer)
        except OSError as exc:
            raise classify_os_error(exc, self._what) from None


class LocalDestination:
    """Objects are files under `root`; `sync_dir` is off only for media that cannot fsync a directory."""

    kind = "local"

    def __init__(self, name: str, root: Path, *, sync_dir: bool = True):
        self.name = name
        self.root = Path(root)
        self._sync_dir = sync_dir

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise classify_os_error(exc, f"destination {self.name!r}: creating {self.root}") from None

    def open_write(self, key: str) -> LocalUpload:
        _check_key(key)
        self._ensure_root()
        return LocalUpload(self, key, self._sync_dir)

    def open_read(self, key: str) -> BinaryIO:
        _check_key(key)
        try:
            return io.BufferedReader(_Reader(self.root / key, f"destination {self.name!r}: reading {key}"))
        except _NO_OBJECT:
            raise NotFound(f"destination {self.name!r} has no object {key}") from None
        except OSError as exc:
            raise classify_os_error(exc, f"destination {self.name!r}: reading {key}") from None

    def _walk(self, prefix: str):
        base = self.root / _check_prefix(prefix) if prefix else self.root
        if not base.is_dir():
            return

        def fail(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):  # a folder removed meanwhile holds nothing
                raise classify_os_error(exc, f"destination {self.name!r}: listing {prefix or '/'}") from None

        for dirpath, dirnames, filenames in os.walk(base, onerror=fail):
            dirnames.sort()
            for fn in filenames:
                full = Path(dirpath) / fn
                yield full.relative_to(self.root).as_posix(), full

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        out = []
        for key, full in self._walk(prefix):
            name = key.rsplit("/", 1)[-1]
            if name.startswith(".") or name.endswith(TEMP_SUFFIX):
                continue
            try:
                st = full.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise classify_os_error(exc, f"destination {self.name!r}: listing {key}") from None
            out.append(ObjectInfo(key, st.st_size, st.st_mtime))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        _check_key(key)
        try:
            os.unlink(self.root / key)
        except _NO_OBJECT:
            return
        except OSError as exc:
            raise classify_os_error(exc, f"destination {self.name!r}: deleting {key}") from None
        if self._sync_dir:
            try:
                fsync_dir((self.root / key).parent)
            except OSError as exc:
                raise classify_os_error(exc, f"destination {self.name!r}: deleting {key}") from None

    def stat(self, key: str) -> ObjectInfo:
        _check_key(key)
        try:
            st = (self.root / key).stat()
        except _NO_OBJECT:
            st = None
        except OSError as exc:
            raise classify_os_error(exc, f"destination {self.name!r}: reading {key}") from None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise NotFound(f"destination {self.name!r} has no object {key}")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def free_space(self) -> int | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def health(self) -> Health:
        start = time.monotonic()
        problems: list[str] = []
        reachable = writable = False
        try:
            self._ensure_root()
            reachable = self.root.is_dir()
            for stale in self.root.glob(f"{PROBE_PREFIX}*"):  # left by a probe that died half-way
                stale.unlink(missing_ok=True)
            path = self.root / probe_name()
            try:
                path.write_bytes(PROBE_DATA)
            except OSError:
                with suppress(OSError):  # a half-written probe goes too; the write's error is the one to report
                    path.unlink(missing_ok=True)
                raise
            path.unlink(missing_ok=True)
            writable = True
        except (OSError, DestinationError) as exc:
            problems.append(str(exc))
        return Health(reachable, writable, self.free_space(), (time.monotonic() - start) * 1000, tuple(problems))

    def remove_stale_temp(self, prefix: str = "") -> builtins.list[str]:
        removed = []
        for key, full in self._walk(prefix):
            if full.name.endswith(TEMP_SUFFIX):
                try:
                    full.unlink()
                    removed.append(key)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise classify_os_error(exc, f"destination {self.name!r}: removing the stale temp file {key}") from None
        return removed
