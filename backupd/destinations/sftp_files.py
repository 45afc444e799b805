"""The files of `destinations.sftp`: an upload (temp file, pipelined writes, fsync, posix-rename) and a
streaming, seekable read with its own read-ahead, and the walk that lists files.
"""

from __future__ import annotations

import io
import posixpath
import secrets
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import paramiko
from paramiko import sftp as sftp_protocol

from backupd.destinations.base import TEMP_SUFFIX, UploadContext
from backupd.destinations.sftp_session import discard, internals, is_missing, pending_writes
from backupd.errors import DestinationError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from backupd.destinations.sftp import SftpDestination

WRITE_BUFFER = 1024 * 1024
READ_AHEAD = 1024 * 1024  # requested past the read position, in flight


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
            self._file = sftp.open(self._tmp, "wbx", bufsize=WRITE_BUFFER)
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
        reqs, private = pending_writes(self._file), internals(self._sftp)
        while reqs:
            req = reqs.popleft()
            if req not in private._expecting:
                continue  # read, unchecked, by another request: commit's size check still catches a short file
            try:
                private._read_response(req)
            except OSError as exc:
                if exc.errno is not None or self._dest._connection_lost(exc):
                    raise
                raise self._dest._refused(f"{self._what}: the server refused a write", exc) from None

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._dest._uploads.discard(self)
        discard(self._file)
        try:
            self._sftp.remove(self._tmp)
        except Exception as exc:  # noqa: BLE001
            if not is_missing(exc):
                self._dest._orphans.add(self._tmp)  # removed on the next connection



class SftpReader(io.RawIOBase):
    """A streaming, seekable read whose failures (a connection dropped mid-restore) are classified like
    every other operation. Requests for up to `READ_AHEAD` bytes past the position are in flight, sent
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

    def readinto(self, buffer: WriteableBuffer) -> int:
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
        limit = min(self._size, self._pos + READ_AHEAD)
        while self._next < limit:
            n = min(self._request, self._size - self._next)
            num = internals(self._sftp)._async_request(
                self, sftp_protocol.CMD_READ, self._file.handle, sftp_protocol.int64(self._next), n
            )
            self._ahead.append((num, self._next))
            self._wanted.add(num)
            self._next += n
        num, _offset = self._ahead.popleft()
        while num not in self._replies:
            internals(self._sftp)._read_response()
        self._wanted.discard(num)
        kind, msg = self._replies.pop(num)
        if kind == sftp_protocol.CMD_STATUS:
            try:
                internals(self._sftp)._convert_status(msg)
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
            discard(self._file)
        super().close()


def walk(sftp: paramiko.SFTPClient, root: str, base: str) -> Iterator[tuple[str, paramiko.SFTPAttributes]]:
    """(key relative to `root`, attributes) of every regular file under `base`, directories sorted;
    nothing when `base` is missing or no directory."""
    try:
        if not stat.S_ISDIR(sftp.stat(base).st_mode or 0):
            return
    except OSError as exc:
        if is_missing(exc):
            return
        raise
    stack = [base]
    while stack:
        directory = stack.pop()
        try:
            entries = sftp.listdir_attr(directory)
        except OSError as exc:
            if is_missing(exc):
                continue
            raise
        subdirs = []
        for entry in entries:
            full = posixpath.join(directory, entry.filename)
            if stat.S_ISDIR(entry.st_mode or 0):
                subdirs.append(full)
            elif stat.S_ISREG(entry.st_mode or 0):
                yield posixpath.relpath(full, root), entry
        stack.extend(sorted(subdirs, reverse=True))
