"""The `destination` fixture: every test in contract.py runs once per destination kind in KINDS.

Adding a kind is one `DestinationKind` entry. Its `make` builds a fresh, empty destination for one
test (a factory that needs a server asks for the server's fixture through `request`, so the server
starts only when that kind runs); its `plant_temp` leaves behind what an upload that crashed before
`commit()` leaves on that medium. A kind whose server cannot start must fail, never skip.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import smbclient

from backupd.destinations.base import TEMP_SUFFIX, Destination
from backupd.destinations.local import LocalDestination
from backupd.destinations.sftp import SftpDestination
from backupd.destinations.share import ShareDestination
from backupd.destinations.smb import SmbDestination
from tests.servers.smbd import smb_server  # noqa: F401 - the fixture make_smb asks for
from tests.servers.sshd import running_sshd, sshd_server  # noqa: F401 - the fixture make_sftp asks for


@dataclass(frozen=True)
class DestinationKind:
    name: str
    make: Callable[[pytest.FixtureRequest, Path], Destination]
    plant_temp: Callable[[Destination, str, bytes], str]  # (dest, key, data) -> the temp file's key
    # a small filesystem under the destination: where to mount it, and a destination whose objects lie on it
    medium_at: Callable[[pytest.FixtureRequest, Path], Path]
    on_medium: Callable[[pytest.FixtureRequest, Path], Destination]


def medium_in_tmp(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / "medium"


def local_on(request: pytest.FixtureRequest, mount: Path) -> Destination:
    return LocalDestination("contract", mount / "backupd")


def share_on(request: pytest.FixtureRequest, mount: Path) -> Destination:
    return ShareDestination("contract", mount / "backupd", mount_point=mount)


def sftp_on(request: pytest.FixtureRequest, mount: Path) -> Destination:
    """A private sshd started after the mount (its mount namespace is a copy taken at start)."""
    running = running_sshd()
    server = running.__enter__()
    request.addfinalizer(lambda: running.__exit__(None, None, None))
    dest = SftpDestination("contract", server.host, str(mount / "backupd"), user=server.user,
                           known_hosts=server.known_hosts, port=server.port, key_file=server.client_key_file)
    request.addfinalizer(dest.close)
    return dest


def smb_medium_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return request.getfixturevalue("smb_server").share_dir / f"m-{secrets.token_hex(6)}"


def smb_on(request: pytest.FixtureRequest, mount: Path) -> Destination:
    server = request.getfixturevalue("smb_server")
    dest = SmbDestination("contract", server.host, server.share, f"{mount.name}/backupd", server.user, server.password,
                          port=server.port)
    request.addfinalizer(dest.close)
    return dest


def make_local(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    return LocalDestination("contract", tmp_path / "local-root")


def plant_local_temp(dest: Destination, key: str, data: bytes) -> str:
    """What a LocalUpload leaves when the process dies before commit: `.<name>.<hex>.backupd-tmp`."""
    assert isinstance(dest, LocalDestination)
    final = PurePosixPath(key)
    temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    path = dest.root / temp
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(temp)


def make_share(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    """A tmpfs mounted for this test stands in for the NFS/CIFS share (the suite runs as root)."""
    mount_point = tmp_path / "share-mnt"
    mount_tmpfs(request, mount_point)
    return ShareDestination("contract", mount_point / "backupd", mount_point=mount_point)


def mount_tmpfs(request: pytest.FixtureRequest, mount_point: Path, size: str = "32m") -> None:
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(mount_point)], check=False))


def make_smb(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    """A fresh folder on the session's real smbd for each test."""
    server = request.getfixturevalue("smb_server")
    dest = SmbDestination(
        "contract", server.host, server.share, f"t-{secrets.token_hex(6)}/backupd", server.user, server.password,
        port=server.port,
    )
    request.addfinalizer(dest.close)
    return dest


def plant_smb_temp(dest: Destination, key: str, data: bytes) -> str:
    """What an SmbUpload leaves when the process dies before commit: a closed temp file beside the target."""
    assert isinstance(dest, SmbDestination)
    final = PurePosixPath(key)
    temp = str(final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"))
    with dest._errors("planting a temp file"):
        dest._makedirs(dest._path(str(final.parent)))
        with smbclient.open_file(dest._path(temp), mode="xb", **dest._kw()) as f:
            f.write(data)
    return temp


def make_sftp(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    """A fresh folder on the session's real sshd for each test (the server runs on this machine)."""
    server = request.getfixturevalue("sshd_server")
    root = server.root / f"t-{secrets.token_hex(6)}" / "backupd"
    dest = SftpDestination(
        "contract", server.host, str(root), user=server.user, known_hosts=server.known_hosts, port=server.port,
        key_file=server.client_key_file,
    )  # fmt: skip
    request.addfinalizer(dest.close)
    return dest


def plant_sftp_temp(dest: Destination, key: str, data: bytes) -> str:
    """What an SftpUpload leaves when the process dies before commit: `.<name>.<hex>.backupd-tmp`."""
    assert isinstance(dest, SftpDestination)
    final = PurePosixPath(key)
    temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    path = Path(dest.root) / temp  # the server's files are on this machine
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(temp)


KINDS = [
    DestinationKind("local", make_local, plant_local_temp, medium_in_tmp, local_on),
    DestinationKind("sftp", make_sftp, plant_sftp_temp, medium_in_tmp, sftp_on),
    DestinationKind("share", make_share, plant_local_temp, medium_in_tmp, share_on),
    DestinationKind("smb", make_smb, plant_smb_temp, smb_medium_at, smb_on),
]


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
def destination_kind(request: pytest.FixtureRequest) -> DestinationKind:
    return request.param


@pytest.fixture
def destination(destination_kind: DestinationKind, request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    return destination_kind.make(request, tmp_path)


@pytest.fixture
def plant_temp(destination_kind: DestinationKind, destination: Destination) -> Callable[[str, bytes], str]:
    """`plant_temp(key, data)` simulates a crashed upload of `key`; returns the temp file's key."""
    return lambda key, data=b"half an artifact": destination_kind.plant_temp(destination, key, data)


@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs(options, at=None)` mounts a fresh tmpfs (at `at`, else in tmp_path) and returns its path;
    all are unmounted afterwards. ENOSPC and EROFS need a real small filesystem."""
    mounted: list[Path] = []

    # A developer without root may skip these; CI (CI=true, root) must run them, so there they fail.
    unavailable = pytest.fail if os.environ.get("CI") else pytest.skip

    def mount(options: str, at: Path | None = None) -> Path:
        if os.geteuid() != 0:
            unavailable("mounting a tmpfs needs root; ENOSPC and EROFS need a real small filesystem")
        if shutil.which("mount") is None:
            unavailable("no mount(8) binary; ENOSPC and EROFS need a real small filesystem")
        target = at or tmp_path / f"mnt{len(mounted)}"
        target.mkdir(exist_ok=True)
        cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            unavailable(f"mount -t tmpfs -o {options} is not permitted here ({r.stderr.strip()})")
        mounted.append(target)
        return target

    def remount(target: Path, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True, capture_output=True)

    mount.remount = remount  # type: ignore[attr-defined]
    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], check=True)


@pytest.fixture
def on_medium(destination_kind: DestinationKind, request: pytest.FixtureRequest, tmp_path: Path, tmpfs):
    """`on_medium(options)`: (a destination of this kind whose objects lie on a fresh tmpfs mounted with
    `options`, the mount point), for faults of the medium: full, read-only."""

    def make(options: str) -> tuple[Destination, Path]:
        mount = tmpfs(options, at=destination_kind.medium_at(request, tmp_path))
        return destination_kind.on_medium(request, mount), mount

    return make
