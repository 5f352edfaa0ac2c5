"""The README's snippets work when pasted: the store quick start and the policy table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kerasguard.findings import Severity
from kerasguard.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]


def block(section: str, lang: str) -> str:
    """The first ``lang`` code block after the heading ``section``."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    match = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert match is not None
    return match.group(1)


def test_policy_snippet_pasted_into_kerasguard_toml_works(tmp_path: Path) -> None:
    (tmp_path / "kerasguard.toml").write_text(block("Policy", "toml"))
    policy = load_policy(search_from=tmp_path)
    assert policy.fail_on is Severity.HIGH and policy.keras_version == "3.13.0"
    assert policy.severity["KG306"] is Severity.INFO and policy.ignore[0].path == "vendor/*"


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_store_quick_start_runs_as_pasted(tmp_path: Path) -> None:
    from support import kerasfiles

    shutil.copy(kerasfiles.saved("mlp"), tmp_path / "digits.keras")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "kerasguard"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m kerasguard "$@"\n')
    shim.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KERASGUARD_")},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
    }
    script = "set -euo pipefail\n" + block("Model store", "bash")
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "serving" / "digits.keras").read_bytes() == (tmp_path / "digits.keras").read_bytes()
    assert "audit log intact" in done.stdout


def test_the_extras_table_lists_every_extra() -> None:
    import tomllib

    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = set(re.findall(r"^\| `([a-z0-9]+)` \|", (root / "README.md").read_text(), flags=re.M))
    assert set(extras) <= listed, sorted(set(extras) - listed)
