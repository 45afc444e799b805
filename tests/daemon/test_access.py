"""Who may command the daemon, through a real daemon and clients run under a throwaway uid (setpriv):
a reader is refused every op that acts, restores stay under `[restore] allowed_dirs` without following
a symlink out, and a run-time destination must be encrypted like the config's. Nothing is written."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from backupd_client.errors import ForbiddenError
from backupd_client.protocol import Op

from backupd.core.access import Role
from backupd.daemon.handlers import OP_ROLES


def test_every_op_of_the_protocol_needs_a_named_role():
    assert set(OP_ROLES) == set(Op)
    readers = {op.value for op, role in OP_ROLES.items() if role is Role.READER}
    assert readers == {"status", "health", "job.get", "job.list", "job.wait", "restore.points", "restore.nearest",
                       "schedule.list", "schedule.stats", "destination.list", "destination.health",
                       "inventory", "events.subscribe", "metrics", "notify.list"}


@dataclass
class User:
    name: str
    uid: int
    gid: int
    group: str
    python: str

    def ctl(self, socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """`backupctl --json --socket S ARGS` as this user."""
        code = ("import site, sys; site.addsitedir(sys.argv[1]); from backupd_client.cli import main;"
                " sys.exit(main(sys.argv[2:]))")
        return subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--",
                               self.python, "-c", code, site.getsitepackages()[0], "--json", "--socket", str(socket),
                               *args], capture_output=True, text=True, timeout=60, cwd="/")


@pytest.fixture
def other_user() -> Iterator[User]:
    """A throwaway user in a throwaway group, removed afterwards."""
    missing = [t for t in ("useradd", "groupadd", "setpriv") if not shutil.which(t)]
    assert os.geteuid() == 0 and not missing, \
        f"the access tests run a client as a throwaway user: run as root (CI does) with {missing or 'these'} " \
        "installed (.ci/run installs passwd and util-linux)"
    name = f"bkdt{secrets.token_hex(3)}"
    subprocess.run(["groupadd", name], check=True)
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-g", name, name], check=True)
        try:
            entry = pwd.getpwnam(name)
            python = _python_for(entry.pw_uid, entry.pw_gid)
            yield User(name, entry.pw_uid, entry.pw_gid, name, python)
        finally:
            subprocess.run(["userdel", name], check=False)
    finally:
        subprocess.run(["groupdel", name], check=False)


def _python_for(uid: int, gid: int) -> str:
    """An interpreter of this Python version that the user may run (ours may sit in root's home)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        ok = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", candidate, "-c", "0"],
                            capture_output=True)
        if os.path.exists(candidate) and ok.returncode == 0:
            return candidate
    raise AssertionError(f"no {version} the throwaway user may run: install it system-wide (python3 in Debian)")


def _open_to(user: User, inst) -> None:
    """Let the user reach the socket: through the installation's directory, in the socket's group."""
    os.chmod(inst.root, 0o711)


def test_a_reader_is_forbidden_whatever_acts_and_nothing_is_written(installation, daemon_for, other_user):
    user = other_user
    inst = installation(demo="small", control={"group": user.group})  # readers default to the socket's group
    _open_to(user, inst)
    d = daemon_for(inst).start()
    backup = d.ctl_json("backup", "--source", "demo", "--wait")
    job_id = d.ctl_json("jobs")[0]["job_id"]

    status = user.ctl(inst.socket, "status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "running"
    assert user.ctl(inst.socket, "ls").returncode == 0

    target = inst.root / "stolen.db"
    dest_file = inst.root / "mine.toml"
    dest_file.write_text(f'name = "mine"\nkind = "local"\npath = "{inst.root / "mine"}"\n')
    os.chmod(dest_file, 0o644)
    attempts = {
        "restore.create": ["restore", "--source", "demo", "--backup", backup["id"], "--to", str(target), "--overwrite"],
        "destination.add": ["dest", "add", str(dest_file)],
        "schedule.add": ["schedule", "add", "sneaky", "--source", "demo", "--cron", "* * * * *"],
        "job.cancel": ["cancel", job_id],
    }
    for op, args in attempts.items():
        r = user.ctl(inst.socket, *args)
        assert r.returncode == 1, (op, r.stdout, r.stderr)
        assert json.loads(r.stderr)["code"] == "forbidden", (op, r.stderr)
        refused = d.wait_event("control_request_refused", op=op)
        assert (refused["uid"], refused["user"], refused["needed"], refused["role"]) == (user.uid, user.name,
                                                                                       "admin", "reader")
        assert refused["pid"] > 0
    assert not target.exists() and not (inst.root / "mine").exists()
    assert [x["name"] for x in d.ctl_json("dest", "ls")] == ["local"]
    assert "sneaky" not in [s["name"] for s in d.ctl_json("schedule", "ls")]
    # the same ops by root are authorized, and logged with its uid
    assert d.events("control_request_authorized", op="backup.create", uid=0)


def test_admins_named_by_group_may_act_and_peers_without_a_role_may_not_read(installation, daemon_for, other_user):
    user = other_user
    inst = installation(demo="small", control={"group": user.group, "readers": [], "admins": [f"@{user.group}"]})
    _open_to(user, inst)
    d = daemon_for(inst).start()
    added = user.ctl(inst.socket, "schedule", "add", "nightly", "--source", "demo", "--cron", "0 3 * * *")
    assert added.returncode == 0, added.stderr
    assert d.wait_event("control_request_authorized", op="schedule.add", uid=user.uid)["role"] == "admin"

    inst.control = {"group": user.group, "readers": [], "admins": []}
    inst.write_config()
    d.ctl_json("reload")
    r = user.ctl(inst.socket, "status")
    assert r.returncode == 1 and json.loads(r.stderr)["code"] == "forbidden", r.stderr
    assert d.wait_event("control_request_refused", op="status", uid=user.uid)["role"] is None


def test_a_restore_outside_the_allowed_dirs_or_through_a_symlink_is_refused(installation, daemon_for, tmp_path):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    backup = d.ctl_json("backup", "--source", "demo", "--wait")
    outside = tmp_path / "outside"
    outside.mkdir()
    (inst.root / "link").symlink_to(outside)
    victim = outside / "victim.db"
    victim.write_bytes(b"precious")
    (inst.root / "alias.db").symlink_to(victim)
    with d.client() as c:
        for to in (outside / "x.db", inst.root / "link" / "x.db", inst.root / "link" / "victim.db",
                   inst.root / "alias.db", inst.state / ".." / ".." / "etc-x.db"):
            with pytest.raises(ForbiddenError):
                c.restore_create("demo", str(to), backup_id=backup["id"], overwrite=True)
        assert sorted(p.name for p in outside.iterdir()) == ["victim.db"] and victim.read_bytes() == b"precious"
        assert not d.events("restore_started")

        # the restore area in the state dir and the source's own directory are allowed by default
        for to in (inst.state / "restores" / "demo.db", inst.root / "restored.db"):
            job = c.job_wait(c.restore_create("demo", str(to), backup_id=backup["id"])["job_id"], timeout_s=60)
            assert job["status"] == "completed", job


def test_a_run_time_destination_must_be_encrypted_like_the_configs(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    plain = {"name": "plain", "kind": "local", "path": str(inst.root / "plain")}
    with d.client() as c:
        with pytest.raises(ForbiddenError, match="not encrypted"):
            c.destination_add(plain)
        assert [x["name"] for x in c.destination_list()] == ["local"]
        encrypted = {**plain, "name": "sealed", "encryption": {"key_file": str(inst.root / "backup.key")}}
        assert c.destination_add(encrypted)["encrypted"] is True
    d.stop()
    inst.control = {"allow_unencrypted_destinations": True}
    inst.write_config()
    d.start()
    with d.client() as c:
        assert c.destination_add(plain)["encrypted"] is False
