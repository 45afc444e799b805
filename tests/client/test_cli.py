"""The `backupctl` contract without a daemon: every command parses (global options before or after it),
bad usage exits 2 with one stderr line (a JSON object under --json), and a daemon that is not there
exits 1 with code daemon_unreachable, naming the socket and the fix. Never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backupd_client.cli import build_parser, main
from backupd_client.protocol import decode_request

VALID = [
    (["status"], {"command": "status"}),
    (["health"], {"command": "health"}),
    (["backup", "--source", "app"], {"source": "app", "strategy": "auto", "priority": "normal", "tags": [],
                                     "description": "", "wait": False}),
    (["backup", "--source", "app", "--strategy", "differential", "--priority", "high", "--tag", "a", "--tag", "b",
      "--description", "pre-upgrade", "--wait"],
     {"strategy": "differential", "priority": "high", "tags": ["a", "b"], "description": "pre-upgrade", "wait": True}),
    (["jobs"], {"command": "jobs", "job_id": None, "status": None, "limit": None}),
    (["jobs", "j1"], {"job_id": "j1"}),
    (["jobs", "--status", "running", "--source", "app", "--kind", "restore", "--limit", "5"],
     {"status": "running", "source": "app", "kind": "restore", "limit": 5}),
    (["cancel", "j1"], {"command": "cancel", "job_id": "j1"}),
    (["ls"], {"command": "ls", "source": None}),
    (["ls", "--source", "app"], {"source": "app"}),
    (["restore", "--source", "app", "--backup", "b1", "--to", "/tmp/r.db"],
     {"backup_id": "b1", "at": None, "to": "/tmp/r.db", "tables": None, "overwrite": False, "wait": False,
      "copy_selection": None}),
    (["restore", "--source", "app", "--backup", "b1", "--to", "/tmp/r.db", "--copy-selection", "most_reliable"],
     {"copy_selection": "most_reliable"}),
    (["restore", "--source", "app", "--at", "2026-11-26T14:30:00Z", "--to", "r.db", "--tables", "a,b",
      "--overwrite", "--wait"],
     {"backup_id": None, "at": "2026-11-26T14:30:00Z", "tables": "a,b", "overwrite": True, "wait": True}),
    (["validate", "b1"], {"backup_id": "b1", "level": None, "wait": False}),
    (["validate", "b1", "--level", "deep", "--wait"], {"level": "deep", "wait": True}),
    (["schedule", "ls"], {"command": "schedule", "action": "ls"}),
    (["schedule", "add", "nightly", "--source", "app", "--cron", "15 3 * * *"],
     {"action": "add", "name": "nightly", "cron": "15 3 * * *", "strategy": None, "timezone": None}),
    (["schedule", "add", "n", "--source", "app", "--cron", "0 * * * *", "--strategy", "full", "--timezone",
      "Europe/Paris", "--description", "hourly", "--tag", "x"],
     {"strategy": "full", "timezone": "Europe/Paris", "description": "hourly", "tags": ["x"]}),
    (["schedule", "rm", "n"], {"action": "rm", "name": "n"}),
    (["schedule", "pause", "n"], {"action": "pause", "name": "n"}),
    (["schedule", "resume", "n"], {"action": "resume", "name": "n"}),
    (["schedule", "stats"], {"action": "stats", "name": None}),
    (["schedule", "stats", "n"], {"action": "stats", "name": "n"}),
    (["dest", "ls"], {"command": "dest", "action": "ls"}),
    (["dest", "health"], {"action": "health", "name": None, "cached": False}),
    (["dest", "health", "offsite", "--cached"], {"action": "health", "name": "offsite", "cached": True}),
    (["dest", "add", "/dev/null"], {"action": "add", "file": "/dev/null"}),
    (["dest", "enable", "usb"], {"action": "enable", "name": "usb"}),
    (["dest", "disable", "usb"], {"action": "disable", "name": "usb"}),
    (["dest", "rm", "usb"], {"action": "rm", "name": "usb", "force": False}),
    (["dest", "rm", "usb", "--force"], {"action": "rm", "name": "usb", "force": True}),
    (["prune"], {"command": "prune", "dry_run": False, "wait": False}),
    (["prune", "--wait"], {"dry_run": False, "wait": True}),
    (["prune", "--dry-run"], {"dry_run": True}),
    (["reload"], {"command": "reload"}),
    (["events"], {"command": "events", "follow": False, "types": [], "source": None}),
    (["events", "-f", "--type", "backup.*", "--type", "*.failed", "--source", "app"],
     {"follow": True, "types": ["backup.*", "*.failed"], "source": "app"}),
]


@pytest.mark.parametrize(("argv", "expected"), VALID, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_parses(argv, expected):
    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected
    assert not {"json", "socket", "timeout"} & set(args)  # absent unless given


@pytest.mark.parametrize("argv", [
    ["--json", "--socket", "/s", "--timeout", "2.5", "schedule", "stats"],
    ["schedule", "--json", "--socket", "/s", "stats", "--timeout", "2.5"],
    ["--socket", "/s", "schedule", "stats", "--json", "--timeout", "2.5"],
])
def test_global_options_go_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert (args.json, args.socket, args.timeout, args.action) == (True, "/s", 2.5, "stats")


BAD_USAGE = [
    [], ["bogus"], ["status", "extra"], ["backup"], ["backup", "--source", "a", "--strategy", "weekly"],
    ["backup", "--source", "a", "--priority", "urgent"], ["jobs", "--limit", "0"], ["jobs", "--status", "done"],
    ["cancel"], ["restore", "--source", "a", "--to", "x"],
    ["restore", "--source", "a", "--to", "x", "--backup", "b", "--at", "2026-01-01T00:00:00Z"],
    ["restore", "--source", "a", "--backup", "b"],
    ["restore", "--source", "a", "--to", "x", "--at", "2026-01-01T00:00:00"],  # no timezone
    ["restore", "--source", "a", "--to", "x", "--at", "yesterday"],
    ["restore", "--source", "a", "--to", "x", "--backup", "b", "--tables", " , "],
    ["validate"], ["validate", "b", "--level", "paranoid"], ["schedule"], ["schedule", "bogus"],
    ["schedule", "add", "n", "--source", "a"], ["schedule", "pause"], ["dest"], ["dest", "bogus"],
    ["prune", "--force"], ["--timeout", "-1", "status"], ["--timeout", "soon", "status"], ["--socket"],
]


@pytest.mark.parametrize("argv", BAD_USAGE, ids=" ".join)
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_bad_usage_exits_2_with_one_line(argv, as_json, capsys, short_dir):
    # A socket that does not exist: bad usage must be found before any attempt to reach the daemon.
    argv = ["--socket", str(short_dir / "none.sock"), *argv] + (["--json"] if as_json else [])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.endswith("\n") and err.count("\n") == 1
    if as_json:
        obj = json.loads(err)
        assert obj["code"] == "bad_usage" and obj["error"] and set(obj) <= {"error", "code", "details"}
    else:
        assert err.startswith("backupctl: error: ") and len(err) > len("backupctl: error: \n")


@pytest.mark.parametrize("argv", [argv for argv, _ in VALID], ids=" ".join)
def test_every_command_reports_a_missing_daemon(argv, capsys, short_dir):
    path = str(short_dir / "control.sock")
    assert main(["--socket", path, *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"backupctl: error: cannot reach backupd at {path}: no such socket; "
                   "is backupd running? start it with: systemctl start backupd\n")


def test_missing_daemon_under_json_and_from_the_environment(capsys, short_dir, monkeypatch):
    path = str(short_dir / "env.sock")
    monkeypatch.setenv("BACKUPD_SOCKET", path)
    assert main(["ls", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err) == {"error": f"cannot reach backupd at {path}: no such socket; is backupd running? "
                                        "start it with: systemctl start backupd",
                               "code": "daemon_unreachable", "details": {"socket": path}}


def test_silent_daemon_times_out_with_code_timeout(capsys, silent_router):
    assert main(["--json", "--socket", silent_router.path, "--timeout", "0.1", "jobs"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and json.loads(err)["code"] == "timeout" and silent_router.path in err
    assert len(silent_router.received) == 3


def test_backup_wait_sends_one_backup_request_with_the_options(capsys, silent_router):
    argv = ["backup", "--source", "app", "--strategy", "full", "--tag", "t", "--wait", "--socket",
            silent_router.path, "--timeout", "0.1"]
    assert main(argv) == 1
    assert "sent once" in capsys.readouterr().err
    [(_, frame)] = silent_router.received
    request = decode_request(frame)
    assert (request.op, request.args) == ("backup.create", {"source": "app", "strategy": "full",
                                                            "priority": "normal", "tags": ["t"],
                                                            "description": ""})


def test_restore_sends_an_absolute_target_and_the_table_list(capsys, silent_router, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    argv = ["restore", "--source", "app", "--at", "2026-11-26T14:30:00+01:00", "--to", "out.db", "--tables",
            "a, b", "--socket", silent_router.path, "--timeout", "0.1"]
    assert main(argv) == 1
    [(_, frame)] = silent_router.received
    assert decode_request(frame).args == {"source": "app", "at": "2026-11-26T14:30:00+01:00",
                                          "to": str(tmp_path / "out.db"), "tables": ["a", "b"],
                                          "overwrite": False}


def test_the_console_script_never_prints_a_traceback(short_dir):
    script = Path(sys.executable).with_name("backupctl")
    assert script.exists(), "backupd-client is not installed in this venv (pip install -e client)"
    env = {**os.environ, "BACKUPD_SOCKET": str(short_dir / "none.sock")}
    r = subprocess.run([script, "status"], capture_output=True, text=True, env=env, timeout=30)
    assert (r.returncode, r.stdout) == (1, "") and r.stderr.startswith("backupctl: error: cannot reach backupd")
    r = subprocess.run([sys.executable, "-m", "backupd_client", "restore", "--json"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and json.loads(r.stderr)["code"] == "bad_usage" and "Traceback" not in r.stderr
    r = subprocess.run([script, "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and "backup" in r.stdout and r.stderr == ""
