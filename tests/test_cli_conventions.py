"""CLI conventions every command keeps: hostile text escaped, errors exit 2 in one line, formats, help.

Text from a model file, a child process, a policy path or an argument reaches the terminal only escaped
(control characters as ``\\x1b``) and is never read as rich markup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.render.safe_text import markup_safe, printable

SRC = str(Path(__file__).resolve().parents[1] / "src")
runner = CliRunner()

# ESC sequences (clear screen, colour, OSC window title), a C1 CSI, a bidi override and rich markup.
HOSTILE = "n\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e[red]x[bold]"


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter with pipes (not a terminal), as CI runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kerasguard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": SRC, **(env or {})},
        check=False,
    )


def assert_no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text and "\u202e" not in text


# --- the helper ------------------------------------------------------------------------------------


def test_printable_shows_control_characters_as_escapes() -> None:
    assert (
        printable("a\x1b[31mb\rc\td\x9b\u202e\U000e0001") == "a\\x1b[31mb\\x0dc\\x09d\\x9b\\u202e\\U000e0001"
    )
    assert printable("line1\nline2") == "line1\\x0aline2"
    assert printable("line1\nline\x1b2", keep_newlines=True) == "line1\nline\\x1b2"
    assert printable("plain text é") == "plain text é"


def test_printable_escapes_format_characters_and_cuts_after_escaping() -> None:
    """Bidi isolates, zero-width and direction marks (category Cf) reorder or hide what is read."""
    hidden = "a\u2066b\u2067c\u2068d\u2069e\u200bf\u200eg\u200fh\u061ci\ufeffj\u00adk\u2028l"
    assert printable(hidden) == (
        "a\\u2066b\\u2067c\\u2068d\\u2069e\\u200bf\\u200eg\\u200fh\\u061ci\\ufeffj\\xadk\\u2028l"
    )
    assert printable("\x1b" * 10, limit=10) == "\\x1b\\x1...", "the limit counts escaped characters"
    assert printable("short", limit=10) == "short"


def test_markup_safe_is_shown_literally_by_rich() -> None:
    from rich.console import Console

    con = Console(width=200, record=True, no_color=True)
    con.print(f"[bold]{markup_safe('[/]a.pkl [red]x[/red] pip install kerasguard[sign]')}[/]")
    assert con.export_text().strip() == "[/]a.pkl [red]x[/red] pip install kerasguard[sign]"


# --- hostile names through scan, inspect and load --------------------------------------------------


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Keras model (scan-clean, safe mode) whose model and layer names carry ESC and markup."""
    import keras

    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, name="d" + HOSTILE)], name="m" + HOSTILE
    )
    path = tmp_path_factory.mktemp("hostile") / "hostile.keras"
    model.save(path)
    return path


@pytest.fixture
def evil_member(hostile_model: Path, tmp_path: Path) -> Path:
    """The same model with an extra member whose name is markup that crashes rich, and an ESC."""
    path = tmp_path / "evil.keras"
    path.write_bytes(hostile_model.read_bytes())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("[/]a\x1b[2J.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that runs a command
    return path


@pytest.mark.keras
def test_inspect_escapes_names_from_the_model(hostile_model: Path) -> None:
    result = runner.invoke(app, ["inspect", str(hostile_model)])
    assert result.exit_code == 0, result.output
    assert_no_raw_controls(result.stdout)
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e[red]x[bold]" in result.stdout  # shown, not obeyed
    assert "saved by Keras 3." in result.stdout and "(claimed by the file)" in result.stdout
    digest = json.loads(runner.invoke(app, ["inspect", str(hostile_model), "-f", "json"]).stdout)["digest"]
    assert f"digest: {digest}" in result.stdout and digest.startswith("sha256:")


@pytest.mark.keras
def test_scan_and_inspect_show_a_markup_member_name(evil_member: Path) -> None:
    scanned = runner.invoke(app, ["scan", str(evil_member)])
    assert scanned.exit_code == 1, scanned.output
    assert isinstance(scanned.exception, SystemExit)  # no MarkupError
    assert "[/]a\\x1b[2J.pkl" in scanned.stdout
    assert_no_raw_controls(scanned.stdout)
    inspected = runner.invoke(app, ["inspect", str(evil_member)])
    assert isinstance(inspected.exception, SystemExit)
    assert "[/]a\\x1b[2J.pkl" in inspected.stdout
    assert_no_raw_controls(inspected.stdout)


@pytest.mark.keras
def test_scan_escapes_a_hostile_layer_name_in_findings(hostile_model: Path, tmp_path: Path) -> None:
    from support import attacks

    code = {
        "class_name": "__lambda__",
        "config": {"code": attacks.LAMBDA_CODE, "defaults": None, "closure": None},
    }
    name = "L" + HOSTILE + "[/]"
    evil = attacks.edit_config(
        hostile_model,
        tmp_path / "l.keras",
        lambda c: attacks._layers(c).insert(1, attacks._lambda_layer(code, name)),
    )
    result = runner.invoke(app, ["scan", str(evil), "--isolated"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Lambda 'L" + printable(HOSTILE) + "[/]'" in result.stdout
    assert_no_raw_controls(result.stdout)


@pytest.mark.keras
def test_load_refusal_names_a_markup_member_without_crashing(evil_member: Path, tmp_path: Path) -> None:
    done = run_cli("load", str(evil_member), "--events", str(tmp_path / "events.jsonl"), "--isolated")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    assert "[/]a\\x1b[2J.pkl" in done.stderr
    assert_no_raw_controls(done.stderr + done.stdout)


@pytest.mark.slow
@pytest.mark.keras
def test_load_summary_from_the_sandbox_child_is_escaped(hostile_model: Path, tmp_path: Path) -> None:
    done = run_cli(
        "load", str(hostile_model), "--summary", "--isolated", "--events", str(tmp_path / "e.jsonl")
    )
    assert done.returncode == 0, done.stderr
    assert_no_raw_controls(done.stdout + done.stderr)
    assert "\\x1b[2J" in done.stdout and "[red]x[bold]" in done.stdout  # the summary and the model name
    assert "loaded " in done.stdout


def _in_process_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "kerasguard.toml"
    policy.write_text("[sandbox]\nallow_unsafe_in_process = true\n")
    return policy


@pytest.mark.keras
def test_probe_report_shows_a_hostile_model_name_escaped(hostile_model: Path, tmp_path: Path) -> None:
    """The probe had its own cleaner: ESC and U+202E became '?', U+200B and direction marks passed."""
    import numpy as np

    data, holdout = tmp_path / "d.npz", tmp_path / "h.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(0, 1, (40, 3)).astype("float32"), y=np.arange(40) % 2)
    np.savez(holdout, x=rng.uniform(0, 1, (40, 3)).astype("float32"), y=np.arange(40) % 2)
    args = ["probe", "privacy", str(hostile_model), str(data), str(holdout), "--references", "0"]
    result = runner.invoke(app, [*args, "--in-process", "--policy", str(_in_process_policy(tmp_path))])
    assert result.exit_code in (0, 1), result.output  # a verdict either way (random data, tiny model)
    assert_no_raw_controls(result.output)
    assert f"privacy probe: m{printable(HOSTILE)} " in result.stdout  # shown, not obeyed or lost


@pytest.mark.keras
def test_robustness_report_shows_hostile_file_names_escaped(hostile_model: Path, tmp_path: Path) -> None:
    """robustness replaced only C0/C1 controls (with '?'): a bidi override in a name reached the terminal."""
    import numpy as np

    model = tmp_path / f"r{HOSTILE}.keras"
    model.write_bytes(hostile_model.read_bytes())
    data = tmp_path / f"d{HOSTILE}.npz"
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (20, 3)).astype("float32"), np.arange(20) % 2
    np.savez(data, x=x, y=y, range=np.array([0.0, 1.0]))
    args = ["robustness", "evaluate", str(model), str(data), "--attack", "none", "--in-process"]
    result = runner.invoke(app, [*args, "--policy", str(_in_process_policy(tmp_path))])
    assert result.exit_code == 0, result.output
    assert_no_raw_controls(result.output)
    assert f"model {printable(model.name)} on {printable(data)} " in result.stdout


# --- errors: exit 2, one line, a hint that keeps its brackets ---------------------------------------


def test_policy_path_with_markup_is_an_error_not_a_crash(tmp_path: Path) -> None:
    for command in (["scan", str(tmp_path)], ["load", str(tmp_path / "m.keras")], ["inspect", str(tmp_path)]):
        result = runner.invoke(app, [*command, "--policy", "[/]x\x1b[2J.toml"])
        assert result.exit_code == 2, (command, result.output)
        assert isinstance(result.exception, SystemExit)
        assert "cannot read policy file [/]x\\x1b[2J.toml" in result.stderr


def test_unwritable_output_is_exit_2_without_traceback(tmp_path: Path) -> None:
    done = run_cli("scan", str(tmp_path), "-f", "json", "-o", "/nonexistent/x.json")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "error: cannot write /nonexistent/x.json: No such file or directory" in done.stderr


BLOCK_CRYPTOGRAPHY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["kerasguard", *sys.argv[1:]]
from kerasguard.cli import main
main()
"""


@pytest.mark.parametrize(
    "args",
    [
        ["keygen", "--private-key", "{tmp}/k.key", "--public-key", "{tmp}/k.pub"],
        ["sign", "{tmp}/m.bin", "--key", "{tmp}/k.key"],
        ["verify", "{tmp}/m.bin", "--key", "{tmp}/k.pub"],
    ],
)
def test_missing_sign_extra_names_the_extra(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"model")
    (tmp_path / "k.key").write_text("not a key")
    (tmp_path / "k.pub").write_text("not a key")
    argv = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_CRYPTOGRAPHY, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "needs the 'sign' extra" in done.stderr
    assert "pip install 'kerasguard[sign]'" in done.stderr


def test_unexpected_exception_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import kerasguard.scanning.engine

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom \x1b[2J [/]\nsecond line")

    monkeypatch.setattr(kerasguard.scanning.engine, "scan_many", broken)
    result = runner.invoke(app, ["scan", str(tmp_path)])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "error: unexpected RuntimeError: boom \\x1b[2J [/]\\x0asecond line" in result.stderr


def test_piped_errors_are_not_wrapped(tmp_path: Path) -> None:
    long = tmp_path / ("very-long-directory-name-" * 8) / "model.keras"
    done = run_cli("scan", str(long))
    assert done.returncode == 2
    assert f"{long}: no such file or directory" in done.stdout
    usage = run_cli("inspect", "-f", "sarif", str(long))
    assert usage.returncode == 2
    assert "Error: Invalid value for '--format' / '-f': 'sarif' is not one of 'text', 'json'." in usage.stderr
    hint = run_cli("scan", str(tmp_path), "--policy", str(long))
    assert f"error: cannot read policy file {long}: No such file or directory" in hint.stderr


# --- conventions -----------------------------------------------------------------------------------


def test_version_and_short_help() -> None:
    from kerasguard._version import __version__

    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"kerasguard {__version__}"
    for args in (["-h"], ["scan", "-h"], ["store", "push", "-h"]):
        shown = runner.invoke(app, args)
        assert shown.exit_code == 0 and "Usage:" in shown.stdout, args


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "x.keras"],
        ["rules"],
        ["load", "x.keras"],
        ["sandbox-info"],
        ["advisories", "list"],
        ["data", "check", "x.csv"],
        ["data", "backdoor", "m.keras", "d.npz"],
    ],
)
def test_commands_without_sarif_reject_it(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "-f", "sarif"])
    assert result.exit_code == 2
    assert "'sarif' is not one of 'text', 'json'" in result.output


def test_fail_on_lists_its_choices() -> None:
    for command in ("scan", "audit"):
        shown = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
        assert "critical|high|medium|low|info" in shown.stdout, command
    bad = runner.invoke(app, ["scan", ".", "--fail-on", "dire"])
    assert bad.exit_code == 2


@pytest.mark.keras
def test_quiet_scan_prints_only_files_with_findings(tmp_path: Path) -> None:
    from support import attacks, kerasfiles

    base = kerasfiles.saved("mlp")
    bad = attacks.lambda_bytecode(base, tmp_path / "bad.keras")
    (tmp_path / "clean.keras").write_bytes(base.read_bytes())
    loud = runner.invoke(app, ["scan", str(tmp_path), "--isolated"])
    assert "clean.keras" in loud.stdout
    quiet = runner.invoke(app, ["scan", str(tmp_path), "--quiet", "--isolated"])
    assert quiet.exit_code == loud.exit_code == 1
    assert "clean.keras" not in quiet.stdout and str(bad) in quiet.stdout
    assert "2 artifact(s) scanned" in quiet.stdout


@pytest.mark.parametrize(
    ("module", "extra"),
    [("fastapi", "serve"), ("uvicorn", "serve"), ("redis", "witness"), ("torch", "torch"), ("pyarrow", "ml")],
)
def test_every_optional_module_names_its_extra(module: str, extra: str) -> None:
    """A missing optional module names the extra that installs it (serve, witness and torch did not)."""
    from kerasguard.cli.app import error_text

    text = error_text(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert f"needs the '{extra}' extra" in text
    assert f"pip install 'kerasguard[{extra}]'" in text


def test_the_extras_named_for_missing_modules_exist() -> None:
    import tomllib

    from kerasguard.cli.app import EXTRA_FOR_MODULE

    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_FOR_MODULE.values()) <= set(extras)
