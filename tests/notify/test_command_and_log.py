"""The command kind's environment, exits and process-group kill; the log kind's levels; the registry."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from structlog.testing import capture_logs

from backupd.core.events import EventType
from backupd.core.vocab import NotifierKind
from backupd.errors import ConfigError
from backupd.notify.base import DeliveryFailed
from backupd.notify.registry import TRANSPORTS
from tests.notify.conftest import build, command_rig, make_event


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper is dead too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_command_reads_the_event_and_its_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUPD_TEST_SMTP_PASSWORD", "hunter2")  # another notifier's secret: not passed on
    rig = command_rig(tmp_path)
    event = make_event(EventType.BACKUP_SUCCEEDED)
    rig.make().send(event, timeout=5)
    directory = rig.extra["dir"]
    assert json.loads((directory / "received.jsonl").read_text()) == event.to_wire()
    assert (directory / "env.txt").read_text().splitlines() == [
        f"BACKUPD_EVENT_ID={event.id}", "BACKUPD_EVENT_TYPE=backup.succeeded", "BACKUPD_SOURCE=app"]


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path):
    rig = command_rig(tmp_path)
    rig.hang()
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match=r"still running after 0.5s; killed it and its process group"):
        rig.make().send(make_event(), timeout=0.5)
    assert time.monotonic() - started < 2.5
    child = int((rig.extra["dir"] / "child.pid").read_text())
    deadline = time.monotonic() + 2
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child), "the command's background child survived the timeout"


def test_a_failing_command_says_its_exit_code_and_last_stderr_line(tmp_path):
    rig = command_rig(tmp_path)
    rig.refuse()
    with pytest.raises(DeliveryFailed) as caught:
        rig.make().send(make_event(), timeout=5)
    assert caught.value.message == f"command {rig.names}: exited with 3: boom: the pager is down"
    assert "--quiet" not in caught.value.message  # arguments may hold secrets: only the program is named


def test_a_program_that_cannot_run_is_named(tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(DeliveryFailed, match=f"command {script}: not executable"):
        build("command", command=[str(script)]).send(make_event(), timeout=5)
    with pytest.raises(DeliveryFailed, match="command backupd-no-such-program: not found"):
        build("command", command=["backupd-no-such-program"]).send(make_event(), timeout=5)


@pytest.mark.parametrize("type, level", [
    (EventType.BACKUP_FAILED, "error"), (EventType.FRESHNESS_VIOLATED, "error"),
    (EventType.BACKUP_SUCCEEDED_WITH_WARNINGS, "warning"), (EventType.DESTINATION_DEGRADED, "warning"),
    (EventType.BACKUP_SUCCEEDED, "info"), (EventType.NOTIFIER_TEST, "info"),
])  # fmt: skip
def test_the_log_kind_logs_at_the_events_severity(type, level):
    event = make_event(type)
    with capture_logs() as logs:
        build("log").send(event, timeout=0.5)
    (entry,) = logs
    assert entry["event"] == "notification_logged" and entry["log_level"] == level
    assert entry["notifier"] == "to-log" and entry["id"] == event.id and entry["type"] == str(type)
    assert entry["log_tail"] == list(event.log_tail) and entry["source"] == "app"


def test_every_kind_has_a_transport():
    assert set(TRANSPORTS) == set(NotifierKind)


def test_an_apprise_url_apprise_does_not_know_is_a_config_error():  # apprise: in the test extra, so in CI
    with pytest.raises(ConfigError, match=r"urls\[1\] \(nosuch://\) is not a URL apprise knows") as caught:
        build("apprise", urls=["json://127.0.0.1:9/", "nosuch://token-SECRET@host"])
    assert "SECRET" not in str(caught.value)


def test_a_command_that_leaves_a_child_running_is_delivered_at_once(tmp_path):
    script = tmp_path / "spawn.sh"
    script.write_text("#!/bin/sh\ncat > /dev/null\nsleep 30 &\nexit 0\n")
    script.chmod(0o755)
    started = time.monotonic()
    build("command", command=[str(script)]).send(make_event(), timeout=5)
    assert time.monotonic() - started < 2


def test_a_chatty_command_costs_no_memory_and_its_last_stderr_line_is_quoted(tmp_path):
    script = tmp_path / "chatty.sh"
    script.write_text("#!/bin/sh\ncat > /dev/null\nhead -c 50000000 /dev/zero\nhead -c 5000000 /dev/zero >&2\n"
                      "echo 'the last word' >&2\nexit 4\n")
    script.chmod(0o755)
    with pytest.raises(DeliveryFailed, match="exited with 4: the last word"):
        build("command", command=[str(script)]).send(make_event(), timeout=10)


def test_the_apprise_kind_without_the_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)  # as if the optional extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'backupd\[apprise\]'"):
        build("apprise", urls=["json://127.0.0.1:9/"]).send(make_event(), timeout=1)
