"""Fixtures for the daemon tests: template databases built once per session, and factories for
installations and daemons that clean up after themselves (every daemon killed, every temp dir removed)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Daemon, Installation, make_text_db, new_installation

SMALL_MIB = 4
BIG_MIB = 32  # with compression level 19 a full backup takes ~10 s here: long enough to cancel mid-way


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("templates")
    return {"small": make_text_db(d / "small.db", SMALL_MIB, seed=1),
            "big": make_text_db(d / "big.db", BIG_MIB, seed=2)}


@pytest.fixture
def installation(templates) -> Iterator[Callable[..., Installation]]:
    """`installation(demo="small", big="big", compression_level=9, daemon={...}, schedules=[...])`:
    keyword arguments naming a template become sources of that name."""
    made: list[Installation] = []

    def make(**kwargs: Any) -> Installation:
        sources = {k: templates[v] for k, v in list(kwargs.items()) if isinstance(v, str) and v in templates}
        for k in sources:
            del kwargs[k]
        inst = new_installation(sources, **kwargs)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        shutil.rmtree(inst.root, ignore_errors=True)


@pytest.fixture
def daemon_for() -> Iterator[Callable[..., Daemon]]:
    """`daemon_for(inst)`: a Daemon (not started); every one is killed at teardown if still running."""
    made: list[Daemon] = []

    def make(inst: Installation, env: dict[str, str] | None = None, nofile: int | None = None) -> Daemon:
        d = Daemon(inst, env, nofile)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close_clients()
        d.kill()
