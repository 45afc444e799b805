"""Properties of backup ids and destination keys (backupd.core.ids)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backupd.core import ids

UTC = timezone.utc
# fixed offsets, and zones with DST folds and gaps (Lord Howe shifts by 30 minutes)
ZONES = [UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=45))] + [
    ZoneInfo(name) for name in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
]
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(ZONES)
)
hex6 = st.text("0123456789abcdef", min_size=6, max_size=6)
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
names = st.builds(str.__add__, st.sampled_from(ALNUM), st.text(ALNUM + "_.-", max_size=63))
backup_ids = st.builds(ids.new_backup_id, instants, hex6)


@given(instants, hex6)
@example(datetime(999, 1, 1, tzinfo=UTC), "abcdef")  # years before 1000 used to lose their leading zero
def test_new_backup_id_round_trips_through_backup_id_time(instant, random_hex):
    bid = ids.new_backup_id(instant, random_hex)
    assert ids.is_backup_id(bid)
    assert ids.backup_id_time(bid) == instant.astimezone(UTC)
    assert ids.backup_id_time(bid).tzinfo == UTC
    assert bid.endswith("Z-" + random_hex)


@given(instants, hex6, instants, hex6)
def test_ids_sort_like_their_instants(t1, r1, t2, r2):
    a, b = ids.new_backup_id(t1, r1), ids.new_backup_id(t2, r2)
    t1, t2 = t1.astimezone(UTC), t2.astimezone(UTC)  # compare instants, not wall clocks (fold)
    if t1 < t2:
        assert a < b
    elif t1 > t2:
        assert a > b
    else:
        assert (a < b) == (r1 < r2)


def test_new_backup_id_rejects_naive_instants_and_bad_random_parts():
    with pytest.raises(ValueError, match="timezone-aware"):
        ids.new_backup_id(datetime(2026, 11, 26), "3f9a1c")
    for bad in ("3F9A1C", "3f9a1", "3f9a1c0", "3f9a1g", "3f9a1c\n"):
        with pytest.raises(ValueError, match="6 hex digits"):
            ids.new_backup_id(datetime(2026, 11, 26, tzinfo=UTC), bad)


def test_documented_example():
    instant = datetime(2026, 11, 26, 16, 0, 55, 123456, tzinfo=UTC)
    assert ids.new_backup_id(instant, "3f9a1c") == "20261126T160055.123456Z-3f9a1c"
    # an instant in another zone names the same UTC moment
    east = instant.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert ids.new_backup_id(east, "3f9a1c") == "20261126T160055.123456Z-3f9a1c"


@given(names, backup_ids)
def test_artifact_and_sidecar_keys_parse_back(source, bid):
    assert ids.parse_key(ids.artifact_key(source, bid)) == ids.ParsedKey(source, bid, "artifact")
    assert ids.parse_key(ids.sidecar_key(source, bid)) == ids.ParsedKey(source, bid, "sidecar")


@given(st.text())
@example("kb/20261126T160055.123456Z-3f9a1c.bkpd\n")
@example("kb\n/20261126T160055.123456Z-3f9a1c.bkpd")
@example("kb/20261126T160055.123456Z-3f9a1c\n.bkpd")
@example("kb/\u0662\u0660\u0662\u00361126T160055.123456Z-3f9a1c.bkpd")  # non-ASCII digits
@example("kb/20261399T160055.123456Z-3f9a1c.bkpd")  # month 13
@example("kb/.20261126T160055.123456Z-3f9a1c.bkpd.0badcafe.backupd-tmp")
def test_parse_key_accepts_exactly_the_keys_it_builds(key):
    parsed = ids.parse_key(key)
    assert parsed is None or isinstance(parsed, ids.ParsedKey)
    if parsed is not None:
        build = ids.artifact_key if parsed.kind == "artifact" else ids.sidecar_key
        assert build(parsed.source, parsed.backup_id) == key
        assert ids.is_valid_name(parsed.source)
        ids.backup_id_time(parsed.backup_id)  # a parsed id always names a real instant


@given(names, backup_ids, st.sampled_from(["", "x", "bkpd.tmp", "manifest.json", "BKPD"]))
def test_parse_key_rejects_other_extensions_and_shapes(source, bid, ext):
    assert ids.parse_key(f"{source}/{bid}.{ext}" if ext else f"{source}/{bid}") is None
    assert ids.parse_key(f"{source}/sub/{bid}.bkpd") is None
    assert ids.parse_key(f"{bid}.bkpd") is None
    assert ids.parse_key(f"/{source}/{bid}.bkpd") is None


@given(st.text())
def test_is_backup_id_agrees_with_backup_id_time(value):
    if ids.is_backup_id(value):
        assert ids.new_backup_id(ids.backup_id_time(value), value[-6:]) == value
    else:
        with pytest.raises(ValueError):
            ids.backup_id_time(value)


@pytest.mark.parametrize("name", ["", ".kb", "-kb", "k/b", "kb\n", "k b", "x" * 65, "k\u00e9"])
def test_invalid_names(name):
    assert not ids.is_valid_name(name)
