"""Remote servers that die mid-transfer: a real sshd stopped (every session killed with it) and a real smbd
whose connection process is SIGKILLed, at a random instant of a backup upload or of a restore download.

After every death: the run ends with a clear error (or finished before it), never a traceback or an
`internal error`; nothing partial is visible; the catalog agrees with what the server holds; once the server
is back, every listed point restores exactly and the next backup succeeds and clears the temp files.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.engine.dbtools import SOURCE, file_digest
from tests.servers.smbd import running_smbd
from tests.servers.sshd import running_sshd

from .conftest import trials
from .tools import Installation, backup, change_source, check_agreement, committed, files, install, leftovers, timed


def sshd_remote(server) -> tuple[str, Path]:
    toml = (f'kind = "sftp"\nhost = "{server.host}"\nport = {server.port}\nuser = "{server.user}"\n'
            f'key_file = "{server.client_key_file}"\nknown_hosts = "{server.known_hosts}"\npath = "{server.root / "v"}"')
    return toml, server.root / "v"


def smbd_remote(server) -> tuple[str, Path]:
    toml = (f'kind = "smb"\nserver = "{server.host}"\nport = {server.port}\nshare = "{server.share}"\n'
            f'path = "faults"\nuser = "{server.user}"\npassword_env = "BACKUPD_SMB_PASSWORD"')
    return toml, server.share_dir / "faults"


class Outage:
    """Kills a server mid-transfer and brings it back: `kill()` then `revive()`."""

    def __init__(self, kind: str, server):
        self.kind, self.server = kind, server

    def kill(self) -> None:
        if self.kind == "sftp":
            self.server.stop()
            return
        for child in psutil.Process(self.server.pid).children(recursive=True):
            try:
                if any(c.laddr and c.laddr.port == self.server.port and c.raddr for c in child.net_connections("tcp")):
                    child.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass

    def revive(self) -> None:
        if self.kind == "sftp":
            self.server.start()


@pytest.fixture(scope="module", params=["sftp", "smb"])
def outage(request, monkeypatch_module):
    if request.param == "sftp":
        with running_sshd() as server:
            yield Outage("sftp", server)
    else:
        with running_smbd() as server:
            monkeypatch_module.setenv("BACKUPD_SMB_PASSWORD", server.password)
            yield Outage("smb", server)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def remote_install(root: Path, outage: Outage) -> Installation:
    toml, files_at = (sshd_remote if outage.kind == "sftp" else smbd_remote)(outage.server)
    return install(root, destinations=(), mib=6, remote={outage.kind: (toml, files_at)})


def run_with_outage(argv: list[str], delay: float, outage: Outage) -> subprocess.CompletedProcess:
    """Run `argv`, kill the server `delay` seconds in, let the run end, revive the server."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    outage.kill()
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        outage.revive()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def clean_end(r: subprocess.CompletedProcess) -> str:
    """The run finished (0) or failed with one clear line (1); which, for the tally."""
    assert r.returncode in (0, 1), f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr.strip()[-300:]
    return "finished" if r.returncode == 0 else "failed cleanly"


def test_server_dies_mid_upload(tmp_path, tally, outage):
    rnd = random.Random(f"upload-{outage.kind}")
    inst = remote_install(tmp_path / "i", outage)
    start = time.monotonic()
    backup(inst, "full")
    took = time.monotonic() - start
    for _ in range(trials(ci=5, long=15)):
        change_source(inst, rnd)
        strategy = rnd.choice(("full", "incremental", "differential"))

        def one():
            before = committed(inst, outage.kind)
            digest = file_digest(inst.db)
            r = run_with_outage(inst.argv("backup", "--source", SOURCE, "--strategy", strategy),
                                rnd.uniform(0.1, took * 1.1), outage)
            seen = clean_end(r)
            appeared = committed(inst, outage.kind) - before
            assert len(appeared) == (r.returncode == 0), f"exit {r.returncode} but {len(appeared)} new backups"
            inst.expected.update(dict.fromkeys(appeared, digest))
            check_agreement(inst, rnd, before)
            backup(inst, "incremental")
            assert leftovers(inst) == [], f"the next backup left {leftovers(inst)}"
            return f"{strategy}: {seen}"

        tally.run(one)


def test_server_dies_mid_restore(tmp_path, tally, outage):
    rnd = random.Random(f"restore-{outage.kind}")
    inst = remote_install(tmp_path / "i", outage)
    ids = []
    for strategy in ("full", "incremental", "differential"):
        change_source(inst, rnd)
        ids.append(backup(inst, strategy))
    target_dir = tmp_path / "restores"
    target_dir.mkdir()
    target = target_dir / "app.db"
    argv = lambda backup_id: inst.argv("restore", "--source", SOURCE, "--backup", backup_id, "--to", target)
    took = timed(argv(ids[-1]))
    for _ in range(trials(ci=5, long=15)):
        target.unlink(missing_ok=True)
        chosen = rnd.choice(ids)

        def one():
            r = run_with_outage(argv(chosen), rnd.uniform(0.1, took * 1.1), outage)
            seen = clean_end(r)
            if r.returncode == 0:
                assert file_digest(target) == inst.expected[chosen], "the restore gave other bytes"
            else:
                assert not target.exists(), "a failed restore left the target"
            assert list(files(target_dir)) == (["app.db"] if r.returncode == 0 else []), \
                f"the restore left {sorted(files(target_dir))}"
            target.unlink(missing_ok=True)
            r = inst.run("restore", "--source", SOURCE, "--backup", chosen, "--to", target, "--json")
            assert r.code == 0, f"the restore after the outage fails: {r.stderr.strip()}"
            assert file_digest(target) == inst.expected[chosen], "the restore after the outage gave other bytes"
            return seen

        tally.run(one)
