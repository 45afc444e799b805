"""Every notifier kind wired to a real receiver on loopback (a `Rig`), for the contract suite and the
kind-specific tests: HTTP(S) for webhook, ping, ntfy and apprise, aiosmtpd for email, a script for
command, structlog's capture for log."""

from __future__ import annotations

import itertools
import json
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from backupd.config.notifiers import NotifierConfig
from backupd.core.events import Event, EventType
from backupd.notify.base import Transport
from backupd.notify.registry import transport_for
from tests.servers.receivers import HttpReceiver, SmtpReceiver

HOST = "db1"
AT = "2026-12-04T03:00:00+00:00"
SECRET_PATH = "hc-SECRET-3f9a1c"  # a URL path segment no message may show
SMTP_USER, SMTP_PASSWORD, SMTP_PASSWORD_ENV = "backupd", "correct horse", "BACKUPD_TEST_SMTP_PASSWORD"
_ids = itertools.count(1)


def make_event(type: EventType = EventType.BACKUP_FAILED, **kw: Any) -> Event:
    """A backup failure of source `app` (schedule nightly) with a fresh id."""
    fields: dict[str, Any] = dict(source="app", schedule="nightly", job_id="j7", message="disk I/O error",
                                  error_code="snapshot_failed", log_tail=("opened snapshot", "read failed"))
    fields.update(kw)
    return Event(id=f"j7.{next(_ids)}.{type}", type=type, at=AT, **fields)


def notifier(kind: str, **keys: Any) -> NotifierConfig:
    return NotifierConfig.model_validate({"name": f"to-{kind}", "kind": kind, **keys})


def build(kind: str, **keys: Any) -> Transport:
    return transport_for(notifier(kind, **keys), host=HOST)


@dataclass
class Rig:
    """One kind against its receiver. `make()` builds the transport as configured now; `ids()` are the
    event ids the receiver got, in order; `down`, `hang` and `refuse` break the receiver the three ways
    the contract tests; a failure must name `names` (and the cause, if `says_why`), never `hidden`."""

    kind: str
    make: Callable[[], Transport]
    ids: Callable[[], list[str]]
    names: str
    down: Callable[[], None] = lambda: None
    hang: Callable[[], None] = lambda: None
    refuse: Callable[[], None] = lambda: None
    hidden: tuple[str, ...] = ()
    refusal: str = ""  # what a failure from `refuse` says
    says_why: bool = True  # apprise reports only that a service failed, not why
    extra: dict[str, Any] = field(default_factory=dict)


def _event_id_in_body(body: bytes) -> str:
    text = body.decode(errors="replace")
    marker = "event id: "
    return text.split(marker, 1)[1].split("\n", 1)[0] if marker in text else ""


def _http_rig(kind: str, receiver: HttpReceiver, keys: dict[str, Any], ids: Callable[[], list[str]],
              path: str) -> Rig:
    return Rig(kind, lambda: build(kind, **keys), ids, names=f"127.0.0.1:{receiver.port}",
               down=receiver.stop, hang=lambda: receiver.on("/", delay_s=3.0), refuse=lambda: receiver.on("/", 500),
               hidden=(SECRET_PATH, path), refusal="HTTP 500", extra={"receiver": receiver})


@pytest.fixture
def http(tmp_path: Path) -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(tmp_path).start()
    yield receiver
    receiver.stop()


def webhook_rig(receiver: HttpReceiver, **keys: Any) -> Rig:
    path = f"/hooks/{SECRET_PATH}?token=q-SECRET"
    return _http_rig("webhook", receiver, {"url": receiver.url + path, **keys},
                     lambda: [r.headers["webhook-id"] for r in receiver.requests], path)


def ping_rig(receiver: HttpReceiver) -> Rig:
    path = f"/ping/{SECRET_PATH}"
    return _http_rig("ping", receiver, {"url": receiver.url + path},
                     lambda: [_event_id_in_body(r.body) for r in receiver.requests], path)


def ntfy_rig(receiver: HttpReceiver) -> Rig:
    path = f"/{SECRET_PATH}-alerts"
    return _http_rig("ntfy", receiver, {"url": receiver.url + path},
                     lambda: [_event_id_in_body(r.body) for r in receiver.requests], path)


def apprise_rig(receiver: HttpReceiver) -> Rig:
    path = f"/{SECRET_PATH}"
    rig = _http_rig("apprise", receiver, {"urls": [f"json://127.0.0.1:{receiver.port}{path}"]},
                    lambda: [_event_id_in_body(json.loads(r.body)["message"].encode()) for r in receiver.requests],
                    path)
    rig.names = "json://"  # apprise URLs may hold their token in the host: a failure names the scheme only
    rig.says_why, rig.refusal = False, ""
    return rig


def _silent_listener(port: int) -> socket.socket:
    """A socket that accepts connections on `port` and never says a word (an SMTP server that hangs)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8)
    return sock


def email_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, security: str, closers: list[Callable[[], None]],
              **keys: Any) -> Rig:
    receiver = SmtpReceiver(tmp_path, security=security, username=SMTP_USER, password=SMTP_PASSWORD).start()
    closers.append(receiver.stop)
    monkeypatch.setenv(SMTP_PASSWORD_ENV, SMTP_PASSWORD)

    def hang() -> None:
        receiver.stop()
        closers.append(_silent_listener(receiver.port).close)

    config = {"smtp_host": "127.0.0.1", "smtp_port": receiver.port, "security": security, "from": "backupd@db1",
              "to": ["ops@example.org", "dba@example.org"], "username": SMTP_USER,
              "password_env": SMTP_PASSWORD_ENV, "ca_file": str(receiver.cert), **keys}
    return Rig(f"email-{security}", lambda: build("email", **config),
               lambda: [str(m["X-Backupd-Event-Id"]) for m in receiver.messages], names=f"127.0.0.1:{receiver.port}",
               down=receiver.stop, hang=hang, refuse=lambda: monkeypatch.setenv(SMTP_PASSWORD_ENV, "wrong"),
               hidden=(SMTP_PASSWORD,), refusal="SMTP 535", extra={"receiver": receiver})


COMMAND_SCRIPT = """#!/bin/sh
# appends the event (stdin) as one line; behaves as the file `mode` says
dir=$(dirname "$0")
cat >> "$dir/received.jsonl"
echo >> "$dir/received.jsonl"
env | grep '^BACKUPD_' | sort >> "$dir/env.txt"
case "$(cat "$dir/mode" 2>/dev/null)" in
  refuse) echo "first line" >&2; echo "boom: the pager is down" >&2; exit 3 ;;
  hang) sleep 30 & echo $! > "$dir/child.pid"; sleep 30 ;;
esac
exit 0
"""


def command_rig(tmp_path: Path) -> Rig:
    directory = tmp_path / "cmd"
    directory.mkdir()
    script = directory / "notify.sh"
    script.write_text(COMMAND_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    received = directory / "received.jsonl"

    def ids() -> list[str]:
        lines = received.read_text().splitlines() if received.exists() else []
        return [json.loads(line)["id"] for line in lines if line]

    return Rig("command", lambda: build("command", command=[str(script), "--quiet"]), ids, names=str(script),
               down=lambda: script.rename(directory / "gone.sh"),
               hang=lambda: (directory / "mode").write_text("hang"),
               refuse=lambda: (directory / "mode").write_text("refuse"),
               refusal="exited with 3: boom: the pager is down", extra={"dir": directory})


KINDS = ["webhook", "ping", "ntfy", "email-starttls", "email-tls", "email-none", "command", "log", "apprise"]


@contextmanager
def open_rig(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    closers: list[Callable[[], None]] = []
    try:
        if kind in ("webhook", "ping", "ntfy", "apprise"):
            receiver = HttpReceiver(tmp_path).start()
            closers.append(receiver.stop)
            yield {"webhook": webhook_rig, "ping": ping_rig, "ntfy": ntfy_rig, "apprise": apprise_rig}[kind](receiver)
        elif kind.startswith("email-"):
            yield email_rig(tmp_path, monkeypatch, kind.removeprefix("email-"), closers)
        elif kind == "command":
            yield command_rig(tmp_path)
        else:
            with capture_logs() as logs:
                yield Rig("log", lambda: build("log"),
                          lambda: [e["id"] for e in logs if e.get("event") == "notification_logged"], names="")
    finally:
        for close in reversed(closers):
            close()


@pytest.fixture(params=KINDS)
def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """Every kind."""
    with open_rig(request.param, tmp_path, monkeypatch) as opened:
        yield opened


@pytest.fixture(params=[k for k in KINDS if k != "log"])
def failing_rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """Every kind with a receiver that can be down, hang or refuse (all but log, which never fails)."""
    with open_rig(request.param, tmp_path, monkeypatch) as opened:
        yield opened
