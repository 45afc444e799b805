"""The SMB destination against a real smbd: what the contract suite cannot see.

Encryption on the wire, error classification (logon failure, missing share, refused or dropped
connection), bytes landing where expected on the server's disk, and the config path (password from
an environment variable or a 0600 credentials file, the registry factory).
"""

from __future__ import annotations

import os
import secrets

import pytest

from backupd.config.schema import DestinationConfig
from backupd.destinations.base import TEMP_SUFFIX, get_bytes, put_bytes
from backupd.destinations.registry import open_destination
from backupd.destinations.smb import SmbDestination, read_password
from backupd.errors import DestinationError, DestinationFull, DestinationUnavailable
from tests.servers.smbd import free_port, running_smbd


def smb(server, *, path="backupd", **overrides) -> SmbDestination:
    args = dict(server=server.host, share=server.share, path=path, user=server.user, password=server.password,
                port=server.port)
    args.update(overrides)
    return SmbDestination("nas-direct", **args)


@pytest.fixture
def dest(smb_server, request):
    d = smb(smb_server, path=f"{request.node.name[:40]}/backupd")
    yield d
    d.close()


def test_objects_land_under_the_path_and_no_temp_file_remains(smb_server, dest):
    put_bytes(dest, "kb/sub/a.bkpd", b"on the server")
    on_disk = smb_server.share_dir / dest.path
    assert (on_disk / "kb" / "sub" / "a.bkpd").read_bytes() == b"on the server"
    assert [p.name for p in on_disk.rglob("*") if p.is_file()] == ["a.bkpd"]
    assert not any(p.name.endswith(TEMP_SUFFIX) for p in on_disk.rglob("*"))


def test_the_session_is_encrypted_when_the_server_offers_it(dest):
    assert dest.encrypted
    put_bytes(dest, "kb/a.bkpd", b"secret")
    assert get_bytes(dest, "kb/a.bkpd") == b"secret"


def test_without_server_encryption_it_still_works_unless_encryption_is_required():
    with running_smbd(encrypt="off") as server:
        plain = smb(server)
        try:
            assert not plain.encrypted
            put_bytes(plain, "kb/a.bkpd", b"clear")
            assert get_bytes(plain, "kb/a.bkpd") == b"clear"
        finally:
            plain.close()
        strict = smb(server, require_encryption=True)
        with pytest.raises(DestinationError, match="does not offer SMB3 encryption") as exc:
            strict.list("")
        assert not isinstance(exc.value, DestinationUnavailable)
        assert "require_encryption" in str(exc.value)


def test_a_wrong_password_is_a_permanent_error_naming_server_share_and_user(smb_server):
    d = smb(smb_server, password="wrong", user=smb_server.user)
    for op in (lambda: d.list(""), lambda: put_bytes(d, "kb/a.bkpd", b"x")):
        with pytest.raises(DestinationError) as exc:
            op()
        assert not isinstance(exc.value, DestinationUnavailable)
        msg = str(exc.value)
        assert "logon failed" in msg and f"user {smb_server.user!r}" in msg
        assert f"{smb_server.host}:{smb_server.port}" in msg and f"share {smb_server.share!r}" in msg
    h = d.health()
    assert h.status == "unhealthy" and "logon failed" in h.problems[0]


def test_a_missing_share_is_a_permanent_error(smb_server):
    d = smb(smb_server, share="nosuch")
    with pytest.raises(DestinationError, match="has no share 'nosuch'") as exc:
        put_bytes(d, "kb/a.bkpd", b"x")
    assert not isinstance(exc.value, DestinationUnavailable)


def test_nobody_listening_is_unavailable_and_health_says_unreachable():
    port = free_port()
    d = SmbDestination("nas-direct", "127.0.0.1", "backup", "backupd", "root", "pw", port=port)
    with pytest.raises(DestinationUnavailable, match=f"cannot connect to 127.0.0.1:{port}"):
        d.list("")
    with pytest.raises(DestinationUnavailable):
        d.open_write("kb/a.bkpd")
    h = d.health()
    assert (h.status, h.reachable, h.writable, h.free_bytes) == ("unhealthy", False, False, None)
    assert d.free_space() is None


def test_a_server_that_goes_away_mid_upload_is_unavailable_and_nothing_is_visible():
    with running_smbd() as server:
        d = smb(server)
        put_bytes(d, "kb/old.bkpd", b"old")
        put_bytes(d, "kb/big.bkpd", os.urandom(3 * 1024 * 1024))
        reader = d.open_read("kb/big.bkpd")
        assert len(reader.read(1)) == 1
        up = d.open_write("kb/a.bkpd")
        up.write(b"half" * 1000)
        share_dir = server.share_dir
        os.killpg(server.pid, 15)
        with pytest.raises(DestinationUnavailable):
            up.write(b"more" * 1000)
            up.commit()
        with pytest.raises(DestinationUnavailable):
            reader.read()  # a restore reading this copy fails over cleanly
        reader.close()
        with pytest.raises(DestinationUnavailable):
            d.list("")
        # what the server kept: the old object and at most a temp file, which remove_stale_temp clears later
        left = sorted(p.name for p in (share_dir / "backupd" / "kb").iterdir())
        assert "a.bkpd" not in left and {"old.bkpd", "big.bkpd"} <= set(left)
        assert all(n in ("old.bkpd", "big.bkpd") or n.endswith(TEMP_SUFFIX) for n in left)
        d.close()


def test_password_from_env_or_a_0600_credentials_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUPD_TEST_SMB_PW", "from env")
    assert read_password("n", "BACKUPD_TEST_SMB_PW", None) == "from env"
    with pytest.raises(DestinationError, match="BACKUPD_TEST_UNSET is not set"):
        read_password("n", "BACKUPD_TEST_UNSET", None)

    cred = tmp_path / "smb.cred"
    cred.write_text("p@ss word\nignored second line\n")
    cred.chmod(0o600)
    assert read_password("n", None, cred) == "p@ss word"
    cred.chmod(0o644)
    with pytest.raises(DestinationError, match="readable by others") as exc:
        read_password("n", None, cred)
    assert "chmod 600" in str(exc.value)
    with pytest.raises(DestinationError, match="cannot read credentials file"):
        read_password("n", None, tmp_path / "missing")
    with pytest.raises(DestinationError, match="no SMB password configured"):
        read_password("n", None, None)


def test_the_registry_builds_an_smb_destination_from_config(smb_server, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUPD_TEST_SMB_PW", smb_server.password)
    cfg = DestinationConfig.model_validate({
        "name": "nas-direct", "kind": "smb", "server": smb_server.host, "port": smb_server.port,
        "share": smb_server.share, "path": "from-config/backupd", "user": smb_server.user,
        "password_env": "BACKUPD_TEST_SMB_PW", "require_encryption": True,
    })  # fmt: skip
    d = open_destination(cfg)
    try:
        assert isinstance(d, SmbDestination) and d.kind == "smb" and d.path == "from-config/backupd"
        put_bytes(d, "kb/a.bkpd", b"configured")
        assert (smb_server.share_dir / "from-config" / "backupd" / "kb" / "a.bkpd").read_bytes() == b"configured"
        assert d.encrypted and d.health().status == "ok"
    finally:
        d.close()


def test_a_full_disk_on_the_server_fails_the_upload_and_publishes_nothing(smb_server, tmpfs):
    small = tmpfs("size=1m", at=smb_server.share_dir / f"small-{secrets.token_hex(4)}")
    d = smb(smb_server, path=small.name)
    put_bytes(d, "kb/old.bkpd", b"earlier backup")
    data = os.urandom(3 * 1024 * 1024)
    with pytest.raises(DestinationFull) as caught:
        with d.open_write("kb/a.bkpd") as up:
            for i in range(0, len(data), 64 * 1024):
                up.write(memoryview(data)[i : i + 64 * 1024])
    assert not caught.value.retryable and "'nas-direct'" in str(caught.value), caught.value
    assert sorted(str(p.relative_to(small)) for p in small.rglob("*") if p.is_file()) == ["kb/old.bkpd"]
    assert get_bytes(d, "kb/old.bkpd") == b"earlier backup"

