"""The destination contract (backupd/destinations/base.py), checked on every kind in conftest.KINDS.

Each test gets a fresh, empty destination. Prefixes passed to `list` and `remove_stale_temp` are
"" or end with "/", as the engine uses them ("<source>/").
"""

from __future__ import annotations

import hashlib
import random
import subprocess

import pytest

from backupd.destinations.base import Destination, ObjectInfo, get_bytes, put_bytes
from backupd.errors import BackupdError, DestinationFull, DestinationPermissionDenied, DestinationReadOnly, NotFound

MiB = 1024 * 1024


class Boom(Exception):
    """Raised inside `with open_write(...)` to interrupt an upload."""


def keys(dest: Destination, prefix: str = "") -> list[str]:
    return [o.key for o in dest.list(prefix)]


def assert_invisible(dest: Destination, key: str) -> None:
    assert key not in keys(dest)
    with pytest.raises(NotFound):
        dest.stat(key)
    with pytest.raises(NotFound):
        dest.open_read(key)


def pseudo_random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"x", b"small object\n" * 10], ids=["empty", "one-byte", "small"])
def test_round_trip_small(destination, data):
    assert put_bytes(destination, "kb/obj.bkpd", data) == len(data)
    assert get_bytes(destination, "kb/obj.bkpd") == data
    info = destination.stat("kb/obj.bkpd")
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size) == ("kb/obj.bkpd", len(data))
    assert isinstance(info.mtime, float) and info.mtime > 0
    assert destination.list("") == [info]


def test_round_trip_multi_mib_streamed_in_chunks(destination):
    data = pseudo_random(5 * MiB + 12345, seed=1)
    sizes = [1, 4096, 65536, MiB + 7, 3]
    with destination.open_write("kb/big.bkpd") as up:
        pos, i = 0, 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            chunk = memoryview(data)[pos : pos + n] if i % 2 else bytes(data[pos : pos + n])
            up.write(chunk)
            pos, i = pos + n, i + 1
        assert up.bytes_written == len(data)
    assert destination.stat("kb/big.bkpd").size == len(data)
    h = hashlib.sha256()
    with destination.open_read("kb/big.bkpd") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    assert h.digest() == hashlib.sha256(data).digest()


def test_nested_keys_round_trip(destination):
    put_bytes(destination, "kb/sub/deeper/obj", b"nested")
    assert get_bytes(destination, "kb/sub/deeper/obj") == b"nested"
    assert keys(destination, "kb/") == ["kb/sub/deeper/obj"]


# --- atomicity ------------------------------------------------------------------------------------


def test_nothing_is_visible_before_commit(destination):
    up = destination.open_write("kb/a.bkpd")
    up.write(b"partial" * 1000)
    assert destination.list("") == [] and destination.list("kb/") == []
    assert_invisible(destination, "kb/a.bkpd")
    up.commit()
    assert get_bytes(destination, "kb/a.bkpd") == b"partial" * 1000
    assert keys(destination) == ["kb/a.bkpd"]


def test_put_over_an_existing_key_replaces_it_atomically(destination):
    put_bytes(destination, "kb/a.bkpd", b"old contents")
    with destination.open_write("kb/a.bkpd") as up:
        up.write(b"new contents, longer than the old")
        # until commit, readers see the old object, whole
        assert get_bytes(destination, "kb/a.bkpd") == b"old contents"
        assert destination.stat("kb/a.bkpd").size == len(b"old contents")
        assert keys(destination) == ["kb/a.bkpd"]
    assert get_bytes(destination, "kb/a.bkpd") == b"new contents, longer than the old"
    put_bytes(destination, "kb/a.bkpd", b"short")
    assert get_bytes(destination, "kb/a.bkpd") == b"short"
    assert destination.list("") == [destination.stat("kb/a.bkpd")]
    assert destination.remove_stale_temp("") == []


def test_concurrent_uploads_of_one_key_last_commit_wins(destination):
    first, second = destination.open_write("kb/a.bkpd"), destination.open_write("kb/a.bkpd")
    first.write(b"first " * 100)
    second.write(b"second " * 100)
    second.commit()
    assert get_bytes(destination, "kb/a.bkpd") == b"second " * 100
    first.commit()
    assert get_bytes(destination, "kb/a.bkpd") == b"first " * 100
    assert keys(destination) == ["kb/a.bkpd"]
    assert destination.remove_stale_temp("") == []


def test_abort_leaves_nothing(destination):
    up = destination.open_write("kb/a.bkpd")
    up.write(b"doomed" * 1000)
    up.abort()
    assert_invisible(destination, "kb/a.bkpd")
    assert destination.list("") == []
    assert destination.remove_stale_temp("") == []  # no temp file was left behind


def test_an_exception_inside_with_leaves_nothing(destination):
    with pytest.raises(Boom):
        with destination.open_write("kb/a.bkpd") as up:
            up.write(b"doomed" * 1000)
            raise Boom()
    assert_invisible(destination, "kb/a.bkpd")
    assert destination.list("") == []
    assert destination.remove_stale_temp("") == []


@pytest.mark.parametrize("how", ["abort", "exception"])
def test_a_failed_overwrite_keeps_the_old_object(destination, how):
    put_bytes(destination, "kb/a.bkpd", b"precious")
    if how == "abort":
        up = destination.open_write("kb/a.bkpd")
        up.write(b"replacement")
        up.abort()
    else:
        with pytest.raises(Boom), destination.open_write("kb/a.bkpd") as up:
            up.write(b"replacement")
            raise Boom()
    assert get_bytes(destination, "kb/a.bkpd") == b"precious"
    assert keys(destination) == ["kb/a.bkpd"]
    assert destination.remove_stale_temp("") == []


# --- listing --------------------------------------------------------------------------------------


def test_list_returns_committed_objects_sorted_and_filtered_by_prefix(destination, plant_temp):
    committed = {"kb/b.bkpd": b"bb", "kb/a.bkpd": b"a", "kb/sub/c": b"ccc", "kb2/x": b"x", "crm/a": b"", "top": b"t"}
    for key in random.Random(7).sample(sorted(committed), len(committed)):
        put_bytes(destination, key, committed[key])
    pending = destination.open_write("kb/pending.bkpd")
    pending.write(b"not yet")
    plant_temp("kb/crashed.bkpd")

    listed = destination.list("")
    assert [o.key for o in listed] == sorted(committed)
    assert {o.key: o.size for o in listed} == {k: len(v) for k, v in committed.items()}
    assert keys(destination, "kb/") == ["kb/a.bkpd", "kb/b.bkpd", "kb/sub/c"]
    assert keys(destination, "kb/sub/") == ["kb/sub/c"]
    assert keys(destination, "crm/") == ["crm/a"]
    pending.abort()


def test_list_of_a_missing_prefix_is_empty(destination):
    assert destination.list("") == []
    assert destination.list("kb/") == []
    put_bytes(destination, "kb/a.bkpd", b"a")
    assert destination.list("nope/") == []
    assert destination.list("kb/a.bkpd/") == []


# --- delete and missing objects -------------------------------------------------------------------


def test_delete_is_idempotent(destination):
    put_bytes(destination, "kb/a.bkpd", b"a")
    put_bytes(destination, "kb/b.bkpd", b"b")
    destination.delete("kb/a.bkpd")
    assert_invisible(destination, "kb/a.bkpd")
    destination.delete("kb/a.bkpd")
    destination.delete("kb/never-existed")
    destination.delete("nope/never-existed")
    assert keys(destination) == ["kb/b.bkpd"]
    assert get_bytes(destination, "kb/b.bkpd") == b"b"


@pytest.mark.parametrize("key", ["kb/missing.bkpd", "nope/missing.bkpd", "missing"])
def test_missing_objects_raise_not_found(destination, key):
    put_bytes(destination, "kb/present.bkpd", b"here")
    for op in (destination.open_read, destination.stat):
        with pytest.raises(NotFound) as exc:
            op(key)
        assert isinstance(exc.value, BackupdError) and exc.value.code == "not_found"
        assert key in str(exc.value)


def test_keys_that_name_a_prefix_or_lie_under_an_object_are_missing(destination):
    put_bytes(destination, "kb/a.bkpd", b"a")
    put_bytes(destination, "top", b"t")
    for key in ("kb", "top/x", "top/x/y"):
        for op in (destination.open_read, destination.stat):
            with pytest.raises(NotFound):
                op(key)
        destination.delete(key)  # nothing to delete: a no-op, like any missing key
    assert keys(destination) == ["kb/a.bkpd", "top"]


INVALID_KEYS = [
    "",
    "/abs",
    "/kb/a.bkpd",
    "..",
    "../a.bkpd",
    "kb/../a.bkpd",
    "kb/..",
    ".",
    "./a.bkpd",
    "kb/./a.bkpd",
    "kb//a.bkpd",
    "kb/",
    ".hidden",
    "kb/.a.bkpd",
    "kb/a.bkpd.backupd-tmp",
    "kb/.a.bkpd.0badcafe.backupd-tmp",
    "kb/a\x00.bkpd",
]


@pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
@pytest.mark.parametrize("op", ["open_write", "open_read", "stat", "delete"])
def test_invalid_keys_are_rejected(destination, key, op):
    with pytest.raises(ValueError):
        getattr(destination, op)(key)
    assert destination.list("") == []
    assert destination.remove_stale_temp("") == []


# --- space, health, crash leftovers ---------------------------------------------------------------


def test_free_space_is_a_positive_int_or_none(destination):
    for _ in range(2):
        free = destination.free_space()
        assert free is None or (type(free) is int and free > 0)
        put_bytes(destination, "kb/a.bkpd", b"a")


def test_health_of_a_healthy_destination(destination):
    h = destination.health()
    assert (h.status, h.reachable, h.writable, h.problems) == ("ok", True, True, ())
    assert h.free_bytes is None or (type(h.free_bytes) is int and h.free_bytes > 0)
    assert h.latency_ms >= 0
    assert destination.list("") == []  # the probe cleans up after itself
    assert destination.remove_stale_temp("") == []


def test_remove_stale_temp_removes_crash_leftovers_only(destination, plant_temp):
    put_bytes(destination, "kb/kept.bkpd", b"kept")
    kb_temp = plant_temp("kb/a.bkpd")
    crm_temp = plant_temp("crm/b.bkpd")
    assert kb_temp.startswith("kb/") and crm_temp.startswith("crm/")
    assert destination.list("") == [destination.stat("kb/kept.bkpd")]

    assert destination.remove_stale_temp("kb/") == [kb_temp]
    assert destination.remove_stale_temp("kb/") == []
    assert destination.remove_stale_temp("nope/") == []
    assert destination.remove_stale_temp("") == [crm_temp]
    assert destination.remove_stale_temp("") == []
    assert get_bytes(destination, "kb/kept.bkpd") == b"kept"


def test_remove_stale_temp_removes_an_abandoned_upload(destination):
    crashed = destination.open_write("kb/a.bkpd")  # the process "dies" holding this upload
    crashed.write(b"half" * 1000)
    removed = destination.remove_stale_temp("kb/")
    assert len(removed) == 1 and removed[0].startswith("kb/") and removed[0] != "kb/a.bkpd"
    assert destination.remove_stale_temp("") == []
    assert destination.list("") == []
    put_bytes(destination, "kb/a.bkpd", b"retried")  # the retry after the restart succeeds
    assert get_bytes(destination, "kb/a.bkpd") == b"retried"


# --- faults of the medium: every kind classifies them the same way ---------------------------------


def test_a_full_medium_is_destination_full_and_publishes_nothing(on_medium):
    dest, _ = on_medium("size=512k")
    put_bytes(dest, "kb/old.bkpd", b"an earlier backup")
    with pytest.raises(DestinationFull) as caught:
        with dest.open_write("kb/new.bkpd") as up:
            for i in range(32):
                up.write(pseudo_random(64 * 1024, i))
    assert caught.value.code == "destination_full" and not caught.value.retryable
    assert "'contract'" in str(caught.value) and caught.value.hint
    assert keys(dest) == ["kb/old.bkpd"]
    assert get_bytes(dest, "kb/old.bkpd") == b"an earlier backup"


def test_a_medium_remounted_read_only_is_destination_read_only(on_medium, tmpfs):
    dest, mount = on_medium("size=1m")
    put_bytes(dest, "kb/old.bkpd", b"written before the remount")
    tmpfs.remount(mount, "ro")
    for op in (lambda: put_bytes(dest, "kb/new.bkpd", b"new"), lambda: dest.delete("kb/old.bkpd")):
        with pytest.raises(DestinationReadOnly, match="read-only file system") as caught:
            op()
        assert caught.value.code == "destination_read_only" and not caught.value.retryable
        assert "'contract'" in str(caught.value) and "remount it read-write" in caught.value.hint
    assert keys(dest) == ["kb/old.bkpd"]
    assert get_bytes(dest, "kb/old.bkpd") == b"written before the remount"
    assert dest.health().status == "unhealthy"


def test_an_immutable_folder_is_destination_permission_denied(on_medium):
    """chattr +i: even root gets EPERM creating or deleting in the folder."""
    dest, mount = on_medium("size=1m")
    put_bytes(dest, "kb/old.bkpd", b"kept")
    folder = mount / "backupd" / "kb"
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        for op in (lambda: put_bytes(dest, "kb/new.bkpd", b"new"), lambda: dest.delete("kb/old.bkpd")):
            with pytest.raises(DestinationPermissionDenied) as caught:
                op()
            assert caught.value.code == "destination_permission_denied" and not caught.value.retryable
            assert "'contract'" in str(caught.value) and caught.value.hint
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert keys(dest) == ["kb/old.bkpd"]
