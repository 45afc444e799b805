"""The type checker is part of the suite: mypy over `backupd/` and the client, strict on core and the protocol.

The configuration is `[tool.mypy]` in pyproject.toml; its cache lives in the repo's `.mypy_cache`, so a
second run only re-checks what changed.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRICT_MODULES = {"backupd.core.*", "backupd_client.protocol", "backupd_client.ops", "backupd_client.errorcodes",
                  "backupd_client.codec"}


def test_mypy_reports_no_errors() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--no-color-output", "--no-error-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert run.returncode == 0 and not errors, (
        f"mypy exited {run.returncode} with {len(errors)} errors:\n{run.stdout}{run.stderr}"
    )


def test_core_and_protocol_are_checked_strictly() -> None:
    """Nobody quietly drops the strict override: the modules and the flags `--strict` implies are all there."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert set(mypy["files"]) == {"backupd", "client/backupd_client"}
    strict = [o for o in mypy["overrides"] if STRICT_MODULES <= set(o["module"])]
    assert strict, f"no override covers {sorted(STRICT_MODULES)}"
    flags = {
        "disallow_any_generics", "disallow_subclassing_any", "disallow_untyped_calls", "disallow_untyped_defs",
        "disallow_incomplete_defs", "check_untyped_defs", "disallow_untyped_decorators", "warn_return_any",
        "no_implicit_reexport", "strict_equality", "extra_checks",
    }  # fmt: skip
    assert all(strict[0].get(flag) is True for flag in flags), sorted(f for f in flags if not strict[0].get(f))
    lenient = [o for o in mypy["overrides"] if o.get("ignore_missing_imports")]
    assert all(not m.startswith(("backupd", "paramiko", "psutil", "msgpack")) for o in lenient for m in o["module"])
