"""KG601: a rule finding that a published advisory describes, on a Keras version inside its ranges."""

from __future__ import annotations

import pytest

from kerasguard.advisories.enrich import enrich_findings, rules_advisories
from kerasguard.errors import AdvisoryError
from kerasguard.findings import Finding, Location, Severity
from kerasguard.policy import policy_from_mapping
from kerasguard.rules import RULES_BY_ID
from support.scanhelp import hits

BOMB = Finding(
    "KG405",
    Severity.HIGH,
    "HDF5 shape bomb",
    "declares 8 GiB, stores 0 bytes",
    Location("m.keras", "model.weights.h5", h5path="/layers/dense/vars/0"),
)
LAMBDA_H5 = Finding("KG101", Severity.CRITICAL, "Lambda bytecode", "marshal code", Location("old.h5"))


def kg601(findings: tuple[Finding, ...]) -> dict[str, Finding]:
    return {f.cves[0]: f for f in hits(findings, "KG601")}


def test_rule_is_registered_and_documented() -> None:
    rule = RULES_BY_ID["KG601"]
    assert rule.name == "triggers-known-advisory" and rule.rationale and rule.remediation
    assert list(rule.check(None, None)) == []  # type: ignore[arg-type]  # produced by the post-pass only


def test_shape_bomb_on_an_affected_keras() -> None:
    out = enrich_findings([BOMB], "3.13.1")
    found = kg601(out)
    assert set(found) == {"CVE-2026-0897", "CVE-2026-12570"}
    f = found["CVE-2026-12570"]
    assert f.location == Location("m.keras") and f.severity is Severity.HIGH
    assert "on keras 3.13.1" in f.message and "upgrade to keras 3.15.1" in f.message
    assert "KG405 at m.keras!/model.weights.h5:/layers/dense/vars/0" in f.evidence
    original = hits(out, "KG405")[0]
    assert set(original.cves) == {"CVE-2026-0897", "CVE-2026-12570"}


def test_fixed_keras_adds_nothing() -> None:
    assert enrich_findings([BOMB], "3.15.1") == (BOMB,)
    assert kg601(enrich_findings([BOMB], "3.12.3")) == {}
    assert set(kg601(enrich_findings([BOMB], "3.13.2"))) == {"CVE-2026-12570"}  # 0897 fixed on 3.13.2


def test_loading_path_narrows_advisories() -> None:
    assert "CVE-2025-9905" in kg601(enrich_findings([LAMBDA_H5], "3.10.0", artifact_format="legacy_model"))
    assert "CVE-2025-9905" not in kg601(enrich_findings([LAMBDA_H5], "3.10.0", artifact_format="keras"))
    assert "CVE-2025-9905" in kg601(enrich_findings([LAMBDA_H5], "3.10.0"))  # unknown path: fail closed


def test_tf_keras_every_version() -> None:
    found = kg601(enrich_findings([LAMBDA_H5], "2.21.0", tf_keras=True))
    assert set(found) == {"KGSA-2026-0001"} and found["KGSA-2026-0001"].severity is Severity.CRITICAL
    assert "no release fixes it" in found["KGSA-2026-0001"].message


def test_unknown_version_and_bad_version() -> None:
    assert enrich_findings([BOMB], None) == (BOMB,)
    with pytest.raises(AdvisoryError, match="invalid version"):
        enrich_findings([BOMB], "three")


def test_policy_acceptance_and_idempotence() -> None:
    policy = policy_from_mapping({"audit": {"ignore": [{"id": "GHSA-74m6-m3xx-3vmj", "reason": "guarded"}]}})
    assert set(kg601(enrich_findings([BOMB], "3.13.1", policy=policy))) == {"CVE-2026-0897"}
    once = enrich_findings([BOMB], "3.13.1")
    assert enrich_findings(once, "3.13.1") == once


def test_rules_advisories_api() -> None:
    assert [a.id for a in rules_advisories("KG103", "3.13.1")] == ["CVE-2026-1462"]
    assert rules_advisories("KG103", "3.13.2") == []
    assert rules_advisories("KG999", "3.0.0") == []


@pytest.mark.keras
def test_real_attack_files_scanned_then_enriched(tmp_path_factory: pytest.TempPathFactory) -> None:
    import kerasguard
    from support import attacks, kmodels

    folder = tmp_path_factory.mktemp("kg601")
    base = folder / "mlp.keras"
    kmodels.mlp().save(base)
    traversal = attacks.zip_traversal(base, folder / "traversal.keras")
    npz = attacks.npz_raw_pickle(base, folder / "npz.keras")
    expected = {
        (traversal, "3.13.1"): {"CVE-2026-12479", "GHSA-hqp4-2352-xf5r"},
        (traversal, "3.12.2"): {"CVE-2026-12479"},  # the zip filter fix was backported to 3.12.2
        (traversal, "3.15.0"): set(),
        (npz, "3.8.0"): {"KGSA-2026-0002"},
        (npz, "3.9.0"): set(),
    }
    for (path, version), ids in expected.items():
        report = kerasguard.scan(path).files[0]
        out = enrich_findings(report.findings, version, artifact_format=report.format)
        assert set(kg601(out)) == ids, (path.name, version)
