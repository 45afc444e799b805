"""[control], [daemon] and [[schedules]]: typed core objects out, every problem named by schedule and key."""

from __future__ import annotations

import grp
import os
from datetime import time
from pathlib import Path

import pytest

from backupd.config import ScheduleConfig, load_config, parse_schedule
from backupd.core.backoff import RetryPolicy
from backupd.core.cron import parse_cron
from backupd.core.gate import Conditions
from backupd.core.windows import Window
from backupd.errors import ConfigError, NotFound
from tests.config.conftest import toml_document, valid_document, valid_document_with_schedules

SPEC_EXAMPLE = """
[control]
socket = "/run/backupd/control.sock"
max_message_bytes = 1048576

[daemon]
max_concurrent_jobs = 2
shutdown_timeout = "60s"
catch_up_grace = "1h"
recheck_interval = "30s"
max_hold = "6h"

[[schedules]]
name = "nightly"
source = "kb"
cron = "30 2 * * *"
strategy = "full"
timezone = "Europe/Berlin"
enabled = true
description = "every night"
tags = ["nightly"]
validate_after_backup = true
max_staleness = "26h"
[schedules.retry]
max_attempts = 3
base_delay = "30s"
max_delay = "15m"
[schedules.conditions]
blackout = [{ days = ["mon-fri"], start = "09:00", end = "17:00" }]
maintenance = []
max_cpu_percent = 80
max_load_per_core = 1.5
min_free_memory = "256MiB"
max_concurrent_jobs = 1

[[schedules]]
name = "often"
source = "crm"
cron = "*/10 * * * * *"
"""


def base_toml() -> str:
    return """
[state]
dir = "state"

[[sources]]
name = "kb"
kind = "sqlite"
path = "kb.db"

[[sources]]
name = "crm"
kind = "sqlite"
path = "crm.db"

[[destinations]]
name = "local"
kind = "local"
path = "backups"

[validation]
default_level = "deep"
"""


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def with_schedules(write_config, *schedules: dict) -> Path:
    document = valid_document()
    document["schedules"] = list(schedules)
    return write_config(toml_document(document))


def test_spec_example_loads_into_core_objects(write_config):
    cfg = load_config(write_config(base_toml() + SPEC_EXAMPLE))

    assert (cfg.control.socket, cfg.control.group, cfg.control.max_message_bytes) == (
        Path("/run/backupd/control.sock"), None, 1048576,
    )  # fmt: skip
    daemon = cfg.daemon
    assert (daemon.max_concurrent_jobs, daemon.shutdown_timeout_s, daemon.catch_up_grace_s) == (2, 60.0, 3600.0)
    assert (daemon.recheck_interval_s, daemon.max_hold_s) == (30.0, 21600.0)

    nightly, often = cfg.schedules
    assert isinstance(nightly, ScheduleConfig)
    assert (nightly.name, nightly.source, nightly.cron, nightly.strategy) == ("nightly", "kb", "30 2 * * *", "full")
    assert (nightly.timezone, nightly.enabled, nightly.description, nightly.tags) == (
        "Europe/Berlin", True, "every night", ["nightly"],
    )  # fmt: skip
    assert nightly.validate_after_backup == "deep"  # true means validation.default_level
    assert nightly.max_staleness_s == 26 * 3600
    assert nightly.cron_spec == parse_cron("30 2 * * *")
    assert nightly.retry == RetryPolicy(max_attempts=3, base_delay=30.0, max_delay=900.0)
    assert nightly.conditions == Conditions(
        blackout=(Window(frozenset(range(5)), time(9), time(17)),),
        maintenance=(),
        timezone="Europe/Berlin",
        max_cpu_percent=80.0,
        max_load_per_core=1.5,
        min_free_memory=256 * 2**20,
        max_concurrent_jobs=1,
    )
    assert often.cron_spec.second == {0, 10, 20, 30, 40, 50}
    assert (often.strategy, often.timezone, often.enabled, often.validate_after_backup) == ("auto", "UTC", True, None)
    assert (often.max_staleness_s, often.retry, often.conditions) == (None, RetryPolicy(), Conditions())
    assert cfg.schedule("often") is often
    with pytest.raises(NotFound, match=r"^unknown schedule 'x' \(configured: nightly, often\)$"):
        cfg.schedule("x")


def test_sections_are_optional(write_config):
    cfg = load_config(write_config(base_toml()))
    assert cfg.control.socket == Path("/run/backupd/control.sock") and cfg.control.max_message_bytes == 2**20
    assert (cfg.daemon.max_concurrent_jobs, cfg.daemon.max_hold_s, cfg.schedules) == (2, 21600.0, [])


def test_relative_socket_resolves_against_the_config_directory(config_dir, write_config):
    cfg = load_config(write_config(base_toml() + '[control]\nsocket = "run/control.sock"\nmax_message_bytes = "64KiB"\n'))
    assert cfg.control.socket == config_dir / "run" / "control.sock"
    assert cfg.control.max_message_bytes == 65536


def test_socket_path_too_long_for_a_unix_socket(write_config):
    long = "/run/" + "x" * 120 + ".sock"
    assert problems_of(write_config(base_toml() + f'[control]\nsocket = "{long}"\n')) == [
        f"control.socket: '{long}' is 130 bytes, longer than the 107 a Unix socket path may have; choose a shorter path"
    ]


def test_control_group_must_exist(write_config):
    mine = grp.getgrgid(os.getgid()).gr_name
    assert load_config(write_config(base_toml() + f'[control]\ngroup = "{mine}"\n')).control.group == mine
    assert problems_of(write_config(base_toml() + '[control]\ngroup = "no-such-group-x"\n')) == [
        "control.group: no group 'no-such-group-x' on this machine; create it (e.g. with systemd-sysusers)"
        " or remove the key to allow the daemon's user only"
    ]


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('[daemon]\nshutdown_timeout = "soon"', "daemon.shutdown_timeout: 'soon' is not a duration such as"),
        ('[daemon]\nmax_hold = "0s"', "daemon.max_hold: must be > 0s (got 0s)"),
        ('[daemon]\nrecheck_interval = -5', "daemon.recheck_interval: -5 is not a duration"),
        ("[daemon]\ncatch_up_grace = true", 'daemon.catch_up_grace: expected a duration such as "90s", "15m" or "1h30m" (got true)'),
        ("[daemon]\nmax_concurrent_jobs = 0", "daemon.max_concurrent_jobs: must be >= 1 (got 0)"),
        ("[daemon]\nmax_hold_s = 60", "daemon.max_hold_s: unknown key"),
        ("[control]\nmax_message_bytes = 10", "control.max_message_bytes: must be >= 1024 (got 10)"),
        ('[control]\ngroup = "bad group"', "control.group: must match"),
        ("[control]\nport = 5", "control.port: unknown key"),
    ],
)  # fmt: skip
def test_control_and_daemon_problems(write_config, section, problem):
    (found,) = problems_of(write_config(base_toml() + section + "\n"))
    assert found.startswith(problem), found


SCHEDULE = {"name": "nightly", "source": "kb", "cron": "30 2 * * *"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cron": "* * * * * * *"}, "schedules[0].cron: expected 5 or 6 fields, got 7"),
        ({"cron": "61 * * * *"}, "schedules[0].cron: minute: 61 is out of range 0-59"),
        ({"cron": 5}, "schedules[0].cron: expected a string (got 5)"),
        ({"source": "kbb"}, "schedules[0].source: unknown source 'kbb' (configured: kb, crm)"),
        ({"destinations": ["local", "nas"]}, "schedules[0].destinations[1]: unknown destination 'nas' (configured: local, spare)"),
        ({"destinations": ["no good"]}, "schedules[0].destinations[0]: must match"),
        ({"strategy": "copy"}, "schedules[0].strategy: unknown strategy 'copy' (expected full, incremental, differential, auto)"),
        ({"timezone": "Mars/Base"}, "schedules[0].timezone: unknown timezone 'Mars/Base' (expected an IANA name such as 'UTC' or 'Europe/Berlin')"),
        ({"timezone": "../etc/passwd"}, "schedules[0].timezone: unknown timezone '../etc/passwd'"),
        ({"validate_after_backup": "full"}, "schedules[0].validate_after_backup: expected true, false or a level: quick, standard, deep (got 'full')"),
        ({"max_staleness": "1x"}, "schedules[0].max_staleness: '1x' is not a duration"),
        ({"retry": {"base_delay": "1m", "max_delay": "10s"}}, "schedules[0].retry: max_delay 10s is less than base_delay 60s"),
        ({"retry": {"max_attempts": 0}}, "schedules[0].retry.max_attempts: must be >= 1 (got 0)"),
        ({"retry": {"jitter": 2}}, "schedules[0].retry.jitter: must be <= 1 (got 2)"),
        ({"conditions": {"blackout": [{"start": "25:00", "end": "06:00"}]}},
         "schedules[0].conditions.blackout[0].start: '25:00' is not a time HH:MM (00:00..23:59)"),
        ({"conditions": {"maintenance": [{"days": ["mon"], "start": "01:00"}]}},
         "schedules[0].conditions.maintenance[0].end: required key missing"),
        ({"conditions": {"blackout": [{"days": ["someday"], "start": "01:00", "end": "02:00"}]}},
         "schedules[0].conditions.blackout[0].days: 'someday' is not a day name (mon..sun), a range such as mon-fri, or *"),
        ({"conditions": {"blackout": [{"days": "mon", "start": "01:00", "end": "02:00"}]}},
         "schedules[0].conditions.blackout[0].days: expected an array of days (got 'mon')"),
        ({"conditions": {"min_free_memory": "lots"}}, "schedules[0].conditions.min_free_memory: 'lots' is not a size"),
        ({"conditions": {"max_cpu_percent": 0}}, "schedules[0].conditions.max_cpu_percent: must be > 0 (got 0)"),
        ({"conditions": {"max_concurrent_jobs": 0}}, "schedules[0].conditions.max_concurrent_jobs: must be >= 1 (got 0)"),
        ({"conditions": {"timezone": "UTC"}}, "schedules[0].conditions.timezone: unknown key"),
        ({"name": "my schedule"}, "schedules[0].name: must match"),
    ],
)  # fmt: skip
def test_schedule_problems_name_the_schedule_and_key(write_config, change, problem):
    (found,) = problems_of(with_schedules(write_config, {**SCHEDULE, **change}))
    assert found.startswith(problem), found


def test_all_schedule_problems_are_reported_together(write_config):
    path = with_schedules(
        write_config,
        SCHEDULE,
        {**SCHEDULE, "name": "broken", "cron": "1 2 3", "timezone": "Nowhere/Land",
         "conditions": {"blackout": [{"start": "09:00", "end": "17:00"}, {"start": "25:00", "end": "1:00"}]}},
    )  # fmt: skip
    assert problems_of(path) == [
        "schedules[1].cron: expected 5 or 6 fields, got 3",
        "schedules[1].timezone: unknown timezone 'Nowhere/Land' (expected an IANA name such as 'UTC' or 'Europe/Berlin')",
        "schedules[1].conditions.blackout[1].start: '25:00' is not a time HH:MM (00:00..23:59)",
    ]


def test_duplicate_names_and_unknown_sources_are_reported_together(write_config):
    path = with_schedules(write_config, SCHEDULE, {**SCHEDULE, "source": "ghost"}, {**SCHEDULE, "name": "other"})
    assert problems_of(path) == [
        "schedules[1].name: duplicate schedule name 'nightly' (first at schedules[0])",
        "schedules[1].source: unknown source 'ghost' (configured: kb, crm)",
    ]


def test_validate_after_backup_forms(write_config):
    forms = [False, True, "quick", "deep"]
    path = with_schedules(
        write_config, *({**SCHEDULE, "name": f"s{i}", "validate_after_backup": v} for i, v in enumerate(forms))
    )
    cfg = load_config(path)  # valid_document() sets validation.default_level = "deep"
    assert [s.validate_after_backup for s in cfg.schedules] == [None, "deep", "quick", "deep"]


def test_windows_cross_midnight_and_take_every_day_by_default(write_config):
    schedule = {**SCHEDULE, "conditions": {"maintenance": [{"start": "22:00", "end": "06:00"},
                                                           {"days": ["sat-sun"], "start": "00:00", "end": "24:00"}]}}  # fmt: skip
    (sc,) = load_config(with_schedules(write_config, schedule)).schedules
    night, weekend = sc.conditions.maintenance
    assert night == Window(frozenset(range(7)), time(22), time(6))
    assert weekend == Window(frozenset({5, 6}), time(0), time(0))


def test_schedule_objects_are_frozen(write_config):
    (sc,) = load_config(with_schedules(write_config, SCHEDULE)).schedules
    with pytest.raises(Exception):
        sc.cron = "* * * * *"
    assert sc.cron_spec is sc.cron_spec  # parsed once


# --- parse_schedule: schedules added at run time ----------------------------------------------


def test_parse_schedule_accepts_a_table():
    sc = parse_schedule({**SCHEDULE, "max_staleness": 3600, "retry": {"max_attempts": 5}}, {"kb", "crm"})
    assert (sc.name, sc.max_staleness_s, sc.retry.max_attempts) == ("nightly", 3600.0, 5)
    assert parse_schedule({**SCHEDULE, "validate_after_backup": True}, {"kb"}).validate_after_backup == "standard"
    sc = parse_schedule({**SCHEDULE, "validate_after_backup": True}, {"kb"}, default_validation_level="quick")
    assert sc.validate_after_backup == "quick"
    assert parse_schedule({**SCHEDULE, "destinations": ["usb"]}, {"kb"}, destinations={"usb"}).destinations == ["usb"]
    with pytest.raises(ConfigError) as caught:
        parse_schedule({**SCHEDULE, "destinations": ["usb"]}, {"kb"}, destinations={"local"})
    assert caught.value.problems == ["schedule.destinations[0]: unknown destination 'usb' (configured: local)"]


@pytest.mark.parametrize(
    ("mapping", "problems"),
    [
        ({**SCHEDULE, "cron": "* * * * * * *"}, ["schedule.cron: expected 5 or 6 fields, got 7"]),
        ({**SCHEDULE, "source": "kbb"}, ["schedule.source: unknown source 'kbb' (configured: crm, kb)"]),
        ({"name": "x"}, ["schedule.source: required key missing", "schedule.cron: required key missing"]),
        ({**SCHEDULE, "extra": 1}, ["schedule.extra: unknown key"]),
        ({**SCHEDULE, "max_staleness": None}, None),
        ([1, 2], ["schedule: expected a table (got [1, 2])"]),
        ({**SCHEDULE, "conditions": {"blackout": [{"start": "9", "end": "10:00"}]}},
         ["schedule.conditions.blackout[0].start: '9' is not a time HH:MM (00:00..23:59)"]),
    ],
)  # fmt: skip
def test_parse_schedule_problems_are_prefixed(mapping, problems):
    if problems is None:
        assert parse_schedule(mapping, {"kb", "crm"}).max_staleness_s is None
        return
    with pytest.raises(ConfigError) as caught:
        parse_schedule(mapping, {"kb", "crm"})
    assert caught.value.problems == problems
    assert caught.value.code == "config_invalid"


def test_parse_schedule_with_no_sources():
    with pytest.raises(ConfigError) as caught:
        parse_schedule(SCHEDULE, set())
    assert caught.value.problems == ["schedule.source: unknown source 'kb' (configured: none)"]


def test_the_fuzz_base_document_with_schedules_loads(write_config):
    cfg = load_config(write_config(valid_document_with_schedules()))
    assert [s.name for s in cfg.schedules] == ["nightly", "often"]
    assert cfg.schedules[0].conditions.maintenance[0].end == time(6)


def test_a_prune_schedule_takes_no_backup_keys():
    prune = {"name": "tidy", "job": "prune", "source": "kb", "cron": "0 4 * * *", "retry": {"max_attempts": 2}}
    assert parse_schedule(prune, {"kb"}).job == "prune"
    assert parse_schedule({**SCHEDULE}, {"kb"}).job == "backup"
    with pytest.raises(ConfigError) as caught:
        parse_schedule({**prune, "tags": ["x"], "max_staleness": "1h", "destinations": []}, {"kb"})
    assert caught.value.problems == [
        "schedule: destinations, max_staleness, tags: not used by a prune schedule (job = \"prune\"); remove them"]
    with pytest.raises(ConfigError) as caught:
        parse_schedule({**prune, "job": "vacuum"}, {"kb"})
    assert caught.value.problems[0].startswith("schedule.job: ")
