"""SFTP beyond the contract: host key verification, login failures, a server that goes away mid-upload."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupd.config.schema import DestinationConfig
from backupd.destinations.base import TEMP_SUFFIX, get_bytes, put_bytes
from backupd.destinations.registry import open_destination
from backupd.destinations.sftp import SftpDestination, fingerprint
from backupd.errors import DestinationError, DestinationFull, DestinationUnavailable
from tests.servers.sshd import SshServer, free_port, keygen, running_sshd

MiB = 1024 * 1024


def sftp_to(server: SshServer, **overrides) -> SftpDestination:
    options = {"user": server.user, "known_hosts": server.known_hosts, "port": server.port,
               "key_file": server.client_key_file} | overrides  # fmt: skip
    return SftpDestination("offsite", server.host, str(server.root / f"t-{secrets.token_hex(6)}"), **options)


@pytest.fixture
def own_sshd() -> Iterator[SshServer]:
    """A server of this test's own, which it may stop and start."""
    with running_sshd() as server:
        yield server


def files_under(root: str | Path) -> list[str]:
    return sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs)


def test_unknown_host_key_is_refused_naming_host_port_and_fingerprint(sshd_server, tmp_path):
    empty = sshd_server.write_known_hosts(tmp_path / "known_hosts", None)
    dest = sftp_to(sshd_server, known_hosts=empty)

    with pytest.raises(DestinationError) as caught:
        dest.list("")
    err = caught.value
    assert not isinstance(err, DestinationUnavailable)  # retrying cannot help
    offered = fingerprint(sshd_server.host_key)
    assert f"unknown host key for 127.0.0.1 port {sshd_server.port}" in err.message
    assert f"ssh-ed25519 {offered}" in err.message
    assert f"ssh-keyscan -p {sshd_server.port} 127.0.0.1 >> {empty}" in err.hint
    assert err.details == {"host": "127.0.0.1", "port": sshd_server.port, "fingerprint": offered}
    assert empty.read_text() == ""  # never accepted, never written


def test_changed_host_key_is_refused_naming_both_fingerprints(sshd_server, tmp_path):
    other = keygen(tmp_path / "other_host_key")
    stale = sshd_server.write_known_hosts(tmp_path / "known_hosts", other)
    dest = sftp_to(sshd_server, known_hosts=stale)

    with pytest.raises(DestinationError) as caught:
        put_bytes(dest, "kb/a.bkpd", b"a")
    err = caught.value
    assert not isinstance(err, DestinationUnavailable)
    assert f"HOST KEY CHANGED for 127.0.0.1 port {sshd_server.port}" in err.message
    assert fingerprint(sshd_server.host_key) in err.message and fingerprint(other) in err.message
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd_server.port}' -f {stale}" in err.hint
    assert not Path(dest.root).exists()  # nothing was written


def test_missing_known_hosts_file(sshd_server, tmp_path):
    dest = sftp_to(sshd_server, known_hosts=tmp_path / "nowhere")
    with pytest.raises(DestinationError, match=r"cannot read known_hosts '.*/nowhere'"):
        dest.list("")


def test_a_key_the_server_does_not_authorize_is_a_permanent_login_error(sshd_server, tmp_path):
    keygen(tmp_path / "stranger")
    dest = sftp_to(sshd_server, key_file=tmp_path / "stranger")
    with pytest.raises(DestinationError) as caught:
        dest.list("")
    assert not isinstance(caught.value, DestinationUnavailable)
    assert f"login as 'root' on 127.0.0.1 port {sshd_server.port} with key '{tmp_path / 'stranger'}'" in str(caught.value)


def test_nothing_listening_is_transient_and_unhealthy(tmp_path):
    (tmp_path / "kh").write_text("")
    dest = SftpDestination("offsite", "127.0.0.1", "/srv", user="root", known_hosts=tmp_path / "kh", port=free_port())
    with pytest.raises(DestinationUnavailable, match=r"cannot connect to 127.0.0.1 port \d+"):
        dest.list("")
    health = dest.health()  # reports, never raises
    assert (health.status, health.reachable, health.writable, health.free_bytes) == ("unhealthy", False, False, None)
    assert "cannot connect" in health.problems[0]


def test_one_connection_is_reused_across_operations(sshd_server):
    dest = sftp_to(sshd_server)
    put_bytes(dest, "kb/a.bkpd", b"a")
    transport = dest._client.get_transport()
    for _ in range(3):
        assert get_bytes(dest, "kb/a.bkpd") == b"a"
        dest.list("kb/")
        dest.stat("kb/a.bkpd")
    assert dest._client.get_transport() is transport
    dest.close()


def test_sshd_stopped_mid_upload_then_started_again(own_sshd):
    dest = sftp_to(own_sshd)
    root = Path(dest.root)
    put_bytes(dest, "kb/old.bkpd", b"old")
    data = os.urandom(3 * MiB)

    upload = dest.open_write("kb/new.bkpd")
    upload.write(data[:MiB])
    own_sshd.stop()  # the server dies with the upload half done
    with pytest.raises(DestinationUnavailable) as caught:
        upload.write(data[MiB:])
        upload.commit()
    assert f"connection to 127.0.0.1 port {own_sshd.port} lost" in caught.value.message
    assert "new.bkpd" not in files_under(root)  # nothing published under the final name
    with pytest.raises(DestinationUnavailable):
        dest.list("")  # still down: transient, not "empty"

    own_sshd.start()
    assert [o.key for o in dest.list("")] == ["kb/old.bkpd"]  # reconnected; the broken upload is invisible
    put_bytes(dest, "kb/new.bkpd", data)  # the retry succeeds
    assert get_bytes(dest, "kb/new.bkpd") == data
    assert files_under(root) == ["kb/new.bkpd", "kb/old.bkpd"]  # the broken upload's temp file is gone too
    assert not any(name.endswith(TEMP_SUFFIX) for name in files_under(root))
    dest.close()


def test_free_space_comes_from_statvfs(sshd_server):
    dest = sftp_to(sshd_server)
    free = dest.free_space()  # before the root exists: its nearest existing ancestor
    expected = os.statvfs(sshd_server.root)
    assert free is not None and abs(free - expected.f_bavail * expected.f_frsize) < 256 * MiB


def test_the_registry_builds_it_from_config(sshd_server):
    cfg = DestinationConfig(
        name="offsite", kind="sftp", host=sshd_server.host, port=sshd_server.port, user=sshd_server.user,
        key_file=sshd_server.client_key_file, known_hosts=sshd_server.known_hosts,
        path=str(sshd_server.root / "from-config"),
    )  # fmt: skip
    dest = open_destination(cfg)
    assert isinstance(dest, SftpDestination) and dest.kind == "sftp"
    put_bytes(dest, "kb/a.bkpd", b"configured")
    assert (sshd_server.root / "from-config" / "kb" / "a.bkpd").read_bytes() == b"configured"
    dest.close()


def test_sshd_stopped_mid_read_is_transient_and_the_read_works_after_a_restart(own_sshd):
    dest = sftp_to(own_sshd)
    data = os.urandom(3 * MiB)
    put_bytes(dest, "kb/a.bkpd", data)

    with dest.open_read("kb/a.bkpd") as f:
        assert f.read(MiB) == data[:MiB]
        own_sshd.stop()
        with pytest.raises(DestinationUnavailable, match=r"reading kb/a.bkpd: connection to .* lost"):
            while f.read(MiB):
                pass

    own_sshd.start()
    assert get_bytes(dest, "kb/a.bkpd") == data
    dest.close()


def test_without_key_file_the_ssh_agent_logs_in(sshd_server, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen([shutil.which("ssh-agent") or "/usr/bin/ssh-agent", "-D", "-a", str(sock)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        env = os.environ | {"SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd_server.client_key_file)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        dest = sftp_to(sshd_server, key_file=None)
        put_bytes(dest, "kb/a.bkpd", b"via the agent")
        assert get_bytes(dest, "kb/a.bkpd") == b"via the agent"
        dest.close()
    finally:
        agent.kill()
        agent.wait()


def test_reads_seek_and_tell_like_a_local_file(sshd_server):
    """The engine seeks in artifacts (the trailer sits at the end: engine/inventory.py)."""
    dest = sftp_to(sshd_server)
    data = os.urandom(2 * MiB + 5)
    put_bytes(dest, "kb/a.bkpd", data)
    with dest.open_read("kb/a.bkpd") as f:
        assert f.seekable()
        assert f.seek(0, os.SEEK_END) == len(data) and f.tell() == len(data)
        assert f.read() == b""
        f.seek(-100, os.SEEK_END)
        assert f.read() == data[-100:]
        f.seek(MiB + 3)
        assert f.read(10) == data[MiB + 3 : MiB + 13] and f.tell() == MiB + 13
        f.seek(0)
        assert f.read() == data
    dest.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["read", "seek", "seek_end", "readinto"]),
                              st.integers(0, 3 * MiB + 100)), min_size=1, max_size=12))
def test_pipelined_reads_match_a_local_file_whatever_the_seeks(sftp_reader_fixture, ops):
    dest, data = sftp_reader_fixture
    model = io.BytesIO(data)
    with dest.open_read("kb/big.bkpd") as f:
        for op, n in ops:
            if op == "read":
                assert f.read(n) == model.read(n)
            elif op == "readinto":
                got, want = bytearray(n), bytearray(n)
                assert f.readinto(got) == model.readinto(want) and got == want
            elif op == "seek":
                assert f.seek(n) == model.seek(n)
            else:
                assert f.seek(-min(n, len(data)), os.SEEK_END) == model.seek(-min(n, len(data)), os.SEEK_END)
            assert f.tell() == model.tell()


@pytest.fixture(scope="module")
def sftp_reader_fixture(sshd_server):
    dest = sftp_to(sshd_server)
    data = os.urandom(3 * MiB + 17)
    put_bytes(dest, "kb/big.bkpd", data)
    yield dest, data
    dest.close()


def test_readers_share_a_connection_and_one_closed_mid_way_leaves_no_stray_replies(sshd_server):
    dest = sftp_to(sshd_server)
    a, b = os.urandom(2 * MiB + 1), os.urandom(2 * MiB + 3)
    put_bytes(dest, "kb/a.bkpd", a)
    put_bytes(dest, "kb/b.bkpd", b)
    first = dest.open_read("kb/a.bkpd")
    assert first.read(100) == a[:100]  # a megabyte of read-ahead is in flight
    with dest.open_read("kb/b.bkpd") as second:
        assert second.read(MiB) == b[:MiB]
        first.close()
        assert second.read() == b[MiB:]
    assert get_bytes(dest, "kb/a.bkpd") == a
    dest.close()


def test_a_file_that_shrinks_while_read_ends_short(sshd_server):
    dest = sftp_to(sshd_server)
    data = os.urandom(2 * MiB)
    put_bytes(dest, "kb/a.bkpd", data)
    with dest.open_read("kb/a.bkpd") as f:  # its size is taken at the open
        os.truncate(Path(dest.root) / "kb" / "a.bkpd", MiB + 7)
        assert f.read() == data[: MiB + 7]  # the artifact reader then reports the missing end
    dest.close()


def test_a_full_disk_on_the_server_fails_the_upload_and_publishes_nothing(tmpfs):
    small = tmpfs("size=1m")
    with running_sshd() as server:  # started after the mount: sshd's mount namespace is private
        dest = SftpDestination("offsite", server.host, str(small), user=server.user, known_hosts=server.known_hosts,
                               port=server.port, key_file=server.client_key_file)
        put_bytes(dest, "kb/old.bkpd", b"earlier backup")
        data = os.urandom(3 * MiB)
        with pytest.raises(DestinationFull) as caught:
            with dest.open_write("kb/a.bkpd") as up:
                for i in range(0, len(data), 64 * 1024):
                    up.write(memoryview(data)[i : i + 64 * 1024])
        assert not caught.value.retryable and "free space" in caught.value.hint
        assert "'offsite'" in str(caught.value) and "no space left on device" in str(caught.value)
        assert files_under(small) == ["kb/old.bkpd"]  # no partial artifact, no temp file
        assert get_bytes(dest, "kb/old.bkpd") == b"earlier backup"
        dest.close()

