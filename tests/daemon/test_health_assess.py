"""The pure part of destination health: a destination that answers is degraded when another full
backup would not fit in its free space."""

from __future__ import annotations

from backupd.daemon.health import assess
from backupd.destinations.base import Health

MiB = 2**20


def test_room_for_another_full_is_ok_and_less_is_degraded_with_the_figures():
    probe = Health(True, True, 100 * MiB, 1.0)
    assert assess(probe, 99 * MiB) == probe and assess(probe, None) == probe
    tight = assess(probe, 150 * MiB)
    assert tight.status == "degraded"
    assert tight.problems == ("100.0 MiB free, less than the newest full backup there (150.0 MiB): the next full"
                              " may not fit; free space or prune",)


def test_unknown_free_space_or_an_unreachable_destination_is_left_as_probed():
    assert assess(Health(True, True, None, 1.0), 10 * MiB).status == "ok"
    down = Health(False, False, None, 0.0, ("cannot connect",))
    assert assess(down, 10 * MiB) == down


def test_the_largest_newest_full_of_any_source_sets_the_bar(tmp_path):
    from backupd.core.manifest import Manifest
    from backupd.daemon.health import _Usage
    from backupd.engine.catalog import Catalog, Copy

    catalog = Catalog(tmp_path / "catalog.db")
    try:
        for n, (source, size) in enumerate([("big", 900 * MiB), ("small", 1 * MiB), ("big", 800 * MiB)]):
            m = Manifest(f"20261126T12000{n}.000000Z-aaaaaa", source, "full", None, None,
                         f"2026-11-26T12:00:0{n}+00:00", 4096, 10, 10, "wal", "h", {"t": 1})
            catalog.record_backup(m, [Copy("nas", f"{source}/{n}.bkpd", size, 10, "ab" * 32, 3, True)])
        usage = _Usage.read(catalog)
    finally:
        catalog.close()
    assert usage.largest_full("nas") == 800 * MiB + 10  # artifact and sidecar of big's newest full, not small's more recent one
    assert usage.largest_full("elsewhere") is None
