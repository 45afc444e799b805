"""core.inventory: the sums agree whichever way they are cut, coverage is a share, oldest <= newest, and a
missing copy is one the destination should hold and lacks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from backupd.core.inventory import BackupRow, CopyRow, summarize

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
DESTS = ("a", "b", "c")
KEYS = ("backups", "restore_points", "stored_bytes", "logical_bytes")


@st.composite
def catalogs(draw):
    rows: list[BackupRow] = []
    last: dict[str, str] = {}
    for n in range(draw(st.integers(0, 12))):
        source = draw(st.sampled_from(("s1", "s2")))
        strategy = "full" if source not in last else draw(st.sampled_from(("full", "incremental", "differential")))
        parent = None if strategy == "full" else draw(st.sampled_from((last[source], "gone")))
        at = NOW - timedelta(days=60) + timedelta(hours=n)
        copies = tuple(CopyRow(d, draw(st.integers(0, 10**9)), draw(st.sampled_from(
            (None, (NOW - timedelta(days=45)).isoformat(), (NOW - timedelta(days=1)).isoformat()))))
            for d in sorted(draw(st.sets(st.sampled_from(DESTS), min_size=1))))
        rows.append(BackupRow(f"{source}-{n:03d}", source, strategy, parent, at.isoformat(), draw(st.integers(0, 10**9)),
                              copies))
        last[source] = rows[-1].backup_id
    expected = {d: {b.backup_id for b in rows if draw(st.booleans())} for d in DESTS[:2]}
    return rows, expected


@settings(max_examples=200, deadline=None)
@given(catalogs())
def test_properties(case):
    rows, expected = case
    inv = summarize(rows, expected, DESTS, NOW)
    totals = inv["totals"]
    for cut in ("by_source", "by_strategy"):
        for k in KEYS:
            assert sum(t[k] for t in inv[cut].values()) == totals[k]
    assert totals["backups"] == len(rows)
    assert sum(d["backups"] for d in inv["by_destination"].values()) == sum(len(b.copies) for b in rows)
    assert sum(d["stored_bytes"] for d in inv["by_destination"].values()) == totals["stored_bytes"]
    cov = inv["verification"]
    assert (cov["coverage"] is None) == (not rows)
    assert cov["coverage"] is None or 0 <= cov["coverage"] <= 1
    for src in inv["by_source"].values():
        assert src["restore_points"] <= src["backups"] and 1 <= src["chain_length"] <= src["backups"]
        assert (src["oldest"] is None) == (src["newest"] is None) == (src["restore_points"] == 0)
        if src["oldest"] is not None:
            assert datetime.fromisoformat(src["oldest"]) <= datetime.fromisoformat(src["newest"])
    for name, d in inv["by_destination"].items():
        held = {b.backup_id for b in rows if any(c.destination == name for c in b.copies)}
        assert set(d["missing"]) == expected.get(name, set()) - held
        assert d["restore_points"] <= d["backups"] == len(held)
    assert set(inv["by_destination"]) == set(DESTS)


def test_a_known_catalog():
    t = [(NOW - timedelta(days=d)).isoformat() for d in (3, 2, 1)]
    rows = [BackupRow("f", "s", "full", None, t[0], 100, (CopyRow("a", 10, t[2]), CopyRow("b", 12))),
            BackupRow("i1", "s", "incremental", "f", t[1], 110, (CopyRow("a", 3),)),
            BackupRow("i2", "s", "incremental", "i1", t[2], 120, (CopyRow("a", 4), CopyRow("b", 5)))]
    inv = summarize(rows, {"a": {"f", "i1", "i2"}, "b": {"f", "i1", "i2"}}, ["a", "b"], NOW, days=30)
    assert inv["totals"] == {"backups": 3, "restore_points": 3, "stored_bytes": 34, "logical_bytes": 330}
    assert inv["by_strategy"]["incremental"]["backups"] == 2
    s = inv["by_source"]["s"]
    assert (s["oldest"], s["newest"], s["chain_length"], s["verified"]) == (t[0], t[2], 3, 1)
    b = inv["by_destination"]["b"]
    assert b["missing"] == ["i1"] and b["restore_points"] == 1 and b["chain_length"] == {"s": 1}
    assert b["logical_bytes"] == 220 and inv["by_destination"]["a"]["chain_length"] == {"s": 3}
    assert inv["verification"] == {"days": 30, "backups": 3, "verified": 1, "coverage": 1 / 3}
    assert summarize(rows, {}, ["a"], NOW + timedelta(days=40), days=30)["verification"]["coverage"] == 0
