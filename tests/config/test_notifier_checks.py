"""[[notifiers]] checked at load against the file system, the environment and the installed extras: each
problem names `notifiers[i].key` and the fix, and never quotes a secret."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from backupd.config import load_config
from backupd.errors import ConfigError
from tests.config.conftest import valid_document
from tests.servers.receivers import make_cert

SECRET = "whsec_" + base64.b64encode(b"s3cr3t-signing-key-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"the-key-being-rotated-in").decode()
ENV = {"PATH": "/usr/bin:/bin", "SMTP_PASSWORD": "hunter2", "NTFY_TOKEN": "tk_secret"}
WEBHOOK = {"name": "ops", "kind": "webhook", "url": "https://hooks.example/backupd"}
NTFY = {"name": "phone", "kind": "ntfy", "url": "https://ntfy.example/backups"}
PING = {"name": "hc", "kind": "ping", "url": "https://hc-ping.example/uuid"}
EMAIL = {"name": "mail", "kind": "email", "smtp_host": "smtp.example", "from": "backupd@example.com",
         "to": ["ops@example.com"]}  # fmt: skip
COMMAND = {"name": "pager", "kind": "command", "command": ["sh", "-c", "cat >/dev/null"]}
APPRISE = {"name": "chat", "kind": "apprise", "urls": ["json://localhost:8080/hook"]}


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def load(write_config, *notifiers: dict, environ: dict[str, str] = ENV):
    document = valid_document()
    document["notifiers"] = [dict(notifier) for notifier in notifiers]
    return load_config(write_config(document), environ=environ)


def problems_of(write_config, *notifiers: dict, environ: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(write_config, *notifiers, environ=environ)
    return caught.value.problems


def test_a_complete_config_of_every_kind_loads(config_dir, write_config):
    private_file(config_dir / "webhook.secret", f"# rotating\n{SECRET}\n\n{OTHER_SECRET}\n")
    private_file(config_dir / "smtp.password", "hunter2\n")
    cert, _ = make_cert(config_dir)
    program = private_file(config_dir / "page-oncall", "#!/bin/sh\ncat >/dev/null\n", 0o755)
    notifiers = load(
        write_config,
        WEBHOOK | {"secret_file": "webhook.secret", "headers": {"X-Team": "storage", "Authorization": "Bearer t"},
                   "ca_file": "cert.pem", "events": ["backup.*"], "timeout": "5s"},
        EMAIL | {"smtp_port": 465, "security": "tls", "username": "backupd", "password_file": "smtp.password",
                 "ca_file": "cert.pem", "to": ["ops@example.com", "dba@example.com"]},
        EMAIL | {"name": "mail-env", "username": "backupd", "password_env": "SMTP_PASSWORD"},
        PING | {"ca_file": "cert.pem"},
        NTFY | {"token_env": "NTFY_TOKEN", "headers": {"X-Icon": "https://example.com/i.png"}, "ca_file": "cert.pem"},
        COMMAND,
        COMMAND | {"name": "pager-abs", "command": [str(program), "--team", "storage"]},
        {"name": "journal", "kind": "log"},
        APPRISE | {"urls": ["json://localhost:8080/hook", "mailto://user:pass@example.com"]},
    ).notifiers  # fmt: skip
    assert [n.kind for n in notifiers] == ["webhook", "email", "email", "ping", "ntfy", "command", "command", "log",
                                           "apprise"]  # fmt: skip
    assert notifiers[0].secret_file == config_dir / "webhook.secret"


def test_url_with_a_password_is_refused(write_config):
    load(write_config, PING | {"url": "https://hc-ping.example/uuid?x=1"})
    problems = problems_of(write_config, WEBHOOK | {"url": "https://user:hunter2@hooks.example/"},
                           PING | {"url": "http://a:b@hc.example/"}, NTFY | {"url": "https://u:tk@ntfy.example/t"})
    assert [p.split(":")[0] for p in problems] == ["notifiers[0].url", "notifiers[1].url", "notifiers[2].url"]
    assert problems[0] == (
        "notifiers[0].url: holds a password (user:password@ in the URL), which would be sent and logged in the clear;"
        " remove it and authenticate with headers (e.g. Authorization), a secret_file (webhook) or token_env (ntfy)"
    )
    assert "hunter2" not in " ".join(problems)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_webhook_secret_file_is_accepted(config_dir, write_config, mode):
    private_file(config_dir / "s", f"  {SECRET}  \n# old one, still accepted\n{OTHER_SECRET}\n", mode)
    assert load(write_config, WEBHOOK | {"secret_file": "s"}).notifiers[0].secret_file == config_dir / "s"


@pytest.mark.parametrize(
    ("text", "mode", "problem"),
    [
        (SECRET, 0o644, "'{path}' is readable by group or others (mode 0644); run: chmod 600 {path}"),
        (SECRET, 0o620, "'{path}' is accessible by group or others (mode 0620); run: chmod 600 {path}"),
        ("", 0o600, "'{path}' holds no secret; add a line whsec_<base64> (e.g. from the receiver's settings)"),
        ("# only a comment\n\n", 0o600,
         "'{path}' holds no secret; add a line whsec_<base64> (e.g. from the receiver's settings)"),
        (f"{SECRET}\nhunter2-plain\n", 0o600, "line 2 of '{path}' is not a secret; write each as whsec_ followed"
                                              " by its base64 (one per line, # for comments)"),
        (f"# c\n{SECRET[:-2]}!!\n", 0o600, "line 2 of '{path}' is not a secret; write each as whsec_ followed"
                                           " by its base64 (one per line, # for comments)"),
        ("whsec_\n", 0o600, "line 1 of '{path}' is not a secret; write each as whsec_ followed by its base64"
                            " (one per line, # for comments)"),
        ("whsec_aHVudGVy MjI=\n", 0o600, "line 1 of '{path}' is not a secret; write each as whsec_ followed by its"
                                         " base64 (one per line, # for comments)"),
    ],
)  # fmt: skip
def test_webhook_secret_file_problems(config_dir, write_config, text, mode, problem):
    path = private_file(config_dir / "s", text, mode)
    problems = problems_of(write_config, WEBHOOK | {"secret_file": "s"})
    assert problems == ["notifiers[0].secret_file: " + problem.format(path=path)]
    assert "hunter2" not in problems[0] and "aHVudGVy" not in problems[0] and SECRET[6:] not in problems[0]


def test_webhook_secret_file_must_exist_and_be_a_file(config_dir, write_config):
    (config_dir / "dir").mkdir()
    problems = problems_of(write_config, WEBHOOK | {"secret_file": "nowhere"},
                           WEBHOOK | {"name": "b", "secret_file": "dir"})
    assert problems == [
        f"notifiers[0].secret_file: '{config_dir / 'nowhere'}' does not exist; check the path",
        f"notifiers[1].secret_file: '{config_dir / 'dir'}' is not a regular file",
    ]


def test_email_password_file(config_dir, write_config):
    private_file(config_dir / "pw", "hunter2\n")
    login = {"username": "backupd", "password_file": "pw"}
    assert load(write_config, EMAIL | login).notifiers[0].password_file == config_dir / "pw"

    os.chmod(config_dir / "pw", 0o640)
    private_file(config_dir / "empty", "\n")
    problems = problems_of(write_config, EMAIL | login, EMAIL | login | {"name": "b", "password_file": "empty"},
                           EMAIL | login | {"name": "c", "password_file": "gone"})
    assert problems == [
        f"notifiers[0].password_file: '{config_dir / 'pw'}' is readable by group or others (mode 0640);"
        f" run: chmod 600 {config_dir / 'pw'}",
        f"notifiers[1].password_file: '{config_dir / 'empty'}' is empty; write the SMTP password into it",
        f"notifiers[2].password_file: '{config_dir / 'gone'}' does not exist; check the path",
    ]
    assert "hunter2" not in " ".join(problems)


def test_email_password_env_and_ntfy_token_env_must_be_set(write_config):
    email, ntfy = EMAIL | {"username": "backupd", "password_env": "SMTP_PASSWORD"}, NTFY | {"token_env": "NTFY_TOKEN"}
    assert len(load(write_config, email, ntfy).notifiers) == 2
    assert problems_of(write_config, email, ntfy, environ={"SMTP_PASSWORD": ""}) == [
        "notifiers[0].password_env: environment variable 'SMTP_PASSWORD' is not set or empty;"
        " set it in backupd's environment",
        "notifiers[1].token_env: environment variable 'NTFY_TOKEN' is not set or empty;"
        " set it in backupd's environment",
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"from": "backupd"}, "notifiers[0].from: 'backupd' is not an email address"),
        ({"from": "@example.com"}, "notifiers[0].from: '@example.com' is not an email address"),
        ({"to": ["ops@example.com", "dba@"]}, "notifiers[0].to[1]: 'dba@' is not an email address"),
        ({"to": ["Ops <ops@example.com>"]}, "notifiers[0].to[0]: 'Ops <ops@example.com>' is not an email address"),
        ({"to": ["ops@example.com\r\nBcc: all@example.com"]},
         "notifiers[0].to[0]: 'ops@example.com\\r\\nBcc: all@example.com' is not an email address"),
        ({"from": "a@b\nX-Injected: 1"}, "notifiers[0].from: 'a@b\\nX-Injected: 1' is not an email address"),
    ],
)  # fmt: skip
def test_email_addresses_are_plain_addresses(write_config, change, problem):
    assert problems_of(write_config, EMAIL | change) == [
        problem + " (expected name@domain, with no spaces or line breaks); correct it"
    ]


def test_ca_file_holds_pem_certificates(config_dir, write_config):
    cert, key = make_cert(config_dir)
    assert load(write_config, PING | {"ca_file": "cert.pem"}).notifiers[0].ca_file == cert
    private_file(config_dir / "junk.pem", "not a certificate\n", 0o644)
    problems = problems_of(write_config, PING | {"ca_file": "junk.pem"}, WEBHOOK | {"ca_file": "key.pem"},
                           NTFY | {"ca_file": "missing.pem"}, EMAIL | {"ca_file": "."})
    assert problems[0].startswith(f"notifiers[0].ca_file: '{config_dir / 'junk.pem'}' cannot be loaded as PEM CA"
                                  " certificates (")
    assert problems[0].endswith("); point ca_file at a PEM file")
    assert "NO_CERTIFICATE_OR_CRL_FOUND" in problems[0] or "no certificate" in problems[0].lower()
    assert problems[1].startswith(f"notifiers[1].ca_file: '{key}' cannot be loaded as PEM CA certificates (")
    assert "PRIVATE KEY" not in problems[1]
    assert problems[2:] == [
        f"notifiers[2].ca_file: '{config_dir / 'missing.pem'}' does not exist; check the path",
        f"notifiers[3].ca_file: '{config_dir}' is not a regular file",
    ]


def test_command_program_is_an_executable_path_or_on_path(config_dir, write_config):
    tool = private_file(config_dir / "tool", "#!/bin/sh\n", 0o755)
    plain = private_file(config_dir / "plain", "#!/bin/sh\n", 0o644)
    ok = load(write_config, COMMAND, COMMAND | {"name": "abs", "command": [str(tool)]})
    assert [n.command[0] for n in ok.notifiers] == ["sh", str(tool)]
    problems = problems_of(
        write_config,
        COMMAND | {"command": [str(config_dir / "gone")]},
        COMMAND | {"name": "b", "command": [str(plain)]},
        COMMAND | {"name": "c", "command": [str(config_dir)]},
        COMMAND | {"name": "d", "command": ["./tool"]},
        COMMAND | {"name": "e", "command": ["page-oncall-nowhere"]},
        COMMAND | {"name": "f", "command": ["tool"]},
        environ={"PATH": "/usr/bin:/bin"},
    )
    assert problems == [
        f"notifiers[0].command[0]: '{config_dir / 'gone'}' does not exist; check the path",
        f"notifiers[1].command[0]: '{plain}' is not executable; run: chmod +x {plain}",
        f"notifiers[2].command[0]: '{config_dir}' is not a regular file; point command[0] at the program",
        "notifiers[3].command[0]: './tool' is a relative path; give the program's absolute path or a name found"
        " on PATH",
        "notifiers[4].command[0]: 'page-oncall-nowhere' is not found on backupd's PATH (/usr/bin:/bin); give its"
        " absolute path or install it",
        "notifiers[5].command[0]: 'tool' is not found on backupd's PATH (/usr/bin:/bin); give its absolute path or"
        " install it",
    ]
    # the PATH searched is backupd's environment's, not the test's
    assert load(write_config, COMMAND | {"command": ["tool"]}, environ={"PATH": str(config_dir)}).notifiers


def test_apprise_urls_are_checked_without_showing_them(write_config):
    assert load(write_config, APPRISE).notifiers[0].urls == ["json://localhost:8080/hook"]
    problems = problems_of(write_config, APPRISE | {"urls": ["json://localhost/", "tgram://hunter2/chat", "nope"]})
    assert problems == [
        "notifiers[0].urls[1]: apprise does not accept it (a tgram:// URL); check it against apprise's documentation"
        " for that service",
        "notifiers[0].urls[2]: apprise does not accept it (a URL with no scheme://); check it against apprise's"
        " documentation for that service",
    ]


def test_apprise_needs_its_extra(write_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)  # how Python marks a module as not importable
    assert problems_of(write_config, APPRISE) == [
        "notifiers[0].urls: apprise is not installed: pip install 'backupd[apprise]'"
    ]


def test_headers_are_valid_and_leave_backupd_its_own(write_config):
    load(write_config, WEBHOOK | {"headers": {"X-Team": "storage", "Authorization": "Bearer tk_secret"}},
         NTFY | {"headers": {"Click": "https://example.com", "Webhook-Id": "fine for ntfy"}})  # fmt: skip
    problems = problems_of(
        write_config,
        WEBHOOK | {"headers": {"X Team": "a", "Webhook-Signature": "v1,x", "content-type": "text/plain",
                               "Authorization": "Bearer tk_secret\r\nX-Evil: 1", "webhook-id": "x\n"}},
        NTFY | {"headers": {"Title": "t", "PRIORITY": "5", "Tags": "x", "X-Ok": "y"}},
    )  # fmt: skip
    reserved_webhook = "content-type, webhook-id, webhook-signature, webhook-timestamp"
    assert problems == [
        "notifiers[0].headers.\"X Team\": not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only);"
        " rename it",
        f"notifiers[0].headers.Webhook-Signature: backupd sets this header itself (it sets {reserved_webhook});"
        " remove it from headers",
        f"notifiers[0].headers.content-type: backupd sets this header itself (it sets {reserved_webhook});"
        " remove it from headers",
        "notifiers[0].headers.Authorization: the value contains a line break or NUL, which would split the request;"
        " remove it",
        f"notifiers[0].headers.webhook-id: backupd sets this header itself (it sets {reserved_webhook});"
        " remove it from headers",
        "notifiers[0].headers.webhook-id: the value contains a line break or NUL, which would split the request;"
        " remove it",
        "notifiers[1].headers.Title: backupd sets this header itself (it sets priority, tags, title); remove it"
        " from headers",
        "notifiers[1].headers.PRIORITY: backupd sets this header itself (it sets priority, tags, title); remove it"
        " from headers",
        "notifiers[1].headers.Tags: backupd sets this header itself (it sets priority, tags, title); remove it"
        " from headers",
    ]
    assert "tk_secret" not in " ".join(problems)


def test_every_problem_of_every_notifier_is_reported_together(config_dir, write_config):
    private_file(config_dir / "s", SECRET, 0o644)
    problems = problems_of(
        write_config,
        WEBHOOK | {"secret_file": "s", "ca_file": "missing.pem"},
        EMAIL | {"from": "nobody", "username": "u", "password_env": "UNSET"},
        environ={},
    )
    assert [p.split(": ")[0] for p in problems] == [
        "notifiers[0].ca_file", "notifiers[0].secret_file", "notifiers[1].password_env", "notifiers[1].from",
    ]  # fmt: skip


def test_url_user_names_non_ascii_urls_and_header_values_are_refused_at_load():
    from backupd.config.notifier_checks import notifier_problems
    from backupd.config.notifiers import NotifierConfig

    def problems(**keys):
        return notifier_problems([NotifierConfig.model_validate({"name": "n", "kind": "webhook", **keys})], {})

    assert problems(url="https://tok@hooks.example/in") == [
        "notifiers[0].url: holds a user name (user@ in the URL), which backupd does not send; remove it and"
        " authenticate with headers (e.g. Authorization), a secret_file (webhook) or token_env (ntfy)"]
    assert problems(url="https://hooks.example/caf\u00e9")[0].startswith("notifiers[0].url: holds characters that are"
                                                                          " not ASCII")
    assert problems(url="https://hooks.example/in", headers={"X-Team": "\u00e9quipe"}) == [
        "notifiers[0].headers.X-Team: the value is not ASCII, which HTTP headers cannot carry as is; encode it"
        " (e.g. percent-encoding)"]
    assert problems(url="https://hooks.example/in", headers={"X-Team": "storage"}) == []


def test_secrets_that_would_cross_the_network_in_the_clear_are_refused():
    from backupd.config.notifier_checks import notifier_problems
    from backupd.config.notifiers import NotifierConfig

    def problems(**keys):
        return notifier_problems([NotifierConfig.model_validate({"name": "n", **keys})], {"TOKEN": "t", "PW": "p"})

    assert problems(kind="ntfy", url="http://ntfy.example/t", token_env="TOKEN") == [
        "notifiers[0].token_env: the token would cross the network in the clear (an http:// URL to another"
        " machine); use https://"]
    assert problems(kind="ntfy", url="http://127.0.0.1:8080/t", token_env="TOKEN") == []
    mail = {"kind": "email", "from": "b@db1.example", "to": ["ops@example.com"], "username": "b", "password_env": "PW",
            "security": "none"}
    assert problems(**mail, smtp_host="smtp.example.com") == [
        "notifiers[0].security: 'none' would send the password in the clear to another machine; use 'starttls' or"
        " 'tls'"]
    assert problems(**mail, smtp_host="localhost") == problems(**mail, smtp_host="::1") == []
