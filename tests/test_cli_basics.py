"""The command-line basics: a closed stdout kills nothing (`backupd list | head -1` and `backupctl ... |
head -1` exit quietly; a daemon whose stdout reader went away keeps running, finishes its backups,
logging to stderr instead, and stops cleanly), `--version` on both tools, the config found without
`-c` ($BACKUPD_CONFIG, else /etc/backupd/backupd.toml), `config validate|schema`, and job workers
logging in the daemon's format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from backupd_client import Client

from backupd import __version__
from backupd.log import LogStream
from tests.engine.dbtools import BACKUPD, SOURCE, cli, create_db, fill_text, make_env

BIN = Path(sys.executable).parent


def _env_with_backups(tmp_path: Path, n: int = 3):
    env = make_env(tmp_path / "inst")
    conn = create_db(env.db)
    fill_text(conn, "t", 0.2)
    conn.close()
    notes = [arg for i in range(7) for arg in ("--meta", f"note{i}={'x' * 1000}")]  # a listing past stdout's buffer
    for _ in range(n):
        r = cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", "full", *notes)
        assert r.code == 0, r.stderr
    return env


def _daemon_env(tmp_path: Path):
    """An installation with a small source and its control socket under tmp_path: (env, socket)."""
    env = make_env(tmp_path / "inst")
    conn = create_db(env.db)
    fill_text(conn, "t", 0.2)
    conn.close()
    sock = tmp_path / "inst" / "ctl.sock"
    env.config.write_text(env.config.read_text() + f'\n[control]\nsocket = "{sock}"\n')
    return env, sock


def _into_a_closed_pipe(argv: list[str]) -> tuple[int, str]:
    """Run `argv` with its stdout a pipe whose reader has gone (`| head -1` once head has its line):
    its exit code and its stderr."""
    reader, writer = os.pipe()
    os.close(reader)
    proc = subprocess.run(argv, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(writer)
    return proc.returncode, proc.stderr


def test_backupd_list_into_head_exits_0_without_a_traceback(tmp_path):
    env = _env_with_backups(tmp_path)
    for argv in (["list", "-c", str(env.config)], ["list", "-c", str(env.config), "--json"]):
        assert len(cli(*argv).stdout) > 16384
        code, err = _into_a_closed_pipe([str(BACKUPD), *argv])
        assert (code, err) == (0, ""), err


def test_backupctl_into_head_exits_quietly(tmp_path):
    code, err = _into_a_closed_pipe([str(BIN / "backupctl"), "--help"])
    assert (code, err) == (0, ""), err


def test_versions():
    assert subprocess.run([str(BACKUPD), "--version"], capture_output=True, text=True).stdout == f"backupd {__version__}\n"
    out = subprocess.run([str(BIN / "backupctl"), "--version"], capture_output=True, text=True).stdout
    assert out.startswith("backupctl ") and out.strip().split()[1]


def test_a_log_stream_whose_reader_is_gone_falls_back_then_drops_and_counts():
    r, w = os.pipe()
    os.close(r)
    broken = os.fdopen(w, "w")
    fr, fw = os.pipe()
    fallback = os.fdopen(fw, "w")
    stream = LogStream(broken, fallback)
    assert stream.write("first\n") == 6  # EPIPE on the pipe: the line goes to the fallback
    fallback_reader = os.fdopen(fr)
    assert fallback_reader.readline() == "first\n"
    fallback_reader.close()  # now the fallback's reader is gone too
    stream.write("second\n")
    stream.write("third\n")
    assert stream.dropped == 2


def test_a_daemon_whose_stdout_closes_keeps_running_and_finishes_its_backups(tmp_path):
    env, sock = _daemon_env(tmp_path)
    reader, writer = os.pipe()
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([str(BACKUPD), "run", "-c", str(env.config)], stdout=writer, stderr=err,
                                cwd=env.root)
    os.close(writer)
    try:
        os.read(reader, 100)  # `| head -c 100`
        os.close(reader)  # ... and head exits
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        with Client(sock, timeout=10) as c:
            for _ in range(3):
                job = c.job_wait(c.backup_create(SOURCE, strategy="full")["job_id"], timeout_s=60)
                assert job["status"] == "completed", job
            assert c.status()["state"] == "running"
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(30) == 0
        logged = err_path.read_text()
        assert "job_completed" in logged and "Traceback" not in logged, logged[-2000:]
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_config_is_found_without_c(tmp_path):
    env = _env_with_backups(tmp_path, n=1)
    by_env = subprocess.run([str(BACKUPD), "list", "--json"], capture_output=True, text=True,
                            env={**os.environ, "BACKUPD_CONFIG": str(env.config)})
    assert by_env.returncode == 0 and len(json.loads(by_env.stdout)) == 1, by_env.stderr
    if not Path("/etc/backupd/backupd.toml").exists():
        missing = subprocess.run([str(BACKUPD), "list"], capture_output=True, text=True,
                                 env={k: v for k, v in os.environ.items() if k != "BACKUPD_CONFIG"})
        assert missing.returncode == 2 and missing.stderr.startswith(
            "backupd: error: no config file at /etc/backupd/backupd.toml (the default); give -c PATH or set"
            " BACKUPD_CONFIG"), missing.stderr


def _backupd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BACKUPD), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_config_validate_passes_a_good_config_and_lists_every_machine_problem(tmp_path):
    env = make_env(tmp_path / "inst")
    ok = _backupd("config", "validate", "-c", env.config)
    assert ok.returncode == 0 and "valid (1 sources, 1 destinations, 0 schedules, 0 notifiers)" in ok.stdout, ok
    os.chown(env.root / "backup.key", 12345, 12345)  # not the user who checks (nor the daemon's)
    (env.root / "blocker").write_text("a file where the destination's directory should be")
    env.config.write_text(env.config.read_text().replace('path = "backups"', 'path = "blocker/backups"'))
    bad = _backupd("config", "validate", "-c", env.config, "--probe", "--json")
    assert bad.returncode == 2, bad
    report = json.loads(bad.stdout)
    assert report["valid"] is False and len(report["problems"]) == 2, report
    assert report["problems"][0].startswith("destinations[0].encryption.key_file: ") and "uid 12345" in \
        report["problems"][0]
    assert report["problems"][1].startswith("destinations[0] (local): ")


def test_config_validate_reports_every_load_problem_at_once(tmp_path):
    env = make_env(tmp_path / "inst")
    env.config.write_text(env.config.read_text().replace('kind = "local"', 'kind = "tape"') + "\n[daemon]\nbogus = 1\n")
    r = _backupd("config", "validate", "-c", env.config)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r
    assert "destinations[0].kind" in r.stderr and "daemon.bogus" in r.stderr, r.stderr


def test_config_schema_is_the_models_json_schema():
    from backupd.config.schema import ConfigDocument

    r = _backupd("config", "schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert set(schema["properties"]) == {f.alias or n for n, f in ConfigDocument.model_fields.items()}
    assert schema["additionalProperties"] is False


def test_workers_log_in_the_daemons_format_on_a_terminal(tmp_path):
    import pty
    import select

    env, sock = _daemon_env(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BACKUPD), "run", "-c", str(env.config)], stdout=slave, stderr=slave, cwd=env.root)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with Client(sock, timeout=10) as c:
            assert c.job_wait(c.backup_create(SOURCE)["job_id"], timeout_s=60)["status"] == "completed"
        proc.terminate()
        proc.wait(30)
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    assert any("backup_completed" in line or "snapshot_taken" in line or "job_id=" in line for line in lines), lines
    assert not [line for line in lines if line.lstrip().startswith("{")], lines  # no JSON among console lines
