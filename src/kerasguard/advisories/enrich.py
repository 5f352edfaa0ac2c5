"""Tie scanner findings to advisories: which known CVEs a file would trigger on the Keras that loads it.

A rule finding (say KG405, an HDF5 shape bomb) is a fact about the file. Whether it is also "CVE-2026-12570"
depends on the Keras version that will load the file (the policy's, else the installed one; never the
version the file claims in metadata.json). The scanner calls :func:`enrich_findings` after its rules ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kerasguard.findings import Finding, Location, sort_findings
from kerasguard.policy import Audit, Policy

if TYPE_CHECKING:
    from packaging.version import Version

    from kerasguard.advisories.database import AdvisoryDatabase
    from kerasguard.advisories.models import Advisory

# The advisory database (and packaging) is imported on first use: a scan that judges no Keras version
# (keras not installed, none in the policy) or reads no file never needs it.

RULE_ID = "KG601"
TITLE = "File content triggers a known advisory on the Keras that will load it"
CWE = "CWE-1395"  # dependency on a vulnerable third-party component


def rules_advisories(
    rule_id: str,
    keras_version: str,
    *,
    tf_keras: bool = False,
    artifact_format: str | None = None,
    db: AdvisoryDatabase | None = None,
) -> list[Advisory]:
    """Advisories that a finding of ``rule_id`` means this file would trigger on ``keras_version``.

    ``tf_keras`` judges against the tf-keras package instead of keras. ``artifact_format`` (the scanner's
    format name) narrows advisories that only concern one loading path (e.g. legacy .h5); None keeps them.
    """
    from kerasguard.advisories.database import cached_database
    from kerasguard.advisories.models import parse_version

    db = db or cached_database()
    package = "tf-keras" if tf_keras else "keras"
    version = parse_version(keras_version, f"{package} version")
    out: list[Advisory] = []
    for adv in db.for_package(package):
        if adv.withdrawn is not None or rule_id not in adv.rules:
            continue
        if artifact_format is not None and adv.formats and artifact_format not in adv.formats:
            continue
        entry = adv.package(package)
        if entry is not None and entry.affects_version(version):
            out.append(adv)
    return out


def _ids(adv: Advisory) -> tuple[str, ...]:
    return adv.cve_ids or (adv.id,)


class _Memo:
    """Answers that depend only on the database, the package, its version, the format and the accepted
    advisories, kept per database object: every file of a run asks the same questions (~1 ms each).

    One (database, answers) pair is swapped in whole, so threads never mix answers of two databases.
    """

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._state: tuple[AdvisoryDatabase | None, dict[tuple[Any, ...], Any]] = (None, {})

    def _answers(self, db: AdvisoryDatabase) -> dict[tuple[Any, ...], Any]:
        known, answers = self._state
        if known is not db or len(answers) > self.MAX_ENTRIES:
            answers = {}
            self._state = (db, answers)
        return answers

    def rule_advisories(
        self,
        db: AdvisoryDatabase,
        rule_id: str,
        package: str,
        keras_version: str,
        fmt: str | None,
        audit: Audit,
    ) -> tuple[Advisory, ...]:
        answers = self._answers(db)
        key = ("rule", rule_id, package, keras_version, fmt, audit)
        if key not in answers:
            answers[key] = tuple(
                a
                for a in rules_advisories(
                    rule_id, keras_version, tf_keras=package == "tf-keras", artifact_format=fmt, db=db
                )
                if audit.ignored(a.names) is None
            )
        found: tuple[Advisory, ...] = answers[key]
        return found

    def upgrade(self, db: AdvisoryDatabase, package: str, version: Version, audit: Audit) -> str | None:
        """``"keras 3.15.1"``: the smallest release out of every accepted advisory; None if none helps."""
        answers = self._answers(db)
        key = ("upgrade", package, str(version), audit)
        if key not in answers:
            from kerasguard.advisories.matcher import upgrade_plan

            active = [a for a in db.for_package(package) if audit.ignored(a.names) is None]
            plan = upgrade_plan(active, package, version)
            answers[key] = f"{package} {plan.target}" if plan.needed(version) else None
        target: str | None = answers[key]
        return target


_MEMO = _Memo()


def enrich_findings(
    findings: Iterable[Finding],
    keras_version: str | None,
    tf_keras: bool = False,
    *,
    artifact_format: str | None = None,
    policy: Policy | None = None,
    db: AdvisoryDatabase | None = None,
) -> tuple[Finding, ...]:
    """Findings with the CVE ids of the advisories they trigger added, plus one KG601 per file and advisory.

    Unknown Keras version (None): findings are returned unchanged. An invalid version string raises
    AdvisoryError rather than being guessed at.
    """
    items = list(findings)
    if keras_version is None:
        return tuple(items)
    from kerasguard.advisories.database import cached_database
    from kerasguard.advisories.models import parse_version

    policy = policy or Policy()
    db = db or cached_database()
    package = "tf-keras" if tf_keras else "keras"
    version = parse_version(keras_version, f"{package} version")
    per_file: dict[tuple[str, str], tuple[Advisory, list[Finding]]] = {}
    out: list[Finding] = []
    for f in items:
        if f.rule_id == RULE_ID:
            continue  # already enriched: recompute, never duplicate
        advisories = _MEMO.rule_advisories(
            db, f.rule_id, package, keras_version, artifact_format, policy.audit
        )
        ids = tuple(i for a in advisories for i in _ids(a))
        out.append(dataclasses.replace(f, cves=tuple(dict.fromkeys((*f.cves, *ids)))) if ids else f)
        for adv in advisories:
            per_file.setdefault((f.location.file, adv.id), (adv, []))[1].append(f)
    upgrade = _MEMO.upgrade(db, package, version, policy.audit) if per_file else None
    for (file, _), (adv, triggers) in per_file.items():
        rules = ", ".join(dict.fromkeys(t.rule_id for t in triggers))
        where = "; ".join(dict.fromkeys(str(t.location) for t in triggers[:3]))
        fix = f"upgrade to {upgrade} or later" if upgrade else "no release fixes it; do not load this file"
        out.append(
            Finding(
                rule_id=RULE_ID,
                severity=adv.severity,  # the policy's [severity] overrides: kerasguard.suppressions
                title=TITLE,
                message=f"on {package} {version} this file triggers {adv.id} ({adv.summary}); {fix}",
                location=Location(file),
                evidence=f"{rules} at {where}"[:300],
                cves=_ids(adv),
                cwe=CWE,
                remediation=adv.remediation or f"Upgrade {package}; do not load the file meanwhile.",
            )
        )
    return sort_findings(out)
