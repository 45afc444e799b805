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
  statvfs); None when that is unavailable.
- An error with an errno (paramiko gives ENOENT and EACCES) goes through the shared classifier. The bare
  status FAILURE, which OpenSSH's sftp-server sends for ENOSPC, EDQUOT, EROFS and EIO alike, is told
  apart with the same statvfs: a read-only flag is `DestinationReadOnly`, no free block
  `DestinationFull`, anything else a plain `DestinationError`.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import posixpath
import secrets
import socket
import stat
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import paramiko
from paramiko import sftp as sftp_protocol

from backupd.destinations.base import TEMP_SUFFIX, Health, ObjectInfo, UploadContext, classify_os_error
from backupd.destinations.local import _check_key, _check_prefix
from backupd.destinations.probe import PROBE_DATA, is_probe, probe_name
from backupd.errors import DestinationError, DestinationUnavailable, NotFound

__all__ = ["SftpDestination", "fingerprint", "from_config"]

DEFAULT_TIMEOUT_S = 30.0
_WRITE_BUFFER = 1024 * 1024
_READ_AHEAD = 1024 * 1024  # requested past the read position, in flight
_MIN_REQUEST = 32 * 1024  # what every SFTP server takes (and paramiko's own size)
_MAX_REQUEST = 255 * 1024  # OpenSSH's sftp-server limit
# paramiko prefers aes-ctr + hmac-sha2; its AES-GCM costs 1.5x less CPU a MiB (bench/README.md)
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey):
        super().__init__("unknown host key")
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, keeping the offered key so the error can name its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(key)


def _check_remote_key(key: str) -> str:
    """local.py's key rules, plus no NUL (which OpenSSH's sftp-server answers by dropping the session)."""
    if "\0" in key:
        raise ValueError(f"invalid object key {key!r}")
    _check_key(key)
    return key


def _discard(file: paramiko.SFTPFile) -> None:
    """Close a file whose upload failed or was abandoned, and keep paramiko's `__del__` from trying
    again (and raising "Socket is closed" into the garbage collector) once the connection is gone."""
    try:
        file.close()
    except Exception:  # noqa: BLE001 - the upload is lost already; only cleanup is left
        pass
    file._closed = True  # paramiko.BufferedFile's own flag; close() sets it only after a successful flush


_ST_RDONLY = 0x1  # statvfs@openssh.com's f_flag bit for a read-only filesystem (PROTOCOL, section 4.4)


@dataclass(frozen=True)
class _Statvfs:
    frsize: int
    bavail: int
    flag: int


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOENT


def _fast_transport(sock: socket.socket, **kwargs: Any) -> paramiko.Transport:
    """A Transport preferring AES-GCM, on a socket that sends small requests at once (without
    TCP_NODELAY a synchronous round trip took ~6 ms on loopback)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = [c for c in _PREFERRED_CIPHERS if c in options.ciphers]
    options.ciphers = tuple(offered + [c for c in options.ciphers if c not in offered])
    return transport


def _request_sizes(sftp: paramiko.SFTPClient) -> tuple[int, int]:
    """(read, write) request sizes: what the server's `limits@openssh.com` announces, up to 255 KiB,
    else 32 KiB. Larger requests mean fewer requests and replies for paramiko to handle."""
    try:
        kind, msg = sftp._request(sftp_protocol.CMD_EXTENDED, "limits@openssh.com")
    except OSError as exc:
        if isinstance(exc, socket.timeout):
            raise
        return _MIN_REQUEST, _MIN_REQUEST  # "Operation unsupported": the server has no limits extension
    if kind != sftp_protocol.CMD_EXTENDED_REPLY or msg is None:
        return _MIN_REQUEST, _MIN_REQUEST
    msg.get_int64()  # max-packet-length: the read and write lengths already leave room for headers
    max_read, max_write = msg.get_int64(), msg.get_int64()
    return max(_MIN_REQUEST, min(max_read, _MAX_REQUEST)), max(_MIN_REQUEST, min(max_write, _MAX_REQUEST))


class _Reply:
    """Where paramiko hands the reply to one asynchronous request (kind and message, undecoded)."""

    kind: int | None = None
    msg: paramiko.Message | None = None

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        self.kind, self.msg = kind, msg


class SftpUpload(UploadContext):
    """Writes the temp file; `commit` flushes, fsyncs and renames it over the target."""

    def __init__(self, dest: SftpDestination, key: str):
        self._dest = dest
        self._final = dest._remote(key)
        final = PurePosixPath(self._final)
        self._tmp = str(final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"))
        self._what = f"writing {key}"
        self._done = False
        self.bytes_written = 0
        with dest._errors(self._what):
            sftp = dest._sftp()
            dest._makedirs(sftp, posixpath.dirname(self._final))
            self._file = sftp.open(self._tmp, "wbx", bufsize=_WRITE_BUFFER)
            self._file.set_pipelined(True)
            self._file.MAX_REQUEST_SIZE = dest._write_request  # paramiko's per-request cap (class default 32 KiB)
            self._sftp = sftp
        dest._uploads.add(self)

    def write(self, data: bytes | memoryview) -> None:
        try:
            with self._dest._errors(self._what):
                self._file.write(data)
        except DestinationError:
            self.abort()
            raise
        self.bytes_written += len(data)

    def commit(self) -> None:
        try:
            with self._dest._errors(self._what):
                self._file.flush()
                self._check_writes()
                self._dest._fsync(self._sftp, self._file)
                self._file.close()
                stored = self._sftp.stat(self._tmp).st_size
                if stored != self.bytes_written:
                    raise self._dest._refused(f"{self._what}: the server stored {stored} of {self.bytes_written} bytes")
                self._sftp.posix_rename(self._tmp, self._final)
        except DestinationError:
            self.abort()
            raise
        self._done = True
        self._dest._uploads.discard(self)

    def _check_writes(self) -> None:
        """Wait for the status of every pipelined write still unanswered, raising on the first failure.

        paramiko files pipelined writes under no owner, so a status read by any other request (the
        fsync, the close) would be thrown away unchecked: a full disk would go unnoticed."""
        reqs, expecting = self._file._reqs, self._sftp._expecting
        while reqs:
            req = reqs.popleft()
            if req not in expecting:
                continue  # read, unchecked, by another request: commit's size check still catches a short file
            try:
                self._sftp._read_response(req)
            except OSError as exc:
                if exc.errno is not None or self._dest._connection_lost(exc):
                    raise
                raise self._dest._refused(f"{self._what}: the server refused a write", exc) from None

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._dest._uploads.discard(self)
        _discard(self._file)
        try:
            self._sftp.remove(self._tmp)
        except Exception as exc:  # noqa: BLE001
            if not _is_missing(exc):
                self._dest._orphans.add(self._tmp)  # removed on the next connection



class _Reader(io.RawIOBase):
    """A streaming, seekable read whose failures (a connection dropped mid-restore) are classified like
    every other operation. Requests for up to `_READ_AHEAD` bytes past the position are in flight, sent
    and collected on the reading thread: paramiko's `readv`/`prefetch` run a helper thread that hung a
    read now and then in tests, so they are not used. A seek elsewhere drops the read-ahead."""

    def __init__(self, dest: SftpDestination, key: str, sftp: paramiko.SFTPClient, file: paramiko.SFTPFile, size: int):
        self._dest, self._key, self._sftp, self._file, self._size = dest, key, sftp, file, size
        self._request = dest._read_request
        self._pos = 0
        self._chunk = memoryview(b"")  # received bytes starting at the position
        self._ahead: deque[tuple[int, int]] = deque()  # (request number, offset) in flight, in offset order
        self._wanted: set[int] = set()
        self._replies: dict[int, tuple[int, paramiko.Message]] = {}
        self._next = 0  # offset of the next request

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        if base + offset != self._pos:
            self._pos, self._chunk = base + offset, memoryview(b"")
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        wanted = min(len(out), self._size - self._pos)
        done = 0
        with self._dest._errors(f"reading {self._key}"):
            while done < wanted:
                chunk = self._at_position()
                if not chunk:
                    break
                n = min(len(chunk), wanted - done)
                out[done : done + n] = chunk[:n]
                self._chunk = chunk[n:]
                self._pos += n
                done += n
        return done

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        """Where paramiko hands the replies to this reader's requests (requests dropped by a seek are ignored)."""
        if num in self._wanted:
            self._replies[num] = (kind, msg)

    def _at_position(self) -> memoryview:
        """Bytes starting at the position (empty at the server's end of file), keeping the read-ahead full."""
        if self._chunk:
            return self._chunk
        if not self._ahead or self._ahead[0][1] != self._pos:  # a seek, or a short reply before
            self._drop()
        limit = min(self._size, self._pos + _READ_AHEAD)
        while self._next < limit:
            n = min(self._request, self._size - self._next)
            num = self._sftp._async_request(
                self, sftp_protocol.CMD_READ, self._file.handle, sftp_protocol.int64(self._next), n
            )
            self._ahead.append((num, self._next))
            self._wanted.add(num)
            self._next += n
        num, _offset = self._ahead.popleft()
        while num not in self._replies:
            self._sftp._read_response()
        self._wanted.discard(num)
        kind, msg = self._replies.pop(num)
        if kind == sftp_protocol.CMD_STATUS:
            try:
                self._sftp._convert_status(msg)
            except EOFError:
                return memoryview(b"")  # the file is shorter than it was: the reader of the artifact says so
        if kind != sftp_protocol.CMD_DATA:
            raise paramiko.SSHException(f"expected data, got SFTP message type {kind}")
        return memoryview(msg.get_string())

    def _drop(self) -> None:
        self._ahead.clear()
        self._wanted.clear()
        self._replies.clear()
        self._next = self._pos

    def close(self) -> None:
        if not self.closed:
            self._drop()
            _discard(self._file)
        super().close()


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
        self._read_request = self._write_request = _MIN_REQUEST
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
            client = self._connect()
            try:
                sftp = client.open_sftp()
                sftp.get_channel().settimeout(self.timeout)
                self._read_request, self._write_request = _request_sizes(sftp)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                client.close()
                raise DestinationUnavailable(
                    f"destination {self.name!r}: SFTP session on {self._where} failed: {exc}",
                    hint="check that the server offers the sftp subsystem",
                ) from None
            self._client, self._client_sftp = client, sftp
        self._remove_orphans(sftp)
        return sftp

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise DestinationError(
                f"destination {self.name!r}: cannot read known_hosts {str(self.known_hosts)!r}:"
                f" {getattr(exc, 'strerror', None) or exc}",
                hint="point known_hosts at a file holding the server's host key",
            ) from None
        client.set_missing_host_key_policy(_RejectUnknown())
        host_entry = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=str(self.key_file) if self.key_file else None,
                allow_agent=self.key_file is None,
                look_for_keys=False,
                transport_factory=_fast_transport,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
            )
        except _UnknownHostKey as exc:
            client.close()
            raise DestinationError(
                f"destination {self.name!r}: unknown host key for {self._where}: the server offers"
                f" {exc.key.get_name()} {fingerprint(exc.key)}, which is not in {str(self.known_hosts)!r}",
                hint=f"check that fingerprint with the server's administrator, then add the key:"
                f" ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}",
                details={"host": self.host, "port": self.port, "fingerprint": fingerprint(exc.key)},
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise DestinationError(
                f"destination {self.name!r}: HOST KEY CHANGED for {self._where}: the server offers"
                f" {exc.key.get_name()} {fingerprint(exc.key)}, but {str(self.known_hosts)!r} expects"
                f" {exc.expected_key.get_name()} {fingerprint(exc.expected_key)}; this may be an attack",
                hint=f"if the server's key really changed, replace its entry:"
                f" ssh-keygen -R '{host_entry}' -f {self.known_hosts} && ssh-keyscan -p {self.port} {self.host}"
                f" >> {self.known_hosts}",
                details={"host": self.host, "port": self.port, "fingerprint": fingerprint(exc.key)},
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            how = f"key {str(self.key_file)!r}" if self.key_file else "the ssh-agent's keys"
            raise DestinationError(
                f"destination {self.name!r}: login as {self.user!r} on {self._where} with {how} failed: {exc}",
                hint="check user and key_file, and that the public key is in the server's authorized_keys",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise DestinationUnavailable(
                f"destination {self.name!r}: cannot connect to {self._where}: {exc}",
                hint="check that the server is up and reachable; the operation is retried",
            ) from None
        return client

    def _close_locked(self) -> None:
        client, self._client, self._client_sftp = self._client, None, None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close the connection, and with it uploads still open; the next operation opens a new one."""
        for upload in list(self._uploads):
            _discard(upload._file)
        with self._lock:
            self._close_locked()

    def _remove_orphans(self, sftp: paramiko.SFTPClient) -> None:
        for path in list(self._orphans):
            try:
                sftp.remove(path)
            except OSError as exc:
                if not _is_missing(exc):
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
        if st is not None and st.flag & _ST_RDONLY:
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
                if not _is_missing(exc):
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
        """fsync@openssh.com; a server without it (status OP_UNSUPPORTED) is remembered and not asked
        again, any other failure (EIO, a full disk) fails the upload. The status code is read here:
        paramiko's own request keeps only the message text."""
        if not self._fsync_supported:
            return
        reply = _Reply()
        sftp._async_request(reply, sftp_protocol.CMD_EXTENDED, "fsync@openssh.com", file.handle)
        while reply.msg is None:
            sftp._read_response()
        if reply.kind != sftp_protocol.CMD_STATUS:
            raise paramiko.SSHException(f"fsync: expected a status, got SFTP message type {reply.kind}")
        code, text = reply.msg.get_int(), reply.msg.get_text()
        if code == sftp_protocol.SFTP_OP_UNSUPPORTED:
            self._fsync_supported = False
        elif code != sftp_protocol.SFTP_OK:
            raise OSError(f"fsync failed: {text or code}")

    def _stat_regular(self, sftp: paramiko.SFTPClient, key: str) -> paramiko.SFTPAttributes:
        try:
            attrs = sftp.stat(self._remote(key))
        except OSError as exc:
            if not _is_missing(exc):
                raise
            attrs = None
        if attrs is None or not stat.S_ISREG(attrs.st_mode or 0):
            raise NotFound(f"destination {self.name!r} has no object {key}")
        return attrs

    def _walk(self, sftp: paramiko.SFTPClient, prefix: str) -> Iterator[tuple[str, paramiko.SFTPAttributes]]:
        """(key, attributes) of every file under the prefix's folder, directories sorted."""
        if "\0" in prefix:
            raise ValueError(f"invalid prefix {prefix!r}")
        base = self._remote(_check_prefix(prefix)) if prefix else self.root
        try:
            if not stat.S_ISDIR(sftp.stat(base).st_mode or 0):
                return
        except OSError as exc:
            if _is_missing(exc):
                return
            raise
        stack = [base]
        while stack:
            directory = stack.pop()
            try:
                entries = sftp.listdir_attr(directory)
            except OSError as exc:
                if _is_missing(exc):
                    continue
                raise
            subdirs = []
            for entry in entries:
                full = posixpath.join(directory, entry.filename)
                if stat.S_ISDIR(entry.st_mode or 0):
                    subdirs.append(full)
                elif stat.S_ISREG(entry.st_mode or 0):
                    yield posixpath.relpath(full, self.root), entry
            stack.extend(sorted(subdirs, reverse=True))

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
                if _is_missing(exc):
                    raise NotFound(f"destination {self.name!r} has no object {key}") from None
                raise
            if not stat.S_ISREG(attrs.st_mode or 0):  # a directory opens fine over SFTP
                _discard(file)
                raise NotFound(f"destination {self.name!r} has no object {key}")
        reader = _Reader(self, key, sftp, file, attrs.st_size or 0)
        return io.BufferedReader(reader, buffer_size=_READ_AHEAD)  # type: ignore[return-value]

    def list(self, prefix: str = "") -> list[ObjectInfo]:
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
                if _is_missing(exc):
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

    def _statvfs(self, sftp: paramiko.SFTPClient) -> _Statvfs | None:
        """statvfs@openssh.com of the root (or its nearest existing ancestor); None if the server lacks it."""
        kind, msg = sftp._request(sftp_protocol.CMD_EXTENDED, "statvfs@openssh.com", self._statvfs_path(sftp))
        if kind != sftp_protocol.CMD_EXTENDED_REPLY or msg is None:
            return None
        _bsize, frsize, _blocks, _bfree, bavail, _files, _ffree, _favail, _fsid, flag = (
            msg.get_int64() for _ in range(10))
        return _Statvfs(frsize, bavail, flag)

    def _statvfs_path(self, sftp: paramiko.SFTPClient) -> str:
        """The root, or its nearest existing ancestor before the first upload created it."""
        path = self.root
        while path not in ("", "/", "."):
            try:
                sftp.stat(path)
                return path
            except OSError as exc:
                if not _is_missing(exc):
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
            if not _is_missing(exc):
                raise

    def remove_stale_temp(self, prefix: str = "") -> list[str]:
        removed = []
        with self._errors(f"removing stale temp files under {prefix or '/'}"):
            sftp = self._sftp()
            for key, _attrs in list(self._walk(sftp, prefix)):
                if key.endswith(TEMP_SUFFIX):
                    try:
                        sftp.remove(self._remote(key))
                        removed.append(key)
                    except OSError as exc:
                        if not _is_missing(exc):
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
