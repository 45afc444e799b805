"""Client behaviour that needs no daemon: socket resolution, a daemon that is not there, a ROUTER that
never answers (Lazy Pirate: reconnect and resend, but never a request that starts a job), replies
that are not ours, and arguments refused before anything is sent."""

from __future__ import annotations

import time
from datetime import datetime

import msgpack
import pytest

from backupd_client import errors
from backupd_client.client import Client, resolve_socket
from backupd_client.protocol import DEFAULT_SOCKET, Op, decode_request, encode_reply_ok


def test_socket_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv("BACKUPD_SOCKET", raising=False)
    assert resolve_socket() == DEFAULT_SOCKET == "/run/backupd/control.sock"
    monkeypatch.setenv("BACKUPD_SOCKET", "/srv/b.sock")
    assert resolve_socket() == "/srv/b.sock"
    assert resolve_socket("/x.sock") == "/x.sock"
    c = Client()
    assert (c.socket_path, c.endpoint) == ("/srv/b.sock", "ipc:///srv/b.sock")


def test_missing_socket_is_unreachable_at_once_naming_the_path_and_the_fix(short_dir):
    path = str(short_dir / "nope.sock")
    start = time.monotonic()
    with Client(path, timeout=5) as c, pytest.raises(errors.DaemonUnreachable) as caught:
        c.status()
    assert time.monotonic() - start < 1
    assert caught.value.code == "daemon_unreachable" and caught.value.exit_code == 1
    assert path in str(caught.value) and "systemctl start backupd" in str(caught.value)
    assert caught.value.details == {"socket": path}


def test_stale_socket_is_unreachable_at_once(stale_socket):
    with Client(stale_socket, timeout=5) as c, pytest.raises(errors.DaemonUnreachable) as caught:
        c.health()
    assert type(caught.value) is errors.DaemonUnreachable
    assert "nothing is listening" in str(caught.value) and stale_socket in str(caught.value)


def test_a_file_that_is_not_a_socket_is_unreachable(short_dir):
    path = short_dir / "plain"
    path.write_text("")
    with pytest.raises(errors.DaemonUnreachable, match="not a socket"):
        Client(path).status()


def test_silent_daemon_times_out_after_resending_on_fresh_sockets(silent_router):
    start = time.monotonic()
    with Client(silent_router.path, timeout=0.2, retries=2) as c, pytest.raises(errors.RequestTimeout) as caught:
        c.job_get("j1")
    elapsed = time.monotonic() - start
    assert 0.55 <= elapsed < 3
    exc = caught.value
    assert (exc.code, exc.exit_code) == ("timeout", 1) and isinstance(exc, errors.DaemonUnreachable)
    assert silent_router.path in str(exc) and "3 tries" in str(exc)
    assert exc.details["tries"] == 3
    requests = [decode_request(frame) for _, frame in silent_router.received]
    assert [(r.op, r.args) for r in requests] == [(Op.JOB_GET, {"job_id": "j1"})] * 3
    assert len({r.id for r in requests}) == 1  # the same request, resent
    assert len({identity for identity, _ in silent_router.received}) == 3  # each on a new connection


def test_requests_that_start_a_job_are_never_resent(silent_router):
    with Client(silent_router.path, timeout=0.2, retries=5) as c, pytest.raises(errors.RequestTimeout) as caught:
        c.backup_create("app", strategy="full")
    assert len(silent_router.received) == 1
    assert "sent once" in str(caught.value) and "backupctl jobs" in str(caught.value)
    assert decode_request(silent_router.received[0][1]).args == {
        "source": "app", "strategy": "full", "priority": "normal", "tags": [], "description": ""}


def test_a_daemon_gone_between_tries_is_reported_unreachable_without_more_tries(silent_router):
    silent_router.after_first = lambda: None  # the serving thread returns and closes the socket: file removed
    start = time.monotonic()
    with Client(silent_router.path, timeout=0.3, retries=10) as c, pytest.raises(errors.DaemonUnreachable) as caught:
        c.status()
    assert type(caught.value) is errors.DaemonUnreachable
    assert time.monotonic() - start < 2
    assert len(silent_router.received) == 1


def test_job_wait_reads_for_as_long_as_it_asked_the_daemon_to_wait(silent_router):
    with Client(silent_router.path, timeout=0.2, retries=0) as c:
        start = time.monotonic()
        with pytest.raises(errors.RequestTimeout):
            c.job_wait("j1", timeout_s=0.4)
        assert time.monotonic() - start >= 0.55  # 0.4 s of wait + 0.2 s of reply time, not 0.2
        with pytest.raises(errors.RequestTimeout):
            c.job_wait("j2", timeout_s=0.1, on_progress=lambda job: None)
    first, second = (decode_request(frame).args for _, frame in silent_router.received)
    assert first == {"job_id": "j1", "timeout_s": pytest.approx(0.4, abs=0.01)}
    assert second == {"job_id": "j2", "timeout_s": pytest.approx(0.1, abs=0.01), "progress": True}


def test_replies_to_other_requests_are_discarded(silent_router):
    silent_router.answer = lambda frame: [encode_reply_ok("not-" + decode_request(frame).id, {"status": "ok"})]
    with Client(silent_router.path, timeout=0.2, retries=0) as c, pytest.raises(errors.RequestTimeout):
        c.status()
    assert len(silent_router.received) == 1


@pytest.mark.parametrize(("reply", "error"), [
    (lambda rid: b"\xc1garbage", errors.InternalError),
    (lambda rid: msgpack.packb({"v": 2, "id": rid, "ok": True, "result": {}}), errors.UnsupportedProtocolVersionError),
])
def test_an_unreadable_reply_is_an_error_not_a_hang(silent_router, reply, error):
    silent_router.answer = lambda frame: [reply(decode_request(frame).id)]
    with Client(silent_router.path, timeout=5) as c, pytest.raises(error) as caught:
        c.status()
    assert silent_router.path in str(caught.value)


@pytest.mark.parametrize("call", [
    lambda c: c.backup_create("app", strategy="weekly"),
    lambda c: c.backup_create("app", priority="urgent"),
    lambda c: c.validate("b1", level="paranoid"),
    lambda c: c.job_list(limit="ten"),
    lambda c: c.call("no.such.op"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(short_dir, call):
    # The socket does not exist: refusing first proves nothing was sent.
    with Client(short_dir / "none.sock") as c, pytest.raises(errors.ClientError) as caught:
        call(c)
    assert caught.value.code in ("bad_request", "unknown_op")


@pytest.mark.parametrize("call", [
    lambda c: c.restore_create("app", "/tmp/x.db"),
    lambda c: c.restore_create("app", "/tmp/x.db", backup_id="b", at="2026-01-01T00:00:00Z"),
    lambda c: c.restore_create("app", "/tmp/x.db", at="2026-01-01T00:00:00"),
    lambda c: c.restore_nearest("app", datetime(2026, 1, 1)),
    lambda c: c.restore_nearest("app", "yesterday"),
])
def test_restore_needs_one_point_in_time_with_a_timezone(short_dir, call):
    with Client(short_dir / "none.sock") as c, pytest.raises(errors.BadUsageError) as caught:
        call(c)
    assert caught.value.exit_code == 2


def test_timeout_must_be_positive():
    with pytest.raises(errors.BadUsageError):
        Client("/x.sock", timeout=0)
