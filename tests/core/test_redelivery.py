"""core.redelivery: the Standard Webhooks retry schedule, bounded by 24 hours."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backupd.core.redelivery import GIVE_UP_AFTER_S, next_attempt, offsets

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc))
scales = st.sampled_from([1.0, 0.5, 0.01, 0.001])


def test_the_schedule_is_immediately_5s_5m_30m_2h_5h_10h_then_gives_up_within_a_day():
    gaps = [b - a for a, b in zip(offsets(), offsets()[1:])]
    assert gaps == [5, 300, 1800, 7200, 18000, 36000]
    assert [next_attempt(T0, n) for n in range(7)] == [T0 + timedelta(seconds=s) for s in offsets()]
    assert next_attempt(T0, 7) is None  # a second 10 h wait would end past 24 h


@given(instants, st.integers(0, 20), scales)
def test_the_first_attempt_is_immediate_and_none_is_past_the_window(enqueued, attempts, scale):
    assert next_attempt(enqueued, 0, scale=scale) == enqueued
    due = next_attempt(enqueued, attempts, scale=scale)
    if due is not None:
        assert timedelta(0) <= due - enqueued <= timedelta(seconds=GIVE_UP_AFTER_S * scale)


@given(instants, st.integers(0, 20), scales)
def test_attempts_strictly_later_and_giving_up_is_final(enqueued, attempts, scale):
    now, later = next_attempt(enqueued, attempts, scale=scale), next_attempt(enqueued, attempts + 1, scale=scale)
    if now is None:
        assert later is None
    elif later is not None:
        assert later > now


@given(instants, st.integers(1, 10), st.floats(0, 30 * 3600), scales)
def test_a_late_failure_pushes_the_next_attempt_back_but_never_past_the_window(enqueued, attempts, late_s, scale):
    failed = enqueued + timedelta(seconds=late_s * scale)
    due = next_attempt(enqueued, attempts, failed_at=failed, scale=scale)
    on_plan = next_attempt(enqueued, attempts, scale=scale)
    if due is not None:
        assert on_plan is not None and due >= on_plan and due > failed
        assert due - enqueued <= timedelta(seconds=GIVE_UP_AFTER_S * scale)


def test_a_daemon_down_for_hours_does_not_fire_the_missed_attempts_back_to_back():
    back = T0 + timedelta(hours=3)
    assert next_attempt(T0, 2, failed_at=back) == back + timedelta(minutes=5)


def test_a_scale_shrinks_delays_and_window_alike():
    assert offsets(0.001) == pytest.approx([s * 0.001 for s in offsets()])
    with pytest.raises(ValueError):
        next_attempt(T0, 1, scale=0)
