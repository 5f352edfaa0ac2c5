"""Policy suppressions are never silent, and a policy found upwards cannot clear code execution.

A ``kerasguard.toml`` anywhere above the working directory is picked up by every scan; anyone who can
write to the repository can add one. It may still ignore or downgrade ordinary findings (shown in every
report format), but not a critical KG1xx/KG2xx finding: that needs an explicit ``--policy``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.errors import PolicyError
from kerasguard.policy import load_policy

pytestmark = pytest.mark.keras

runner = CliRunner()

SILENCE_LAMBDA = """
[[ignore]]
rule = "KG101"
reason = "we trust our own models"

[severity]
KG101 = "info"
KG306 = "info"
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with a Lambda model two folders below a kerasguard.toml that silences KG101."""
    from support import attacks, kerasfiles

    (tmp_path / "kerasguard.toml").write_text(SILENCE_LAMBDA)
    models = tmp_path / "models" / "v1"
    models.mkdir(parents=True)
    base = kerasfiles.saved("mlp")
    attacks.lambda_bytecode(base, models / "lambda.keras")
    attacks.with_member(base, models / "extra.keras", "notes.txt", b"hello")  # KG306, low
    monkeypatch.chdir(models)
    return tmp_path


def scan_json(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["scan", *args, "-f", "json"])
    return result.exit_code, json.loads(result.stdout)


def test_a_found_policy_cannot_clear_a_lambda_model(repo: Path) -> None:
    code, doc = scan_json("lambda.keras")
    assert code == 1
    (file,) = doc["files"]  # type: ignore[misc]
    assert [(f["rule_id"], f["severity"]) for f in file["findings"]] == [("KG101", "critical")]
    refused = {(s["kind"], s["applied"]) for s in file["suppressions"]}
    assert refused == {("severity", False), ("ignore", False)}
    assert all(s["policy"] == str(repo / "kerasguard.toml") for s in file["suppressions"])
    text = runner.invoke(app, ["scan", "lambda.keras"]).stdout
    assert "REFUSED" in text and "we trust our own models" in text and "CRITICAL" in text
    assert "2 suppression(s) REFUSED" in text


def test_a_found_policy_still_suppresses_ordinary_findings_visibly(repo: Path) -> None:
    code, doc = scan_json("extra.keras")
    (file,) = doc["files"]  # type: ignore[misc]
    assert code == 0
    assert [(f["rule_id"], f["severity"]) for f in file["findings"]] == [("KG306", "info")]
    (down,) = file["suppressions"]
    assert (down["kind"], down["applied"], down["severity"], down["new_severity"]) == (
        "severity",
        True,
        "low",
        "info",
    )
    assert doc["summary"]["suppressed"] == 1  # type: ignore[index]
    assert "DOWNGRADED LOW -> INFO KG306" in runner.invoke(app, ["scan", "extra.keras"]).stdout


def test_isolated_ignores_the_found_policy(repo: Path) -> None:
    code, doc = scan_json("extra.keras", "--isolated")
    assert code == 0
    (file,) = doc["files"]  # type: ignore[misc]
    assert [(f["rule_id"], f["severity"]) for f in file["findings"]] == [("KG306", "low")]
    assert file["suppressions"] == []
    both = runner.invoke(
        app, ["scan", "extra.keras", "--isolated", "--policy", str(repo / "kerasguard.toml")]
    )
    assert both.exit_code == 2


def test_an_explicit_policy_may_suppress_and_every_format_shows_it(repo: Path) -> None:
    policy = str(repo / "kerasguard.toml")
    code, doc = scan_json("lambda.keras", "--policy", policy)
    (file,) = doc["files"]  # type: ignore[misc]
    assert code == 0 and file["findings"] == [] and file["suppressed"] == 1
    kinds = {(s["kind"], s["applied"]) for s in file["suppressions"]}
    assert kinds == {("severity", True), ("ignore", True)}
    ignored = next(s for s in file["suppressions"] if s["kind"] == "ignore")
    assert ignored["finding"]["rule_id"] == "KG101" and ignored["reason"] == "we trust our own models"

    text = runner.invoke(app, ["scan", "lambda.keras", "--policy", policy, "--quiet"]).stdout
    assert "SUPPRESSED" in text and "KG101" in text and "ignored by" in text  # shown even with --quiet

    sarif = json.loads(runner.invoke(app, ["scan", "lambda.keras", "--policy", policy, "-f", "sarif"]).stdout)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "KG101"
    assert result["suppressions"] == [
        {"kind": "external", "status": "accepted", "justification": f"{policy}: we trust our own models"}
    ]


def test_sarif_marks_a_refused_suppression_as_rejected(repo: Path) -> None:
    sarif = json.loads(runner.invoke(app, ["scan", "lambda.keras", "-f", "sarif"]).stdout)
    (result,) = sarif["runs"][0]["results"]
    assert result["level"] == "error"
    assert {s["status"] for s in result["suppressions"]} == {"rejected"}


def test_policy_files_cannot_claim_to_be_explicit(tmp_path: Path) -> None:
    bad = tmp_path / "kerasguard.toml"
    bad.write_text("found_implicitly = false\n")
    with pytest.raises(PolicyError, match="unknown policy key 'found_implicitly'"):
        load_policy(bad)
    bad.write_text('fail_on = "low"\n')
    assert load_policy(search_from=tmp_path / "sub").found_implicitly is True
    assert load_policy(bad).found_implicitly is False


@pytest.mark.parametrize("found", [True, False])
def test_a_found_policy_cannot_downgrade_or_ignore_a_high_code_execution_finding(
    tmp_path: Path, found: bool
) -> None:
    """The line is high, as for allowlist entries (decision 37): a high KG201 (foreign code, Keras version
    unknown) must not be lowered to info or ignored by a kerasguard.toml someone committed upwards."""
    import dataclasses

    from kerasguard.findings import Finding, Location, Severity
    from kerasguard.suppressions import apply_policy

    (tmp_path / "kerasguard.toml").write_text(
        '[severity]\nKG201 = "info"\n\n[[ignore]]\nrule = "KG201"\nreason = "ours"\n'
    )
    policy = load_policy(search_from=tmp_path) if found else load_policy(tmp_path / "kerasguard.toml")
    assert policy.found_implicitly is found
    finding = Finding("KG201", Severity.HIGH, "foreign code", "m", Location(file="m.keras"))
    kept, record = apply_policy([dataclasses.replace(finding)], policy, "m.keras")
    if found:
        assert kept == [finding] and {(s.kind, s.applied) for s in record} == {
            ("severity", False),
            ("ignore", False),
        }
    else:
        assert kept == [] and all(s.applied for s in record)
