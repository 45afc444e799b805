"""structlog setup: JSON events (console rendering on a terminal), stdlib loggers bridged into the same
stream, secrets redacted. Event names are the contract log-based alerting relies on.

When the stream is journald's (`JOURNAL_STREAM` names its device and inode), each line starts with its
syslog priority (`<3>` for an error): journald's stdout streams read that prefix by default
(`SyslogLevelPrefix=yes`), so `journalctl -p err` lists failed jobs without the native protocol.

A log stream whose reader went away (`backupd run | head`) never fails the thread that logs, nor a
job: the lines go to stderr instead, or, when that is closed too, are dropped and counted."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

SECRET_KEYS = ("password", "passphrase", "secret", "token", "key_material")


def redact_secrets(_logger: Any, _name: str, event: EventDict) -> EventDict:
    for k in list(event):
        if any(s in k.lower() for s in SECRET_KEYS):
            event[k] = "[redacted]"
    return event


# syslog priorities (sd-daemon.h) of structlog's level names
SYSLOG_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def is_journal_stream(stream: TextIO) -> bool:
    """Whether `stream` is the journald stream systemd connected (`JOURNAL_STREAM` is its `device:inode`)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return bool(expected) and expected == f"{st.st_dev}:{st.st_ino}"


def with_priority(renderer: Processor) -> Processor:
    """`renderer` whose lines start with the event's syslog priority prefix (`<N>`)."""
    def render(logger: Any, name: str, event: EventDict) -> str:
        line = renderer(logger, name, event)
        return f"<{SYSLOG_PRIORITIES.get(str(event.get('level', '')), 6)}>{line!s}"
    return render


class LogStream:
    """Writes to `stream` until a write fails (EPIPE: the reader is gone; EIO, ENOSPC), then to
    `fallback` (stderr) until that fails too, then nowhere, counting the lines dropped. A failed
    stream's descriptor is pointed at /dev/null, so the interpreter's last flush does not fail either."""

    def __init__(self, stream: TextIO, fallback: TextIO | None):
        self._streams = [s for s in (stream, fallback) if s is not None]
        self._lock = threading.Lock()
        self.dropped = 0

    def write(self, text: str) -> int:
        with self._lock:
            while self._streams:
                try:
                    self._streams[0].write(text)
                    self._streams[0].flush()
                    return len(text)
                except (OSError, ValueError):
                    _silence(self._streams.pop(0))
            self.dropped += 1
            return len(text)

    def flush(self) -> None:
        """Each write is flushed already."""

    def isatty(self) -> bool:
        return bool(self._streams) and self._streams[0].isatty()

    def fileno(self) -> int:
        if not self._streams:
            raise OSError("the log streams are closed")
        return self._streams[0].fileno()


def _silence(stream: TextIO) -> None:
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass  # not a file (a test's buffer), or closed already


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once per process; `level='off'` silences every event. Lines go to `stream`
    (stdout by default), through a LogStream that falls back to stderr."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Processor = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    if is_journal_stream(stream):
        renderer = with_priority(renderer)
    stream = LogStream(stream, None if stream is sys.stderr else sys.stderr)  # type: ignore[assignment]
    numeric = logging.CRITICAL if level == "off" else getattr(logging, level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer, foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
