"""Docs and code stay in step: every event the code logs is documented in docs/EVENTS.md and every
documented event is logged somewhere; every op and error code of the protocol is in docs/PROTOCOL.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"debug", "info", "warning", "error", "critical"}


def logged_events() -> set[str]:
    names = set()
    for path in (ROOT / "backupd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "log" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return names


def documented_events() -> set[str]:
    text = (ROOT / "docs" / "EVENTS.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))


def test_every_logged_event_is_documented_and_vice_versa():
    logged, documented = logged_events(), documented_events()
    assert logged - documented == set(), "document these in docs/EVENTS.md"
    assert documented - logged == set(), "docs/EVENTS.md lists events nothing logs"


def test_event_names_are_snake_case():
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", n) for n in logged_events())


def test_protocol_doc_lists_every_op_and_error_code():
    from backupd_client.protocol import ErrorCode, Op

    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    assert [op.value for op in Op if f"`{op.value}`" not in text] == []
    client_only = {"daemon_unreachable", "timeout"}
    assert [c.value for c in ErrorCode if c.value not in client_only and f"`{c.value}`" not in text] == []
