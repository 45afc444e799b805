"""What a notification says about an event: its one-line subject, its plain-text body, and how loud it
is (ntfy priority and tags, log severity, the outcome apprise colours by). Every notifier kind words an
event through here, so a mail, a push and a ping read alike.

Pure: the host name is handed in by the caller; nothing here reads the clock or the machine.

>>> from backupd.core.events import Event, EventType
>>> e = Event(id="j1.1.backup.failed", type=EventType.BACKUP_FAILED, at="2026-12-04T03:00:00+00:00",
...           source="app", schedule="nightly")
>>> subject(e, "db1"), priority(e), severity(e), tags(e)
('[backupd@db1] backup failed: app (nightly)', 5, 'error', ['rotating_light', 'backup', 'failed', 'app'])
"""

from __future__ import annotations

import re
from typing import Literal

from backupd.core.events import PROBLEM_TYPES, Event, EventType
from backupd.core.units import format_duration, format_size

SUBJECT_MAX = 200  # characters; mail clients and push banners cut long subjects anyway
_T = EventType
# Problems that need someone now: no new restore point, no restore, a destination lost.
_URGENT = frozenset({_T.BACKUP_FAILED, _T.RESTORE_FAILED, _T.FRESHNESS_VIOLATED, _T.DESTINATION_UNHEALTHY})
# Worth a look, but the backups are happening.
_WARNINGS = frozenset({_T.BACKUP_SUCCEEDED_WITH_WARNINGS, _T.BACKUP_SKIPPED, _T.VALIDATION_WARNED,
                       _T.DESTINATION_DEGRADED})
# Something worked, or something wrong ended.
_SUCCESSES = frozenset({_T.BACKUP_SUCCEEDED, _T.VALIDATION_PASSED, _T.RESTORE_SUCCEEDED, _T.DESTINATION_RECOVERED,
                        _T.FRESHNESS_RESTORED, _T.ALERT_CLEARED})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_EMOJI = {"failure": "rotating_light", "warning": "warning", "success": "white_check_mark",
          "info": "information_source"}  # ntfy shows these shortcodes as emoji

Outcome = Literal["failure", "warning", "success", "info"]


def one_line(text: str) -> str:
    """`text` with every run of control characters (CR, LF, tabs, NUL...) as one space, trimmed."""
    return _CONTROL.sub(" ", text).strip()


def outcome(event: Event) -> Outcome:
    """How the event went: a failure (a PROBLEM_TYPES event), a warning, a success, or just information
    (a start, a test). These are apprise's notify types, word for word."""
    if event.type in PROBLEM_TYPES:
        return "failure"
    if event.type in _WARNINGS:
        return "warning"
    if event.type in _SUCCESSES:
        return "success"
    return "info"


def severity(event: Event) -> Literal["error", "warning", "info"]:
    """The log level the `log` kind writes it at: error for problems, warning for warnings, else info."""
    kind = outcome(event)
    return "error" if kind == "failure" else "warning" if kind == "warning" else "info"


def priority(event: Event) -> int:
    """ntfy's priority, 1 (min) to 5 (max): 5 for urgent problems, 4 for the others, 3 for warnings and
    tests, 2 for successes and starts."""
    if event.type in _URGENT:
        return 5
    kind = outcome(event)
    if kind == "failure":
        return 4
    if kind == "warning" or event.type == _T.NOTIFIER_TEST:
        return 3
    return 2


def _about(event: Event) -> str:
    """Whom the event is about: its source, else its destinations, else the notifier it names."""
    if event.source:
        return event.source
    if event.destinations:
        return ", ".join(event.destinations)
    for key in ("destination", "notifier"):
        if event.details.get(key):
            return str(event.details[key])
    return ""


def subject(event: Event, host: str) -> str:
    """One line naming the host, what the event is about and what happened, at most SUBJECT_MAX long:
    `[backupd@db1] backup failed: app (nightly)`."""
    text = f"[backupd@{one_line(host)}] {event.type.subject} {event.type.state.replace('_', ' ')}"
    about = one_line(_about(event))
    if about:
        text += f": {about}"
    if event.schedule:
        text += f" ({one_line(event.schedule)})"
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 1] + "…"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{format_duration(seconds)} ({seconds:.0f}s)"


def body(event: Event, host: str) -> str:
    """Plain text: a headline, then one `name: value` line per fact the event has, then its log tail.
    The message and the log tail lines are quoted verbatim."""
    facts: list[tuple[str, str]] = [("event", str(event.type)), ("at", event.at), ("host", host)]
    optional = [("source", event.source), ("schedule", event.schedule), ("job", event.job_id),
                ("backup", event.backup_id), ("destinations", ", ".join(event.destinations))]
    facts += [(name, value) for name, value in optional if value]
    if event.error_code:
        facts.append(("error", event.error_code))
    if event.message:
        facts.append(("message", event.message))
    if event.duration_s is not None:
        facts.append(("duration", _duration(event.duration_s)))
    if event.bytes is not None:
        facts.append(("size", f"{format_size(event.bytes)} ({event.bytes} bytes)"))
    facts += [(f"details.{key}", str(value)) for key, value in sorted(event.details.items(), key=lambda kv: str(kv[0]))
              if value is not None]
    facts.append(("event id", event.id))
    lines = [subject(event, host), ""] + [f"{name}: {value}" for name, value in facts]
    if event.log_tail:
        lines += ["", "log tail:", *(f"  {line}" for line in event.log_tail)]
    return "\n".join(lines) + "\n"


def tags(event: Event) -> list[str]:
    """ntfy tags: an emoji shortcode for the outcome, the event's subject and state, and its source;
    each free of commas and control characters (the Tags header is a comma list)."""
    words = [_EMOJI[outcome(event)], event.type.subject, event.type.state]
    if event.source:
        words.append(event.source)
    cleaned = (one_line(word.replace(",", " ")) for word in words)
    return [word for word in cleaned if word]
