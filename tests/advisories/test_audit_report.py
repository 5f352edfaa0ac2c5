"""What a finding tells the user, policy acceptance, exit codes, and the three renderers."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from kerasguard.advisories.audit import audit_environment
from kerasguard.findings import Severity
from kerasguard.policy import Policy, policy_from_mapping
from kerasguard.render.audit import render_audit_json, render_audit_sarif, render_audit_text
from support.audit_fakes import SiteFactory


def test_a_finding_names_everything_needed_to_act(make_site: SiteFactory) -> None:
    site = make_site({"keras": "3.13.1"})
    report = audit_environment(site_packages=[site])
    v = next(v for v in report.vulnerabilities if v.advisory.id == "CVE-2026-0897")
    data = v.to_dict()
    assert data["package"] == "keras" and data["version"] == "3.13.1"
    assert data["aliases"] == ["GHSA-xfhx-r7ww-5995"]
    assert data["severity"] == "high"
    assert "KerasFileEditor" in data["trigger"]
    assert data["fixed_versions"] == ["3.12.1", "3.13.2"]
    assert data["fixed_on_release_line"] == ["3.13.2"]
    assert data["smallest_safe_upgrade"] == "3.15.1"
    assert data["corrections"] and "3.13.1" in data["corrections"][0]["text"]
    assert v.fix_text() == "fixed on the 3.13 line in 3.13.2"
    other = next(v for v in report.vulnerabilities if v.advisory.id == "CVE-2026-12480")
    assert other.fix_text() == "no fix on the 3.13 line; fixed in 3.14.1"


def test_real_test_environment() -> None:
    report = audit_environment()
    assert report.complete
    audited = {p.key: p for p in report.packages}
    assert audited["keras"].version == metadata.version("keras")
    assert audited["h5py"].version == metadata.version("h5py")
    if (audited["keras"].version, audited["h5py"].version) != ("3.15.1", "3.16.0"):
        pytest.skip("expectations below are for the project's pinned stack (keras 3.15.1, h5py 3.16.0)")
    assert [v for v in report.vulnerabilities if v.package.key == "keras"] == []
    h5py = [v for v in report.vulnerabilities if v.package.key == "h5py"]
    assert [v.advisory.id for v in h5py] == ["KGSA-2026-0007"]  # HDF5 2.0.0 bundled by h5py 3.16.0
    assert h5py[0].package.hdf5_version == "2.0.0"
    assert "bundled library" in (h5py[0].package.hdf5_source or "")
    assert h5py[0].upgrade is None and h5py[0].still_unfixed == ("KGSA-2026-0007",)
    assert report.exit_code() == 0  # medium is below the default threshold
    assert report.exit_code(Severity.MEDIUM) == 1


def test_policy_threshold_and_accepted_advisories(make_site: SiteFactory) -> None:
    site = make_site({"keras": "3.15.0", "h5py": "3.16.0"}, hdf5="2.0.0")
    strict = policy_from_mapping({"audit": {"fail_on": "medium"}})
    assert audit_environment(site_packages=[site], policy=strict).exit_code() == 1
    accepted = policy_from_mapping(
        {
            "audit": {
                "fail_on": "medium",
                "ignore": [
                    {"id": "KGSA-2026-0005", "reason": "assets are never extracted by our loader"},
                    {"id": "kgsa-2026-0007", "reason": "HDF5 files are scanned in a sandbox first"},
                ],
            }
        }
    )
    report = audit_environment(site_packages=[site], policy=accepted)
    assert report.vulnerabilities == () and report.exit_code() == 0
    assert {s.vulnerability.advisory.id for s in report.suppressed} == {"KGSA-2026-0005", "KGSA-2026-0007"}
    assert "sandbox" in render_audit_text(report)


def test_ignore_entries_need_reasons() -> None:
    from kerasguard.errors import PolicyError

    with pytest.raises(PolicyError, match="needs a non-empty 'reason'"):
        policy_from_mapping({"audit": {"ignore": [{"id": "CVE-2026-0897", "reason": " "}]}})
    with pytest.raises(PolicyError, match="on_vulnerable must be raise or warn"):
        policy_from_mapping({"audit": {"on_vulnerable": "ignore"}})


def test_renderers(make_site: SiteFactory) -> None:
    site = make_site({"keras": "3.13.1", "tf-keras": "2.21.0", "h5py": "3.15.1"}, hdf5="1.14.6")
    report = audit_environment(site_packages=[site], policy=Policy())
    text = render_audit_text(report)
    assert "keras 3.13.1" in text and "CRITICAL CVE-2026-1462 (GHSA-4f3f-g24h-fr8m; PYSEC-2026-2547)" in text
    assert "smallest safe upgrade: keras 3.15.1" in text
    assert "smallest safe upgrade: no tf-keras release fixes KGSA-2026-0001" in text
    assert "[bundles HDF5 1.14.6]" in text
    assert "smallest safe upgrade: h5py 3.16.0 (still affected by KGSA-2026-0007" in text
    doc = json.loads(render_audit_json(report))
    assert doc["kind"] == "audit" and doc["schema_version"] and doc["complete"] is True
    assert doc["summary"]["vulnerable_packages"] == 3
    sarif = json.loads(render_audit_sarif(report))
    run = sarif["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    assert {r["ruleId"] for r in run["results"]} == set(rule_ids)
    result = next(r for r in run["results"] if r["ruleId"] == "CVE-2026-1462")
    assert result["level"] == "error" and result["properties"]["smallest_safe_upgrade"] == "3.15.1"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "keras-3.13.1.dist-info"
    )
    relative = json.loads(render_audit_sarif(report, base=site))["runs"][0]
    hit = next(r for r in relative["results"] if r["ruleId"] == "CVE-2026-1462")
    assert hit["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "keras-3.13.1.dist-info",
        "uriBaseId": "%SRCROOT%",
    }
    prints = [json.dumps(r["partialFingerprints"]) for r in run["results"]]
    assert len(prints) == len(set(prints))


def test_incomplete_audit_is_exit_2_and_says_so(tmp_path: Path) -> None:
    report = audit_environment(requirements=[tmp_path / "absent.txt"])
    assert report.exit_code() == 2
    assert "audit INCOMPLETE" in render_audit_text(report)
    sarif = json.loads(render_audit_sarif(report))
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False
