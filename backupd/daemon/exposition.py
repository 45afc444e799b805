"""Where the metrics leave the daemon besides the control op: a node_exporter textfile and an HTTP listener.

`TextfileWriter` rewrites `[monitoring] textfile` atomically (a temp file in the same directory, then
a rename, so the collector never reads half a file) every 60 s and soon after `kick()` (the end of
every job), on a thread of its own. `HttpListener` serves `/metrics` and `/healthz` on `[monitoring]
listen` from daemon threads; neither ever blocks the daemon's loop or control socket.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from backupd.core.vocab import HealthStatus
from backupd.daemon.loop import BackgroundLoop

log = structlog.get_logger("backupd.metrics")
TEXTFILE_INTERVAL_S = 60.0


class TextfileWriter(BackgroundLoop):
    """Writes the registry's exposition to `path` every `interval` seconds and after each `kick()`."""

    thread_name = "metrics-textfile"

    def __init__(self, registry: CollectorRegistry, path: Path, interval: float = TEXTFILE_INTERVAL_S):
        self._registry, self._path, self._interval = registry, path, interval
        super().__init__()

    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                write_textfile(self._path, generate_latest(self._registry))
                if failing:
                    log.info("metrics_textfile_recovered", path=str(self._path))
                failing = False
            except Exception as exc:  # a full disk or a removed directory must not end the thread
                if not failing:
                    log.error("metrics_textfile_failed", path=str(self._path), error=f"{type(exc).__name__}: {exc}")
                failing = True
            self._kick.wait(self._interval)
            self._kick.clear()


def write_textfile(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically: a hidden temp file beside it (not ending `.prom`, so the
    collector skips it), flushed to disk, then renamed over it; readable by node_exporter's user (0644)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # whatever the daemon's umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


class HttpListener:
    """`GET /metrics` (the exposition) and `GET /healthz` (the `health` op's answer as JSON: 200, or
    503 when unhealthy) on `address`."""

    def __init__(self, registry: CollectorRegistry, address: tuple[str, int], health: Callable[[], dict[str, Any]]):
        handler = _handler(registry, health)
        self._server = ThreadingHTTPServer(address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics_listening", address=f"{self.address[0]}:{self.address[1]}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(registry: CollectorRegistry, health: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a client that stalls holds only its own thread, for this long

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                h = health()
                code = 503 if h["status"] == HealthStatus.UNHEALTHY else 200
                self._send(code, "application/json", json.dumps(h, default=str).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            """Requests are not logged (a scrape every few seconds would flood the journal)."""

    return Handler
