"""The Python packages as a user installs them: `pip install .` gives a working `backupd` and
`backupctl` and resolves no name this repository provides from an index (dependency confusion);
`pip install ./client` gives the client alone (pyzmq and msgpack). Each is built into a wheel and
installed into a fresh venv, with its dependencies from the package index, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN_NAMES = {"backupd", "backupd-client", "backupd_client"}  # the distributions this repository builds
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # nothing of this tree


def _wheel(project: Path, out: Path) -> Path:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(project)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = out.glob("*.whl")
    return wheel


def _metadata(wheel: Path) -> tuple[set[str], dict[str, str], list[str]]:
    """(top-level packages, console scripts, Requires-Dist) of `wheel`."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    scripts = dict(line.replace(" ", "").split("=", 1) for line in entry.splitlines() if "=" in line)
    return tops, scripts, meta.get_all("Requires-Dist") or []


def _fresh_venv(where: Path) -> Path:
    venv.create(where, with_pip=True, clear=True)
    return where / "bin"


def _requirement_name(req: str) -> str:
    return req.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("!")[0].split("~")[0] \
        .strip().lower()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    (out / "daemon").mkdir()
    (out / "client").mkdir()
    return {"daemon": _wheel(ROOT, out / "daemon"), "client": _wheel(ROOT / "client", out / "client")}


def test_the_daemon_wheel_holds_both_packages_and_depends_on_no_name_of_ours(wheels):
    tops, scripts, requires = _metadata(wheels["daemon"])
    assert tops == {"backupd", "backupd_client"}, tops
    assert scripts == {"backupd": "backupd.cli.main:main", "backupctl": "backupd_client.cli:main"}
    base = [r for r in requires if "extra ==" not in r]
    assert {_requirement_name(r) for r in base} & OWN_NAMES == set(), base


def test_the_client_wheel_holds_the_client_alone(wheels):
    tops, scripts, requires = _metadata(wheels["client"])
    assert tops == {"backupd_client"} and scripts == {"backupctl": "backupd_client.cli:main"}
    assert {_requirement_name(r) for r in requires} == {"pyzmq", "msgpack"}, requires


def test_pip_install_of_each_wheel_in_a_fresh_venv_works_with_no_other_step(wheels, tmp_path):
    for name, commands in (("daemon", ("backupd", "backupctl")), ("client", ("backupctl",))):
        bin_dir = _fresh_venv(tmp_path / name)
        r = subprocess.run([str(bin_dir / "pip"), "install", "-q", str(wheels[name])], capture_output=True,
                           text=True, timeout=900, env=CLEAN_ENV, cwd="/")
        assert r.returncode == 0, r.stdout + r.stderr
        for command in commands:
            version = subprocess.run([str(bin_dir / command), "--version"], capture_output=True, text=True, cwd="/",
                                     env=CLEAN_ENV)
            assert version.returncode == 0 and version.stdout.startswith(f"{command} "), version
    alone = subprocess.run([str(tmp_path / "client" / "bin" / "python"), "-c", "import backupd"], capture_output=True,
                           env=CLEAN_ENV, cwd="/")
    assert alone.returncode != 0  # the client venv holds the client only
