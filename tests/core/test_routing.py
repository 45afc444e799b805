"""core.routing: a notifier gets what its patterns match while enabled, plus a job's final event when
the job names it and its notify_on wants that outcome."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backupd.core.events import EVENT_TYPES, EventType, matches
from backupd.core.routing import NotifyRequest, Recipient, outcome_of, recipients, wanted
from backupd.core.vocab import NOTIFY_ON, NotifyOn

PATTERNS = ["*", "backup.*", "*.failed", "backup.failed", "backup.succeeded", "freshness.*", "alert.raised"]
NAMES = ["a", "b", "c", "d", "e"]
types = st.sampled_from(EVENT_TYPES)
notifier_lists = st.lists(
    st.builds(Recipient, st.sampled_from(NAMES), st.lists(st.sampled_from(PATTERNS), max_size=3).map(tuple),
              st.booleans()),
    max_size=5, unique_by=lambda r: r.name)
requests = st.builds(NotifyRequest, st.lists(st.sampled_from(NAMES), max_size=5, unique=True).map(tuple),
                     st.lists(st.sampled_from(NOTIFY_ON), min_size=1, max_size=3, unique=True).map(tuple))


@given(types, notifier_lists, st.none() | requests, st.booleans())
def test_only_enabled_notifiers_each_once_in_order(event_type, notifiers, request, final):
    got = recipients(event_type, notifiers, request, final=final)
    enabled = [n.name for n in notifiers if n.enabled]
    assert len(got) == len(set(got)) and got == [n for n in enabled if n in got]


@given(types, notifier_lists, st.none() | requests, st.booleans())
def test_a_matching_pattern_always_delivers(event_type, notifiers, request, final):
    got = recipients(event_type, notifiers, request, final=final)
    for n in notifiers:
        if n.enabled and any(matches(p, event_type) for p in n.patterns):
            assert n.name in got


@given(types, notifier_lists, requests, st.booleans())
def test_a_jobs_own_notifiers_get_only_its_final_event_and_only_the_outcomes_asked_for(event_type, notifiers,
                                                                                        request, final):
    by_pattern = set(recipients(event_type, notifiers))
    extra = set(recipients(event_type, notifiers, request, final=final)) - by_pattern
    if not final or not wanted(request, event_type):
        assert extra == set()
    else:
        assert extra == {n.name for n in notifiers if n.enabled and n.name in request.names} - by_pattern


@given(types)
def test_completion_is_every_outcome_failure_and_success_split_them(event_type):
    def asks(*on):
        return wanted(NotifyRequest(("a",), on), event_type)

    outcome = outcome_of(event_type)
    assert asks(NotifyOn.COMPLETION) == (outcome is not None)
    assert asks(NotifyOn.FAILURE, NotifyOn.SUCCESS) == (outcome in (NotifyOn.FAILURE, NotifyOn.SUCCESS))
    assert not (asks(NotifyOn.FAILURE) and asks(NotifyOn.SUCCESS))


def test_the_outcomes_by_name():
    assert outcome_of(EventType.BACKUP_FAILED) == outcome_of(EventType.BACKUP_PARTIAL) == NotifyOn.FAILURE
    assert outcome_of(EventType.BACKUP_SUCCEEDED) == NotifyOn.SUCCESS
    assert outcome_of(EventType.BACKUP_SUCCEEDED_WITH_WARNINGS) == NotifyOn.SUCCESS
    assert outcome_of(EventType.BACKUP_SKIPPED) == NotifyOn.COMPLETION
    assert outcome_of(EventType.BACKUP_STARTED) is outcome_of(EventType.FRESHNESS_VIOLATED) is None


def test_default_notify_on_is_failure_only():
    ops = [Recipient("ops", ())]
    assert recipients(EventType.BACKUP_FAILED, ops, NotifyRequest(("ops",)), final=True) == ["ops"]
    assert recipients(EventType.BACKUP_SUCCEEDED, ops, NotifyRequest(("ops",)), final=True) == []
    assert recipients(EventType.BACKUP_FAILED, [Recipient("ops", (), enabled=False)], NotifyRequest(("ops",)),
                      final=True) == []
