"""Destinations changed at run time, applied over the config file: additions validated like the file's
(absolute paths, key files checked, every problem named), enabled flags overridden, and a stored
addition that no longer validates or whose name the file now uses left out with the reason."""

from __future__ import annotations

import pytest

from backupd.config import load_config, parse_destination
from backupd.config.overlay import Change, DestinationOverlay, apply_changes, with_runtime_destinations
from backupd.errors import ConfigError

from .conftest import valid_document, write_key


def usb(path, **extra):
    return {"name": "usb", "kind": "local", "path": str(path), **extra}


def test_a_destination_given_at_run_time_is_validated_like_the_file(tmp_path):
    key = write_key(tmp_path / "k.key")
    got = parse_destination(usb(tmp_path / "usb", priority=3, encryption={"key_file": str(key)}), {"local"})
    assert (got.name, got.path, got.priority, got.encryption.key_file) == ("usb", tmp_path / "usb", 3, key)

    with pytest.raises(ConfigError) as bad:
        parse_destination({"name": "usb", "kind": "local", "path": "rel", "compression_level": 0,
                           "encryption": {"key_file": "k.key"}, "colour": "red"}, set())
    assert sorted(bad.value.problems) == sorted([
        "destination.path: must be an absolute path (got 'rel'): there is no config file to be relative to",
        "destination.compression_level: must be 1..22 (got 0)",
        "destination.encryption.key_file: must be an absolute path (got 'k.key'): there is no config file to be"
        " relative to",
        "destination.colour: unknown key",
    ])

    write_key(tmp_path / "open.key", mode=0o644)
    with pytest.raises(ConfigError) as loose:
        parse_destination(usb(tmp_path, encryption={"key_file": str(tmp_path / "open.key")}), set())
    assert loose.value.problems[0].startswith("destination.encryption.key_file: ")
    assert "chmod 600" in loose.value.problems[0]
    with pytest.raises(ConfigError, match="destination.name: a destination named 'usb' already exists"):
        parse_destination(usb(tmp_path), {"usb"})


def test_changes_apply_over_the_file(write_config, tmp_path):
    config = load_config(write_config(valid_document()))
    applied = apply_changes(config, [
        Change("spare", None, False, True),
        Change("usb", usb(tmp_path / "usb"), None),
        Change("nas", usb(tmp_path / "nas") | {"name": "nas"}, False),
    ])
    assert [(d.name, d.enabled) for d in applied.config.destinations] == \
        [("local", True), ("spare", False), ("usb", True), ("nas", False)]
    assert applied.added == {"usb", "nas"} and applied.problems == ()
    assert [d.name for d in applied.config.enabled_destinations()] == ["local", "usb"]
    assert config.destination("spare").enabled  # the file's config is left as it was


def test_a_stored_addition_that_no_longer_fits_is_left_out_with_the_reason(write_config, tmp_path):
    config = load_config(write_config(valid_document()))
    gone = tmp_path / "gone.key"
    applied = apply_changes(config, [
        Change("spare", usb(tmp_path / "x") | {"name": "spare"}, None),
        Change("usb", usb(tmp_path / "usb", encryption={"key_file": str(gone)}), None),
    ])
    assert [d.name for d in applied.config.destinations] == ["local", "spare"]
    assert applied.config.destination("spare").path != tmp_path / "x"
    assert applied.added == frozenset()
    assert "'spare' added at run time is now defined in the config file" in applied.problems[0]
    assert "'usb' added at run time is left out: destination.encryption.key_file:" in applied.problems[1]
    assert "does not exist" in applied.problems[1]


def test_the_overlay_is_kept_in_the_state_dir(write_config, tmp_path):
    config = load_config(write_config(valid_document()))
    assert with_runtime_destinations(config).config == config  # no state dir yet: nothing to apply
    config.state.dir.mkdir()
    overlay = DestinationOverlay(config.state.dir)
    overlay.add("usb", usb(tmp_path / "usb"))
    overlay.set_enabled("usb", False, None)
    overlay.set_enabled("local", False, True)
    overlay.close()
    seen = with_runtime_destinations(config).config
    assert [(d.name, d.enabled) for d in seen.destinations] == [("local", False), ("spare", True), ("usb", False)]
    overlay = DestinationOverlay(config.state.dir)
    overlay.remove("usb")
    overlay.close()
    assert [d.name for d in with_runtime_destinations(config).config.destinations] == ["local", "spare"]


def test_a_run_time_flag_gives_way_when_the_file_changes_its_own(write_config):
    config = load_config(write_config(valid_document()))  # both destinations enabled in the file
    applied = apply_changes(config, [Change("local", None, False, True), Change("spare", None, False, False)])
    assert [(d.name, d.enabled) for d in applied.config.destinations] == [("local", False), ("spare", True)]
    assert applied.outdated == ("spare",)  # disabled when the file said false; the file now says true


def test_a_state_dir_from_before_file_enabled_is_upgraded(write_config, tmp_path):
    import sqlite3

    config = load_config(write_config(valid_document()))
    config.state.dir.mkdir()
    old = sqlite3.connect(config.state.dir / "catalog.db")
    old.execute("CREATE TABLE runtime_destinations (name TEXT PRIMARY KEY, spec TEXT, enabled INTEGER)")
    old.execute("INSERT INTO runtime_destinations VALUES ('local', NULL, 0)")
    old.commit()
    old.close()
    assert [(d.name, d.enabled) for d in with_runtime_destinations(config).config.destinations] == \
        [("local", False), ("spare", True)]
    overlay = DestinationOverlay(config.state.dir)
    overlay.add("usb", usb(tmp_path / "usb"))
    overlay.close()


def test_an_addition_shadowed_by_the_file_changes_nothing(write_config, tmp_path):
    config = load_config(write_config(valid_document()))
    applied = apply_changes(config, [Change("spare", usb(tmp_path / "x") | {"name": "spare"}, False)])
    assert applied.config.destination("spare").enabled and applied.config.destination("spare").path != tmp_path / "x"
