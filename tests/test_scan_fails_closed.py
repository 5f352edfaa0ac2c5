"""Whatever the scanner cannot judge makes the file incomplete (exit 2): a rule, the enrichment or the
policy ignores that raise become KG906 with its metadata, with ``--jobs 1`` and in forked workers alike,
whatever ``fail_on`` says or the policy ignores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kerasguard.findings import Finding, Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.policy import Ignore, Policy
from kerasguard.rules import RULES_BY_ID, Rule, RuleContext
from kerasguard.scanning import engine as scanner
from kerasguard.scanning.engine import scan_many
from support.scanhelp import hits

BENIGN = Path(__file__).resolve().parent / "data" / "benign" / "keras-3.15.1-tensorflow"
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


CONFIG = (
    b'{"module": "keras", "class_name": "Sequential", "config": {"layers": [{"module": "keras.layers", '
    b'"class_name": "Lambda", "config": {"function": {"module": "os", "class_name": "function", '
    b'"config": "system"}}}]}}'
)


def models() -> list[Path]:
    found = sorted(p for p in BENIGN.iterdir() if p.suffix in (".keras", ".h5"))[:3]
    assert len(found) >= 2, found
    return found


# jobs=2 must really scan in forked workers, whatever threads earlier tests left in this process.
pytestmark = pytest.mark.usefixtures("fork_despite_threads")


@pytest.fixture
def broken_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """KG101's check raises on every file, as a rule bug would."""
    real = Rule.findings

    def findings(self: Rule, art: Artifact, ctx: RuleContext) -> Iterator[Finding]:
        if self.id == "KG101":
            raise ValueError("boom in KG101")
        return real(self, art, ctx)

    monkeypatch.setattr(Rule, "findings", findings)


def _assert_unjudged(report: scanner.ScanReport, files: list[Path], text: str) -> None:
    assert len(report.files) == len(files)
    kg906 = RULES_BY_ID["KG906"]
    for file in report.files:
        assert not file.complete, file
        found = hits(file, "KG906")
        assert found, file.findings
        assert text in found[0].message
        assert found[0].severity is kg906.severity and found[0].cwe == kg906.cwe
        assert found[0].remediation == kg906.remediation
    # exit 2 whatever the threshold: an unjudged file never passes a gate
    assert report.exit_code(Severity.CRITICAL) == 2


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_rule_that_raises_makes_the_file_incomplete(broken_rule: None, jobs: int) -> None:
    files = models()
    report = scan_many(files, Policy(), jobs=jobs)
    _assert_unjudged(report, files, "rule KG101 raised ValueError: boom in KG101")


@pytest.mark.parametrize("jobs", [1, 2])
def test_ignoring_the_finding_does_not_make_the_file_pass(broken_rule: None, jobs: int) -> None:
    files = models()
    policy = Policy(ignore=(Ignore(rule="KG906", reason="x"), Ignore(rule="KG905", reason="x")))
    report = scan_many(files, policy, jobs=jobs)
    _assert_unjudged(report, files, "rule KG101 raised")


@pytest.mark.parametrize("jobs", [1, 2])
def test_enrichment_that_raises_makes_the_file_incomplete(monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    def enrich(*args: object, **kwargs: object) -> None:
        raise RuntimeError("advisories broken")

    monkeypatch.setattr(scanner, "enrich_findings", enrich)
    files = models()
    report = scan_many(files, Policy(keras_version="3.15.1"), jobs=jobs)
    _assert_unjudged(report, files, "advisory enrichment raised RuntimeError: advisories broken")


@pytest.mark.parametrize("jobs", [1, 2])
def test_policy_ignores_that_raise_suppress_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, jobs: int
) -> None:
    def ignored(self: Policy, rule_id: str, path: str) -> None:
        raise KeyError("ignores broken")

    monkeypatch.setattr(Policy, "ignored", ignored)
    files = []
    for i in range(2):  # files with findings, so the ignores are consulted
        files.append(tmp_path / f"config{i}.json")
        files[-1].write_bytes(CONFIG)
    report = scan_many(files, Policy(), jobs=jobs)
    _assert_unjudged(report, files, "policy step raised KeyError")
    assert all(f.suppressed == 0 for f in report.files)
    assert all(hits(r, "KG201") for r in report.files)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_reader_that_raises_is_kg906_not_a_native_crash(monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    def open_artifact(*args: object, **kwargs: object) -> None:
        raise IndexError("reader bug")

    monkeypatch.setattr(scanner, "open_artifact", open_artifact)
    files = models()
    report = scan_many(files, Policy(), jobs=jobs)
    _assert_unjudged(report, files, "reader failed: IndexError: reader bug")


def test_every_problem_kind_has_one_rule() -> None:
    from typing import get_args

    from kerasguard.formats.artifact import ProblemKind
    from kerasguard.rules import incomplete

    assert set(incomplete.RULES_BY_KIND) == set(get_args(ProblemKind))
