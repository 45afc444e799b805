"""Properties of manifests and sidecars (backupd.core.manifest)."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields, replace
from datetime import datetime, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from backupd.core.ids import artifact_key, new_backup_id
from backupd.core.manifest import STRATEGIES, Manifest, Sidecar
from backupd.errors import CorruptArtifact

UTC = timezone.utc
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
backup_ids = st.builds(new_backup_id, instants, st.text("0123456789abcdef", min_size=6, max_size=6))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
fewer = settings(max_examples=50)
FIELDS = [f.name for f in fields(Manifest)]
REQUIRED = [f.name for f in fields(Manifest) if f.default is MISSING and f.default_factory is MISSING]
digests = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def manifests(draw) -> Manifest:
    strategy = draw(st.sampled_from(STRATEGIES))
    parent = None if strategy == "full" else draw(backup_ids)
    return Manifest(
        backup_id=draw(backup_ids),
        source=draw(st.from_regex(r"\A[a-z][a-z0-9_-]{0,15}\Z")),
        strategy=strategy,
        parent_id=parent,
        base_id=None if strategy == "full" else draw(st.none() | backup_ids),
        created_at=draw(instants).isoformat(),
        page_size=draw(st.sampled_from([1 << n for n in range(9, 17)])),
        page_count=draw(st.integers(0, 2**32)),
        changed_pages=draw(st.integers(0, 2**32)),
        journal_mode=draw(st.sampled_from(["wal", "delete", "truncate", "persist", "memory", "off"])),
        schema_hash=draw(st.text("0123456789abcdef", min_size=0, max_size=64)),
        tables=draw(st.dictionaries(st.text(max_size=12), st.integers(0, 2**40), max_size=5)),
        strategy_reason=draw(st.text(max_size=40)),
        tags=tuple(draw(st.lists(st.text(max_size=10), max_size=4))),
        description=draw(st.text(max_size=40)),
        metadata=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
    )


@fewer
@given(manifests())
def test_manifest_json_round_trip(m):
    raw = m.to_json()
    assert Manifest.from_dict(json.loads(raw)) == m
    assert Manifest.from_dict(json.loads(raw)).to_json() == raw  # canonical: same manifest, same bytes
    assert m.logical_bytes == m.page_size * m.page_count


@fewer
@given(manifests(), st.dictionaries(st.text(max_size=8).filter(lambda k: k not in FIELDS), json_values, max_size=3))
def test_unknown_fields_are_ignored(m, extra):
    assert Manifest.from_dict({**json.loads(m.to_json()), **extra}) == m


@fewer
@given(manifests(), st.integers(0, 2**63), digests, st.integers(-7, 22), st.booleans())
def test_sidecar_round_trip(m, size, digest, level, encrypted):
    sc = Sidecar(m, artifact_key(m.source, m.backup_id), size, digest, level, encrypted)
    assert Sidecar.from_json(sc.to_json()) == sc


@fewer
@given(manifests(), st.sampled_from(REQUIRED))
def test_a_missing_required_field_is_corrupt(m, name):
    d = json.loads(m.to_json())
    del d[name]
    with pytest.raises(CorruptArtifact, match="incomplete"):
        Manifest.from_dict(d)


def full_manifest(**changes) -> dict:
    base = Manifest(
        backup_id="20261126T160055.123456Z-3f9a1c", source="kb", strategy="full", parent_id=None, base_id=None,
        created_at="2026-11-26T16:00:55.123456+00:00", page_size=4096, page_count=10, changed_pages=10,
        journal_mode="wal", schema_hash="ab", tables={"t": 1},
    )
    return {**base.to_dict(), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"backup_id": "not-an-id"},
        {"backup_id": 20261126},
        {"backup_id": None},
        {"strategy": "copy"},
        {"strategy": ["full"]},
        {"parent_id": "20261126T160055.123456Z-3f9a1c"},  # a full with a parent
        {"strategy": "incremental"},  # a delta without one
        {"strategy": "incremental", "parent_id": 7},
        {"page_size": 100},
        {"page_size": 131072},
        {"page_size": "4096"},
        {"page_count": -1},
        {"page_count": 1.5},
        {"tables": []},
        {"source": 5},
        {"created_at": "yesterday"},
        {"created_at": 1764172855},
        {"tags": "nightly"},
        {"tags": [1, 2]},
        {"metadata": []},
    ],
    ids=repr,
)
def test_inconsistent_manifests_are_corrupt(changes):
    Manifest.from_dict(full_manifest())  # the base is valid
    with pytest.raises(CorruptArtifact, match="manifest is invalid"):
        Manifest.from_dict(full_manifest(**changes))


@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=20))
@example({})
@example(full_manifest(backup_id=5))
@example(full_manifest(tags=7))
def test_from_dict_of_anything_raises_only_corrupt_artifact(d):
    try:
        m = Manifest.from_dict(d)
    except CorruptArtifact:
        return
    assert Manifest.from_dict(json.loads(m.to_json())) == m  # whatever is accepted round-trips


@given(json_values)
def test_from_dict_of_non_objects_is_corrupt(value):
    if not isinstance(value, dict):
        with pytest.raises(CorruptArtifact):
            Manifest.from_dict(value)


@fewer
@given(manifests(), st.data())
def test_from_dict_with_any_field_replaced_raises_only_corrupt_artifact(m, data):
    d = json.loads(m.to_json())
    name = data.draw(st.sampled_from(sorted(d)), label="field")
    d[name] = data.draw(json_values, label="value")
    try:
        got = Manifest.from_dict(d)
    except CorruptArtifact:
        return
    assert Manifest.from_dict(json.loads(got.to_json())) == got


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
@example(b'{"manifest": {}, "artifact_key": "k", "artifact_size": Infinity}')
@example(b"[" * 5000)
def test_sidecar_from_anything_raises_only_corrupt_artifact(raw):
    with pytest.raises(CorruptArtifact):
        Sidecar.from_json(raw)


def test_sidecar_with_a_bad_manifest_is_corrupt():
    m = Manifest.from_dict(full_manifest())
    sc = json.loads(Sidecar(m, "kb/x.bkpd", 1, "00", 3, False).to_json())
    sc["manifest"]["strategy"] = "copy"
    with pytest.raises(CorruptArtifact):
        Sidecar.from_json(json.dumps(sc).encode())
    sc["manifest"] = replace(m, page_count=2).to_dict()
    sc["artifact_size"] = float("inf")
    with pytest.raises(CorruptArtifact):
        Sidecar.from_json(json.dumps(sc).encode())
