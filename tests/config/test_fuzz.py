"""Any input gives a Config or a ConfigError in our own words, never another exception."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupd.config import Config, load_config
from backupd.errors import ConfigError
from tests.config.conftest import toml_document, valid_document, valid_document_with_schedules, write_key

SCHEMA_WORDS = [
    "state", "dir", "sources", "name", "kind", "path", "destinations", "compression_level", "enabled",
    "priority", "encryption", "key_file", "passphrase_env", "strategy", "max_chain_length",
    "full_change_ratio", "differential_cost_ratio", "validation", "default_level", "rules", "id", "sql",
    "severity", "description", "control", "socket", "group", "max_message_bytes", "daemon", "max_concurrent_jobs",
    "shutdown_timeout", "catch_up_grace", "recheck_interval", "max_hold", "schedules", "source", "cron", "timezone",
    "tags", "validate_after_backup", "max_staleness", "retry", "max_attempts", "base_delay", "max_delay",
    "multiplier", "jitter", "conditions", "blackout", "maintenance", "days", "start", "end", "max_cpu_percent",
    "max_load_per_core", "min_free_memory",
]  # fmt: skip
SAMPLE_STRINGS = [
    "kb", "crm", "local", "sqlite", "lokal", "standard", "fatal", "backup.key", "PASS", "", "/", "a\0b",
    "30 2 * * *", "*/10 * * * * *", "61 * * * *", "mon-fri", "*", "09:00", "25:00", "24:00", "90s", "1h30m", "256MiB",
    "Europe/Berlin", "Mars/Base", "../x", "full", "auto",
]  # fmt: skip
PYDANTIC_WORDING = ["Input should", "Field required", "Extra inputs", "Value error", "validation error"]

keys = st.sampled_from(SCHEMA_WORDS) | st.text(max_size=6)
leaves = (
    st.integers(-3, 40)
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.sampled_from(SAMPLE_STRINGS)
    | st.text(max_size=10)
    | st.dates()
)
values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4), max_leaves=10
)
TOML_FRAGMENTS = [
    "[state]", "[[sources]]", "[[destinations]]", "[destinations.encryption]", "[[validation.rules]]", "[",
    "]", "[[", "{", "}", ",", "=", " = ", "\n", '"', "'", '"""', "#", ".", "dir", "name", "kind", "path",
    "key_file", '"kb"', '"local"', '"sqlite"', "1", "-1", "1.5", "nan", "inf", "true", "1979-05-27", "0x1F",
    "[[schedules]]", "[schedules.conditions]", "[schedules.retry]", "[daemon]", "[control]", "cron", '"* * * * *"',
    "blackout", '{ start = "09:00", end = "17:00" }', '"1h"',
]  # fmt: skip


def _slots(node, found=None) -> list[tuple[object, object]]:
    """Every (container, key or index) in a nested document."""
    found = [] if found is None else found
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((node, key))
        _slots(child, found)
    return found


@st.composite
def mutated_documents(draw) -> dict:
    """A valid document with a few values replaced, deleted or added, to reach the deeper checks."""
    document = copy.deepcopy(draw(st.sampled_from([valid_document(), valid_document_with_schedules()])))
    for _ in range(draw(st.integers(1, 4))):
        container, key = draw(st.sampled_from(_slots(document)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = draw(values)
        elif action == "delete" and isinstance(container, dict):
            del container[key]
        elif isinstance(container, dict):
            container[draw(keys)] = draw(values)
    return document


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz")
    write_key(directory / "backup.key")
    return directory


def check_outcome(path: Path) -> None:
    try:
        cfg = load_config(path, environ={"PASS": "secret"})
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert isinstance(problem, str) and problem
            assert not any(words in problem for words in PYDANTIC_WORDING), problem
    else:
        assert isinstance(cfg, Config)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(document=st.dictionaries(keys, values, max_size=6) | mutated_documents())
def test_any_document_gives_config_or_config_error(fuzz_dir, document):
    path = fuzz_dir / "doc.toml"
    path.write_text(toml_document(document), encoding="utf-8")
    check_outcome(path)


@FUZZ
@given(text=st.lists(st.sampled_from(TOML_FRAGMENTS) | st.text(max_size=4), max_size=30).map("".join))
def test_any_toml_ish_text_gives_config_or_config_error(fuzz_dir, text):
    path = fuzz_dir / "text.toml"
    path.write_text(text, encoding="utf-8")
    check_outcome(path)


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_give_config_or_config_error(fuzz_dir, data):
    path = fuzz_dir / "bytes.toml"
    path.write_bytes(data)
    check_outcome(path)
