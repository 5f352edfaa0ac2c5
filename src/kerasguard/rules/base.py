"""Rule metadata and the context rules run in.

A rule is metadata plus a pure function of an :class:`Artifact`. Rules never touch the file system.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kerasguard.escaping import printable
from kerasguard.findings import Allowance, Finding, Location, Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.policy import AllowEntry, Policy

if TYPE_CHECKING:
    from kerasguard.advisories.database import AdvisoryDatabase


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know besides the artifact: the policy and the Keras that will load it."""

    policy: Policy
    keras_version: str | None = None
    # The advisory database for the run, looked up once (None: the enrichment looks it up itself).
    advisories: AdvisoryDatabase | None = None


Check = Callable[[Artifact, RuleContext], Iterable["Hit"]]

ALLOW_KINDS = ("custom_objects", "modules", "functions", "pickle_globals")


def allowance(policy: Policy, entry: AllowEntry, applied: bool, cleared: Finding | None = None) -> Allowance:
    """The record of ``entry`` deciding a hit (kerasguard.suppressions turns it into a Suppression)."""
    kind = next((k for k in ALLOW_KINDS if entry in getattr(policy.allow, k)), "entries")
    return Allowance(kind, entry.name, entry.reason, applied, cleared)


@dataclass(frozen=True)
class Hit:
    """A rule's raw result; the scanner turns it into a :class:`Finding` with the rule's metadata."""

    location: Location
    message: str
    evidence: str = ""
    severity: Severity | None = None  # overrides the rule's default for this hit
    cves: tuple[str, ...] = ()  # added to the rule's CVEs for this hit
    allowance: Allowance | None = None  # the policy allowlist entry that decided this hit


@dataclass(frozen=True)
class Rule:
    """One detection rule. IDs never change meaning; retired IDs stay reserved."""

    id: str
    name: str
    title: str
    severity: Severity
    cwe: str
    rationale: str
    remediation: str
    check: Check
    cves: tuple[str, ...] = ()
    example: str = ""
    references: tuple[str, ...] = field(default=())

    def findings(self, artifact: Artifact, ctx: RuleContext) -> Iterator[Finding]:
        for hit in self.check(artifact, ctx):
            yield self.finding(hit)

    def finding(self, hit: Hit) -> Finding:
        """The finding of one hit, with this rule's metadata."""
        default = hit.severity if hit.severity is not None else self.severity
        cves = tuple(dict.fromkeys((*self.cves, *hit.cves)))
        return Finding(
            rule_id=self.id,
            severity=default,  # the policy's [severity] overrides: kerasguard.suppressions
            title=self.title,
            message=hit.message,
            location=hit.location,
            evidence=_clip(hit.evidence),
            cves=cves,
            cwe=self.cwe,
            remediation=self.remediation,
            allowance=hit.allowance,
        )


def _clip(text: str, limit: int = 300) -> str:
    """Evidence is attacker-controlled: keep it short and printable."""
    return printable(text, limit=limit)


MAX_HITS_PER_KIND = 20


def capped(hits: list[Hit], where: Location, what: str) -> Iterator[Hit]:
    """The first MAX_HITS_PER_KIND of ``hits``, then one summary hit: a hostile file must not flood
    the report."""
    yield from hits[:MAX_HITS_PER_KIND]
    if len(hits) > MAX_HITS_PER_KIND:
        yield Hit(where, f"{len(hits) - MAX_HITS_PER_KIND} more {what} not listed")
