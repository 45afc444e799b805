"""Retention and flagged backups (taken of a corrupt or shrunk source, issue 8 item 4): a property over
random histories — however many flagged backups follow, no good backup that was kept is pushed out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from backupd.core.retention import BackupInfo, RetentionPolicy, plan_retention

NOW = datetime(2026, 12, 4, 0, 0, tzinfo=timezone.utc)


def history(kinds: list[bool], flagged_from: int, hours: int) -> list[BackupInfo]:
    """Backups every `hours` hours, oldest first; kinds[i] True is a full, else an incremental on the
    one before; those from index `flagged_from` on are flagged."""
    out: list[BackupInfo] = []
    start = NOW - timedelta(hours=hours * len(kinds))
    for i, full in enumerate(kinds):
        full = full or not out
        out.append(BackupInfo(f"b{i:03d}", "db", "full" if full else "incremental",
                              None if full else out[-1].backup_id, start + timedelta(hours=hours * i),
                              destinations=frozenset({"local"}), flagged=i >= flagged_from))
    return out


policies = st.builds(
    RetentionPolicy,
    keep_last=st.one_of(st.none(), st.integers(0, 5)),
    keep_daily=st.one_of(st.none(), st.integers(0, 4)),
    keep_weekly=st.one_of(st.none(), st.integers(0, 3)),
)


@settings(max_examples=200, deadline=None)
@given(good=st.lists(st.booleans(), min_size=1, max_size=15), bad=st.lists(st.booleans(), min_size=1, max_size=30),
       policy=policies, hours=st.integers(1, 30))
def test_newer_flagged_backups_never_push_a_kept_good_one_out(good, bad, policy, hours):
    after = history(good + bad, flagged_from=len(good), hours=hours)
    kept_before = set(plan_retention(after[: len(good)], policy, NOW).keep)  # the same, without the flagged
    plan_after = plan_retention(after, policy, NOW)
    assert kept_before <= set(plan_after.keep)
    assert f"b{len(good) - 1:03d}" in plan_after.keep  # the newest good backup always stays
