"""Real notification receivers on loopback: an HTTP(S) server that records what it is sent and answers
as told, and an SMTP server (aiosmtpd) with STARTTLS, implicit TLS and AUTH.

Both stop and start again on the same port, so a test can take a receiver down and bring it back.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers import free_port


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (it is its own CA): (cert.pem, key.pem)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    body: bytes = b""


class HttpReceiver:
    """Records every request; answers `reply` (or the reply set with `on` for a path prefix), after
    its delay. `tls=True` serves HTTPS with a self-signed certificate (`cert` is its CA file)."""

    def __init__(self, directory: Path | None = None, *, tls: bool = False, port: int | None = None):
        self.port = port or free_port()
        self.reply = Reply()
        self._routes: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self.cert: Path | None = None
        self._ctx: ssl.SSLContext | None = None
        if tls:
            if directory is None:
                raise ValueError("an HTTPS receiver needs a directory for its certificate")
            self.cert, key = make_cert(directory)
            self._ctx = _server_context(self.cert, key)

    @property
    def url(self) -> str:
        return f"{'https' if self._ctx else 'http'}://127.0.0.1:{self.port}"

    def on(self, prefix: str, status: int = 200, *, delay_s: float = 0.0, body: bytes = b"") -> None:
        """Answer requests whose path starts with `prefix` so (the longest prefix wins)."""
        self._routes[prefix] = Reply(status, delay_s, body)

    def _reply_for(self, path: str) -> Reply:
        matches = [p for p in self._routes if path.startswith(p)]
        return self._routes[max(matches, key=len)] if matches else self.reply

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, n: int, timeout: float = 10.0, path: str = "") -> list[Request]:
        """The first `n` requests (to paths starting with `path`), once that many arrived."""
        def enough():
            got = [r for r in self.requests if r.path.startswith(path)]
            return got[:n] if len(got) >= n else None
        return _wait(enough, timeout, f"{n} request(s) to {self.url}{path}")

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver._requests.append(Request(self.command, self.path,
                                                      {k.lower(): v for k, v in self.headers.items()}, body,
                                                      time.time()))
                reply = receiver._reply_for(self.path)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up waiting
                    pass

            do_POST = do_GET = do_PUT = do_HEAD = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self._ctx:
            server.socket = self._ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True, name=f"http-receiver-{self.port}").start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def http_receiver(directory: Path | None = None, *, tls: bool = False) -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(directory, tls=tls).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@dataclass
class _Mailbox:
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str], bool]] = field(default_factory=list)  # (from, to, authenticated)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), bool(session.authenticated)))
        return "250 OK"


class SmtpReceiver:
    """A real SMTP server: `security` is 'starttls' (required before AUTH and mail), 'tls' (implicit
    TLS) or 'none'; with `username`/`password` it requires that login."""

    def __init__(self, directory: Path, *, security: str = "starttls", username: str | None = None,
                 password: str | None = None):
        self.port = free_port()
        self.security = security
        self.box = _Mailbox()
        self.username, self.password = username, password
        self.cert, key = make_cert(directory)
        self._ctx = _server_context(self.cert, key)
        self._controller: Controller | None = None

    def _auth(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False)  # handled=False: a failed login gets its 535

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        with self.box.lock:
            return list(self.box.messages)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
        return _wait(lambda: self.messages[:n] if len(self.messages) >= n else None, timeout,
                     f"{n} message(s) on smtp port {self.port}")

    def start(self) -> SmtpReceiver:
        kw: dict = {}
        if self.username is not None:
            kw.update(authenticator=self._auth, auth_required=True)
        if self.security == "starttls":
            kw.update(tls_context=self._ctx, require_starttls=True, auth_require_tls=True)
        elif self.security == "tls":
            # the whole connection is TLS, but aiosmtpd counts only STARTTLS as TLS for its AUTH gate
            kw.update(ssl_context=self._ctx, server_hostname="localhost", auth_require_tls=False)
        else:
            kw.update(auth_require_tls=False)
        self._controller = Controller(self.box, hostname="127.0.0.1", port=self.port, **kw)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@contextmanager
def smtp_receiver(directory: Path, **kw) -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(directory, **kw).start()
    try:
        yield receiver
    finally:
        receiver.stop()
