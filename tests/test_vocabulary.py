"""One vocabulary: the word sets of `backupd/core/vocab.py` are the ones the client's protocol module,
docs/PROTOCOL.md, docs/EVENTS.md, the config schema, the destination registry and both command lines
accept or list. A word added in one place only fails here."""

from __future__ import annotations

import argparse
import json
import re
from enum import StrEnum
from pathlib import Path

import msgpack
import pytest

from backupd.cli.main import build_parser as backupd_parser
from backupd.config import load_config, parse_destination, parse_schedule
from backupd.core import vocab as V
from backupd.destinations.registry import FACTORIES
from backupd.errors import ConfigError
from backupd_client import protocol as P
from backupd_client.cli import build_parser as backupctl_parser
from tests.config.conftest import toml_document, valid_document, write_key

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_MD = (ROOT / "docs" / "PROTOCOL.md").read_text()
EVENTS_MD = (ROOT / "docs" / "EVENTS.md").read_text()


def words(values) -> set[str]:
    """Plain strings, so a set of enum members and a tuple of strings compare by value."""
    return {str(v) for v in values}


# --- the vocabulary itself -------------------------------------------------------------------------


def test_requested_strategies_are_the_strategies_and_auto():
    assert words(V.REQUESTED_STRATEGIES) == words(V.STRATEGIES) | {"auto"}
    assert [s for s in V.REQUESTED_STRATEGIES if s != "auto"] == list(V.STRATEGIES)  # same order


def test_schedule_jobs_are_job_kinds():
    assert words(V.SCHEDULE_JOBS) <= words(V.JOB_KINDS)


def test_status_groups_partition_the_statuses():
    assert V.ACTIVE_STATUSES | V.FINAL_STATUSES == set(V.JobStatus)
    assert not V.ACTIVE_STATUSES & V.FINAL_STATUSES
    assert V.PENDING_STATUSES < V.ACTIVE_STATUSES
    assert V.SUCCESS_STATUSES <= V.FINAL_STATUSES and V.FAILED_STATUSES <= V.FINAL_STATUSES
    assert not V.SUCCESS_STATUSES & V.FAILED_STATUSES
    assert V.BACKUP_OUTCOMES <= V.FINAL_STATUSES


@pytest.mark.parametrize("member", [V.Strategy.FULL, V.JobStatus.COMPLETED_WITH_WARNINGS, V.CopySelection.MOST_RELIABLE])
def test_a_word_is_its_string_on_the_wire_and_in_messages(member: StrEnum):
    value = member.value
    assert member == value and hash(member) == hash(value)
    assert (str(member), f"{member}", repr(member)) == (value, value, repr(value))
    assert json.dumps({member: [member]}) == json.dumps({value: [value]})
    assert msgpack.packb({member: [member]}) == msgpack.packb({value: [value]})
    assert msgpack.unpackb(msgpack.packb(member)) == value and type(msgpack.unpackb(msgpack.packb(member))) is str


# --- the client's wire constants -------------------------------------------------------------------


def test_client_constants_are_the_core_vocabulary():
    assert words(P.JobStatus) == words(V.JobStatus)
    assert words(P.ACTIVE_STATUSES) == words(V.ACTIVE_STATUSES)
    assert words(P.FINAL_STATUSES) == words(V.FINAL_STATUSES)
    assert words(P.SUCCESS_STATUSES) == words(V.SUCCESS_STATUSES)
    assert words(P.FAILED_STATUSES) == words(V.FAILED_STATUSES)
    assert words(P.JOB_KINDS) == words(V.JOB_KINDS)
    assert words(P.PRIORITIES) == words(V.PRIORITIES)
    assert words(P.STRATEGIES) == words(V.REQUESTED_STRATEGIES)
    assert words(P.VALIDATION_LEVELS) == words(V.VALIDATION_LEVELS)
    assert list(P.VALIDATION_LEVELS) == list(V.VALIDATION_LEVELS)  # ordered: each includes the one before
    assert words(P.COPY_SELECTIONS) == words(V.COPY_SELECTIONS)
    assert words(P.SCHEDULE_JOBS) == words(V.SCHEDULE_JOBS)
    assert words(P.NOTIFY_ON) == words(V.NOTIFY_ON)


ARG_WORDS = {
    "strategy": V.REQUESTED_STRATEGIES, "priority": V.PRIORITIES, "level": V.VALIDATION_LEVELS,
    "validate_level": V.VALIDATION_LEVELS, "kind": V.JOB_KINDS, "status": V.JOB_STATUSES,
    "copy_selection": V.COPY_SELECTIONS, "job": V.SCHEDULE_JOBS, "notify_on": V.NOTIFY_ON,
}  # fmt: skip


def test_the_protocol_checks_op_arguments_against_the_vocabulary():
    assert {name: words(choices) for name, choices in P.ARG_CHOICES.items()} == {
        name: words(values) for name, values in ARG_WORDS.items()
    }


# --- docs/PROTOCOL.md ------------------------------------------------------------------------------


def listed(text: str, key: str) -> list[set[str]]:
    """Every list of values documented for `key`: `"key": "a"|"b"` in an object, or `` `key`? (`a`|`b` ``
    for an op argument (pipes escaped or not)."""
    found = []
    for values in re.findall(rf'"{key}": ((?:"[a-z_]+"(?:\\?\|)?)+)', text):
        found.append(set(re.findall(r'"([a-z_]+)"', values)))
    for values in re.findall(rf"`{key}`\??:? \(((?:`[a-z_]+`(?:\\?\|)?)+)", text):
        found.append(set(re.findall(r"`([a-z_]+)`", values)))
    return found


# Where other words are listed under the same keys: a backup's strategy (never auto), a destination's kind.
BACKUP_OBJECT = "**backup**:" + PROTOCOL_MD.split("**backup**:", 1)[1].split("\n\n", 1)[0]
DESTINATION_LIST = next(line for line in PROTOCOL_MD.splitlines() if line.startswith("| `destination.list`"))


@pytest.mark.parametrize(("key", "expected", "times"), [
    ("kind", V.JOB_KINDS, 1),  # the job object
    ("priority", V.PRIORITIES, 2),  # the job object, backup.create
    ("job", V.SCHEDULE_JOBS, 1),
    ("strategy", V.REQUESTED_STRATEGIES, 2),  # the schedule object, backup.create
    ("validate_level", V.VALIDATION_LEVELS, 1),
    ("level", V.VALIDATION_LEVELS, 1),
    ("copy_selection", V.COPY_SELECTIONS, 1),
])  # fmt: skip
def test_protocol_doc_lists_the_vocabulary(key, expected, times):
    documented = listed(PROTOCOL_MD.replace(BACKUP_OBJECT, "").replace(DESTINATION_LIST, ""), key)
    assert len(documented) == times, f"docs/PROTOCOL.md lists values of {key!r} {len(documented)} times"
    assert all(s == words(expected) for s in documented), f"docs/PROTOCOL.md: {key}: {documented}"


def test_protocol_doc_lists_the_destination_kinds_and_a_backups_strategies():
    assert listed(DESTINATION_LIST, "kind") == [words(V.DESTINATION_KINDS)]
    assert listed(BACKUP_OBJECT, "strategy") == [words(V.STRATEGIES)]


def test_protocol_doc_lists_the_health_statuses():
    (overall,) = listed(next(line for line in PROTOCOL_MD.splitlines() if line.startswith("| `health`")), "status")
    (each,) = listed(next(line for line in PROTOCOL_MD.splitlines() if line.startswith("| `destination.health`")),
                     "status")
    assert each == words(V.HEALTH_STATUSES)
    assert overall == words(V.PROBE_STATUSES)


def test_protocol_doc_lists_the_job_statuses_active_then_final():
    paragraph = PROTOCOL_MD.split("Statuses:", 1)[1].split("\n\n", 1)[0]
    active, final = paragraph.split("the outcomes", 1)
    assert set(re.findall(r"`([a-z_]+)`", active)) == words(V.ACTIVE_STATUSES)
    assert set(re.findall(r"`([a-z_]+)`", final)) == words(V.FINAL_STATUSES)


# --- docs/EVENTS.md --------------------------------------------------------------------------------


def field_values() -> list[tuple[str, list[str], set[str]]]:
    """The rows of EVENTS.md's field-value table: (field, events, values)."""
    table = EVENTS_MD.split("## Field values", 1)[1]
    rows = re.findall(r"^\| ([a-z_]+) \| ([a-z_, ]+) \| (`.+) \|$", table, re.M)
    return [(name, events.split(", "), set(re.findall(r"`([a-z_]+)`", values.split("(")[0])))
            for name, events, values in rows]


def documented(name: str, event_prefix: str = "") -> set[str]:
    found = [values for field, events, values in field_values()
             if field == name and any(e.startswith(event_prefix) for e in events)]
    assert found, f"docs/EVENTS.md lists no values of {name!r}"
    return set().union(*found)


def test_events_doc_lists_the_vocabulary():
    assert documented("kind", "job_") == words(V.JOB_KINDS)
    assert documented("priority", "job_") == words(V.PRIORITIES)
    # a skipped job is logged as job_skipped, which has no status field; every other outcome is a status
    assert documented("status", "job_") == words(V.FINAL_STATUSES - {V.JobStatus.SKIPPED})
    assert documented("status", "backup_") == words(V.BACKUP_OUTCOMES)
    assert documented("strategy", "backup_") == words(V.STRATEGIES)
    assert documented("validation_level") == words(V.VALIDATION_LEVELS)
    assert documented("verdict") == words(V.VERDICTS)
    assert documented("kind", "destination_") == words(V.DESTINATION_KINDS)
    unwell = V.PROBE_STATUSES - {V.HealthStatus.OK}
    assert documented("status", "destination_") == documented("was", "destination_") == words(unwell)


def test_events_doc_field_values_name_documented_events_and_fields():
    events = dict(re.findall(r"^\| `([a-z_]+)` \| [a-z]+ \| ([^|]+) \|", EVENTS_MD, re.M))
    for name, listed_in, _values in field_values():
        for event in listed_in:
            assert event in events, f"docs/EVENTS.md field values: no event {event!r}"
            assert name in re.split(r"[ ,/]+", events[event]), f"docs/EVENTS.md: {event} has no field {name!r}"


# --- the config schema -----------------------------------------------------------------------------


def expected_in(problem: str) -> list[str]:
    """The words a config problem says are accepted: `... (expected a, b, c)` or `...: a, b, c (got ...)`."""
    found = re.search(r"\(expected ([a-z_, ]+)\)$", problem) or re.search(r"a level: ([a-z_, ]+) \(got", problem)
    assert found, problem
    return found.group(1).split(", ")


def load_problems(tmp_path: Path, document: dict) -> list[str]:
    path = tmp_path / "backupd.toml"
    path.write_text(toml_document(document))
    write_key(tmp_path / "backup.key")
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


def with_value(where: str, value: object) -> dict:
    """valid_document() with the key at `where` (dotted, list indexes as numbers) set to `value`."""
    document = valid_document()
    document["fanout"], document["restore"] = {}, {}
    *parents, key = where.split(".")
    node = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[key] = value
    return document


@pytest.mark.parametrize(("where", "expected"), [
    ("sources.0.source_check", V.SOURCE_CHECKS),
    ("validation.default_level", V.VALIDATION_LEVELS),
    ("validation.rules.0.severity", V.SEVERITIES),
    ("fanout.success_policy", V.SUCCESS_POLICIES),
    ("restore.copy_selection", V.COPY_SELECTIONS),
])  # fmt: skip
def test_the_config_accepts_exactly_the_vocabulary(tmp_path, where, expected):
    (problem,) = load_problems(tmp_path, with_value(where, "no_such_word"))
    assert expected_in(problem) == list(expected)
    for word in expected:
        assert load_problems(tmp_path, with_value(where, word.value)) == [], word


SCHEDULE = {"name": "s", "source": "kb", "cron": "0 * * * *"}


@pytest.mark.parametrize(("key", "expected"), [
    ("strategy", V.REQUESTED_STRATEGIES),
    ("job", V.SCHEDULE_JOBS),
    ("validate_after_backup", V.VALIDATION_LEVELS),
])  # fmt: skip
def test_a_schedule_accepts_exactly_the_vocabulary(key, expected):
    with pytest.raises(ConfigError) as caught:
        parse_schedule({**SCHEDULE, key: "no_such_word"}, {"kb"})
    assert expected_in(caught.value.problems[0]) == list(expected)
    for word in expected:
        assert getattr(parse_schedule({**SCHEDULE, key: word.value}, {"kb"}), key) == word


def test_a_destination_accepts_exactly_the_destination_kinds():
    with pytest.raises(ConfigError) as caught:
        parse_destination({"name": "d", "kind": "no_such_word", "path": "/srv/d"}, set())
    assert expected_in(caught.value.problems[0]) == list(V.DESTINATION_KINDS)


def test_every_destination_kind_has_a_factory():
    assert words(FACTORIES) == words(V.DESTINATION_KINDS)


# --- the command lines -----------------------------------------------------------------------------


def choices(parser: argparse.ArgumentParser, path: str = "") -> dict[str, set[str]]:
    """`command [action] --option` -> the option's choices, over every sub-command."""
    out: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out |= choices(sub, f"{path}{name} ")
        elif action.choices is not None and action.option_strings:
            out[f"{path}{action.option_strings[-1]}"] = words(action.choices)
    return out


OPTION_WORDS = {
    "--strategy": V.REQUESTED_STRATEGIES, "--priority": V.PRIORITIES, "--validate": V.VALIDATION_LEVELS,
    "--level": V.VALIDATION_LEVELS, "--copy-selection": V.COPY_SELECTIONS, "--status": V.JOB_STATUSES,
    "--kind": V.JOB_KINDS, "--job": V.SCHEDULE_JOBS, "--notify-on": V.NOTIFY_ON,
}  # fmt: skip


@pytest.mark.parametrize(("parser", "options"), [
    (backupd_parser, {"backup --strategy", "backup --validate", "restore --copy-selection", "verify --level"}),
    (backupctl_parser, {"backup --strategy", "backup --priority", "backup --validate", "backup --notify-on",
                        "jobs --status",
                        "jobs --kind", "restore --copy-selection", "validate --level", "schedule add --job",
                        "schedule add --strategy"}),
], ids=["backupd", "backupctl"])  # fmt: skip
def test_command_line_choices_are_the_vocabulary(parser, options):
    found = {option: values for option, values in choices(parser()).items() if option.split()[-1] in OPTION_WORDS}
    assert set(found) == options
    assert {o: v for o, v in found.items() if v != words(OPTION_WORDS[o.split()[-1]])} == {}
