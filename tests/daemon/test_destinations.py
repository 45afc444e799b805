"""Destinations at run time through a real daemon: added, disabled, enabled and removed with backupctl,
kept across restarts and seen by one-shot `backupd` commands; and health answered from cached probes,
so a server that never answers cannot hold up the control socket."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

from .harness import BACKUPD, row_count, wait_for


def _manifests(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*.manifest")) if directory.exists() else []


def _dest_file(inst, name: str, path: Path, **extra: object) -> Path:
    lines = [f'name = "{name}"', 'kind = "local"', f'path = "{path}"', "priority = 2"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ["[encryption]", f'key_file = "{inst.root / "backup.key"}"']
    f = inst.root / f"{name}.toml"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_destinations_are_added_disabled_enabled_and_removed_at_run_time(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    usb = inst.root / "usb"
    assert [(x["name"], x["origin"]) for x in d.ctl_json("dest", "ls")] == [("local", "config")]

    added = d.ctl_json("dest", "add", str(_dest_file(inst, "usb", usb)))
    assert added == {"name": "usb", "kind": "local", "enabled": True, "priority": 2, "encrypted": True,
                     "compression_level": 3, "origin": "runtime"}
    health = {h["name"]: h for h in d.ctl_json("dest", "health")}
    assert health["usb"]["status"] == "ok" and health["usb"]["writable"] and health["usb"]["checked_at"]

    first = d.ctl_json("backup", "--source", "demo", "--wait")
    assert first["status"] == "completed", first
    assert _manifests(usb) == _manifests(inst.dest) == [f"{first['id']}.manifest"]

    # disabled: the next backup skips it, and says nothing is wrong with that
    assert d.ctl_json("dest", "disable", "usb")["enabled"] is False
    second = d.ctl_json("backup", "--source", "demo", "--wait")
    assert second["status"] == "completed", second
    assert _manifests(usb) == [f"{first['id']}.manifest"] and len(_manifests(inst.dest)) == 2
    assert d.ctl_json("health")["status"] == "ok"
    assert {h["name"]: h["status"] for h in d.ctl_json("dest", "health")}["usb"] == "disabled"
    assert d.ctl_json("dest", "enable", "usb")["enabled"] is True

    # kept across a restart, and seen by one-shot commands: with `local` disabled, a restore plan reads usb
    d.stop()
    d.start()
    assert [(x["name"], x["origin"], x["enabled"]) for x in d.ctl_json("dest", "ls")] == \
        [("local", "config", True), ("usb", "runtime", True)]
    d.ctl_json("dest", "disable", "local")
    plan = subprocess.run([str(BACKUPD), "restore", "-c", str(inst.config), "--source", "demo", "--backup",
                           first["id"], "--plan", "--json"], capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert [m["destination"] for m in json.loads(plan.stdout)["chain"]] == ["usb"]
    third = d.ctl_json("backup", "--source", "demo", "--wait")  # its only copy is on usb
    target = inst.root / "restored.db"
    assert d.ctl_json("restore", "--source", "demo", "--backup", third["id"], "--to", str(target),
                      "--copy-selection", "most_reliable", "--wait")["status"] == "completed"
    assert row_count(target) == row_count(inst.db("demo"))

    # removing: never the config file's; not while usb holds a backup's only copy, unless forced
    config_one = d.ctl("dest", "rm", "local")
    assert config_one.returncode == 1 and "defined in the config file" in config_one.stderr, config_one
    sole = d.ctl("--json", "dest", "rm", "usb")
    assert sole.returncode == 1
    error = json.loads(sole.stderr)
    assert error["code"] == "conflict" and third["id"] in error["error"] and "--force" in error["error"], error
    assert error["details"] == {"backups": [third["id"]]}
    assert d.ctl_json("dest", "rm", "usb", "--force") == {"removed": "usb", "sole_copies": 1}
    assert [x["name"] for x in d.ctl_json("dest", "ls")] == ["local"]
    assert third["id"] not in [b["id"] for b in d.ctl_json("ls")]  # forgotten with the destination
    assert f"{third['id']}.manifest" in _manifests(usb)  # its files stay where they are
    missing = d.ctl("dest", "disable", "usb")
    assert missing.returncode == 2 and "unknown destination 'usb' (configured: local)" in missing.stderr


def test_a_bad_destination_is_refused_with_every_problem_named(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    relative = d.ctl("--json", "dest", "add", str(_dest_file(inst, "rel", Path("usb"), compression_level=40)))
    assert relative.returncode == 2  # bad input, as for every config_invalid
    error = json.loads(relative.stderr)
    assert error["code"] == "config_invalid"
    assert "destination.path: must be an absolute path" in error["error"]
    assert "destination.compression_level: must be 1..22" in error["error"]
    taken = d.ctl("--json", "dest", "add", str(_dest_file(inst, "local", inst.root / "x")))
    assert taken.returncode == 2 and "already exists" in json.loads(taken.stderr)["error"]
    not_toml = inst.root / "bad.toml"
    not_toml.write_text("name = ")
    usage = d.ctl("dest", "add", str(not_toml))
    assert usage.returncode == 2 and "not valid TOML" in usage.stderr
    assert [x["name"] for x in d.ctl_json("dest", "ls")] == ["local"]


class SilentServer:
    """A TCP server that accepts connections and never says a word (an SSH server that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_health_answers_at_once_while_a_probe_hangs(installation, daemon_for):
    inst = installation(demo="small", daemon={"health_timeout": "1s"}, control={"allow_unencrypted_destinations": True})
    server = SilentServer()
    try:
        known_hosts = inst.root / "known_hosts"
        known_hosts.write_text("")
        d = daemon_for(inst).start()
        spec = {"name": "stuck", "kind": "sftp", "host": "127.0.0.1", "port": server.port, "user": "backupd",
                "path": "/srv/backupd", "known_hosts": str(known_hosts)}
        with d.client(timeout=5.0) as c:
            c.destination_add(spec)
            assert wait_for(lambda: server.conns, 10), "the probe never connected"
            slowest = 0.0
            for _ in range(20):
                began = time.monotonic()
                c.health()
                c.status()
                slowest = max(slowest, time.monotonic() - began)
            assert slowest < 0.5, f"health waited for the hung probe ({slowest:.2f} s)"

            report = wait_for(lambda: [h for h in c.destination_health("stuck") if h["status"] == "unhealthy"], 10)
            assert report, c.destination_health("stuck")
            assert report[0]["problems"] == ["the probe has not answered in 1 s"] and report[0]["probing"]
            overall = c.health()
            assert overall["status"] == "unhealthy" and {"code": "destination_unhealthy", "destination": "stuck",
                                                         "message": "the probe has not answered in 1 s"} in overall["problems"]
        d.wait_event("destination_unhealthy", destination="stuck")
        assert d.ctl("dest", "health", "--cached").returncode == 1
    finally:
        server.close()


def test_a_destination_going_bad_and_coming_back_is_logged_once_each_way(installation, daemon_for):
    inst = installation(demo="small", daemon={"health_interval": "0.2s"},
                        control={"allow_unencrypted_destinations": True})
    blocker = inst.root / "nas"
    blocker.write_text("not a directory")  # as when a share's mount point is a stale file
    d = daemon_for(inst).start()
    with d.client() as c:
        c.destination_add({"name": "nas", "kind": "local", "path": str(blocker / "backupd")})
        d.wait_event("destination_unhealthy", destination="nas")
        assert c.health()["status"] == "unhealthy"
        time.sleep(1.0)  # about five more failing probes
        assert len(d.events("destination_unhealthy", destination="nas")) == 1
        blocker.unlink()
        d.wait_event("destination_recovered", destination="nas", was="unhealthy")
        assert wait_for(lambda: c.health()["status"] == "ok", 5), c.health()


def test_backups_and_schedules_go_to_the_destinations_they_name(installation, daemon_for):
    inst = installation(demo="small", daemon={"recheck_interval": "1s"})
    d = daemon_for(inst).start()
    usb = inst.root / "usb"
    d.ctl_json("dest", "add", str(_dest_file(inst, "usb", usb)))
    only_usb = d.ctl_json("backup", "--source", "demo", "--destination", "usb", "--wait")
    assert only_usb["status"] == "completed" and _manifests(usb) == [f"{only_usb['id']}.manifest"]
    assert _manifests(inst.dest) == []

    added = d.ctl_json("schedule", "add", "to-local", "--source", "demo", "--cron", "*/2 * * * * *",
                       "--destination", "local")
    assert added["destinations"] == ["local"]
    fired = d.wait_event("schedule_fired", timeout=15, schedule="to-local")
    with d.client() as c:
        assert c.job_wait(fired["job_id"], timeout_s=60)["status"] == "completed"
        c.schedule_pause("to-local")
    assert len(_manifests(inst.dest)) >= 1 and _manifests(usb) == [f"{only_usb['id']}.manifest"]

    d.ctl_json("dest", "disable", "usb")
    refused = d.ctl("backup", "--source", "demo", "--destination", "usb")
    assert refused.returncode == 2 and "destination 'usb' is disabled" in refused.stderr
    unknown = d.ctl("schedule", "add", "x", "--source", "demo", "--cron", "0 * * * *", "--destination", "nas")
    assert unknown.returncode == 2 and "schedule.destinations[0]: unknown destination 'nas'" in unknown.stderr


def test_run_time_flags_of_config_destinations_and_removal_rules(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    d.ctl_json("dest", "disable", "local")
    d.stop()
    d.start()
    assert d.ctl_json("dest", "ls")[0]["enabled"] is False  # kept across a restart
    inst.destination = {**inst.destination, "enabled": False}
    inst.write_config()
    d.ctl_json("reload")
    inst.destination = {**inst.destination, "enabled": True}
    inst.write_config()
    d.ctl_json("reload")  # the file changed its own `enabled` since the run-time disable: the file wins
    assert d.ctl_json("dest", "ls")[0]["enabled"] is True
    d.wait_event("runtime_override_dropped", destination="local")

    usb = inst.root / "usb"
    d.ctl_json("dest", "add", str(_dest_file(inst, "usb", usb)))
    d.ctl_json("schedule", "add", "to-usb", "--source", "demo", "--cron", "0 3 * * *", "--destination", "usb")
    warned = d.ctl("dest", "disable", "usb")
    assert warned.returncode == 0 and "warning: schedule(s) to-usb send backups to 'usb'" in warned.stdout
    d.ctl_json("dest", "enable", "usb")
    used = d.ctl("dest", "rm", "usb")
    assert used.returncode == 1 and "used by schedule(s) to-usb" in used.stderr
    d.ctl_json("schedule", "rm", "to-usb")
    assert d.ctl_json("dest", "rm", "usb")["removed"] == "usb"
