"""Environment variables in config paths are expanded ($HOME, ${STATE_DIRECTORY}) or refused with the
reason, never kept as a directory literally named `$HOME`."""

from __future__ import annotations

import pytest

from backupd.config import load_config
from backupd.errors import ConfigError
from tests.config.conftest import valid_document


def test_variables_in_paths_are_expanded_from_the_environment(write_config, config_dir):
    document = valid_document()
    document["state"] = {"dir": "${STATE_DIRECTORY}/backupd"}
    document["destinations"][0]["path"] = "$BACKUP_ROOT/local"
    config = load_config(write_config(document), environ={"STATE_DIRECTORY": "/var/lib/x",
                                                          "BACKUP_ROOT": str(config_dir / "b")})
    assert str(config.state.dir) == "/var/lib/x/backupd"
    assert str(config.destinations[0].path) == str(config_dir / "b" / "local")


@pytest.mark.parametrize(("path", "message"), [
    ("$NOPE/state", "state.dir: names $NOPE, not set in backupd's environment; set it (systemd: Environment= in a"
                    " drop-in) or write the path out"),
    ("/srv/$/x", "state.dir: holds a $ that is not a variable ($NAME or ${NAME}); write the path without it"),
    ("/srv/${HALF", "state.dir: holds a $ that is not a variable"),
])  # fmt: skip
def test_an_unset_or_malformed_variable_is_refused(write_config, path, message):
    document = valid_document()
    document["state"] = {"dir": path}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(document), environ={})
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
