"""The pre-commit hook picks model files by content, so renaming a model does not bypass it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")


def hook() -> dict[str, object]:
    (entry,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert isinstance(entry, dict)
    return entry


def test_the_hook_is_given_every_file_not_a_name_pattern() -> None:
    h = hook()
    assert "files" not in h and "types_or" not in h
    assert h["types"] == ["file"]
    assert "--only-models" in str(h["entry"]).split()


def run_hook(files: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """What pre-commit runs: the entry with the staged file names appended."""
    argv = shlex.split(str(hook()["entry"]))
    assert argv[0] == "kerasguard"
    return subprocess.run(
        [sys.executable, "-m", "kerasguard", *argv[1:], *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )


@pytest.mark.keras
def test_a_lambda_model_renamed_model_bin_is_flagged(tmp_path: Path) -> None:
    from support import attacks, kerasfiles

    attacks.lambda_bytecode(kerasfiles.saved("mlp"), tmp_path / "model.bin")
    (tmp_path / "README.md").write_text("# notes\n")
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "data.csv").write_bytes(b"a,b\n1,2\n")
    done = run_hook(["README.md", "train.py", "model.bin", "data.csv"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "model.bin [keras] findings" in done.stdout and "KG101" in done.stdout
    assert "README.md" not in done.stdout  # skipped quietly, not an error
    assert "1 artifact(s) scanned" in done.stdout and "3 file(s) skipped" in done.stdout


def test_a_commit_without_models_passes(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# notes\n")
    (tmp_path / "empty").write_bytes(b"")
    done = run_hook(["README.md", "empty"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_file_named_like_a_model_is_still_judged(tmp_path: Path) -> None:
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    done = run_hook(["broken.keras"], tmp_path)
    assert done.returncode == 2  # unknown or unreadable: never skipped as "not a model"
