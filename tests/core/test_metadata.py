"""Properties of backup metadata (backupd.core.metadata): valid pairs round-trip through `--meta
KEY=VALUE`, and any other input is refused with a ValueError naming the problem, never another error."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backupd.core.metadata import MAX_ENTRIES, check_metadata, parse_meta

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn")), max_size=60)


@given(st.dictionaries(KEYS, VALUES, max_size=MAX_ENTRIES))
@example({"url": "https://x/?a=b=c"})  # only the first '=' separates the key
def test_valid_pairs_round_trip(metadata):
    assert parse_meta([f"{k}={v}" for k, v in metadata.items()]) == metadata
    assert check_metadata(metadata) == metadata


@given(st.lists(st.text(max_size=40), max_size=5))
@example(["a=1", "a=2"])
@example(["k=line\nbreak"])
@example(["=x"])
def test_anything_else_is_a_value_error(items):
    try:
        parse_meta(items)
    except ValueError as exc:
        assert str(exc)


@pytest.mark.parametrize("metadata, needle", [
    ({"k": 1}, "must be text"), ({"k" * 65: "v"}, "not a name"), ({"k": "x" * 1025}, "at most 1024"),
    ({f"k{i}": "v" for i in range(MAX_ENTRIES + 1)}, "at most 32"),
    ({f"k{i}": "v" * 1000 for i in range(9)}, "bytes of metadata"), ([("k", "v")], "must be a map"),
])
def test_bounds_are_named(metadata, needle):
    with pytest.raises(ValueError, match=needle):
        check_metadata(metadata)
