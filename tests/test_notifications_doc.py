"""docs/NOTIFICATIONS.md and the code stay in step: every kind has an example that is a valid
[[notifiers]] table, every key and refused header is documented, and the default patterns are the code's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from backupd.config.notifier_checks import RESERVED_HEADERS
from backupd.config.notifiers import NotifierConfig
from backupd.core.events import DEFAULT_NOTIFY_PATTERNS, DEFAULT_PING_PATTERNS
from backupd.core.vocab import NotifierKind

TEXT = (Path(__file__).resolve().parents[1] / "docs" / "NOTIFICATIONS.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```$", TEXT, re.M | re.S)


def notifier_examples() -> list[dict]:
    return [table for lang, body in BLOCKS if lang == "toml" for table in tomllib.loads(body).get("notifiers", [])]


@pytest.mark.parametrize("example", notifier_examples(), ids=lambda example: example["kind"])
def test_each_example_is_a_valid_notifier(example):
    NotifierConfig.model_validate(example, context={"base_dir": Path("/etc/backupd")})


def test_every_kind_has_an_example_and_a_section():
    assert sorted(e["kind"] for e in notifier_examples()) == sorted(NotifierKind)
    assert [k for k in NotifierKind if f"\n### {k.value}\n" not in TEXT] == []


def test_every_key_and_every_refused_header_is_documented():
    keys = [field.alias or name for name, field in NotifierConfig.model_fields.items()]
    assert [k for k in keys if f"| `{k}` |" not in TEXT] == []
    assert [h for names in RESERVED_HEADERS.values() for h in sorted(names) if f"`{h}`" not in TEXT] == []


def test_default_patterns_are_the_codes():
    plain = [body.split() for lang, body in BLOCKS if lang == ""]
    assert list(DEFAULT_NOTIFY_PATTERNS) in plain
    assert list(DEFAULT_PING_PATTERNS) in plain


def test_what_each_kind_sends_follows_the_configuration():
    assert TEXT.index("## Configuration") < TEXT.index("## What each kind sends") < TEXT.index("## Choosing")
