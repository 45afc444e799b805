"""A directory on an SFTP server (paramiko): host keys verified, temp file + fsync + posix-rename.

- The server's host key must be in the configured known_hosts file. An unknown or changed key is a
  `DestinationError` naming the host, the port and the offered key's SHA256 fingerprint, with the fix;
  it is never accepted or written anywhere.
- Login with `key_file`, or with the ssh-agent's keys when there is none.
- An upload writes `.<name>.<random>.backupd-tmp` beside the target, fsyncs it (`fsync@openssh.com`,
  when offered), and publishes it with `posix-rename@openssh.com`, which replaces atomically.
- One SSH connection per destination object, reused across operations and reconnected when it has
  dropped. For speed (measured on loopback, bench/README.md "Destinations"): AES-GCM is preferred,
  TCP_NODELAY is set, requests are as large as the server's `limits@openssh.com` allows (up to 255 KiB),
  writes are pipelined and reads run ahead of the position. One SFTP session serves one operation at
  a time: a read and an upload interleaved on one destination object would take each other's
  replies (the engine never does that; each job has its own destination objects). A dropped connection is
  `DestinationUnavailable` (a retry may help); the temp files of uploads it broke are removed on the
  next connection, and by `remove_stale_temp`.
- `free_space` asks `statvfs@openssh.com` through paramiko's private `_request` (paramiko has no
  statvfs); None when that is unavailable. The connection and these requests are in `sftp_session`,
  the upload and the reader in `sftp_files`.
- An error with an errno (paramiko gives ENOENT and EACCES) goes through the shared classifier. The bare
  status FAILURE, which OpenSSH's sftp-server sends for ENOSPC, EDQUOT, EROFS and EIO alike, is told
  apart with the same statvfs: a read-only flag is `DestinationReadOnly`, no free block
  `DestinationFull`, anything else a plain `DestinationError`.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import posixpath
import socket
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import paramiko

from backupd.destinations.base import TEMP_SUFFIX, Health, ObjectInfo, classify_os_error
from backupd.destinations.local import _check_key, _check_prefix
from backupd.destinations.probe import PROBE_DATA, is_probe, probe_name
from backupd.destinations.sftp_files import READ_AHEAD, SftpReader, SftpUpload, walk
from backupd.destinations.sftp_session import (
    MIN_REQUEST, ST_RDONLY, Statvfs, connect, discard, fingerprint, fsync, is_missing, request_sizes, statvfs,
)  # fmt: skip
from backupd.errors import DestinationError, DestinationUnavailable, NotFound

__all__ = ["SftpDestination", "fingerprint", "from_config"]

DEFAULT_TIMEOUT_S = 30.0


def _check_remote_key(key: str) -> str:
    """local.py's key rules, plus no NUL (which OpenSSH's sftp-server answers by dropping the session)."""
    if "\0" in key:
        raise ValueError(f"invalid object key {key!r}")
    _check_key(key)
    return key


class SftpDestination:
    """Objects are files under `root` on the server (relative roots start at the login directory)."""

    kind = "sftp"

    def __init__(
        self,
        name: str,
        host: str,
        root: str | PurePosixPath,
        *,
        user: str,
        known_hosts: Path,
        port: int = 22,
        key_file: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        self.name = name
        self.host, self.port, self.user = host, port, user
        self.root = str(PurePosixPath(root))
        self.known_hosts = Path(known_hosts)
        self.key_file = Path(key_file) if key_file is not None else None
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._client_sftp: paramiko.SFTPClient | None = None
        self._fsync_supported = True
        self._read_request = self._write_request = MIN_REQUEST
        self._orphans: set[str] = set()
        self._uploads: weakref.WeakSet[SftpUpload] = weakref.WeakSet()  # open ones, closed by close()

    def __repr__(self) -> str:
        return f"SftpDestination({self.name!r}, {self.user}@{self.host}:{self.port}{self.root!r})"

    # --- connection -------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.host} port {self.port}"

    def _sftp(self) -> paramiko.SFTPClient:
        """The live SFTP session, connecting (again) when there is none or it has dropped."""
        with self._lock:
            transport = self._client.get_transport() if self._client is not None else None
            if self._client_sftp is not None and transport is not None and transport.is_active():
                return self._client_sftp
            self._close_locked()
            client = connect(self)
            try:
                sftp = client.open_sftp()
                channel = sftp.get_channel()
                if channel is not None:  # None only for a client built on no channel, never open_sftp's
                    channel.settimeout(self.timeout)
                self._read_request, self._write_request = request_sizes(sftp)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                client.close()
                raise DestinationUnavailable(
                    f"destination {self.name!r}: SFTP session on {self._where} failed: {exc}",
                    hint="check that the server offers the sftp subsystem",
                ) from None
            self._client, self._client_sftp = client, sftp
        self._remove_orphans(sftp)
        return sftp

    def _close_locked(self) -> None:
        client, self._client, self._client_sftp = self._client, None, None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close the connection, and with it uploads still open; the next operation opens a new one."""
        for upload in list(self._uploads):
            discard(upload._file)
        with self._lock:
            self._close_locked()

    def _remove_orphans(self, sftp: paramiko.SFTPClient) -> None:
        for path in list(self._orphans):
            try:
                sftp.remove(path)
            except OSError as exc:
                if not is_missing(exc):
                    continue
            except (paramiko.SSHException, EOFError):
                return
            self._orphans.discard(path)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Classify what paramiko raises: a dropped connection is transient, the rest permanent."""
        try:
            yield
        except (DestinationError, NotFound, ValueError):
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self._connection_lost(exc):
                self.close()
                raise DestinationUnavailable(
                    f"destination {self.name!r}: {what}: connection to {self._where} lost ({exc or type(exc).__name__})",
                    hint="the operation can be retried once the server is reachable",
                ) from None
            if isinstance(exc, OSError) and exc.errno is not None:
                raise classify_os_error(exc, f"destination {self.name!r}: {what} on {self._where}") from None
            raise self._refused(f"{what} on {self._where}", exc) from None

    def _refused(self, what: str, exc: BaseException | None = None) -> DestinationError:
        """The error for a request the server failed with the bare status FAILURE, which is what OpenSSH's
        sftp-server answers for ENOSPC, EDQUOT, EROFS, EIO alike: its statvfs tells a full or read-only
        filesystem apart (the classified error then), anything else stays a plain DestinationError."""
        cause = None
        try:
            st = self._statvfs(self._sftp())
        except Exception:  # noqa: BLE001 - only a diagnosis: the original failure is reported either way
            st = None
        if st is not None and st.flag & ST_RDONLY:
            cause = errno.EROFS
        elif st is not None and st.bavail == 0:
            cause = errno.ENOSPC
        if cause is not None:
            return classify_os_error(OSError(cause, os.strerror(cause)), f"destination {self.name!r}: {what}")
        return DestinationError(f"destination {self.name!r}: {what}" + (f": {exc}" if exc else ""),
                                hint="check free space, quotas and the filesystem on the server")

    def _connection_lost(self, exc: BaseException) -> bool:
        if isinstance(exc, (socket.timeout, EOFError, ConnectionError)):
            return True
        with self._lock:
            transport = self._client.get_transport() if self._client is not None else None
            return transport is None or not transport.is_active()

    # --- helpers ----------------------------------------------------------------------------------

    def _remote(self, key: str) -> str:
        return posixpath.join(self.root, key)

    def _makedirs(self, sftp: paramiko.SFTPClient, path: str) -> None:
        """mkdir -p: create `path` and its missing parents."""
        missing = []
        while path not in ("", "/", "."):
            try:
                if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                    break
                raise DestinationError(f"destination {self.name!r}: {path!r} on {self._where} is not a directory")
            except OSError as exc:
                if not is_missing(exc):
                    raise
            missing.append(path)
            path = posixpath.dirname(path)
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory)
            except OSError:
                if not stat.S_ISDIR(sftp.stat(directory).st_mode or 0):  # another writer's mkdir won the race
                    raise

    def _fsync(self, sftp: paramiko.SFTPClient, file: paramiko.SFTPFile) -> None:
        """fsync@openssh.com, unless the server has said it lacks it (then it is not asked again)."""
        if self._fsync_supported:
            self._fsync_supported = fsync(sftp, file)

    def _stat_regular(self, sftp: paramiko.SFTPClient, key: str) -> paramiko.SFTPAttributes:
        try:
            attrs = sftp.stat(self._remote(key))
        except OSError as exc:
            if not is_missing(exc):
                raise
            attrs = None
        if attrs is None or not stat.S_ISREG(attrs.st_mode or 0):
            raise NotFound(f"destination {self.name!r} has no object {key}")
        return attrs

    def _walk(self, sftp: paramiko.SFTPClient, prefix: str) -> Iterator[tuple[str, paramiko.SFTPAttributes]]:
        """(key, attributes) of every file under the prefix's folder, directories sorted."""
        if "\0" in prefix:
            raise ValueError(f"invalid prefix {prefix!r}")
        return walk(sftp, self.root, self._remote(_check_prefix(prefix)) if prefix else self.root)

    # --- the Destination protocol -----------------------------------------------------------------

    def open_write(self, key: str) -> SftpUpload:
        _check_remote_key(key)
        return SftpUpload(self, key)

    def open_read(self, key: str) -> BinaryIO:
        _check_remote_key(key)
        with self._errors(f"reading {key}"):
            sftp = self._sftp()
            try:
                file = sftp.open(self._remote(key), "rb")
                attrs = file.stat()  # of what was opened: a later replace does not change it
            except OSError as exc:
                if is_missing(exc):
                    raise NotFound(f"destination {self.name!r} has no object {key}") from None
                raise
            if not stat.S_ISREG(attrs.st_mode or 0):  # a directory opens fine over SFTP
                discard(file)
                raise NotFound(f"destination {self.name!r} has no object {key}")
        reader = SftpReader(self, key, sftp, file, attrs.st_size or 0)
        return io.BufferedReader(reader, buffer_size=READ_AHEAD)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        with self._errors(f"listing {prefix or '/'}"):
            sftp = self._sftp()
            out = [
                ObjectInfo(key, attrs.st_size or 0, float(attrs.st_mtime or 0))
                for key, attrs in self._walk(sftp, prefix)
                if not (posixpath.basename(key).startswith(".") or key.endswith(TEMP_SUFFIX))
            ]
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        _check_remote_key(key)
        with self._errors(f"deleting {key}"):
            sftp = self._sftp()
            try:
                sftp.remove(self._remote(key))
            except OSError as exc:
                if is_missing(exc):
                    return
                if self._connection_lost(exc):
                    raise
                try:  # removing a directory fails plainly: a prefix is no object, nothing to delete
                    self._stat_regular(sftp, key)
                except NotFound:
                    return
                raise

    def stat(self, key: str) -> ObjectInfo:
        _check_remote_key(key)
        with self._errors(f"reading {key}"):
            attrs = self._stat_regular(self._sftp(), key)
        return ObjectInfo(key, attrs.st_size or 0, float(attrs.st_mtime or 0))

    def free_space(self) -> int | None:
        try:
            with self._errors("asking free space"):
                st = self._statvfs(self._sftp())
        except DestinationError:
            return None
        except Exception:  # noqa: BLE001 - a private paramiko API: any surprise means "cannot tell"
            return None
        return st.frsize * st.bavail if st is not None else None

    def _statvfs(self, sftp: paramiko.SFTPClient) -> Statvfs | None:
        """statvfs@openssh.com of the root (or its nearest existing ancestor); None if the server lacks it."""
        return statvfs(sftp, self._statvfs_path(sftp))

    def _statvfs_path(self, sftp: paramiko.SFTPClient) -> str:
        """The root, or its nearest existing ancestor before the first upload created it."""
        path = self.root
        while path not in ("", "/", "."):
            try:
                sftp.stat(path)
                return path
            except OSError as exc:
                if not is_missing(exc):
                    raise
            path = posixpath.dirname(path)
        return path or "."

    def health(self) -> Health:
        start = time.monotonic()
        problems: list[str] = []
        reachable = writable = False
        try:
            with self._errors("probing"):
                sftp = self._sftp()
                reachable = True
                self._makedirs(sftp, self.root)
                for name in sftp.listdir(self.root):
                    if is_probe(name):  # left by a probe whose connection dropped half-way
                        self._remove_probe(sftp, self._remote(name))
                probe = self._remote(probe_name())
                try:
                    with sftp.open(probe, "wbx") as file:
                        file.write(PROBE_DATA)
                except Exception:
                    with suppress(Exception):  # when the connection is still up; else the next probe removes it
                        self._remove_probe(sftp, probe)
                    raise
                self._remove_probe(sftp, probe)
                writable = True
        except DestinationError as exc:
            problems.append(str(exc))
        latency_ms = (time.monotonic() - start) * 1000
        free = self.free_space() if reachable else None
        return Health(reachable, writable, free, latency_ms, tuple(problems))

    @staticmethod
    def _remove_probe(sftp: paramiko.SFTPClient, path: str) -> None:
        try:
            sftp.remove(path)
        except OSError as exc:
            if not is_missing(exc):
                raise

    def remove_stale_temp(self, prefix: str = "") -> builtins.list[str]:
        removed = []
        with self._errors(f"removing stale temp files under {prefix or '/'}"):
            sftp = self._sftp()
            for key, _attrs in list(self._walk(sftp, prefix)):
                if key.endswith(TEMP_SUFFIX):
                    try:
                        sftp.remove(self._remote(key))
                        removed.append(key)
                    except OSError as exc:
                        if not is_missing(exc):
                            raise
        return removed


def from_config(cfg: Any) -> SftpDestination:
    """Build the destination a `DestinationConfig` of kind "sftp" describes."""
    return SftpDestination(
        cfg.name,
        cfg.host,
        PurePosixPath(cfg.path),
        user=cfg.user,
        known_hosts=cfg.known_hosts,
        port=cfg.port,
        key_file=cfg.key_file,
    )
