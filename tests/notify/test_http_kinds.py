"""What the HTTP kinds send: signed webhooks, Healthchecks pings, ntfy pushes; HTTPS with a private CA;
410 Gone disables the notifier."""

from __future__ import annotations

import base64
import email.header
import json
import os
import time

import pytest
from standardwebhooks import Webhook

from backupd.core import notice
from backupd.core.events import Event, EventType
from backupd.errors import ConfigError
from backupd.notify.base import DeliveryFailed
from backupd.notify.ping import BODY_LIMIT, ping_heartbeat
from tests.notify.conftest import AT, HOST, SECRET_PATH, build, make_event
from tests.servers.receivers import HttpReceiver


def secret(seed: int) -> str:
    return "whsec_" + base64.b64encode(bytes([seed]) * 24).decode()


def test_webhook_is_the_wire_event_signed_with_every_rotated_secret(http, tmp_path):
    old, new = secret(1), secret(2)
    secrets = tmp_path / "webhook.secrets"
    secrets.write_text(f"# rotating: old first\n{old}\n\n   {new}  \n")
    transport = build("webhook", url=f"{http.url}/hook", secret_file=str(secrets), headers={"X-Team": "dba"})
    event = make_event(details={"attempt": 1})
    transport.send(event, timeout=5)
    (request,) = http.wait_for(1)
    assert request.headers["content-type"] == "application/json" and request.headers["x-team"] == "dba"
    assert json.loads(request.body) == event.to_wire()
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for key in (old, new):  # a receiver that knows either key accepts it
        assert Webhook(key).verify(request.body, request.headers) == event.to_wire()
    with pytest.raises(Exception):
        Webhook(secret(3)).verify(request.body, request.headers)


def test_a_resent_webhook_keeps_its_id_so_receivers_deduplicate(http):
    transport = build("webhook", url=f"{http.url}/hook")
    event = make_event()
    transport.send(event, timeout=5)
    transport.send(event, timeout=5)
    first, second = http.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.id
    assert "webhook-signature" not in first.headers  # no secret_file: unsigned


@pytest.mark.parametrize("text, problem", [
    (None, "cannot be read"), ("", "holds no whsec_ secret"), ("# only a comment\n", "holds no whsec_ secret"),
    ("abc\n", "line 1 is not a whsec_<base64> secret"), ("whsec_%%%\n", "line 1 is not valid base64"),
])  # fmt: skip
def test_a_bad_secret_file_is_a_config_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "secrets"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        build("webhook", url="http://127.0.0.1:9/hook", secret_file=str(path))
    assert str(path) in str(caught.value) and problem in str(caught.value)
    assert "%%%" not in str(caught.value)


@pytest.mark.parametrize("kind", ["webhook", "ping", "ntfy"])
def test_410_gone_disables_the_notifier(http, kind):
    http.on("/", 410)
    with pytest.raises(DeliveryFailed) as caught:
        build(kind, url=f"{http.url}/{SECRET_PATH}").send(make_event(), timeout=5)
    assert caught.value.gone and "HTTP 410" in caught.value.message and SECRET_PATH not in caught.value.message


def test_redirects_are_not_followed(http):
    http.on("/", 302)
    with pytest.raises(DeliveryFailed, match="HTTP 302.*redirects are not followed") as caught:
        build("webhook", url=f"{http.url}/hook").send(make_event(), timeout=5)
    assert not caught.value.gone


def test_https_verifies_against_ca_file_and_fails_without_it(tmp_path):
    receiver = HttpReceiver(tmp_path, tls=True).start()
    try:
        build("webhook", url=f"{receiver.url}/hook", ca_file=str(receiver.cert)).send(make_event(), timeout=5)
        assert len(receiver.wait_for(1)) == 1
        with pytest.raises(DeliveryFailed) as caught:
            build("ntfy", url=f"{receiver.url}/{SECRET_PATH}").send(make_event(), timeout=5)
        message = caught.value.message
        assert "TLS certificate not trusted" in message and f"127.0.0.1:{receiver.port}" in message
        assert SECRET_PATH not in message and not caught.value.gone
    finally:
        receiver.stop()


@pytest.mark.parametrize("type, suffix", [
    (EventType.BACKUP_STARTED, "/start"), (EventType.BACKUP_SUCCEEDED, ""),
    (EventType.BACKUP_SUCCEEDED_WITH_WARNINGS, ""), (EventType.BACKUP_FAILED, "/fail"),
    (EventType.BACKUP_PARTIAL, "/fail"), (EventType.FRESHNESS_VIOLATED, "/fail"),
    (EventType.FRESHNESS_RESTORED, ""), (EventType.BACKUP_SKIPPED, "/log"),
])  # fmt: skip
def test_ping_routes_each_event_to_its_suffix(http, type, suffix):
    build("ping", url=f"{http.url}/ping/abc/").send(make_event(type), timeout=5)  # the trailing / is dropped
    (request,) = http.wait_for(1)
    assert request.method == "POST" and request.path == f"/ping/abc{suffix}"


def test_ping_keeps_the_query_and_cuts_the_body_to_what_a_check_keeps(http):
    event = make_event(log_tail=tuple("é" * 99 for _ in range(200)))
    build("ping", url=f"{http.url}/ping/key/db-backup?create=1").send(event, timeout=5)
    (request,) = http.wait_for(1)
    assert request.path == "/ping/key/db-backup/fail?create=1"
    assert len(request.body) <= BODY_LIMIT and request.body.decode().startswith(notice.subject(event, HOST))


def test_the_heartbeat_pings_the_bare_url(http):
    ping_heartbeat(f"{http.url}/ping/heartbeat", timeout=5)
    assert [(r.method, r.path, r.body) for r in http.wait_for(1)] == [("POST", "/ping/heartbeat", b"")]
    http.stop()
    with pytest.raises(DeliveryFailed, match=f"127.0.0.1:{http.port}: connection refused"):
        ping_heartbeat(f"{http.url}/ping/heartbeat", timeout=1)


def test_ntfy_sends_title_priority_tags_and_bearer(http, monkeypatch):
    monkeypatch.setenv("NTFY_TOKEN", "tk_abc123")
    transport = build("ntfy", url=f"{http.url}/backups", token_env="NTFY_TOKEN", headers={"X-Click": "https://x"})
    event = make_event()
    transport.send(event, timeout=5)
    (request,) = http.wait_for(1)
    h = request.headers
    assert h["title"] == notice.subject(event, HOST) == "[backupd@db1] backup failed: app (nightly)"
    assert h["priority"] == "5" and h["tags"] == "rotating_light,backup,failed,app"
    assert h["authorization"] == "Bearer tk_abc123" and h["x-click"] == "https://x"
    assert request.body.decode() == notice.body(event, HOST)


def test_ntfy_encodes_a_title_that_is_not_ascii(http):
    event = Event(id="e1", type=EventType.BACKUP_SUCCEEDED, at=AT, source="données")
    build("ntfy", url=f"{http.url}/backups").send(event, timeout=5)
    (request,) = http.wait_for(1)
    ((raw, charset),) = email.header.decode_header(request.headers["title"])
    assert raw.decode(charset) == "[backupd@db1] backup succeeded: données"
    assert request.headers["priority"] == "2"


def test_ntfy_without_its_token_variable_fails_naming_it(http, monkeypatch):
    monkeypatch.delenv("NTFY_TOKEN", raising=False)
    with pytest.raises(DeliveryFailed, match="token variable NTFY_TOKEN is not set"):
        build("ntfy", url=f"{http.url}/backups", token_env="NTFY_TOKEN").send(make_event(), timeout=5)
    assert http.requests == []


def test_tls_contexts_are_built_once_per_version_of_the_ca_file(tmp_path):
    from backupd.notify.http import tls_context
    from tests.servers.receivers import make_cert

    assert tls_context(None) is tls_context(None)  # the system's store is read once, not per request
    cert, _ = make_cert(tmp_path)
    first = tls_context(cert)
    assert tls_context(cert) is first
    os.utime(cert, ns=(0, 1))  # rewritten (a new version): read again
    assert tls_context(cert) is not first


def test_a_receiver_that_trickles_its_reply_cannot_outlast_the_timeout():
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def trickle():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not done.wait(0.2):  # a header line well within any socket timeout, forever
                try:
                    conn.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        hook = build("webhook", url=f"http://127.0.0.1:{port}/in")
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=r"127.0.0.1:\d+: no answer within 1s"):
            hook.send(make_event(), timeout=1.0)
        assert time.monotonic() - started < 2.0
    finally:
        done.set()
        server.close()
