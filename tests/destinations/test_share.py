"""The mounted-share destination's guard: writes are refused while the share is not mounted.

The contract suite (kind "share" in conftest.py) runs on a mounted tmpfs; here the same tmpfs is
unmounted and every write must fail with a clear error and leave nothing under the mount point.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backupd.config.schema import DestinationConfig
from backupd.destinations.base import get_bytes, put_bytes
from backupd.destinations.registry import open_destination
from backupd.destinations.share import ShareDestination, nearest_mount
from backupd.errors import DestinationError
from tests.destinations.conftest import mount_tmpfs


def everything_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


def assert_refused(exc: pytest.ExceptionInfo, mount_point: Path) -> None:
    assert isinstance(exc.value, DestinationError) and exc.value.code == "destination_error"
    assert str(exc.value) == (
        f"destination 'nas': {mount_point} is not mounted; refusing to write so backups never fill the local disk"
        " (mount the share (or fix mount_point))"
    )


@pytest.fixture
def mounted(request, tmp_path):
    mount_point = tmp_path / "nas"
    mount_tmpfs(request, mount_point, size="4m")
    return mount_point


def test_an_unmounted_share_refuses_every_write_and_nothing_is_written(mounted):
    dest = ShareDestination("nas", mounted / "backupd", mount_point=mounted)
    put_bytes(dest, "kb/a.bkpd", b"on the share")
    assert dest.health().status == "ok"
    assert dest.free_space() is not None and dest.free_space() <= 4 * 1024 * 1024

    subprocess.run(["umount", str(mounted)], check=True)
    assert not os.path.ismount(mounted) and everything_under(mounted) == []

    for op in (
        lambda: dest.open_write("kb/b.bkpd"),
        lambda: put_bytes(dest, "kb/a.bkpd", b"would fill the local disk"),
        lambda: dest.delete("kb/a.bkpd"),
        lambda: dest.remove_stale_temp(""),
    ):
        with pytest.raises(DestinationError) as exc:
            op()
        assert_refused(exc, mounted)
    health = dest.health()
    assert (health.status, health.reachable, health.writable, health.free_bytes) == ("unhealthy", False, False, None)
    assert health.problems == (f"destination 'nas': {mounted} is not mounted; refusing to write so backups never fill"
                               " the local disk (mount the share (or fix mount_point))",)
    assert dest.free_space() is None
    assert dest.list("") == []
    assert everything_under(mounted) == []  # not even the root directory was created

    # mounted again (a fresh, empty tmpfs here): writes go through
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mounted)], check=True)
    put_bytes(dest, "kb/b.bkpd", b"back")
    assert get_bytes(dest, "kb/b.bkpd") == b"back"


def test_a_path_outside_the_mount_point_is_refused(mounted, tmp_path):
    dest = ShareDestination("nas", tmp_path / "elsewhere", mount_point=mounted)
    with pytest.raises(DestinationError, match="is not under mount_point"):
        dest.open_write("kb/a.bkpd")
    assert not (tmp_path / "elsewhere").exists()


def test_without_mount_point_the_nearest_mount_above_the_path_is_required(mounted, tmp_path):
    assert nearest_mount(mounted / "backupd" / "deeper") == mounted
    on_share = ShareDestination("nas", mounted / "backupd")
    put_bytes(on_share, "kb/a.bkpd", b"ok")
    assert get_bytes(on_share, "kb/a.bkpd") == b"ok"

    if nearest_mount(tmp_path) == Path("/"):  # tmp_path is on the root filesystem: an unmounted share looks like this
        local = ShareDestination("nas", tmp_path / "not-a-share" / "backupd")
        with pytest.raises(DestinationError, match="no share is mounted above"):
            local.open_write("kb/a.bkpd")
        assert not (tmp_path / "not-a-share").exists()


def test_the_registry_builds_a_share_from_config(mounted):
    cfg = DestinationConfig.model_validate(
        {"name": "nas", "kind": "share", "path": str(mounted / "backupd"), "mount_point": str(mounted)}
    )
    dest = open_destination(cfg)
    assert isinstance(dest, ShareDestination) and dest.kind == "share" and dest.mount_point == mounted
    put_bytes(dest, "kb/a.bkpd", b"x")
    assert (mounted / "backupd" / "kb" / "a.bkpd").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["nas", "my nas\tshare\\x"])  # mountinfo escapes space, tab and backslash
def test_a_bind_mount_of_a_directory_on_the_same_file_system_counts_as_mounted(request, tmp_path, name):
    exported, mount_point = tmp_path / "exported", tmp_path / name
    exported.mkdir()
    mount_point.mkdir()
    subprocess.run(["mount", "--bind", str(exported), str(mount_point)], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(mount_point)], check=False))
    assert os.stat(exported).st_dev == os.stat(tmp_path).st_dev  # same device: os.path.ismount cannot tell

    for dest in (ShareDestination("nas", mount_point / "backupd", mount_point=mount_point),
                 ShareDestination("nas", mount_point / "backupd")):
        put_bytes(dest, "kb/a.bkpd", b"on the share")
        assert dest.health().status == "ok", dest.health()
    assert (exported / "backupd" / "kb" / "a.bkpd").read_bytes() == b"on the share"

    subprocess.run(["umount", str(mount_point)], check=True)
    dest = ShareDestination("nas", mount_point / "backupd", mount_point=mount_point)
    with pytest.raises(DestinationError) as exc:
        put_bytes(dest, "kb/b.bkpd", b"would fill the local disk")
    assert_refused(exc, mount_point)
    assert everything_under(mount_point) == []
