"""scan(): discover artifacts, read them, run every rule, apply the policy, build the report.

The scan path never imports keras, tensorflow or torch and never unpickles or unmarshals.
A reader failure or a rule crash becomes a finding; nothing here returns a silent "clean".
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from packaging.version import InvalidVersion, Version

from kerasguard._version import __version__
from kerasguard.advisories.enrich import enrich_findings
from kerasguard.errors import PolicyError
from kerasguard.findings import FileReport, Finding, Location, ScanReport, Suppression, sort_findings
from kerasguard.formats.artifact import Artifact, ProblemKind
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.gcpause import gc_paused
from kerasguard.policy import Policy
from kerasguard.rules import RULES, Rule, RuleContext, incomplete
from kerasguard.scanning.discover import Target, discover
from kerasguard.suppressions import apply_policy

ProgressCallback = Callable[[str], None]


def rule_context(policy: Policy, *, files: bool = True) -> RuleContext:
    """The rules' view: the policy and the Keras version that will load the files (validated).

    The advisory database is loaded once here for the whole run, unless there are no ``files`` to judge.
    """
    keras_version = policy.keras_version or installed_keras_version()
    if keras_version is not None:
        try:
            Version(keras_version)
        except InvalidVersion:
            raise PolicyError(f"keras_version {keras_version!r} is not a valid PEP 440 version") from None
    advisories = None
    if files and keras_version is not None:
        from kerasguard.advisories.database import cached_database

        advisories = cached_database()
    return RuleContext(policy=policy, keras_version=keras_version, advisories=advisories)


@functools.cache
def installed_keras_version() -> str | None:
    """The installed keras version from its metadata file (keras itself is never imported), read once."""
    from kerasguard.distmeta import installed_version

    return installed_version("keras")


def run_rules(
    art: Artifact, ctx: RuleContext, rules: Sequence[Rule] = RULES
) -> tuple[list[Finding], list[Suppression]]:
    """All findings for one artifact, tied to the advisories they trigger on the Keras that will load it,
    after the policy's severity overrides and ignores; returns (findings, suppressions).

    Fails closed: whatever raises here (a rule, the enrichment, the policy step) is recorded on the
    artifact as an ``internal`` read problem, so it is reported as KG906 with that rule's metadata and the
    file is incomplete (exit 2) whatever ``fail_on`` or the policy says. The KG9xx rules run last, always,
    so they see those problems too; KG906 itself bypasses the policy step (it cannot be ignored).
    """
    produced: list[Finding] = []
    for rule in rules:
        if rule.id in _PROBLEM_RULE_IDS:
            continue
        try:
            produced += list(rule.findings(art, ctx))
        except Exception as exc:  # a rule bug must not hide the artifact
            art.problem(art.location, "internal", f"rule {rule.id} raised {_describe(exc)}")
    try:
        enriched = list(
            enrich_findings(
                produced, ctx.keras_version, artifact_format=art.format, policy=ctx.policy, db=ctx.advisories
            )
        )
    except Exception as exc:
        art.problem(art.location, "internal", f"advisory enrichment raised {_describe(exc)}")
        enriched = produced
    for rule in incomplete.RULES:
        try:
            enriched += list(rule.findings(art, ctx))
        except Exception as exc:  # the last resort: the rule's metadata, built here
            art.problem(art.location, "internal", f"rule {rule.id} raised {_describe(exc)}")
            enriched.append(_fallback_finding(rule, art, f"rule {rule.id} raised {_describe(exc)}"))
    unjudgeable = [f for f in enriched if f.rule_id == "KG906"]
    try:
        found, suppressions = apply_policy(
            [f for f in enriched if f.rule_id != "KG906"], ctx.policy, art.path
        )
    except Exception as exc:  # nothing is suppressed by a policy step that cannot be evaluated
        message = f"policy step raised {_describe(exc)}"
        art.problem(art.location, "internal", message)
        fallback = _fallback_finding(incomplete.RULES_BY_KIND["internal"], art, message)
        return [*enriched, fallback], []
    return [*found, *unjudgeable], suppressions


_PROBLEM_RULE_IDS = frozenset(r.id for r in incomplete.RULES)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _fallback_finding(rule: Rule, art: Artifact, message: str) -> Finding:
    """A finding of ``rule`` built without running its check (which is what failed)."""
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        title=rule.title,
        message=message,
        location=art.location,
        cwe=rule.cwe,
        remediation=rule.remediation,
    )


def scan_target(target: Target, read_ctx: ReadContext, rule_ctx: RuleContext) -> FileReport:
    """Scan one artifact. Never raises for bad input.

    The collector stays paused until what was read is freed: enabled while the artifact is alive, its
    first collection would walk every container the file's readers built, only to find them in use."""
    with gc_paused():
        return analyse_target(target, read_ctx, rule_ctx)[1]


def analyse_target(
    target: Target, read_ctx: ReadContext, rule_ctx: RuleContext
) -> tuple[Artifact, FileReport]:
    """Read and judge one artifact, returning what was read beside the report (for `inspect`)."""
    started = time.perf_counter()
    read_ctx.start_file()
    # The readers and rules build trees (configs, HDF5 objects) that reference counting frees: cyclic
    # collections during one file find nothing and cost up to a tenth of its scan (decision 60).
    with gc_paused():
        try:
            art = open_artifact(target.path, read_ctx, target.display)
        except Exception as exc:  # a reader bug: report, never crash the run
            art = Artifact(path=target.display, format="unknown", location=Location(target.display))
            art.problem(art.location, "internal", f"reader failed: {_describe(exc)}")
        findings, suppressions = run_rules(art, rule_ctx)
    return art, FileReport(
        path=target.display,
        format=art.format,
        findings=sort_findings(findings),
        complete=not art.problems,
        size=art.size,
        duration_s=time.perf_counter() - started,
        suppressed=_ignored(suppressions),
        suppressions=tuple(suppressions),
    )


def failed_report(target: Target, kind: ProblemKind, message: str, rule_ctx: RuleContext) -> FileReport:
    """The report of a file nobody could read (its scan worker died, say): KG9xx, never clean."""
    art = Artifact(path=target.display, format="unknown", location=Location(target.display))
    art.problem(art.location, kind, message)
    findings, suppressions = run_rules(art, rule_ctx)
    return FileReport(
        path=target.display,
        format=art.format,
        findings=sort_findings(findings),
        complete=False,
        suppressed=_ignored(suppressions),
        suppressions=tuple(suppressions),
    )


def _ignored(suppressions: Sequence[Suppression]) -> int:
    return sum(1 for s in suppressions if s.applied and s.kind == "ignore")


def scan_many(
    paths: Iterable[str | os.PathLike[str]],
    policy: Policy | None = None,
    *,
    jobs: int | Literal["auto"] = 1,
    progress: ProgressCallback | None = None,
    on_targets: Callable[[int], None] | None = None,
    only_models: bool = False,
) -> ScanReport:
    """Scan files and directories; see :func:`scan`.

    ``jobs`` > 1 scans in that many forked worker processes (Linux, no other thread running; else in
    this process); ``"auto"`` picks one per usable CPU, at most 8, for 8 targets or more. The report is
    the same whatever ``jobs`` is. ``only_models``: see :func:`discover`.
    """
    policy = policy or Policy()
    rule_context(policy, files=False)  # a bad policy fails before the walk
    targets, skipped, errors = discover(paths, only_models=only_models)
    rule_ctx = rule_context(policy, files=bool(targets))
    keras_version = rule_ctx.keras_version
    if on_targets:
        on_targets(len(targets))
    from kerasguard.scanning import (
        workers as scan_workers,
    )  # forks only for several files; imported here, not at start-up

    if jobs == "auto":
        jobs = scan_workers.auto_jobs(len(targets))
    if jobs > 1 and len(targets) > 1 and scan_workers.can_fork():
        reports = _scan_in_workers(targets, rule_ctx, jobs, progress)
    else:
        reports = _scan_sequentially(targets, policy, rule_ctx, progress)
    return ScanReport(
        files=tuple(reports),
        errors=tuple(errors),
        tool_version=__version__,
        target_keras_version=keras_version,
        skipped=tuple(skipped),
    )


def _scan_in_workers(
    targets: Sequence[Target], rule_ctx: RuleContext, jobs: int, progress: ProgressCallback | None
) -> list[FileReport]:
    from kerasguard.scanning import workers as scan_workers

    def scan_one(index: int, ctx: ReadContext) -> FileReport:
        return scan_target(targets[index], ctx, rule_ctx)

    def failed(index: int, kind: ProblemKind, message: str) -> FileReport:
        return failed_report(targets[index], kind, message, rule_ctx)

    displays = [t.display for t in targets]
    return scan_workers.scan_in_workers(displays, rule_ctx.policy.limits, jobs, scan_one, failed, progress)


def _scan_sequentially(
    targets: Sequence[Target], policy: Policy, rule_ctx: RuleContext, progress: ProgressCallback | None
) -> list[FileReport]:
    ctx = ReadContext(limits=policy.limits)
    reports = []
    try:
        for target in targets:
            reports.append(scan_target(target, ctx, rule_ctx))
            if progress:
                progress(target.display)
    finally:
        ctx.close()
    return reports


def analyse(path: str | os.PathLike[str], policy: Policy | None = None) -> tuple[Artifact, FileReport]:
    """Read and judge one artifact (file or model directory) without loading it."""
    policy = policy or Policy()
    rule_ctx = rule_context(policy)
    ctx = ReadContext(limits=policy.limits)
    try:
        return analyse_target(Target(Path(path), str(path)), ctx, rule_ctx)
    finally:
        ctx.close()


def scan(path: str | os.PathLike[str], policy: Policy | None = None) -> ScanReport:
    """Scan one file or directory and return the report. Never loads or runs the model."""
    return scan_many([path], policy)
