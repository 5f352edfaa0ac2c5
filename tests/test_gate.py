"""One gate: ``scan`` and ``inspect`` exit codes, ``load_model`` and store admission decide alike.

Each caller used to write the pass/refuse decision itself. They agreed on pass or refuse, not on why:
for a file whose scan is incomplete *and* has a finding over the threshold, the exit code said
"incomplete" (2), ``load_model`` named only the findings and said nothing of the incomplete scan, and
the store listed both. Now all four ask :func:`kerasguard.scanning.gate.gate`, and every refusal carries every
reason.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kerasguard import load_model
from kerasguard.cli import app
from kerasguard.errors import UnsafeModelError
from kerasguard.findings import FileReport, Finding, Location, ScanReport, Severity
from kerasguard.policy import Policy
from kerasguard.scanning.gate import gate
from kerasguard.store.admission import scan_report

runner = CliRunner()


def finding(rule_id: str, severity: Severity, path: str) -> Finding:
    return Finding(rule_id, severity, f"{rule_id} title", f"{rule_id} message", Location(path))


def file_report(path: str, *found: tuple[str, Severity], complete: bool = True) -> FileReport:
    return FileReport(path, "keras_zip", tuple(finding(r, s, path) for r, s in found), complete=complete)


# (name, findings, complete, exit code at fail_on=high)
CASES: list[tuple[str, tuple[tuple[str, Severity], ...], bool, int]] = [
    ("clean", (), True, 0),
    ("below-threshold", (("KG205", Severity.MEDIUM),), True, 0),
    ("at-threshold", (("KG204", Severity.HIGH),), True, 1),
    ("critical", (("KG101", Severity.CRITICAL),), True, 1),
    ("incomplete", (("KG903", Severity.MEDIUM),), False, 2),
    ("incomplete-and-critical", (("KG101", Severity.CRITICAL), ("KG901", Severity.HIGH)), False, 2),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "found", "complete", "code"), CASES, ids=IDS)
def test_verdict(name: str, found: tuple[tuple[str, Severity], ...], complete: bool, code: int) -> None:
    single = file_report("m.keras", *found, complete=complete)
    verdict = gate(single, Policy())
    assert verdict.exit_code == code
    assert verdict.passed is (code == 0)
    assert [f.rule_id for f in verdict.blocking] == [r for r, s in found if s >= Severity.HIGH]
    assert verdict.incomplete is (not complete)
    # a FileReport and the ScanReport holding it get the same answer, and exit_code is the gate's
    whole = ScanReport(files=(single,))
    assert gate(whole, Policy()) == verdict
    assert whole.exit_code(Severity.HIGH) == code
    # the reasons name everything that refuses the file
    reasons = " | ".join(verdict.reasons())
    assert ("at or above high" in reasons) is bool(verdict.blocking)
    assert ("scan incomplete" in reasons) is (not complete)


def test_threshold_comes_from_the_policy_unless_overridden() -> None:
    report = file_report("m.keras", ("KG205", Severity.MEDIUM))
    assert gate(report, Policy()).passed
    assert not gate(report, Policy(fail_on=Severity.MEDIUM)).passed
    assert gate(report, Policy(fail_on=Severity.MEDIUM), fail_on=Severity.CRITICAL).passed


def test_scan_errors_refuse_even_without_files() -> None:
    verdict = gate(ScanReport(files=(), errors=("missing.keras: no such file",)), Policy())
    assert verdict.exit_code == 2 and "missing.keras" in verdict.reasons()[0]


# -- the four callers ----------------------------------------------------------------------------


def _patch_scan(monkeypatch: pytest.MonkeyPatch, report: FileReport) -> None:
    import kerasguard.inspect
    import kerasguard.scanning.engine

    def scan(path: Any, policy: Any = None) -> ScanReport:
        return ScanReport(files=(report,))

    def scan_many(paths: Any, policy: Any = None, **kwargs: Any) -> ScanReport:
        return ScanReport(files=(report,))

    def inspect_model(path: Any, policy: Any = None) -> Any:
        return types.SimpleNamespace(report=report, to_dict=lambda: {"report": report.to_dict()})

    monkeypatch.setattr(kerasguard.scanning.engine, "scan", scan)
    monkeypatch.setattr(kerasguard.scanning.engine, "scan_many", scan_many)
    monkeypatch.setattr(kerasguard.inspect, "inspect_model", inspect_model)


def _load(model: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``load_model``'s answer: 'loaded', or the refusal message."""
    import kerasguard.loading.loader

    def fake_sandbox(copy: Any, *args: Any) -> Any:
        copy.remove()
        return types.SimpleNamespace()

    monkeypatch.setattr(kerasguard.loading.loader, "_load_sandboxed", fake_sandbox)
    try:
        load_model(model, policy=Policy())
    except UnsafeModelError as exc:
        return exc.message
    return "loaded"


@pytest.mark.parametrize(("name", "found", "complete", "code"), CASES, ids=IDS)
def test_all_callers_agree(
    name: str,
    found: tuple[tuple[str, Severity], ...],
    complete: bool,
    code: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tmp_path / "m.keras"
    model.write_bytes(b"the scan is replaced in this test")
    report = file_report(str(model), *found, complete=complete)
    _patch_scan(monkeypatch, report)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('fail_on = "high"\n')
    scanned = runner.invoke(app, ["scan", str(model), "-f", "json", "--policy", str(policy_file)])
    inspected = runner.invoke(app, ["inspect", str(model), "-f", "json", "--policy", str(policy_file)])
    assert (scanned.exit_code, inspected.exit_code) == (code, code), scanned.output + inspected.output
    assert json.loads(inspected.stdout)["report"]["complete"] is complete

    loaded = _load(model, monkeypatch)
    _, reasons = scan_report(model, Policy())
    if code == 0:
        assert loaded == "loaded" and reasons == []
        return
    assert loaded != "loaded" and reasons
    blocking = any(s >= Severity.HIGH for _, s in found)
    # every refusal names every reason, in the loader's message and in the store's reasons
    assert ("at or above high" in loaded) is blocking
    assert any("at or above high" in r for r in reasons) is blocking
    assert ("incomplete" in loaded or "could not check everything" in loaded) is (not complete)
    assert any("scan incomplete" in r for r in reasons) is (not complete)
