"""[control] readers/admins/allow_unencrypted_destinations and [restore] allowed_dirs: defaults,
resolution, and bad entries reported with their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupd.config import load_config
from backupd.errors import ConfigError
from tests.config.conftest import valid_document


def test_defaults_let_the_socket_group_read_and_restores_go_beside_each_source(config_dir, write_config):
    document = valid_document()
    document["control"] = {"group": "root"}
    cfg = load_config(write_config(document))
    assert cfg.control.reader_principals() == ["@root"] and cfg.control.admins == []
    assert cfg.control.allow_unencrypted_destinations is False
    assert cfg.restore_dirs() == [Path("/srv/app"), config_dir, config_dir / "state" / "restores"]
    assert load_config(write_config(valid_document())).control.reader_principals() == []


def test_listed_readers_admins_and_allowed_dirs_are_used(config_dir, write_config):
    document = valid_document()
    document["control"] = {"group": "root", "readers": [], "admins": ["alice", "@ops"]}
    document["restore"] = {"allowed_dirs": ["restores", "/srv/restore"], "copy_selection": "most_reliable"}
    cfg = load_config(write_config(document))
    assert cfg.control.reader_principals() == [] and cfg.control.admins == ["alice", "@ops"]
    assert cfg.restore_dirs() == [config_dir / "restores", Path("/srv/restore")]


@pytest.mark.parametrize("entry", ["", "@", "al ice", "@ops,dev", "-x", "a" * 40])
def test_a_bad_principal_is_reported_with_its_path(write_config, entry):
    document = valid_document()
    document["control"] = {"admins": ["alice", entry]}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(document))
    assert any(p.startswith("control.admins[1]") for p in caught.value.problems), caught.value.problems
