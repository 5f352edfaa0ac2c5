"""Allowlist entries are shown, and a policy found upwards cannot allowlist code execution (decision 37).

Regression: a ``kerasguard.toml`` found upwards from the working directory with
``[[allow.modules]] name = "*"`` (or ``[[allow.functions]] name = "*"``, or ``[[allow.pickle_globals]]``)
turned a model whose Lambda runs a function from another package, or a pickle importing ``os.system``,
into a pass, and the report did not say which entry cleared what.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.findings import ScanReport, Severity
from kerasguard.policy import Policy, load_policy
from kerasguard.render.sarif import render_sarif
from kerasguard.render.text import render_text
from kerasguard.scanning.engine import scan
from kerasguard.scanning.gate import gate
from kerasguard.scanning.workers import decode_report, encode_report
from support import attacks
from support.scanhelp import hits

runner = CliRunner()

# A NumPy testing helper that runs exec() on its argument: Keras < 3.9 and tf-keras import the module
# named in the config and call the function with the Lambda's arguments.
FOREIGN = {
    "class_name": "function",
    "module": "numpy.testing._private.utils",
    "config": "runstring",
    "registered_name": None,
}
WILDCARDS = {
    "modules": '[[allow.modules]]\nname = "*"\nreason = "we trust everything"\n',
    "functions": '[[allow.functions]]\nname = "*"\nreason = "we trust everything"\n',
}


@pytest.fixture(scope="module")
def foreign_lambda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model saved by Keras, with a Lambda whose function comes from outside Keras."""
    from support import kmodels

    folder = tmp_path_factory.mktemp("allow")
    kmodels.mlp().save(folder / "base.keras")
    layer: dict[str, Any] = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "registered_name": None,
        "config": {"name": "l", "function": FOREIGN, "arguments": {"astr": "import os; os.system('id')"}},
    }
    return attacks.edit_config(
        folder / "base.keras",
        folder / "foreign.keras",
        lambda c: c["config"]["layers"].insert(1, layer),
    )


def found_policy(folder: Path, text: str) -> Policy:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kerasguard.toml").write_text(text)
    policy = load_policy(search_from=folder)
    assert policy.found_implicitly
    return policy


def explicit_policy(folder: Path, text: str) -> Policy:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "team.toml").write_text(text)
    policy = load_policy(folder / "team.toml")
    assert not policy.found_implicitly
    return policy


@pytest.mark.keras
@pytest.mark.parametrize("kind", sorted(WILDCARDS))
def test_found_policy_cannot_allowlist_foreign_code(foreign_lambda: Path, tmp_path: Path, kind: str) -> None:
    policy = found_policy(tmp_path / "repo", 'keras_version = "3.8.0"\n' + WILDCARDS[kind])
    report = scan(foreign_lambda, policy)
    [kg201] = hits(report, "KG201")
    assert kg201.severity is Severity.CRITICAL
    assert not hits(report, "KG205")
    assert not gate(report, policy).passed
    [refused] = report.suppressions
    assert (refused.kind, refused.applied, refused.finding) == ("allow", False, kg201)
    assert f"allow.{kind} entry '*': we trust everything" in refused.reason
    assert "REFUSED" in render_text(report)


@pytest.mark.keras
@pytest.mark.parametrize("kind", sorted(WILDCARDS))
def test_explicit_policy_allowlists_and_the_report_says_what_it_cleared(
    foreign_lambda: Path, tmp_path: Path, kind: str
) -> None:
    policy = explicit_policy(tmp_path, 'keras_version = "3.8.0"\n' + WILDCARDS[kind])
    report = scan(foreign_lambda, policy)
    assert not hits(report, "KG201")
    [info] = hits(report, "KG205")
    assert info.severity is Severity.INFO
    assert gate(report, policy).passed
    [allowed] = report.suppressions
    assert (allowed.kind, allowed.applied) == ("allow", True)
    assert allowed.finding.rule_id == "KG201" and allowed.finding.severity is Severity.CRITICAL
    assert allowed.finding.location == info.location
    assert allowed.reason == f"allow.{kind} entry '*': we trust everything"
    # shown in text, JSON and SARIF, and carried unchanged from a scan worker
    text = render_text(report, width=200)
    assert "ALLOWED    CRITICAL KG201" in text and "we trust everything" in text
    [entry] = report.to_dict()["files"][0]["suppressions"]
    assert (entry["kind"], entry["rule_id"], entry["applied"]) == ("allow", "KG201", True)
    sarif = json.loads(render_sarif(report))
    cleared = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "KG201"]
    assert [s["status"] for r in cleared for s in r["suppressions"]] == ["accepted"]
    assert decode_report(json.loads(json.dumps(encode_report(report.files[0])))) == report.files[0]


@pytest.mark.keras
def test_found_policy_may_still_allowlist_a_custom_object(foreign_lambda: Path, tmp_path: Path) -> None:
    """With Keras >= 3.9 the function is the application's own code (KG205, medium): a found policy
    may allowlist that, and the report still shows the entry."""
    policy = found_policy(tmp_path / "repo", 'keras_version = "3.10.0"\n' + WILDCARDS["modules"])
    report = scan(foreign_lambda, policy)
    [info] = hits(report, "KG205")
    assert info.severity is Severity.INFO
    [allowed] = report.suppressions
    assert (allowed.kind, allowed.applied, allowed.finding.rule_id) == ("allow", True, "KG205")
    assert allowed.finding.severity is Severity.MEDIUM


@pytest.mark.keras
def test_cli_scan_in_a_repository_with_a_wildcard_policy_fails(
    foreign_lambda: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    found_policy(repo, 'keras_version = "3.8.0"\n' + WILDCARDS["modules"])
    monkeypatch.chdir(repo)
    result = runner.invoke(app, ["scan", str(foreign_lambda), "-f", "json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    rules = [f["rule_id"] for f in doc["files"][0]["findings"]]
    assert "KG201" in rules and "KG205" not in rules  # (and KG601: advisories of Keras 3.8.0)
    assert [(s["kind"], s["applied"]) for s in doc["files"][0]["suppressions"]] == [("allow", False)]


def test_pickle_globals_allowlist(tmp_path: Path) -> None:
    payload = tmp_path / "model.pkl"
    payload.write_bytes(b"cos\nsystem\n(S'id'\ntR.")  # os.system('id') when unpickled
    allow = '[[allow.pickle_globals]]\nname = "*"\nreason = "our pipeline"\n'

    found = scan(payload, found_policy(tmp_path / "repo", allow))
    [kg104] = hits(found, "KG104")
    assert kg104.severity is Severity.CRITICAL
    assert [(s.kind, s.applied, s.finding) for s in found.suppressions] == [("allow", False, kg104)]

    explicit = scan(payload, explicit_policy(tmp_path / "team", allow))
    assert not hits(explicit, "KG104")
    [allowed] = explicit.suppressions
    assert (allowed.kind, allowed.applied, allowed.finding.rule_id) == ("allow", True, "KG104")
    assert "os.system" in allowed.finding.message and "our pipeline" in allowed.reason
    assert isinstance(explicit, ScanReport) and gate(explicit, Policy()).passed
