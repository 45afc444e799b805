"""An SMB2/3 share reached directly through smbprotocol, without mounting it.

Objects are files under `\\\\server\\share\\path`. The write path is the one every destination uses
(STYLE.md 3.7): write `.<name>.<random>.backupd-tmp` beside the target, flush it (SMB2 FLUSH), close
it, then `replace` it onto the target (SMB2 rename with ReplaceIfExists; a plain rename fails when the
target exists). Encryption: SMB3 encryption is switched on whenever the negotiated dialect supports
it; `require_encryption=True` refuses a server that cannot encrypt.

Every destination keeps its own smbclient connection cache (never the process-wide one), so two
destinations on one server do not share sessions, and `close()` drops exactly this one's connection.

Errors are classified here, at the boundary: a refused, dropped or timed-out connection is
DestinationUnavailable (a retry may help); a logon failure, a missing share, denied access or a full
disk is DestinationError naming the server, share and user; a missing object is NotFound. The NT
status of a failing medium (disk full, quota, write-protected, access denied, I/O error) is mapped to
its errno and classified by the shared table (`base.classify_os_error`), like every other kind.

The session, the NT status table and the password are in `smb_session`, the upload and the reader in
`smb_files`.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO

import smbclient
from smbprotocol.connection import Connection
from smbprotocol.exceptions import (
    AccessDenied,
    BadNetworkName,
    LogonFailure,
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBOSError,
    SMBResponseException,
)

from backupd.destinations.base import TEMP_SUFFIX, Health, ObjectInfo, classify_os_error
from backupd.destinations.local import _check_key, _check_prefix
from backupd.destinations.probe import PROBE_DATA, PROBE_PREFIX, probe_name
from backupd.destinations.smb_files import SmbReader, SmbUpload
from backupd.destinations.smb_session import NT_ERRNO, is_missing_os, ntstatus, open_connection, read_password
from backupd.errors import DestinationError, DestinationPermissionDenied, DestinationUnavailable, NotFound

__all__ = ["SmbDestination", "from_config", "read_password"]


def _check_smb_key(key: str) -> None:
    _check_key(key)
    if "\\" in key or "\x00" in key:  # a backslash is a separator on SMB, NUL ends the name
        raise ValueError(f"invalid object key {key!r}")


class SmbDestination:
    """Objects are files under `\\\\server\\share\\path` (path "" is the share's root)."""

    kind = "smb"

    def __init__(
        self,
        name: str,
        server: str,
        share: str,
        path: str,
        user: str,
        password: str,
        port: int = 445,
        require_encryption: bool = False,
    ):
        self.name = name
        self.server = server
        self.share = share
        self.path = path.strip("/\\").replace("\\", "/")
        self.user = user
        self._password = password
        self.port = port
        self.require_encryption = require_encryption
        self._share_root = rf"\\{server}\{share}"
        self._root = self._share_root + ("\\" + self.path.replace("/", "\\") if self.path else "")
        self._cache: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._root_ready = False

    # --- connection -------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"destination {self.name!r} (smb://{self.user}@{self.server}:{self.port}/{self.share}/{self.path})"

    def _connect(self) -> None:
        """Open (or reopen after a drop) this destination's connection and session."""
        key = f"{self.server.lower()}:{self.port}"
        with self._lock:
            conn = self._cache.get(key)
            if conn is not None and conn.transport.connected:
                return
            self._cache.pop(key, None)
            self._cache[key] = open_connection(
                self.server, self.port, self.user, self._password, self._share_root,
                require_encryption=self.require_encryption, where=self._where(),
            )  # fmt: skip

    @property
    def encrypted(self) -> bool:
        """Whether the current session encrypts on the wire (connects if needed)."""
        with self._errors("connecting"):
            self._connect()
        conn = self._cache[f"{self.server.lower()}:{self.port}"]
        return all(s.encrypt_data for s in conn.session_table.values())

    def _kw(self) -> dict[str, Any]:
        self._connect()
        return {"port": self.port, "username": self.user, "connection_cache": self._cache}

    def close(self) -> None:
        with self._lock:
            smbclient.reset_connection_cache(connection_cache=self._cache)
            self._root_ready = False

    def _drop(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped either way
            with self._lock:
                self._cache.clear()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate smbprotocol's and the socket's exceptions into DestinationError / Unavailable."""
        where = f"{self._where()}: {what}"
        try:
            yield
        except (NotFound, DestinationError):
            raise
        except (LogonFailure, SMBAuthenticationError) as exc:
            raise DestinationError(
                f"{where}: logon failed for user {self.user!r} on {self.server}:{self.port} share {self.share!r} ({exc})",
                hint="check user and password (password_env or credentials_file)",
            ) from None
        except BadNetworkName:
            raise DestinationError(
                f"{where}: server {self.server} has no share {self.share!r}", hint="check the share name"
            ) from None
        except AccessDenied as exc:
            raise DestinationPermissionDenied(
                f"{where}: access denied for user {self.user!r} on share {self.share!r} ({exc})",
                hint="check the share's permissions for this user",
            ) from None
        except (SMBOSError, SMBResponseException) as exc:
            code = NT_ERRNO.get(ntstatus(exc), getattr(exc, "errno", None))
            if code in (errno.EACCES, errno.EPERM):
                where = f"{where} (as user {self.user!r})"
            if code is not None:
                raise classify_os_error(OSError(code, os.strerror(code)), where) from None
            raise DestinationError(f"{where}: {exc}") from None
        except (SMBConnectionClosed, ConnectionError, socket.timeout, TimeoutError) as exc:
            self._drop()
            raise DestinationUnavailable(f"{where}: connection to {self.server}:{self.port} lost ({exc})") from None
        except ValueError as exc:
            if "Failed to connect" in str(exc):  # smbprotocol's transport wraps socket errors in ValueError
                self._drop()
                raise DestinationUnavailable(
                    f"{where}: cannot connect to {self.server}:{self.port} ({exc})", hint="check the server and port"
                ) from None
            raise
        except SMBException as exc:
            self._drop()
            raise DestinationUnavailable(f"{where}: {exc}") from None
        except OSError as exc:
            self._drop()
            raise DestinationUnavailable(f"{where}: {exc}") from None

    # --- paths ------------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return self._root + ("\\" + key.replace("/", "\\") if key else "")

    def _makedirs(self, path: str) -> None:
        smbclient.makedirs(path, exist_ok=True, **self._kw())

    def _ensure_root(self) -> None:
        if not self._root_ready:
            if self.path:
                self._makedirs(self._root)
            self._root_ready = True

    # --- the Destination protocol -----------------------------------------------------------------

    def open_write(self, key: str) -> SmbUpload:
        _check_smb_key(key)
        with self._errors(f"writing {key}"):
            self._ensure_root()
        return SmbUpload(self, key)

    def open_read(self, key: str) -> BinaryIO:
        _check_smb_key(key)
        try:
            with self._errors(f"reading {key}"):
                raw = smbclient.open_file(self._path(key), mode="rb", buffering=0, share_access="rwd", **self._kw())
            return io.BufferedReader(SmbReader(self, key, raw), buffer_size=1024 * 1024)
        except DestinationError as exc:
            if self._is_missing(exc):
                raise NotFound(f"destination {self.name!r} has no object {key}") from None
            raise

    @staticmethod
    def _is_missing(exc: DestinationError) -> bool:
        return is_missing_os(exc.__context__)

    def _scan(self, rel: str) -> Iterator[tuple[str, Any]]:
        """(key, SMBDirEntry) of every file under the folder `rel` ("" is the root), depth first."""
        try:
            entries = list(smbclient.scandir(self._path(rel.rstrip("/")), **self._kw()))
        except SMBOSError as exc:
            if is_missing_os(exc):
                return
            raise
        for entry in entries:
            key = f"{rel}{entry.name}"
            if entry.is_dir():
                yield from self._scan(key + "/")
            else:
                yield key, entry

    @staticmethod
    def _info(key: str, entry: Any) -> ObjectInfo:
        info = entry.smb_info
        return ObjectInfo(key, int(info.end_of_file), info.last_write_time.timestamp())

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        _check_prefix(prefix)
        rel = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        out = []
        with self._errors(f"listing {prefix or '/'}"):
            for key, entry in self._scan(rel):
                name = key.rsplit("/", 1)[-1]
                if name.startswith(".") or name.endswith(TEMP_SUFFIX):
                    continue
                out.append(self._info(key, entry))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        _check_smb_key(key)
        try:
            with self._errors(f"deleting {key}"):
                smbclient.remove(self._path(key), **self._kw())
        except DestinationError as exc:
            if not self._is_missing(exc):
                raise

    def stat(self, key: str) -> ObjectInfo:
        """From the parent's directory entry, so `stat` and `list` report the very same size and mtime."""
        _check_smb_key(key)
        parent, _, name = key.rpartition("/")
        try:
            with self._errors(f"reading {key}"):
                entries = list(smbclient.scandir(self._path(parent), search_pattern=name, **self._kw()))
        except DestinationError as exc:
            if self._is_missing(exc):
                entries = []
            else:
                raise
        for entry in entries:
            if entry.name == name and not entry.is_dir():
                return self._info(key, entry)
        raise NotFound(f"destination {self.name!r} has no object {key}")

    def free_space(self) -> int | None:
        try:
            with self._errors("querying free space"):
                return int(smbclient.stat_volume(self._share_root, **self._kw()).caller_available_size)
        except DestinationError:
            return None

    def health(self) -> Health:
        start = time.monotonic()
        problems: list[str] = []
        reachable = writable = False
        free = None
        try:
            with self._errors("health probe"):
                self._ensure_root()
                reachable = True
                for entry in smbclient.scandir(self._root, search_pattern=f"{PROBE_PREFIX}*", **self._kw()):
                    self._remove_probe(self._path(entry.name))  # left by a probe whose connection dropped
                probe = self._path(probe_name())
                try:
                    with smbclient.open_file(probe, mode="xb", **self._kw()) as f:
                        f.write(PROBE_DATA)
                except Exception:
                    with suppress(Exception):  # when the connection is still up; else the next probe removes it
                        self._remove_probe(probe)
                    raise
                self._remove_probe(probe)
                writable = True
            free = self.free_space()
        except DestinationError as exc:
            problems.append(str(exc))
        return Health(reachable, writable, free, (time.monotonic() - start) * 1000, tuple(problems))

    def _remove_probe(self, path: str) -> None:
        try:
            smbclient.remove(path, **self._kw())
        except SMBOSError as exc:
            if not is_missing_os(exc):
                raise

    def remove_stale_temp(self, prefix: str = "") -> builtins.list[str]:
        _check_prefix(prefix)
        rel = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        removed = []
        with self._errors(f"removing stale temp files under {prefix or '/'}"):
            for key, _entry in self._scan(rel):
                if key.endswith(TEMP_SUFFIX):
                    try:
                        smbclient.remove(self._path(key), **self._kw())
                        removed.append(key)
                    except SMBOSError as exc:
                        if not is_missing_os(exc):
                            raise
        return removed


def from_config(cfg: Any) -> SmbDestination:
    """Build from a DestinationConfig of kind 'smb' (server, port, share, path, user, password_env or
    credentials_file, require_encryption). The password is read now, so a missing one fails early."""
    path = getattr(cfg, "path", "") or ""
    path = path.as_posix() if hasattr(path, "as_posix") else str(path)
    return SmbDestination(
        cfg.name,
        server=cfg.server,
        share=cfg.share,
        path="" if path == "." else path,
        user=cfg.user,
        password=read_password(cfg.name, getattr(cfg, "password_env", None), getattr(cfg, "credentials_file", None)),
        port=getattr(cfg, "port", None) or 445,
        require_encryption=bool(getattr(cfg, "require_encryption", False)),
    )
