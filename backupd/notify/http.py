"""One HTTP request for the webhook, ping and ntfy kinds, with its failures worded for the outbox.

A failure names the host and the cause, never the URL's path or query: ping and webhook URLs carry
their secret there. Redirects are not followed (a signed event goes where it was configured, or
nowhere). `timeout` bounds the attempt: the request and the wait for the reply get what the connect
left of it.
"""

from __future__ import annotations

import functools
import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from backupd.core import notice
from backupd.notify.base import Deadline, DeliveryFailed

GONE = 410
_DRAIN = 64 * 1024  # of a reply body read and dropped


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx surfaces as an HTTPError


def _bounded(base: type[http.client.HTTPConnection], deadline: Deadline) -> type[http.client.HTTPConnection]:
    """`base` whose request and wait for the reply get what the connect left of the attempt's time."""
    class Bounded(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            deadline.guard(self.sock)
            self.sock.settimeout(deadline.left())
    return Bounded


class _Http(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_bounded(http.client.HTTPConnection, self.deadline), req)


class _Https(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline, context: ssl.SSLContext):
        super().__init__(context=context)
        self.deadline, self.context = deadline, context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_bounded(http.client.HTTPSConnection, self.deadline), req, context=self.context)


def host_of(url: str) -> str:
    """The `host[:port]` of `url`, without any user name or password: what messages may show."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def truncate(text: str, limit: int) -> bytes:
    """`text` as UTF-8, cut to at most `limit` bytes on a character boundary."""
    data = text.encode()
    return data if len(data) <= limit else data[:limit].decode(errors="ignore").encode()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: trusting `ca_file` alone when given, else the system's CAs. Shared:
    building one reads every CA certificate (~20 ms of CPU, more than the request), so each is built
    once per version of `ca_file` (a rewritten file is read again; the system's store at the start)."""
    if ca_file is None:
        return _context(None, 0)
    return _context(str(ca_file), os.stat(ca_file).st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _context(ca_file: str | None, _version: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _cause(error: BaseException, timeout: float) -> str:
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({error.verify_message}); set ca_file to the CA that signed it"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({error.reason or error})"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host ({error.strerror})"
    if isinstance(error, http.client.HTTPException):
        return f"bad HTTP reply ({type(error).__name__})"
    if isinstance(error, ValueError):
        return "the request cannot be sent (a header value or the URL is malformed)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__


def _refused(host: str, status: int, reason: str) -> NoReturn:
    words = f"HTTP {status} {notice.one_line(reason)[:60]}".rstrip()  # the receiver's words: no control characters
    if 300 <= status < 400:
        words += " (redirects are not followed; configure the final URL)"
    raise DeliveryFailed(f"{host} answered {words}", gone=status == GONE)


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float, ca_file: Path | None = None) -> int:
    """POST `body` within `timeout` in all and return the 2xx status; raise DeliveryFailed for any other
    status (`gone` for 410), a refused or timed-out connection, or a TLS failure."""
    host, deadline = host_of(url), Deadline(timeout)
    req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        opener = urllib.request.build_opener(_Http(deadline), _Https(deadline, tls_context(ca_file)), _NoRedirects)
        with opener.open(req, timeout=timeout) as reply:
            reply.read(_DRAIN)
            status = int(reply.status)
        if deadline.expired:  # cut off mid-reply: what was read of it proves nothing
            raise TimeoutError
    except urllib.error.HTTPError as exc:
        _refused(host, exc.code, str(exc.reason or ""))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # `from None`: the chained error may carry the full URL, which holds the secret
        why = f"no answer within {timeout:g}s" if deadline.expired else _cause(exc, timeout)
        raise DeliveryFailed(f"{host}: {why}") from None
    finally:
        deadline.close()
    if not 200 <= status < 300:
        _refused(host, status, "")
    return status
