"""[[destinations]] of every kind, their kind-specific keys and login files, [retention] and [fanout]."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backupd.config import load_config
from backupd.errors import ConfigError
from tests.config.conftest import valid_document


def problems_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    return caught.value.problems


def private_file(path: Path, mode: int = 0o600, text: str = "secret\n") -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def login_files(config_dir: Path) -> Path:
    private_file(config_dir / "id_ed25519")
    private_file(config_dir / "known_hosts", 0o644, "[h]:2222 ssh-ed25519 AAAA\n")
    private_file(config_dir / "smb.cred")
    return config_dir


def with_destinations(*destinations: dict) -> dict:
    document = valid_document()
    document["destinations"] = [dict(destination) for destination in destinations]
    return document


SFTP = {"name": "offsite", "kind": "sftp", "host": "backup.example.net", "user": "backupd",
        "known_hosts": "known_hosts", "path": "srv/backupd"}  # fmt: skip
SMB = {"name": "nas-direct", "kind": "smb", "server": "nas.example.net", "share": "backups", "path": "backupd",
       "user": "backupd", "password_env": "SMB_PW"}  # fmt: skip
SHARE = {"name": "nas", "kind": "share", "path": "nas/backupd"}


def test_every_kind_loads_with_its_defaults(login_files, write_config):
    document = with_destinations({"name": "l", "kind": "local", "path": "l"}, SHARE, SFTP, SMB)
    local, share, sftp, smb = load_config(write_config(document), environ={"SMB_PW": "pw"}).destinations

    assert (local.kind, local.path, local.port, local.max_age_days, local.max_count) == (
        "local", login_files / "l", None, None, None
    )  # fmt: skip
    assert (share.kind, share.path, share.mount_point) == ("share", login_files / "nas" / "backupd", None)
    assert (sftp.host, sftp.port, sftp.user, sftp.key_file) == ("backup.example.net", 22, "backupd", None)
    assert sftp.known_hosts == login_files / "known_hosts"
    assert sftp.path == Path("srv/backupd")  # a path on the server: not resolved here
    assert (smb.server, smb.port, smb.share, smb.path, smb.user) == (
        "nas.example.net", 445, "backups", Path("backupd"), "backupd"
    )  # fmt: skip
    assert (smb.password_env, smb.credentials_file, smb.require_encryption) == ("SMB_PW", None, False)


def test_every_key_of_every_kind(login_files, write_config):
    document = with_destinations(
        SHARE | {"mount_point": "nas", "max_age_days": 90, "max_count": 60},
        SFTP | {"port": 2222, "key_file": "id_ed25519", "path": "/srv/backupd"},
        SMB | {"port": 4450, "password_env": None, "credentials_file": "smb.cred", "require_encryption": True},
    )
    del document["destinations"][2]["password_env"]
    share, sftp, smb = load_config(write_config(document)).destinations

    assert (share.mount_point, share.max_age_days, share.max_count) == (login_files / "nas", 90, 60)
    assert (sftp.port, sftp.key_file, sftp.path) == (2222, login_files / "id_ed25519", Path("/srv/backupd"))
    assert (smb.port, smb.credentials_file, smb.require_encryption) == (4450, login_files / "smb.cred", True)


@pytest.mark.parametrize(
    ("destination", "problem"),
    [
        ({"name": "l", "kind": "local", "path": "l", "host": "h"}, "destinations[0].host: not allowed for kind 'local'"),
        ({"name": "l", "kind": "local", "path": "l", "port": 22}, "destinations[0].port: not allowed for kind 'local'"),
        (SHARE | {"require_encryption": False}, "destinations[0].require_encryption: not allowed for kind 'share'"),
        (SFTP | {"share": "x"}, "destinations[0].share: not allowed for kind 'sftp'"),
        (SFTP | {"mount_point": "/mnt"}, "destinations[0].mount_point: not allowed for kind 'sftp'"),
        (SMB | {"known_hosts": "known_hosts"}, "destinations[0].known_hosts: not allowed for kind 'smb'"),
        (SMB | {"key_file": "id_ed25519"}, "destinations[0].key_file: not allowed for kind 'smb'"),
        ({k: v for k, v in SFTP.items() if k != "host"}, "destinations[0].host: required key missing"),
        ({k: v for k, v in SFTP.items() if k != "known_hosts"}, "destinations[0].known_hosts: required key missing"),
        ({k: v for k, v in SFTP.items() if k != "path"}, "destinations[0].path: required key missing"),
        ({k: v for k, v in SMB.items() if k != "share"}, "destinations[0].share: required key missing"),
        ({k: v for k, v in SMB.items() if k != "user"}, "destinations[0].user: required key missing"),
        (SFTP | {"port": 0}, "destinations[0].port: must be >= 1 (got 0)"),
        (SFTP | {"port": 70000}, "destinations[0].port: must be <= 65535 (got 70000)"),
        (SFTP | {"host": ""}, "destinations[0].host: must not be empty"),
        (SMB | {"require_encryption": "yes"}, "destinations[0].require_encryption: expected true or false (got 'yes')"),
        (SHARE | {"max_count": 0}, "destinations[0].max_count: must be >= 1 (got 0)"),
        (SHARE | {"max_age_days": 0}, "destinations[0].max_age_days: must be >= 1 (got 0)"),
        (
            {k: v for k, v in SMB.items() if k != "password_env"},
            "destinations[0]: set exactly one of password_env or credentials_file (got neither)",
        ),
        (
            SMB | {"credentials_file": "smb.cred"},
            "destinations[0]: set exactly one of password_env or credentials_file (got both)",
        ),
    ],
)
def test_kind_specific_key_problems(login_files, write_config, destination, problem):
    assert problems_of(write_config(with_destinations(destination)), environ={"SMB_PW": "pw"}) == [problem]


def test_several_wrong_kind_keys_are_reported_together(login_files, write_config):
    document = with_destinations({"name": "l", "kind": "local", "path": "l", "host": "h", "user": "u"}, SFTP)
    del document["destinations"][1]["user"]
    assert problems_of(write_config(document)) == [
        "destinations[0].host: not allowed for kind 'local'",
        "destinations[0].user: not allowed for kind 'local'",
        "destinations[1].user: required key missing",
    ]


def test_login_files_are_checked(login_files, write_config):
    os.chmod(login_files / "id_ed25519", 0o644)
    os.chmod(login_files / "smb.cred", 0o640)
    document = with_destinations(
        SFTP | {"key_file": "id_ed25519"},
        SFTP | {"name": "other", "known_hosts": "nowhere"},
        {k: v for k, v in SMB.items() if k != "password_env"} | {"credentials_file": "smb.cred"},
        SMB | {"name": "env"},
    )
    key, cred, nowhere = (str(login_files / name) for name in ("id_ed25519", "smb.cred", "nowhere"))
    assert problems_of(write_config(document), environ={}) == [
        f"destinations[0].key_file: '{key}' is readable by group or others (mode 0644); run: chmod 600 {key}",
        f"destinations[1].known_hosts: '{nowhere}' does not exist; check the path",
        f"destinations[2].credentials_file: '{cred}' is readable by group or others (mode 0640); run: chmod 600 {cred}",
        "destinations[3].password_env: environment variable 'SMB_PW' is not set or empty;"
        " set it in backupd's environment",
    ]


def test_retention_and_fanout(write_config):
    cfg = load_config(write_config(valid_document()))
    assert (cfg.retention.keep_last, cfg.retention.keep_daily, cfg.retention.keep_yearly) == (None, None, None)
    assert (cfg.fanout.max_parallel_destinations, cfg.fanout.success_policy) == (2, "all")

    document = valid_document()
    document["retention"] = {"keep_last": 7, "keep_daily": 14, "keep_weekly": 8, "keep_monthly": 12, "keep_yearly": 0}
    document["fanout"] = {"max_parallel_destinations": 4, "success_policy": "quorum"}
    cfg = load_config(write_config(document))
    r = cfg.retention
    assert (r.keep_last, r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly) == (7, 14, 8, 12, 0)
    assert (cfg.fanout.max_parallel_destinations, cfg.fanout.success_policy) == (4, "quorum")


def test_retention_and_fanout_problems(write_config):
    document = valid_document()
    document["retention"] = {"keep_last": -1, "keep_hourly": 3}
    document["fanout"] = {"max_parallel_destinations": 0, "success_policy": "most"}
    assert problems_of(write_config(document)) == [
        "retention.keep_last: must be >= 0 (got -1)",
        "retention.keep_hourly: unknown key",
        "fanout.max_parallel_destinations: must be >= 1 (got 0)",
        "fanout.success_policy: unknown success_policy 'most' (expected all, quorum, any)",
    ]
