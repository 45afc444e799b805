"""Load-time checks of [[notifiers]] against the file system, the environment and the installed extras.

Run once the shape is valid (`notifiers.py`), beside the destinations' login checks. Each problem is
`notifiers[i].key: what is wrong; how to fix it`, and none quotes a secret: a secret file's bad line
is named by its number, an apprise URL by its scheme, a header by its name.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from backupd.config.files import login_file_problem
from backupd.config.notifiers import NotifierConfig
from backupd.core.vocab import NotifierKind

_K = NotifierKind
SECRET_PREFIX = "whsec_"
# Headers backupd sets itself on each kind's requests (compared in lower case): a config may not replace them.
RESERVED_HEADERS: dict[NotifierKind, frozenset[str]] = {
    _K.WEBHOOK: frozenset({"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}),
    _K.NTFY: frozenset({"title", "priority", "tags"}),
}
APPRISE_INSTALL = "pip install 'backupd[apprise]'"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 token)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

Problems = Iterator[tuple[str, str]]  # (key under the notifier, message)


def notifier_problems(notifiers: Sequence[NotifierConfig], environ: Mapping[str, str]) -> list[str]:
    """Every problem of every notifier, as `notifiers[i].key: problem`, in config order; `environ` is
    backupd's environment (the variables named by `*_env` keys, and PATH for a command)."""
    return [f"notifiers[{index}].{key}: {message}"
            for index, notifier in enumerate(notifiers) for key, message in _problems(notifier, environ)]


def _problems(notifier: NotifierConfig, environ: Mapping[str, str]) -> Problems:
    if notifier.url is not None and (message := _url_problem(notifier.url)):
        yield "url", message
    if notifier.headers is not None:
        yield from _header_problems(notifier.headers, RESERVED_HEADERS.get(notifier.kind, frozenset()))
    if notifier.ca_file is not None and (message := _ca_file_problem(notifier.ca_file)):
        yield "ca_file", message
    if notifier.secret_file is not None and (message := _secret_file_problem(notifier.secret_file)):
        yield "secret_file", message
    for key in ("token_env", "password_env"):
        name = getattr(notifier, key)
        if name is not None and not environ.get(name):
            yield key, f"environment variable {name!r} is not set or empty; set it in backupd's environment"
    if notifier.password_file is not None and (message := _password_file_problem(notifier.password_file)):
        yield "password_file", message
    if notifier.from_addr is not None and (message := _address_problem(notifier.from_addr)):
        yield "from", message
    for index, address in enumerate(notifier.to or ()):
        if message := _address_problem(address):
            yield f"to[{index}]", message
    if notifier.command is not None and (message := _program_problem(notifier.command[0], environ)):
        yield "command[0]", message
    if notifier.urls is not None:
        yield from _apprise_problems(notifier.urls)
    if notifier.token_env is not None and notifier.url is not None and _in_clear(notifier.url):
        yield "token_env", ("the token would cross the network in the clear (an http:// URL to another machine);"
                            " use https://")
    if notifier.username is not None and notifier.security == "none" and not _loopback(notifier.smtp_host or ""):
        yield "security", ("'none' would send the password in the clear to another machine; use 'starttls' or"
                           " 'tls'")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _in_clear(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and not _loopback(parts.hostname or "")


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.password is not None:
        return ("holds a password (user:password@ in the URL), which would be sent and logged in the clear; remove"
                " it and authenticate with headers (e.g. Authorization), a secret_file (webhook) or token_env (ntfy)")
    if parts.username is not None:
        return ("holds a user name (user@ in the URL), which backupd does not send; remove it and authenticate with"
                " headers (e.g. Authorization), a secret_file (webhook) or token_env (ntfy)")
    if not url.isascii():
        return "holds characters that are not ASCII; percent-encode them (and the host as punycode)"
    return None


def _header_problems(headers: Mapping[str, str], reserved: frozenset[str]) -> Problems:
    for name, value in headers.items():
        key = f"headers.{name if _BARE_KEY.fullmatch(name) else json.dumps(name)}"
        if not _TOKEN.fullmatch(name):
            yield key, "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only); rename it"
        elif name.lower() in reserved:
            yield key, (f"backupd sets this header itself (it sets {', '.join(sorted(reserved))}); remove it"
                        " from headers")
        if any(c in value for c in "\r\n\0"):
            yield key, "the value contains a line break or NUL, which would split the request; remove it"
        elif not value.isascii():
            yield key, "the value is not ASCII, which HTTP headers cannot carry as is; encode it (e.g. percent-encoding)"


def _ca_file_problem(path: Path) -> str | None:
    if problem := login_file_problem(path, secret=False):
        return problem
    try:
        context = ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        reason = _ssl_reason(exc)
        return f"{str(path)!r} cannot be loaded as PEM CA certificates ({reason}); point ca_file at a PEM file"
    if not context.get_ca_certs():
        return f"{str(path)!r} holds no CA certificate; point ca_file at a PEM file of CA certificates"
    return None


def _ssl_reason(exc: ssl.SSLError | OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


def _secret_file_problem(path: Path) -> str | None:
    """The secret file is private, readable, and each non-blank, non-comment line is `whsec_<base64>`."""
    data, problem = _read_private(path)
    if problem:
        return problem
    shown, found = repr(str(path)), 0
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if not _is_secret(line):
            return (f"line {number} of {shown} is not a secret; write each as {SECRET_PREFIX} followed by its"
                    " base64 (one per line, # for comments)")
        found += 1
    if not found:
        return f"{shown} holds no secret; add a line {SECRET_PREFIX}<base64> (e.g. from the receiver's settings)"
    return None


def _is_secret(line: bytes) -> bool:
    prefix = SECRET_PREFIX.encode()
    if not line.startswith(prefix):
        return False
    try:
        return bool(base64.b64decode(line[len(prefix):], validate=True))
    except (binascii.Error, ValueError):
        return False


def _password_file_problem(path: Path) -> str | None:
    data, problem = _read_private(path)
    if problem:
        return problem
    if not data.strip(b"\r\n"):
        return f"{str(path)!r} is empty; write the SMTP password into it"
    return None


def _read_private(path: Path) -> tuple[bytes, str | None]:
    """A secret file's content, or why it cannot be used: missing, not a file, open to others, unreadable."""
    if problem := login_file_problem(path, secret=True):
        return b"", problem
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return b"", f"{str(path)!r} cannot be read ({exc.strerror}); let backupd's user read it"


def _address_problem(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    if at and local and domain and not any(c.isspace() for c in address):
        return None
    return (f"{address!r} is not an email address (expected name@domain, with no spaces or line breaks);"
            " correct it")


def _program_problem(program: str, environ: Mapping[str, str]) -> str | None:
    """command[0] is an absolute path to an executable file, or a bare name found on backupd's PATH."""
    if os.path.isabs(program):
        if not os.path.exists(program):
            return f"{program!r} does not exist; check the path"
        if not os.path.isfile(program):
            return f"{program!r} is not a regular file; point command[0] at the program"
        if not os.access(program, os.X_OK):
            return f"{program!r} is not executable; run: chmod +x {shlex.quote(program)}"
        return None
    if "/" in program:
        return f"{program!r} is a relative path; give the program's absolute path or a name found on PATH"
    search = environ.get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        return (f"{program!r} is not found on backupd's PATH ({search or 'empty'}); give its absolute path"
                " or install it")
    return None


def _apprise_problems(urls: Sequence[str]) -> Problems:
    if importlib.util.find_spec("apprise") is None:
        yield "urls", f"apprise is not installed: {APPRISE_INSTALL}"
        return
    import apprise  # the optional extra: imported only when a notifier uses it

    with _quiet("apprise"):  # apprise logs a rejected URL, which may hold credentials
        for index, url in enumerate(urls):
            if not apprise.Apprise().add(url):
                scheme = urlsplit(url).scheme if "://" in url else ""
                shown = f"a {scheme}:// URL" if scheme else "a URL with no scheme://"
                yield f"urls[{index}]", (f"apprise does not accept it ({shown}); check it against apprise's"
                                         " documentation for that service")


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled
