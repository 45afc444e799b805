"""`[monitoring]`: off by default; a textfile must end in .prom, a listener be HOST:PORT."""

from __future__ import annotations

import pytest

from backupd.config import load_config
from tests.config.conftest import valid_document
from tests.config.test_load import problems_of


def test_monitoring_is_off_by_default(write_config):
    cfg = load_config(write_config(valid_document()))
    assert (cfg.monitoring.textfile, cfg.monitoring.listen, cfg.monitoring.listen_address) == (None, None, None)


def test_textfile_resolves_against_the_config_and_listen_parses(config_dir, write_config):
    doc = {**valid_document(), "monitoring": {"textfile": "prom/backupd.prom", "listen": "[::1]:9847"}}
    cfg = load_config(write_config(doc))
    assert cfg.monitoring.textfile == config_dir / "prom" / "backupd.prom"
    assert cfg.monitoring.listen_address == ("::1", 9847)


@pytest.mark.parametrize("table, problem", [
    ({"textfile": "/var/lib/node/backupd.txt"},
     "monitoring.textfile: must end in .prom (node_exporter's textfile collector reads only those)"),
    ({"listen": "9847"}, "monitoring.listen: must be HOST:PORT with a port from 1 to 65535 (got '9847')"),
    ({"listen": "127.0.0.1:0"}, "monitoring.listen: must be HOST:PORT with a port from 1 to 65535 (got '127.0.0.1:0')"),
    ({"listen": "127.0.0.1:http"},
     "monitoring.listen: must be HOST:PORT with a port from 1 to 65535 (got '127.0.0.1:http')"),
])
def test_bad_monitoring_values_are_refused_with_the_fix(write_config, table, problem):
    assert problems_of(write_config({**valid_document(), "monitoring": table})) == [problem]
