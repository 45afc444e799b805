"""The SSH connection behind `destinations.sftp`, and the SFTP requests paramiko has no public API for.

`connect` opens an SSHClient that verifies the host key against known_hosts (an unknown or changed key
is a `DestinationError` naming its fingerprint), prefers AES-GCM and sets TCP_NODELAY. `request_sizes`,
`fsync` and `statvfs` speak the OpenSSH extensions through paramiko's private request methods, which
`internals` types in one place.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import socket
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import paramiko
from paramiko import sftp as sftp_protocol

from backupd.errors import DestinationError, DestinationUnavailable

if TYPE_CHECKING:
    from paramiko.transport import _SocketLike

    from backupd.destinations.sftp import SftpDestination

MIN_REQUEST = 32 * 1024  # what every SFTP server takes (and paramiko's own size)
_MAX_REQUEST = 255 * 1024  # OpenSSH's sftp-server limit
# paramiko prefers aes-ctr + hmac-sha2; its AES-GCM costs 1.5x less CPU a MiB (bench/README.md)
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
ST_RDONLY = 0x1  # statvfs@openssh.com's f_flag bit for a read-only filesystem (PROTOCOL, section 4.4)


class Internals(Protocol):
    """The private parts of paramiko's SFTPClient this package uses (paramiko/sftp_client.py)."""

    _expecting: dict[int, object]

    def _request(self, t: int, *args: object) -> tuple[int | None, paramiko.Message | None]: ...
    def _async_request(self, fileobj: object, t: int, *args: object) -> int: ...
    def _read_response(self, waitfor: int | None = None) -> tuple[int | None, paramiko.Message | None]: ...
    def _convert_status(self, msg: paramiko.Message) -> None: ...


class _FileInternals(Protocol):
    """The private parts of paramiko's SFTPFile this package uses (paramiko/sftp_file.py, file.py)."""

    _reqs: deque[int]
    _closed: bool


def internals(sftp: paramiko.SFTPClient) -> Internals:
    """`sftp` as the private request API: paramiko offers no public call whose reply or status code
    can be read, nor one for an extension it does not know."""
    return cast(Internals, sftp)


def pending_writes(file: paramiko.SFTPFile) -> deque[int]:
    """The request numbers of a pipelined file's writes whose status nobody has read yet."""
    return cast(_FileInternals, file)._reqs


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def is_missing(exc: BaseException) -> bool:
    """Whether paramiko's error says the path does not exist."""
    return isinstance(exc, OSError) and exc.errno == errno.ENOENT


def discard(file: paramiko.SFTPFile) -> None:
    """Close a file whose upload failed or was abandoned, and keep paramiko's `__del__` from trying
    again (and raising "Socket is closed" into the garbage collector) once the connection is gone."""
    try:
        file.close()
    except Exception:  # noqa: BLE001 - the upload is lost already; only cleanup is left
        pass
    cast(_FileInternals, file)._closed = True  # BufferedFile's own flag; close() sets it only after a flush


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey):
        super().__init__("unknown host key")
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, keeping the offered key so the error can name its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(key)


def _fast_transport(sock: _SocketLike, /, **kwargs: Any) -> paramiko.Transport:
    """A Transport preferring AES-GCM, on a socket that sends small requests at once (without
    TCP_NODELAY a synchronous round trip took ~6 ms on loopback)."""
    if isinstance(sock, socket.socket):  # what SSHClient.connect opens; a proxy channel has no TCP options
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = [c for c in _PREFERRED_CIPHERS if c in options.ciphers]
    options.ciphers = tuple(offered + [c for c in options.ciphers if c not in offered])
    return transport


def connect(dest: SftpDestination) -> paramiko.SSHClient:
    """Log in to `dest`'s server, its host key checked against `dest.known_hosts`.

    An unreadable known_hosts, an unknown or changed host key and a failed login are `DestinationError`;
    an unreachable server is `DestinationUnavailable`."""
    name, where = dest.name, f"{dest.host} port {dest.port}"
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(dest.known_hosts))
    except (OSError, paramiko.SSHException) as exc:
        raise DestinationError(
            f"destination {name!r}: cannot read known_hosts {str(dest.known_hosts)!r}:"
            f" {getattr(exc, 'strerror', None) or exc}",
            hint="point known_hosts at a file holding the server's host key",
        ) from None
    client.set_missing_host_key_policy(_RejectUnknown())
    host_entry = dest.host if dest.port == 22 else f"[{dest.host}]:{dest.port}"
    try:
        client.connect(
            dest.host,
            port=dest.port,
            username=dest.user,
            key_filename=str(dest.key_file) if dest.key_file else None,
            allow_agent=dest.key_file is None,
            look_for_keys=False,
            transport_factory=_fast_transport,
            timeout=dest.timeout,
            banner_timeout=dest.timeout,
            auth_timeout=dest.timeout,
            channel_timeout=dest.timeout,
        )
    except _UnknownHostKey as exc:
        client.close()
        raise DestinationError(
            f"destination {name!r}: unknown host key for {where}: the server offers"
            f" {exc.key.get_name()} {fingerprint(exc.key)}, which is not in {str(dest.known_hosts)!r}",
            hint=f"check that fingerprint with the server's administrator, then add the key:"
            f" ssh-keyscan -p {dest.port} {dest.host} >> {dest.known_hosts}",
            details={"host": dest.host, "port": dest.port, "fingerprint": fingerprint(exc.key)},
        ) from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise DestinationError(
            f"destination {name!r}: HOST KEY CHANGED for {where}: the server offers"
            f" {exc.key.get_name()} {fingerprint(exc.key)}, but {str(dest.known_hosts)!r} expects"
            f" {exc.expected_key.get_name()} {fingerprint(exc.expected_key)}; this may be an attack",
            hint=f"if the server's key really changed, replace its entry:"
            f" ssh-keygen -R '{host_entry}' -f {dest.known_hosts} && ssh-keyscan -p {dest.port} {dest.host}"
            f" >> {dest.known_hosts}",
            details={"host": dest.host, "port": dest.port, "fingerprint": fingerprint(exc.key)},
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        how = f"key {str(dest.key_file)!r}" if dest.key_file else "the ssh-agent's keys"
        raise DestinationError(
            f"destination {name!r}: login as {dest.user!r} on {where} with {how} failed: {exc}",
            hint="check user and key_file, and that the public key is in the server's authorized_keys",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise DestinationUnavailable(
            f"destination {name!r}: cannot connect to {where}: {exc}",
            hint="check that the server is up and reachable; the operation is retried",
        ) from None
    return client


def request_sizes(sftp: paramiko.SFTPClient) -> tuple[int, int]:
    """(read, write) request sizes: what the server's `limits@openssh.com` announces, up to 255 KiB,
    else 32 KiB. Larger requests mean fewer requests and replies for paramiko to handle."""
    try:
        kind, msg = internals(sftp)._request(sftp_protocol.CMD_EXTENDED, "limits@openssh.com")
    except OSError as exc:
        if isinstance(exc, socket.timeout):
            raise
        return MIN_REQUEST, MIN_REQUEST  # "Operation unsupported": the server has no limits extension
    if kind != sftp_protocol.CMD_EXTENDED_REPLY or msg is None:
        return MIN_REQUEST, MIN_REQUEST
    msg.get_int64()  # max-packet-length: the read and write lengths already leave room for headers
    max_read, max_write = msg.get_int64(), msg.get_int64()
    return max(MIN_REQUEST, min(max_read, _MAX_REQUEST)), max(MIN_REQUEST, min(max_write, _MAX_REQUEST))


class _Reply:
    """Where paramiko hands the reply to one asynchronous request (kind and message, undecoded)."""

    kind: int | None = None
    msg: paramiko.Message | None = None

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        self.kind, self.msg = kind, msg


def fsync(sftp: paramiko.SFTPClient, file: paramiko.SFTPFile) -> bool:
    """fsync@openssh.com on `file`; False when the server lacks it (status OP_UNSUPPORTED), OSError for
    any other failure (EIO, a full disk). The status code is read here: paramiko's own request keeps
    only the message text."""
    reply, private = _Reply(), internals(sftp)
    private._async_request(reply, sftp_protocol.CMD_EXTENDED, "fsync@openssh.com", file.handle)
    while reply.msg is None:
        private._read_response()
    if reply.kind != sftp_protocol.CMD_STATUS:
        raise paramiko.SSHException(f"fsync: expected a status, got SFTP message type {reply.kind}")
    code, text = reply.msg.get_int(), reply.msg.get_text()
    if code == sftp_protocol.SFTP_OP_UNSUPPORTED:
        return False
    if code != sftp_protocol.SFTP_OK:
        raise OSError(f"fsync failed: {text or code}")
    return True


@dataclass(frozen=True)
class Statvfs:
    """The fields of a statvfs@openssh.com reply that free space and failure diagnosis read."""

    frsize: int
    bavail: int
    flag: int


def statvfs(sftp: paramiko.SFTPClient, path: str) -> Statvfs | None:
    """statvfs@openssh.com of `path`; None if the server lacks it."""
    kind, msg = internals(sftp)._request(sftp_protocol.CMD_EXTENDED, "statvfs@openssh.com", path)
    if kind != sftp_protocol.CMD_EXTENDED_REPLY or msg is None:
        return None
    _bsize, frsize, _blocks, _bfree, bavail, _files, _ffree, _favail, _fsid, flag = (
        msg.get_int64() for _ in range(10))
    return Statvfs(frsize, bavail, flag)
