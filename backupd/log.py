"""structlog setup: JSON events (console rendering on a terminal), stdlib loggers bridged into the same
stream, secrets redacted. Event names are the contract log-based alerting relies on."""

from __future__ import annotations

import logging
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
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
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
