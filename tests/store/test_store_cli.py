"""`kerasguard store ...` end to end through the real CLI: exit codes 0/1/2 and no tracebacks."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kerasguard.cli import app

POLICY_TOML = """
[store]
sources = ["https://huggingface.co/acme"]
[trust]
allow_unsafe_skip_scan = true
"""
SCAN_POLICY_TOML = """
[store]
sources = ["https://huggingface.co/acme"]
"""


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.runner = CliRunner()
        self.tmp = tmp_path
        self.policy = tmp_path / "kerasguard.toml"
        self.policy.write_text(POLICY_TOML)
        self.env = {
            "KERASGUARD_STORE": str(tmp_path / "store"),
            "KERASGUARD_MASTER_KEY_FILE": str(tmp_path / "master.key"),
            "KERASGUARD_MASTER_KEY": "",
            "KERASGUARD_STORE_TOKEN": "",
        }

    def __call__(self, *args: str, token: str | None = None, code: int = 0) -> str:
        env = dict(self.env)
        if token is not None:
            env["KERASGUARD_STORE_TOKEN"] = token
        result = self.runner.invoke(app, ["store", *args], env=env, catch_exceptions=False)
        self.last = result
        out = result.stdout + result.stderr
        assert result.exit_code == code, out
        assert "Traceback" not in out
        return result.stdout


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.keras"
    path.write_bytes(os.urandom(50_000))
    return path


def test_cli_lifecycle(cli: Cli, model: Path, tmp_path: Path) -> None:
    cli("keygen", str(tmp_path / "master.key"))
    admin = cli("init").strip()
    assert admin.startswith("kgs_")
    pol = ["--policy", str(cli.policy)]
    pub = cli(
        "token", "create", "--role", "publisher", "-n", "team", "--label", "ci", *pol, token=admin
    ).strip()
    reader = cli("token", "create", "--role", "reader", "-n", "team", *pol, token=admin).strip()

    pushed = json.loads(
        cli("push", str(model), "--name", "m", "--version", "1", "--source", "https://huggingface.co/acme/m",
            "--provenance", '{"commit": "abc123"}', "--format", "json", *pol, token=pub)
    )  # fmt: skip
    assert pushed["status"] == "admitted"
    assert pushed["provenance"]["client"] == {"commit": "abc123"}

    listed = json.loads(cli("list", "-f", "json", *pol, token=reader))
    assert [(m["name"], m["version"]) for m in listed] == [("m", "1")]
    shown = json.loads(cli("show", "m", "1", "--json", *pol, token=reader))  # deprecated alias still works
    assert shown["digest"] == pushed["digest"]
    assert "--json" not in cli.runner.invoke(app, ["store", "show", "-h"]).stdout  # hidden

    # A folder destination: an existing one, or one written with a trailing slash, gets the file inside.
    serving = tmp_path / "serving"
    cli("pull", "m", "1", f"{serving}/", *pol, token=reader)
    assert (serving / "m.keras").read_bytes() == model.read_bytes()
    existing = tmp_path / "existing"
    existing.mkdir()
    cli("pull", "m", "1", str(existing), *pol, token=reader)
    assert [p.name for p in existing.iterdir()] == ["m.keras"]

    out = tmp_path / "pulled.keras"
    cli("pull", "m", "1", str(out), "--expect-digest", pushed["digest"], *pol, token=reader)
    assert out.read_bytes() == model.read_bytes()
    cli("pull", "m", "1", str(tmp_path / "x"), "--expect-digest", "sha256:" + "0" * 64, *pol, token=reader,
        code=2)  # fmt: skip
    cli("promote", "m", "1", "production", *pol, token=pub)
    cli("quarantine", "m", "1", "--reason", "incident 42", *pol, token=reader, code=2)  # denied
    cli("quarantine", "m", "1", "--reason", "incident 42", *pol, token=admin, code=2)  # which namespace?
    cli("quarantine", "m", "1", "--reason", "incident 42", "-n", "team", *pol, token=admin)
    cli("pull", "m", "1", str(tmp_path / "y"), *pol, token=reader, code=2)
    cli("release", "m", "1", "--reason", "false alarm", "-n", "team", *pol, token=admin)

    assert "audit log intact" in cli("audit", "verify", *pol, token=admin)
    export = tmp_path / "audit.jsonl"
    cli("audit", "export", "-o", str(export), *pol, token=admin)
    actions = [json.loads(line)["action"] for line in export.read_text().splitlines()]
    assert actions[0] == "init" and "release" in actions and "quarantine" in actions

    tokens = json.loads(cli("token", "list", *pol, token=admin))
    reader_id = reader.split("_")[1]
    assert any(t["id"] == reader_id for t in tokens)
    assert all("hash" not in t and "salt" not in t for t in tokens)
    cli("token", "revoke", reader_id, *pol, token=admin)
    cli("list", *pol, token=reader, code=2)

    cli("keygen", str(tmp_path / "new.key"))
    cli("rotate-key", "--new-key-file", str(tmp_path / "new.key"), *pol, token=admin)
    cli("list", *pol, token=pub, code=2)  # old key no longer opens the store
    cli.env["KERASGUARD_MASTER_KEY_FILE"] = str(tmp_path / "new.key")
    cli("list", *pol, token=pub)

    with sqlite3.connect(tmp_path / "store" / "store.db") as db:
        db.execute("update audit set result = 'ok' where result = 'denied'")
    assert cli("audit", "verify", *pol, token=admin, code=1) == ""


def test_cli_quarantine_exit_code(cli: Cli, tmp_path: Path) -> None:
    cli("keygen", str(tmp_path / "master.key"))
    admin = cli("init").strip()
    cli.policy.write_text(SCAN_POLICY_TOML)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00not a model" * 100)
    cli("push", str(junk), "--name", "j", "--version", "1", "--source", "https://huggingface.co/acme/j",
        "-n", "team", "--policy", str(cli.policy), token=admin, code=1)  # fmt: skip


def test_cli_errors_are_clear(cli: Cli, tmp_path: Path, model: Path) -> None:
    cli("list", "--token", "x", code=2)  # no key, no store
    cli("keygen", str(tmp_path / "master.key"))
    cli("keygen", str(tmp_path / "master.key"), code=2)  # never overwrites a key
    admin = cli("init").strip()
    cli("init", code=2)  # never re-initialises
    pol = ["--policy", str(cli.policy)]
    cli("push", str(model), "--name", "m", "--version", "1", "--source", "/home/me/m.keras", "-n", "team",
        *pol, token=admin, code=2)  # fmt: skip
    cli("push", str(model), "--name", "m", "--version", "1", "--source", "https://huggingface.co/acme/m",
        "-n", "team", "--provenance", "[1]", *pol, token=admin, code=2)  # fmt: skip
    cli("show", "nope", "1", "-n", "team", *pol, token=admin, code=2)
    cli("token", "create", "--role", "root", "-n", "team", *pol, token=admin, code=2)


def test_cli_without_the_store_extra(tmp_path: Path) -> None:
    """A plain install (no SQLAlchemy) gets a clear error naming the extra, not a traceback."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sqlalchemy'] = None; "
        f"sys.argv = ['kerasguard', 'store', 'list', '--token', 'x', '--store', {str(tmp_path)!r}]; "
        "from kerasguard.cli import main; main()"
    )
    env = dict(
        os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"), KERASGUARD_MASTER_KEY=""
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "needs the 'store' extra" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_token_revoke_takes_the_whole_token_and_never_prints_its_secret(cli: Cli, tmp_path: Path) -> None:
    cli("keygen", str(tmp_path / "master.key"))
    admin = cli("init").strip()
    pol = ["--policy", str(cli.policy)]
    reader = cli("token", "create", "--role", "reader", "-n", "team", *pol, token=admin).strip()
    token_id, secret = reader.split("_", 2)[1:]
    cli("token", "revoke", reader, *pol, token=admin)  # the whole token, as `token create` printed it
    said = cli.last.stdout + cli.last.stderr
    assert f"revoked token {token_id}" in said and secret not in said
    cli("list", *pol, token=reader, code=2)
    # nothing matches: the message names the id only
    unknown = f"kgs_{'0' * 16}_{secret}"
    cli("token", "revoke", unknown, *pol, token=admin, code=2)
    said = cli.last.stdout + cli.last.stderr
    assert f"no token with id {'0' * 16}" in said and secret not in said
    # not a token id at all (a secret pasted alone, a mangled token): refused without repeating it
    for garbage in (secret, f"kgs_NOTHEX_{secret}"):
        cli("token", "revoke", garbage, *pol, token=admin, code=2)
        said = cli.last.stdout + cli.last.stderr
        assert "not a token id" in said and secret not in said
    # the id alone still works, with or without its kgs_ prefix
    other = cli("token", "create", "--role", "reader", "-n", "team", *pol, token=admin).strip()
    cli("token", "revoke", f"kgs_{other.split('_')[1]}", *pol, token=admin)
    assert all(t["revoked"] for t in json.loads(cli("token", "list", "-n", "team", *pol, token=admin)))
    shown = " ".join(cli.runner.invoke(app, ["store", "token", "revoke", "-h"]).stdout.split())
    assert "the 16 hex characters between kgs_ and the second _" in shown and "the part after" not in shown


@pytest.mark.parametrize("made", [False, True], ids=["no-folder", "empty-folder"])
def test_cli_not_a_store_hint_is_a_command_that_works(cli: Cli, tmp_path: Path, made: bool) -> None:
    import shlex

    cli("keygen", str(tmp_path / "master.key"))
    node = tmp_path / "node 5"  # a space: the hint's path must be quoted
    if made:
        node.mkdir()
    cli("list", "--store", str(node), token="kgs_x", code=2)
    hint = cli.last.stderr.split("hint: ", 1)[1]
    assert "store.toml" in hint  # the other way in: a node of an existing store
    command = shlex.split(hint.split("`")[1])
    assert command[:3] == ["kerasguard", "store", "init"] and command[-2:] == ["--store", str(node)]
    admin = cli(*command[2:]).strip()
    assert admin.startswith("kgs_")
    assert "initialised store at" in cli.last.stderr


def test_database_driver_text_is_one_line_with_its_controls_still_escaped() -> None:
    from kerasguard.cli.app import error_text
    from kerasguard.errors import StoreError
    from kerasguard.store.db import driver_message

    class DriverError(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("wrapper text")
            self.orig = orig

    text = driver_message(DriverError(Exception("refused \x1b[31mred\r\n\tIs it running?\n\nhint: forged")))
    assert text == "refused \x1b[31mred; Is it running?; hint: forged"
    shown = error_text(StoreError(f"cannot reach the database: {text}"))
    assert shown == "cannot reach the database: refused \\x1b[31mred; Is it running?; hint: forged"


def test_cli_errors_never_print_a_token_given_in_the_wrong_place(cli: Cli, tmp_path: Path) -> None:
    """A token pasted as an extra argument, a role or a namespace: the error names its id only."""
    cli("keygen", str(tmp_path / "master.key"))
    admin = cli("init").strip()
    token_id, secret = admin.split("_", 2)[1:]
    pol = ["--policy", str(cli.policy)]
    for args in (
        ("list", admin),  # click's "unexpected extra argument"
        ("token", "create", "--role", admin, "-n", "team"),  # "unknown role ..."
        ("list", "-n", admin),  # "invalid namespace ..."
        ("token", "create", "--role", "reader", "-n", admin[:-5]),  # a mangled copy
    ):
        cli(*args, *pol, token=admin, code=2)
        said = cli.last.stdout + cli.last.stderr
        assert secret[:-5] not in said, said
        assert f"kgs_{token_id}_<secret hidden>" in said, said
    from kerasguard.cli.app import hide_token_secrets

    assert hide_token_secrets(f"kgs_{token_id} and 'kgs_' stay") == f"kgs_{token_id} and 'kgs_' stay"
    assert hide_token_secrets(f"x kgs_NOTHEX_{secret}") == "x kgs_<hidden>"
