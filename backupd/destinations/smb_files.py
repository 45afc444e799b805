"""The files of `destinations.smb`: an upload (temp file beside the target, flush, close, replace) and a
streaming read whose failures are classified like every other operation.
"""

from __future__ import annotations

import io
import secrets
from typing import TYPE_CHECKING

import smbclient
from smbprotocol.exceptions import SMBException

from backupd.destinations.base import TEMP_SUFFIX, UploadContext
from backupd.errors import DestinationError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from backupd.destinations.smb import SmbDestination


class SmbUpload(UploadContext):
    """Streams into a temp file beside the target; commit flushes, closes and replaces it onto the target."""

    def __init__(self, dest: SmbDestination, key: str):
        self._dest = dest
        self._key = key
        parent, _, name = key.rpartition("/")
        temp_key = f"{parent}/" if parent else ""
        temp_key += f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        self._final = dest._path(key)
        self._tmp = dest._path(temp_key)
        self._what = f"writing {key}"
        self.bytes_written = 0
        self._done = False
        with dest._errors(self._what):
            if parent:
                dest._makedirs(dest._path(parent))
            # share "rwd": a crashed upload's temp file can still be deleted by remove_stale_temp
            self._f = smbclient.open_file(self._tmp, mode="xb", buffering=0, share_access="rwd", **dest._kw())

    def write(self, data: bytes | memoryview) -> None:
        try:
            with self._dest._errors(self._what):
                view = memoryview(data).cast("B")
                while view:
                    n = self._f.write(view)
                    view = view[n:]
        except DestinationError:
            self.abort()
            raise
        self.bytes_written += len(data)

    def commit(self) -> None:
        try:
            with self._dest._errors(self._what):
                self._f.flush()
                self._f.close()
                smbclient.replace(self._tmp, self._final, **self._dest._kw())
        except DestinationError:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._f.close()
            smbclient.remove(self._tmp, **self._dest._kw())
        except (OSError, SMBException, ValueError):
            pass  # the connection is gone: remove_stale_temp cleans the temp file up later


class SmbReader(io.RawIOBase):
    """A streaming read whose failures (a dropped connection mid-restore) are classified like the rest."""

    def __init__(self, dest: SmbDestination, key: str, raw: io.RawIOBase):
        self._dest, self._key, self._raw = dest, key, raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int | None:
        with self._dest._errors(f"reading {self._key}"):
            return self._raw.readinto(b)

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            except (OSError, SMBException, ValueError):
                pass  # the connection is gone; nothing to release
        super().close()
