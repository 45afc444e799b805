"""Imports point one way (STYLE.md section 2): `core` is pure, `destinations` knows nothing of `engine`.

Read from the source with `ast`, so an import hidden in a function or under TYPE_CHECKING counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "backupd"

# Pure means no I/O, no clock, no threads or processes: these stdlib modules are out of bounds in core.
CORE_FORBIDDEN = {
    "os", "io", "sys", "pathlib", "shutil", "tempfile", "glob", "fcntl", "mmap", "socket", "ssl", "select",
    "selectors", "subprocess", "signal", "threading", "_thread", "multiprocessing", "concurrent", "asyncio",
    "sqlite3", "time", "logging", "importlib", "ctypes", "urllib", "http", "smtplib",
}  # fmt: skip
# Reading the clock in core defeats "pass time in" (STYLE.md 3.2): callers hand `now` over.
CLOCK_CALLS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}


def modules(package: str) -> list[Path]:
    found = sorted((PACKAGE / package).rglob("*.py"))
    assert found, f"no modules under backupd/{package}"
    return found


def imported(path: Path) -> set[str]:
    """Every module `path` imports, absolute (`from .ids import x` in backupd/core is backupd.core.ids)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.add(module)
            if module in ("backupd", "backupd.core"):  # `from backupd import errors` names a module
                out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def top(module: str) -> str:
    return module.split(".")[0]


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", modules("core"), ids=rel)
def test_core_imports_only_pure_stdlib_and_errors(path):
    bad = []
    for module in sorted(imported(path)):
        if module == "backupd.errors" or module.startswith("backupd.core"):
            continue
        if module in ("backupd", "backupd.core"):
            continue  # the package itself; its named submodules were checked separately
        if top(module) not in sys.stdlib_module_names:
            bad.append(f"{module} (not the standard library)")
        elif top(module) in CORE_FORBIDDEN or module in CORE_FORBIDDEN:
            bad.append(f"{module} (I/O, clock or concurrency)")
    assert not bad, f"{rel(path)} imports {', '.join(bad)}"


@pytest.mark.parametrize("path", modules("core"), ids=rel)
def test_core_reads_no_clock(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        f"line {node.lineno}: .{node.func.attr}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS
    ]
    assert not calls, f"{rel(path)} reads the clock: {calls}"


def test_errors_module_is_stdlib_only():
    # core depends on backupd.errors, so it must be as pure as core
    path = PACKAGE / "errors.py"
    assert all(top(m) in sys.stdlib_module_names for m in imported(path)), imported(path)


@pytest.mark.parametrize("path", modules("destinations"), ids=rel)
def test_destinations_do_not_import_the_layers_above(path):
    above = ("backupd.engine", "backupd.cli", "backupd.daemon")
    bad = sorted(m for m in imported(path) if m.startswith(above))
    assert not bad, f"{rel(path)} imports {bad}: destinations sit below the engine"


def test_the_checker_sees_relative_and_hidden_imports(tmp_path, monkeypatch):
    fake = tmp_path / "backupd" / "core"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import ids\n"
        "from .. import errors\n"
        "if TYPE_CHECKING:\n    import sqlite3\n"
        "def f():\n    import zstandard\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "backupd")
    assert imported(fake / "x.py") == {
        "__future__", "typing", "backupd.core", "backupd.core.ids", "backupd", "backupd.errors", "sqlite3", "zstandard",
    }  # fmt: skip


@pytest.mark.parametrize("path", modules("state"), ids=rel)
def test_the_state_database_sits_below_the_engine_and_the_daemon(path):
    above = ("backupd.engine", "backupd.cli", "backupd.daemon", "backupd.config", "backupd.destinations")
    bad = sorted(m for m in imported(path) if m.startswith(above))
    assert not bad, f"{rel(path)} imports {bad}: backupd/state is the one owner of catalog.db, under its users"


def test_only_the_state_package_names_the_state_database_file():
    """catalog.db is opened through backupd/state alone (`state_db_path`): no other module builds its path.
    (Messages may still name the file to a user.)"""
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "state":
            continue
        spelled += [f"{rel(path)}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    and (n.value == "catalog.db" or n.value.endswith("/catalog.db"))]
    assert not spelled, f"these spell catalog.db instead of using backupd.state.db.state_db_path: {spelled}"
