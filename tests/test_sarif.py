"""SARIF as GitHub code scanning needs it: URIs under %SRCROOT%, help links, distinct fingerprints.

No SARIF 2.1.0 JSON schema is available offline here, so the structure GitHub relies on is asserted
directly (https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.findings import FileReport, Finding, Location, ScanReport, Severity
from kerasguard.render.sarif import RULES_DOC_URI, render_sarif
from kerasguard.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def finding(file: str, rule: str = "KG306", message: str = "m", member: str | None = "x.txt") -> Finding:
    return Finding(rule, Severity.LOW, "title", message, Location(file, member=member))


def sarif(report: ScanReport, base: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_sarif(report, base=base))
    return doc


def report_of(*findings: Finding) -> ScanReport:
    files: dict[str, list[Finding]] = {}
    for f in findings:
        files.setdefault(f.location.file, []).append(f)
    return ScanReport(files=tuple(FileReport(p, "keras", tuple(fs)) for p, fs in files.items()))


def test_uris_are_relative_to_srcroot_and_never_climb(tmp_path: Path) -> None:
    base = tmp_path / "repo"
    (base / "models").mkdir(parents=True)
    inside_abs = str(base / "models" / "a b#1.keras")
    inside_dotted = str(base / "models" / ".." / "models" / "c.keras")
    outside = str(tmp_path / "elsewhere" / "d.keras")
    doc = sarif(report_of(finding(inside_abs), finding(inside_dotted), finding(outside)), base)
    run = doc["runs"][0]
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": base.as_uri() + "/"}}
    locations = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]]
    assert locations[0] == {"uri": "models/a%20b%231.keras", "uriBaseId": "%SRCROOT%"}
    assert locations[1] == {"uri": "models/c.keras", "uriBaseId": "%SRCROOT%"}
    assert locations[2] == {"uri": Path(outside).as_uri()}
    for loc in locations:
        assert ".." not in loc["uri"]
        if "uriBaseId" in loc:
            assert not loc["uri"].startswith("/") and urlparse(loc["uri"]).scheme == ""
        else:
            assert (
                urlparse(loc["uri"]).scheme == "file"
                and Path(unquote(urlparse(loc["uri"]).path)).is_absolute()
            )


def test_relative_paths_as_typed_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.keras").write_bytes(b"")  # unreadable: KG901
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    result = runner.invoke(app, ["scan", "../sub/m.keras", "-f", "sarif", "--isolated"])
    run = json.loads(result.stdout)["runs"][0]
    (res,) = run["results"]
    assert res["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": (tmp_path / "sub" / "m.keras").as_uri()
    }
    monkeypatch.chdir(tmp_path)
    run = json.loads(runner.invoke(app, ["scan", "./sub/m.keras", "-f", "sarif", "--isolated"]).stdout)[
        "runs"
    ][0]
    loc = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "sub/m.keras", "uriBaseId": "%SRCROOT%"}


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_rule_has_a_help_uri_into_the_rules_doc(tmp_path: Path) -> None:
    rules = sarif(report_of(), tmp_path)["runs"][0]["tool"]["driver"]["rules"]
    anchors = _anchors((ROOT / "docs" / "rules.md").read_text())
    assert len(rules) == len(RULES)
    for rule in rules:
        uri, _, anchor = rule["helpUri"].partition("#")
        assert uri == RULES_DOC_URI
        assert anchor in anchors, rule["id"]


def test_fingerprints_are_unique_per_result(tmp_path: Path) -> None:
    file = str(tmp_path / "m.keras")
    same_rule_same_file = [finding(file, message="first"), finding(file, message="second")]
    identical_twins = [finding(file, message="twin"), finding(file, message="twin")]
    other_member = [finding(file, message="first", member="y.txt")]
    results = sarif(report_of(*same_rule_same_file, *identical_twins, *other_member), tmp_path)["runs"][0][
        "results"
    ]
    prints = [json.dumps(r["partialFingerprints"], sort_keys=True) for r in results]
    assert len(prints) == 5 and len(set(prints)) == 5
    again = sarif(report_of(*same_rule_same_file, *identical_twins, *other_member), tmp_path)["runs"][0]
    assert [r["partialFingerprints"] for r in again["results"]] == [r["partialFingerprints"] for r in results]


def test_github_required_fields(tmp_path: Path) -> None:
    doc = sarif(report_of(finding(str(tmp_path / "m.keras"))), tmp_path)
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "kerasguard" and driver["rules"]
    for rule in driver["rules"]:
        assert rule["id"] and rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"]
        assert re.fullmatch(r"\d+(\.\d+)?", rule["properties"]["security-severity"])
    for res in run["results"]:
        assert res["ruleId"] in {r["id"] for r in driver["rules"]}
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["message"]["text"]
        assert res["level"] in ("error", "warning", "note", "none")
        region = res["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1
