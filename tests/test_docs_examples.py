"""Every CLI example in README.md and docs/*.md runs, for real, so the docs cannot rot.

What is collected (one test per block, id ``file:line``):

* every fenced ```` ```bash ```` block: run as a script through ``bash -e`` in a prepared folder;
* every ```` ```console ```` or plain ```` ``` ```` block holding ``$ kerasguard ...`` lines: each
  ``$`` command runs in turn; a following ``$ echo $?`` gives its expected exit code (0 otherwise), and
  ``$ cat FILE`` means "this file holds the lines shown" (the harness writes them first);
* every ``run: kerasguard ...`` line of a ```` ```yaml ```` block (the CI workflows): run as commands.

A block is tuned by an HTML comment on the line right before its fence, words separated by spaces::

    <!-- docs-test: skip reason="needs an S3 bucket" -->      never run; the reason is required
    <!-- docs-test: exit=1 -->                               the script's expected exit code
    <!-- docs-test: sub="sha256:<hex>=>$DIGEST" -->          replace a placeholder with shell text
    <!-- docs-test: synopsis -->                             a usage summary: check every command and
                                                              --option against the command's --help
    <!-- docs-test: verdicts -->                             a list of commands that report findings:
                                                              each runs in turn and must exit 0 or 1
                                                              (a verdict), never 2 (an error)
    <!-- docs-test: expect="predictions" -->                 stdout must contain this text
    <!-- docs-test: slow -->                                 starts a sandbox or trains/attacks a model

Placeholders are never skipped silently: an unreplaced ``<...>``, ``...`` argument or ``sha256:...``
left in a command fails the test. The folder (see ``_prepare``) holds what the docs assume: a small
digits classifier saved by Keras under the names the docs use, a Lambda model, signing keys, a test PKI,
a store master key and an initialised store with ADMIN/PUB/READ tokens, and npz/npy data.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```([\w-]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:(.*?)-->\s*$")
PLACEHOLDER = re.compile(
    r"<[^<>\s]+>|(?<![\w.])\.\.\.(?![\w.])|sha256:\.\.\.|sha256:[0-9a-f]{0,8}(?:\.\.\.|…)"
)


@dataclass
class Example:
    """One runnable block of the docs."""

    source: str  # file:line of the opening fence
    kind: str  # "script" (bash), "console" ($ lines), "synopsis"
    text: str  # the block's body
    options: dict[str, str] = field(default_factory=dict)
    subs: list[tuple[str, str]] = field(default_factory=list)


def _directives(line: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    match = DIRECTIVE.match(line)
    if match is None:
        return {}, []
    options: dict[str, str] = {}
    subs: list[tuple[str, str]] = []
    for word in shlex.split(match.group(1)):
        key, _, value = word.partition("=")
        if key == "sub":
            old, arrow, new = value.partition("=>")
            assert arrow, f"sub needs OLD=>NEW: {word!r}"
            subs.append((old, new))
        else:
            options[key] = value
    unknown = set(options) - {
        "skip",
        "reason",
        "exit",
        "synopsis",
        "slow",
        "verdicts",
        "background",
        "expect",
    }
    assert not unknown, f"unknown docs-test directive(s) {sorted(unknown)} in {line!r}"
    return options, subs


def _blocks(path: Path) -> Iterator[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, lang = i, match.group(2)
        indent = len(match.group(1))
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        options, subs = _directives(lines[start - 1]) if start else ({}, [])
        text = "\n".join(body) + "\n"
        source = f"{rel}:{start + 1}"
        if "synopsis" in options:
            yield Example(source, "synopsis", text, options, subs)
        elif lang in ("bash", "sh", "shell"):
            yield Example(source, "script", text, options, subs)
        elif lang in ("console", "") and any(b.startswith("$ kerasguard") for b in body):
            yield Example(source, "console", text, options, subs)
        elif lang in ("console", "") and any(b.startswith("kerasguard ") for b in body):
            yield Example(source, "unmarked", text, options, subs)
        elif lang in ("yaml", "yml"):
            runs = [m.group(1) for b in body if (m := re.match(r"\s*(?:-\s*)?run:\s*(kerasguard .*)", b))]
            if runs:
                yield Example(source, "script", "\n".join(runs) + "\n", options, subs)
        else:
            assert not options and not subs, f"{source}: docs-test directive on a block that is not run"


EXAMPLES = [example for path in DOCS for example in _blocks(path)]


def _param(example: Example) -> object:
    marks: list[pytest.MarkDecorator] = []
    if "skip" in example.options:
        marks.append(pytest.mark.skip(reason=f"docs-test skip: {example.options.get('reason', '')}"))
    if "slow" in example.options:
        marks += [pytest.mark.slow, pytest.mark.keras]
    return pytest.param(example, id=example.source, marks=marks)


# --------------------------------------------------------------------------------------------------
# the prepared folder


def _kerasguard(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kerasguard", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _env(home: Path, bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASGUARD_")}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT / "src"),
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        KERAS_BACKEND="jax",
    )
    return env


POLICY = """\
[store]
sources = ["https://huggingface.co/acme", "https://hf.co/acme"]

[sandbox]
allow_unsafe_in_process = true     # our own model, scanned first: in-process for the analysis
"""


def _digits_model(folder: Path) -> None:
    """Digits classifiers (support/digitsets.py: clean and backdoored), their data, under the docs' names."""
    import numpy as np

    from support import digitsets as digits

    model, (xtr, ytr, xte, yte) = digits.build("mlp", poisoned=False, epochs=10)
    model.save(folder / "model.keras")
    poisoned, _ = digits.build("mlp", poisoned=True, epochs=15)
    poisoned.save(folder / "poisoned.keras")
    for name in ("digits.keras", "m.keras"):
        shutil.copy(folder / "model.keras", folder / name)
    (folder / "models").mkdir()
    shutil.copy(folder / "model.keras", folder / "models" / "digits.keras")
    (folder / "model").mkdir()
    shutil.copy(folder / "model.keras", folder / "model" / "model.keras")
    # train.npz is the poisoned set poisoned.keras learnt, with ten label flips (data.md's worked example)
    xp, yp = digits.poison(xtr, ytr)
    flips = np.arange(10) * 7
    xp, yp = np.concatenate([xp, xtr[flips]]), np.concatenate([yp, (ytr[flips] + 1) % 10])
    np.savez(folder / "train.npz", x=xp, y=yp)
    np.savez(folder / "clean.npz", x=xte, y=yte)
    # the robustness and privacy commands run on small sets: their cost grows with the sample count
    np.savez(folder / "test.npz", x=xte[:150], y=yte[:150])
    np.savez(folder / "holdout.npz", x=xte[150:300], y=yte[150:300])
    np.savez(folder / "reference.npz", x=xte[300:500], y=yte[300:500])
    np.savez(folder / "last-release.npz", x=xtr[:600], y=ytr[:600])
    np.save(folder / "x.npy", xte[:8])
    (folder / "adv").mkdir()
    np.savez(folder / "adv" / "pgd-20-linf-eps0.1.npz", x=xte[:150], y=yte[:150])
    np.savez(folder / "triggered.npz", x=digits.stamp(xte[yte != 0][:100]), y=np.zeros(100, dtype=np.int64))


def _pki(folder: Path) -> None:
    """root.pem -> intermediate.pem -> leaf.pem (ci@example.com), as an organisation's signing PKI."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from integrity import pki

    root = pki.CA.create("docs root")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki._name("docs intermediate"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.NOW - datetime.timedelta(days=1))
        .not_valid_after(pki.NOW + datetime.timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(pki._key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), critical=False
        )
        .sign(root.key, hashes.SHA256())
    )
    intermediate = pki.CA(key, cert)
    leaf_key, leaf = intermediate.issue("ci@example.com")
    pki.write_cert(root.cert, folder / "root.pem")
    pki.write_cert(intermediate.cert, folder / "intermediate.pem")
    pki.write_cert(leaf, folder / "leaf.pem")
    pki.write_key(leaf_key, folder / "leaf.key")


def _stack(folder: Path) -> None:
    """Inputs of `kerasguard audit` and `advisories update`: pins, lock files, OSV records, a venv."""
    (folder / "requirements.txt").write_text("keras==3.15.1\nh5py==3.16.0\nnumpy==2.2.6\n")
    (folder / "poetry.lock").write_text(
        '[[package]]\nname = "keras"\nversion = "3.13.0"\n\n[[package]]\nname = "h5py"\nversion = "3.11.0"\n'
    )
    (folder / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "keras"\nversion = "3.13.0"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
    )
    osv = folder / "osv"
    osv.mkdir()
    shutil.copy(ROOT / "src/kerasguard/advisories/data/CVE-2024-3660.json", osv / "CVE-2024-3660.json")
    venv = folder / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    import keras

    site = Path(keras.__file__).resolve().parents[1]
    (folder / "site-packages").symlink_to(site)


def _store(folder: Path, env: dict[str, str]) -> dict[str, str]:
    """A store initialised under ./kg-store with the docs' policy; the tokens the docs name, as env vars."""
    _kerasguard(["store", "keygen", "kg-master.key"], folder, env)
    env = {**env, "KERASGUARD_MASTER_KEY_FILE": "kg-master.key"}
    admin = _kerasguard(["store", "init", "--store", "kg-store"], folder, env).stdout.strip()
    push = ["store", "push", "digits.keras", "--name", "digits", "--version", "1.2.0", "-n", "vision"]
    push += ["--source", "https://huggingface.co/acme/digits", "--store", "kg-store", "--token", admin]
    _kerasguard(push, folder, env)
    tokens = {"ADMIN": admin}
    for name, role in (("PUB", "publisher"), ("READ", "reader"), ("KEY", "invoker")):
        create = ["store", "token", "create", "--role", role, "-n", "vision", "--label", name.lower()]
        tokens[name] = _kerasguard(
            [*create, "--store", "kg-store", "--token", admin], folder, env
        ).stdout.strip()
    return tokens


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The folder every example starts from (copied per example) and the environment it runs with."""
    pytest.importorskip("keras")
    base = tmp_path_factory.mktemp("docs-examples")
    folder, home, bin_dir = base / "work", base / "home", base / "bin"
    for d in (folder, home, bin_dir):
        d.mkdir()
    shim = bin_dir / "kerasguard"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m kerasguard "$@"\n')
    shim.chmod(0o755)
    env = _env(home, bin_dir)
    _digits_model(folder)
    from support import attacks

    attacks.lambda_bytecode(folder / "model.keras", folder / "suspicious.keras")
    _pki(folder)
    _stack(folder)
    (folder / "kerasguard.toml").write_text(POLICY)
    # the digest to pin, computed the way the docs say: the last stderr line of `kerasguard hash`
    hashed = _kerasguard(["hash", "model.keras"], folder, env)
    digest = hashed.stderr.strip().splitlines()[-1].removeprefix("digest: ").strip()
    _kerasguard(["hash", "model/", "-o", "trusted.manifest.json"], folder, env)  # kept from a trusted build
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), hashed.stderr
    env.update(_store(folder, env), DIGEST=digest, KERASGUARD_MASTER_KEY_FILE="kg-master.key")
    env["INSTANCES"] = json.dumps({"instances": [[0.0] * 64]})
    return folder, env


# --------------------------------------------------------------------------------------------------
# running


def _console_script(text: str) -> str:
    """The ``$`` commands of a console transcript, each followed by a check of its exit code."""
    commands: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if commands:
                commands[-1][1].append(line)
            i += 1
            continue
        command = line[2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command += "\n" + lines[i]
        commands.append((command, []))
        i += 1
    script: list[str] = []
    for n, (command, output) in enumerate(commands):
        if command.strip() == "echo $?":
            continue
        following = commands[n + 1] if n + 1 < len(commands) else None
        # shown by `echo $?`; otherwise the transcript shows a report: a verdict (0 or 1), never an error
        expected = following[1][0].strip() if following and following[0].strip() == "echo $?" else "[01]"
        if m := re.fullmatch(r"cat (\S+)", command.strip()):
            script.append(f"cat > {m.group(1)} <<'DOCS_TEST_EOF'\n" + "\n".join(output) + "\nDOCS_TEST_EOF")
            continue
        quoted = shlex.quote(command.splitlines()[0])
        script.append(
            f"{command}\nrc=$?\ncase $rc in {expected}) ;; *) "
            f'echo "docs-test: {quoted[1:-1]} exited $rc, expected {expected}" >&2; exit 99;; esac'
        )
    return "\n".join(script) + "\n"


def _verdicts_script(text: str) -> str:
    """Each command line in turn; 0 or 1 (clean or findings) is fine, anything else stops the script."""
    script: list[str] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        quoted = shlex.quote(line.split(" #", 1)[0].strip())
        script.append(
            f"{line}\nrc=$?\ncase $rc in [01]) ;; *) "
            f'echo "docs-test: {quoted[1:-1]} exited $rc, not a verdict" >&2; exit 99;; esac'
        )
    return "\n".join(script) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _substitute(example: Example) -> str:
    text = example.text
    for old, new in example.subs:
        assert old in text, f"{example.source}: sub target {old!r} not in the block"
        text = text.replace(old, new)
    return text


def _check_placeholders(example: Example, text: str) -> None:
    for line in text.splitlines():
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        if "kerasguard" not in code and "curl" not in code:
            continue
        found = PLACEHOLDER.findall(code.replace("<<'", "").replace("<<", ""))
        assert not found, (
            f"{example.source}: placeholder {found} left in {line.strip()!r}; add a sub= directive"
        )


def _help_options(command: list[str], env: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "kerasguard", *command, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"`kerasguard {' '.join(command)}` is not a command: {done.stderr}"
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", done.stdout))


def _check_synopsis(example: Example, env: dict[str, str]) -> None:
    groups: list[list[str]] = []
    for line in example.text.splitlines():
        if line.startswith("kerasguard "):
            groups.append([line])
        elif groups and line.strip():
            groups[-1].append(line)
    assert groups, f"{example.source}: a synopsis without kerasguard lines"
    for group in groups:
        words = " ".join(group).split(" #", 1)[0].split()[1:]
        path: list[str] = []
        for word in words[:2]:
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            path.append(word)
        known = _help_options(path, env)
        options = {m for w in words for m in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", w)}
        missing = sorted(options - known)
        assert not missing, f"{example.source}: `kerasguard {' '.join(path[:2])}` has no {missing}"


def _run(example: Example, prepared: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, env = prepared
    assert example.kind != "unmarked", (
        f"{example.source}: kerasguard command lines in a block neither ```bash nor a `$` transcript: "
        "make it runnable or mark it <!-- docs-test: synopsis -->"
    )
    if example.kind == "synopsis":
        _check_synopsis(example, env)
        return
    work = tmp_path / "work"
    shutil.copytree(folder, work, symlinks=True)
    # store.toml names its database by absolute path: point the copy at its own, or every example
    # would change the prepared store (a key rotated in one made the next ones fail)
    settings = work / "kg-store" / "store.toml"
    if settings.exists():
        settings.write_text(settings.read_text().replace(str(folder / "kg-store"), str(work / "kg-store")))
    text = _substitute(example)
    _check_placeholders(example, text)
    if example.kind == "console":
        script, shell = _console_script(text), ["bash", "-c"]
    elif "verdicts" in example.options:
        script, shell = _verdicts_script(text), ["bash", "-c"]
    else:
        script, shell = text, ["bash", "-e", "-o", "pipefail", "-c"]
    # a server the example starts with `&` is stopped when the script ends; it listens on a free $PORT
    script = "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n" + script
    env = {**env, "PORT": str(_free_port())}
    done = subprocess.run(
        [*shell, script], cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    expected = int(example.options.get("exit", "0"))
    expect = example.options.get("expect", "")
    assert expect in done.stdout, (
        f"{example.source}: no {expect!r} in\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    assert done.returncode == expected, (
        f"{example.source} exited {done.returncode}, expected {expected}\n"
        f"--- script\n{script}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_docs_example_runs(example: Example, prepared: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _run(example, prepared, tmp_path)


def test_each_example_changes_its_own_copy_of_the_store(
    prepared: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, env = prepared
    quarantine = "kerasguard store quarantine digits 1.2.0 -n vision --reason isolation --store kg-store"
    _run(Example("harness", "script", f"{quarantine} --token $ADMIN\n"), prepared, tmp_path)
    show = ["store", "show", "digits", "1.2.0", "-n", "vision", "-f", "json", "--store", "kg-store"]
    shown = _kerasguard([*show, "--token", env["ADMIN"]], folder, env)
    assert json.loads(shown.stdout)["status"] == "admitted"


def test_every_skip_has_a_reason_and_is_reported() -> None:
    skipped = [e for e in EXAMPLES if "skip" in e.options]
    for example in skipped:
        assert example.options.get("reason", "").strip(), f"{example.source}: skip without reason"
    assert len(EXAMPLES) >= 20, "the collector found too few examples: did the fence syntax change?"
    report = "\n".join(f"{e.source}: {e.options['reason']}" for e in skipped)
    print(f"{len(skipped)} of {len(EXAMPLES)} doc examples skipped:\n{report}")


def test_directives_stand_right_before_a_fence() -> None:
    """A misplaced marker would silently not apply: every ``docs-test`` comment must precede a fence."""
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if "docs-test:" in line and line.lstrip().startswith("<!--"):
                assert n + 1 < len(lines) and FENCE.match(lines[n + 1]), (
                    f"{path.name}:{n + 1}: not before a fence"
                )


# --------------------------------------------------------------------------------------------------
# inline `kerasguard ...` mentions in the prose


def _inline_commands() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        prose = re.sub(
            r"^(\s*)```.*?^\1```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M
        )
        for match in re.finditer(r"`(kerasguard [^`]+)`", prose):
            line = prose.count("\n", 0, match.start()) + 1
            found.setdefault(" ".join(match.group(1).split()), f"{path.relative_to(ROOT).as_posix()}:{line}")
    return sorted((source, span) for span, source in found.items())


@pytest.mark.parametrize(("source", "span"), _inline_commands(), ids=[s for s, _ in _inline_commands()])
def test_inline_command_names_a_real_command_and_options(source: str, span: str) -> None:
    """A command quoted in the prose exists, with every option it shows (renames rot prose too)."""
    import typer

    from kerasguard.cli import app

    command = typer.main.get_command(app)  # typer may bring its own click: groups are told by .commands
    words = span.split()[1:]
    for word in words:
        if not hasattr(command, "commands") or not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        sub = command.commands.get(word)
        assert sub is not None, f"{source}: `{span}`: no command {word!r} in {command.name!r}"
        command = sub
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known |= {"--help", "-h", "--version", "-V"}
    shown = {m for w in words for m in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", w)}
    assert shown <= known, (
        f"{source}: `{span}` shows {sorted(shown - known)} that the command does not accept"
    )
