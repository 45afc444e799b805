"""structlog setup: JSON events (console rendering on a terminal), stdlib loggers bridged into the same
stream, secrets redacted. Event names are the contract log-based alerting relies on.

When the stream is journald's (`JOURNAL_STREAM` names its device and inode), each line starts with its
syslog priority (`<3>` for an error): journald's stdout streams read that prefix by default
(`SyslogLevelPrefix=yes`), so `journalctl -p err` lists failed jobs without the native protocol."""

from __future__ import annotations

import logging
import os
import sys
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


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once per process; `level='off'` silences every event."""
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
