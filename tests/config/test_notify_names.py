"""A schedule's `notify` names notifiers that exist: unknown names and duplicate notifier names are
config errors at load (and for a schedule added at run time), each naming where it is."""

from __future__ import annotations

import pytest

from backupd.config import load_config, parse_schedule
from backupd.errors import ConfigError
from tests.config.conftest import valid_document

OPS = {"name": "ops", "kind": "webhook", "url": "https://hooks.example/backupd"}
SCHEDULE = {"name": "nightly", "source": "kb", "cron": "30 2 * * *"}


def document(notifiers, *schedules):
    doc = valid_document()
    doc["notifiers"], doc["schedules"] = list(notifiers), list(schedules)
    return doc


def test_a_schedule_may_name_configured_notifiers(write_config):
    cfg = load_config(write_config(document([OPS], {**SCHEDULE, "notify": ["ops"], "notify_on": ["completion"]})))
    (sc,) = cfg.schedules
    assert (sc.notify, sc.notify_on) == (["ops"], ["completion"])


def test_unknown_notifier_names_and_duplicates_are_reported_together(write_config):
    path = write_config(document([OPS, OPS], {**SCHEDULE, "notify": ["ops", "pager"]}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        "notifiers[1].name: duplicate notifier name 'ops' (first at notifiers[0])",
        "schedules[0].notify[1]: unknown notifier 'pager' (configured: ops)",
    ]


def test_a_run_time_schedule_names_only_configured_notifiers():
    assert parse_schedule({**SCHEDULE, "notify": ["ops"]}, {"kb"}, notifiers={"ops"}).notify == ["ops"]
    with pytest.raises(ConfigError) as caught:
        parse_schedule({**SCHEDULE, "notify": ["ops"]}, {"kb"})
    assert caught.value.problems == ["schedule.notify[0]: unknown notifier 'ops' (configured: none)"]
