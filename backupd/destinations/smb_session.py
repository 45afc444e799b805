"""The SMB session behind `destinations.smb`: opening a connection, the NT statuses it maps to errnos,
and reading the password.
"""

from __future__ import annotations

import errno
import os
import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBOSError
from smbprotocol.header import NtStatus
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from backupd.errors import DestinationError

MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
# NT statuses of the share's medium -> the errno the shared classifier (base.classify_os_error) knows;
# smbprotocol's SMBOSError maps only a few of them. Samba answers EROFS with MEDIA_WRITE_PROTECTED and
# EIO with UNEXPECTED_IO_ERROR.
NT_ERRNO = {
    NtStatus.STATUS_DISK_FULL: errno.ENOSPC,
    0xC0000044: errno.EDQUOT,  # STATUS_QUOTA_EXCEEDED
    0xC00000A2: errno.EROFS,  # STATUS_MEDIA_WRITE_PROTECTED
    NtStatus.STATUS_ACCESS_DENIED: errno.EACCES,
    NtStatus.STATUS_PRIVILEGE_NOT_HELD: errno.EACCES,
    0xC00000E9: errno.EIO,  # STATUS_UNEXPECTED_IO_ERROR
    0xC000009C: errno.EIO,  # STATUS_DEVICE_DATA_ERROR
}
CONNECT_TIMEOUT_S = 15


def ntstatus(exc: BaseException) -> int | None:
    """The NT status an smbprotocol error carries, if any."""
    return getattr(exc, "ntstatus", None) or getattr(exc, "status", None)


def is_missing_os(exc: BaseException | None) -> bool:
    """Nothing there, a directory, a path under a file, or a file already being deleted (a crashed
    upload's temp file that is still held open stays listed, delete-pending, until its handle closes)."""
    return isinstance(exc, SMBOSError) and (
        exc.errno in MISSING_ERRNOS or exc.ntstatus == NtStatus.STATUS_DELETE_PENDING
    )


def open_connection(
    server: str, port: int, user: str, password: str, share_root: str, *, require_encryption: bool, where: str
) -> Connection:
    """A connection with a logged-on session and `share_root` connected, encrypting whenever the dialect
    allows it; DestinationError (naming `where`) when encryption is required and the server cannot."""
    conn = Connection(uuid.uuid4(), server, port, require_signing=True)
    conn.connect(timeout=CONNECT_TIMEOUT_S)
    try:
        if require_encryption and not conn.supports_encryption:
            raise DestinationError(
                f"{where}: the server does not offer SMB3 encryption",
                hint="enable SMB3 encryption on the server or set require_encryption = false",
            )
        # encrypt whenever the dialect allows it, not only when the server insists
        session = Session(conn, user, password, require_encryption=conn.supports_encryption)
        session.connect()
        # connect the share now: a wrong share name fails here, clearly, not deep inside smbclient
        TreeConnect(session, share_root).connect()
    except BaseException:
        conn.disconnect()
        raise
    return conn


def read_password(name: str, password_env: str | None, credentials_file: str | os.PathLike[str] | None) -> str:
    """The SMB password from the environment variable `password_env`, else from `credentials_file`.

    The credentials file holds the password alone on its first line (a trailing newline is ignored,
    nothing else is parsed), and must not be readable by group or others (mode 0600 or 0400).
    """
    if password_env:
        value = os.environ.get(password_env)
        if value is None:
            raise DestinationError(
                f"destination {name!r}: environment variable {password_env} is not set",
                hint=f"export {password_env} with the SMB password before starting backupd",
            )
        return value
    if credentials_file:
        path = os.fspath(credentials_file)
        try:
            st = os.stat(path)
            if st.st_mode & 0o077:
                raise DestinationError(
                    f"destination {name!r}: credentials file {path} is readable by others (mode {st.st_mode & 0o777:04o})",
                    hint=f"chmod 600 {path}",
                )
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise DestinationError(
                f"destination {name!r}: cannot read credentials file {path}: {exc.strerror or exc}",
                hint="point credentials_file at a readable file holding the password on its first line",
            ) from None
    raise DestinationError(
        f"destination {name!r}: no SMB password configured", hint="set password_env or credentials_file"
    )
