"""load_config: a valid round trip, and every problem reported with its path, value and fix."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from backupd.config import Config, load_config
from backupd.errors import ConfigError, UnknownDestination, UnknownSource
from tests.config.conftest import toml_document, valid_document, write_key


def problems_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"{path}: invalid config: ")
    return caught.value.problems


# --- valid configs -------------------------------------------------------------------------


def test_valid_config_round_trip(config_dir, write_config):
    cfg = load_config(write_config(valid_document()))

    assert isinstance(cfg, Config)
    assert cfg.path == config_dir / "backupd.toml"
    assert cfg.state.dir == config_dir / "state"
    kb, crm = cfg.sources
    assert (kb.name, kb.kind, kb.path) == ("kb", "sqlite", Path("/srv/app/kb.db"))
    assert crm.path == config_dir / "crm.db"
    local, spare = cfg.destinations
    assert (local.name, local.kind, local.path) == ("local", "local", Path("/srv/backups"))
    assert (local.compression_level, local.enabled, local.priority) == (3, True, 1)
    assert local.encryption.key_file == config_dir / "backup.key"
    assert local.encryption.passphrase_env is None
    assert (spare.path, spare.compression_level, spare.priority, spare.encryption) == (config_dir / "spare", 9, 2, None)
    assert (cfg.strategy.max_chain_length, cfg.strategy.full_change_ratio) == (10, 0.25)
    assert cfg.strategy.differential_cost_ratio == 2.0
    assert cfg.validation.default_level == "deep"
    (rule,) = cfg.validation.rules
    assert (rule.id, rule.severity, rule.description, rule.sources) == ("kb_not_empty", "error", "", ["kb"])
    assert rule.sql == "SELECT count(*) >= 1 FROM kb_entries"


def test_optional_sections_take_defaults(write_config):
    document = valid_document()
    del document["strategy"], document["validation"]
    cfg = load_config(write_config(document))

    assert (cfg.strategy.max_chain_length, cfg.strategy.full_change_ratio) == (30, 0.5)
    assert cfg.strategy.differential_cost_ratio == 1.5
    assert (cfg.validation.default_level, cfg.validation.rules) == ("standard", [])


def test_table_syntax_from_the_spec_loads(config_dir, write_config):
    path = write_config(
        """
[state]
dir = "/var/lib/backupd"

[[sources]]
name = "kb"
kind = "sqlite"
path = "/srv/app/kb.db"

[[destinations]]
name = "local"
kind = "local"
path = "/srv/backups"
compression_level = 3
[destinations.encryption]
key_file = "backup.key"

[strategy]
max_chain_length = 30

[validation]
default_level = "standard"
[[validation.rules]]
id = "kb_not_empty"
sources = ["kb"]
sql = "SELECT count(*) >= 1 FROM kb_entries"
severity = "critical"
description = "the knowledge base is never empty"
"""
    )
    cfg = load_config(path)
    assert cfg.destinations[0].encryption.key_file == config_dir / "backup.key"
    assert cfg.validation.rules[0].severity == "critical"


def test_config_objects_are_frozen(write_config):
    cfg = load_config(write_config(valid_document()))
    with pytest.raises(pydantic.ValidationError):
        cfg.sources[0].name = "other"
    with pytest.raises(pydantic.ValidationError):
        cfg.strategy = None


def test_lookup_by_name(write_config):
    cfg = load_config(write_config(valid_document()))

    assert cfg.source("crm").name == "crm"
    assert cfg.destination("spare").priority == 2
    with pytest.raises(UnknownSource, match=r"^unknown source 'x' \(configured: kb, crm\)$"):
        cfg.source("x")
    with pytest.raises(UnknownDestination, match=r"^unknown destination 'x' \(configured: local, spare\)$"):
        cfg.destination("x")


def test_enabled_destinations_by_priority_then_config_order(write_config):
    document = valid_document()
    document["destinations"] = [
        {"name": name, "kind": "local", "path": name, "priority": priority, "enabled": enabled}
        for name, priority, enabled in [("a", 3, True), ("b", 1, True), ("off", 1, False), ("c", 3, True), ("d", 2, True)]
    ]
    cfg = load_config(write_config(document))
    assert [d.name for d in cfg.enabled_destinations()] == ["b", "d", "a", "c"]


def test_relative_paths_resolve_against_the_config_directory(tmp_path, monkeypatch):
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    document = valid_document()
    document["state"]["dir"] = "../var/./state"
    document["destinations"][0]["encryption"]["key_file"] = "../keys/backup.key"
    (tmp_path / "keys").mkdir()
    write_key(tmp_path / "keys" / "backup.key")
    (config_dir / "backupd.toml").write_text(toml_document(document))
    monkeypatch.chdir(tmp_path)

    cfg = load_config("etc/backupd.toml")

    assert cfg.path == config_dir / "backupd.toml"
    assert cfg.state.dir == tmp_path / "var" / "state"
    assert cfg.sources[1].path == config_dir / "crm.db"
    assert cfg.destinations[0].encryption.key_file == tmp_path / "keys" / "backup.key"


def test_passphrase_env_set(write_config):
    document = valid_document()
    document["destinations"][0]["encryption"] = {"passphrase_env": "BACKUPD_PASSPHRASE"}
    cfg = load_config(write_config(document), environ={"BACKUPD_PASSPHRASE": "correct horse"})
    assert cfg.destinations[0].encryption.passphrase_env == "BACKUPD_PASSPHRASE"


# --- shape problems -----------------------------------------------------------------------


def _set(document: dict, dotted: str, value) -> dict:
    """Set (or with value None, delete) a key in the document; list indexes are written as numbers."""
    *parents, last = [int(part) if part.isdigit() else part for part in dotted.split(".")]
    node = document
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return document


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("destinations.0.kind", "lokal", "destinations[0].kind: unknown kind 'lokal' (expected local, share, sftp, smb)"),
        ("sources.0.kind", "postgres", "sources[0].kind: unknown kind 'postgres' (expected sqlite)"),
        ("destinations.1.compression_level", 40, "destinations[1].compression_level: must be 1..22 (got 40)"),
        ("destinations.1.compression_level", 0, "destinations[1].compression_level: must be 1..22 (got 0)"),
        ("destinations.1.compression_level", "3", "destinations[1].compression_level: expected an integer (got '3')"),
        ("destinations.1.compression_level", 3.0, "destinations[1].compression_level: expected an integer (got 3.0)"),
        ("destinations.1.priority", 0, "destinations[1].priority: must be >= 1 (got 0)"),
        ("destinations.1.enabled", "yes", "destinations[1].enabled: expected true or false (got 'yes')"),
        ("sources.0.path", None, "sources[0].path: required key missing"),
        ("sources.0.path", "", "sources[0].path: must not be empty"),
        ("sources.0.path", 5, "sources[0].path: expected a path string (got 5)"),
        ("sources.0.name", None, "sources[0].name: required key missing"),
        (
            "sources.0.name",
            "my db",
            "sources[0].name: must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (got 'my db')",
        ),
        (
            "destinations.0.name",
            "x" * 65,
            f"destinations[0].name: must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$ (got '{'x' * 65}')",
        ),
        ("state", None, "state: required section missing"),
        ("sources", None, "sources: required section missing"),
        ("state", 3, "state: expected a table (got 3)"),
        ("state.dir", None, "state.dir: required key missing"),
        ("sources", {"name": "kb"}, "sources: expected an array (got {'name': 'kb'})"),
        ("sources.0", "kb", "sources[0]: expected a table (got 'kb')"),
        ("strategy.max_chain_length", 0, "strategy.max_chain_length: must be >= 1 (got 0)"),
        ("strategy.full_change_ratio", 0, "strategy.full_change_ratio: must be > 0 (got 0)"),
        ("strategy.full_change_ratio", 1.5, "strategy.full_change_ratio: must be <= 1 (got 1.5)"),
        ("strategy.differential_cost_ratio", 0.9, "strategy.differential_cost_ratio: must be >= 1 (got 0.9)"),
        (
            "strategy.differential_cost_ratio",
            float("nan"),
            "strategy.differential_cost_ratio: must be a finite number (got nan)",
        ),
        (
            "validation.default_level",
            "thorough",
            "validation.default_level: unknown default_level 'thorough' (expected quick, standard, deep)",
        ),
        (
            "validation.rules.0.severity",
            "fatal",
            "validation.rules[0].severity: unknown severity 'fatal' (expected info, warning, error, critical)",
        ),
        ("validation.rules.0.sql", "", "validation.rules[0].sql: must not be empty"),
        ("validation.rules.0.sources", "kb", "validation.rules[0].sources: expected an array (got 'kb')"),
        ("validation.rules.0.sources", ["kb", 1], "validation.rules[0].sources[1]: expected a string (got 1)"),
        (
            "destinations.0.encryption",
            {"key_file": "backup.key", "passphrase_env": "P"},
            "destinations[0].encryption: set exactly one of key_file or passphrase_env (got both)",
        ),
        (
            "destinations.0.encryption",
            {},
            "destinations[0].encryption: set exactly one of key_file or passphrase_env (got neither)",
        ),
        (
            "destinations.0.encryption",
            {"passphrase_env": "MY PASS"},
            "destinations[0].encryption.passphrase_env: must match ^[A-Za-z_][A-Za-z0-9_]*$ (got 'MY PASS')",
        ),
    ],
)
def test_shape_problem(write_config, key, value, problem):
    assert problems_of(write_config(_set(valid_document(), key, value))) == [problem]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("nme", "nme: unknown key"),
        ("state.nme", "state.nme: unknown key"),
        ("sources.0.nme", "sources[0].nme: unknown key"),
        ("destinations.1.nme", "destinations[1].nme: unknown key"),
        ("destinations.0.encryption.nme", "destinations[0].encryption.nme: unknown key"),
        ("strategy.nme", "strategy.nme: unknown key"),
        ("validation.nme", "validation.nme: unknown key"),
        ("validation.rules.0.nme", "validation.rules[0].nme: unknown key"),
        ("sources.0.bad key", 'sources[0]."bad key": unknown key'),
        ("path", "path: unknown key"),
    ],
)
def test_unknown_key_at_every_level(write_config, key, problem):
    assert problems_of(write_config(_set(valid_document(), key, 1))) == [problem]


def test_all_shape_problems_reported_together(write_config):
    document = valid_document()
    _set(document, "sources.0.nme", "kb")
    _set(document, "sources.1.path", None)
    _set(document, "destinations.0.kind", "lokal")
    _set(document, "destinations.1.compression_level", 40)
    _set(document, "validation.rules.0.severity", "fatal")

    assert problems_of(write_config(document)) == [
        "sources[0].nme: unknown key",
        "sources[1].path: required key missing",
        "destinations[0].kind: unknown kind 'lokal' (expected local, share, sftp, smb)",
        "destinations[1].compression_level: must be 1..22 (got 40)",
        "validation.rules[0].severity: unknown severity 'fatal' (expected info, warning, error, critical)",
    ]


def test_long_values_are_shortened(write_config):
    (problem,) = problems_of(write_config(_set(valid_document(), "state.dir", list(range(1000)))))
    assert problem.startswith("state.dir: expected a path string (got [0, 1, 2")
    assert len(problem) < 120


# --- cross-field, key file and environment problems ----------------------------------------


def test_cross_field_problems_reported_together(write_config):
    document = valid_document()
    document["sources"].append({"name": "kb", "kind": "sqlite", "path": "kb2.db"})
    document["destinations"].append({"name": "spare", "kind": "local", "path": "spare2"})
    rules = document["validation"]["rules"]
    rules.append({"id": "kb_not_empty", "sql": "SELECT 1", "sources": ["crm", "ghost"]})

    assert problems_of(write_config(document)) == [
        "sources[2].name: duplicate source name 'kb' (first at sources[0])",
        "destinations[2].name: duplicate destination name 'spare' (first at destinations[1])",
        "validation.rules[1].id: duplicate rule id 'kb_not_empty' (first at validation.rules[0])",
        "validation.rules[1].sources[1]: unknown source 'ghost' (configured: kb, crm, kb)",
    ]


def test_at_least_one_source_and_destination(write_config):
    document = valid_document()
    document["sources"] = []
    document["destinations"] = []

    assert problems_of(write_config(document)) == [
        "sources: at least one source is required",
        "destinations: at least one destination is required",
        "validation.rules[0].sources[0]: unknown source 'kb' (configured: none)",
    ]


def test_key_file_readable_by_others(config_dir, write_config):
    key = write_key(config_dir / "backup.key", mode=0o644)

    assert problems_of(write_config(valid_document())) == [
        f"destinations[0].encryption.key_file: '{key}' is readable by group or others (mode 0644);"
        f" run: chmod 600 {key}"
    ]
    os.chmod(key, 0o600)
    assert load_config(config_dir / "backupd.toml").destinations[0].encryption.key_file == key


def test_key_file_writable_by_group(config_dir, write_config):
    key = write_key(config_dir / "backup.key", mode=0o620)
    (problem,) = problems_of(write_config(valid_document()))
    assert problem.endswith(f"is accessible by group or others (mode 0620); run: chmod 600 {key}")


def test_key_file_missing(config_dir, write_config):
    (config_dir / "backup.key").unlink()
    key = config_dir / "backup.key"

    assert problems_of(write_config(valid_document())) == [
        f"destinations[0].encryption.key_file: '{key}' does not exist; create one with: backupd keygen {key}"
    ]


def test_key_file_wrong_size(config_dir, write_config):
    key = write_key(config_dir / "backup.key", data=b"x" * 31)
    assert problems_of(write_config(valid_document())) == [
        f"destinations[0].encryption.key_file: '{key}' is 31 bytes, expected exactly 32;"
        f" point key_file at the right key or create one with: backupd keygen {key}"
    ]


def test_key_file_is_a_directory(config_dir, write_config):
    (config_dir / "keydir").mkdir()
    document = _set(valid_document(), "destinations.0.encryption.key_file", "keydir")
    (problem,) = problems_of(write_config(document))
    assert problem.startswith(f"destinations[0].encryption.key_file: '{config_dir / 'keydir'}' is not a regular file;")


def test_key_file_path_with_spaces_is_quoted_in_the_fix(config_dir, write_config):
    key = write_key(config_dir / "my key", mode=0o640)
    document = _set(valid_document(), "destinations.0.encryption.key_file", "my key")
    (problem,) = problems_of(write_config(document))
    assert problem.endswith(f"run: chmod 600 '{key}'")


@pytest.mark.parametrize("environ", [{}, {"BACKUPD_PASSPHRASE": ""}])
def test_passphrase_env_missing_or_empty(write_config, environ):
    document = _set(valid_document(), "destinations.1.encryption", {"passphrase_env": "BACKUPD_PASSPHRASE"})
    assert problems_of(write_config(document), environ=environ) == [
        "destinations[1].encryption.passphrase_env: environment variable 'BACKUPD_PASSPHRASE' is not set or empty;"
        " set it in backupd's environment"
    ]


def test_shape_problems_come_before_cross_field_checks(write_config):
    document = valid_document()
    document["sources"].append({"name": "kb", "kind": "sqlite", "path": "kb2.db"})
    document["destinations"][1]["compression_level"] = 40

    assert problems_of(write_config(document)) == ["destinations[1].compression_level: must be 1..22 (got 40)"]


# --- unreadable files ----------------------------------------------------------------------


def test_toml_syntax_error_names_line_and_column(write_config):
    path = write_config("[state]\ndir = \n")
    assert problems_of(path) == ["TOML syntax error: Invalid value (at line 2, column 7)"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    assert problems_of(path) == [f"cannot read config file '{path}': No such file or directory"]


def test_directory_instead_of_file(tmp_path):
    assert problems_of(tmp_path) == [f"cannot read config file '{tmp_path}': Is a directory"]


def test_invalid_utf8(tmp_path):
    path = tmp_path / "backupd.toml"
    path.write_bytes(b'[state]\ndir = "\xff"\n')
    assert problems_of(path) == ["not valid UTF-8 (byte 15)"]


def test_deeply_nested_values(write_config):
    path = write_config("x = " + "[" * 5000 + "]" * 5000)
    assert problems_of(path) == ["TOML syntax error: values nested too deeply"]


def test_nul_in_config_path(tmp_path):
    (problem,) = problems_of(f"{tmp_path}/a\0b.toml")
    assert problem.startswith("cannot read config file ") and problem.endswith(": embedded null byte")
