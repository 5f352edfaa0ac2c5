"""KG9xx: the scanner could not fully judge the artifact. These findings make a scan incomplete."""

from __future__ import annotations

from collections.abc import Iterator

from kerasguard.findings import Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.rules.base import Check, Hit, Rule, RuleContext


def _problems(kinds: tuple[str, ...]) -> Check:
    def check(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
        for p in art.problems:
            if p.kind in kinds:
                yield Hit(p.location, p.message)

    return check


# The problem kinds each rule reports; every ProblemKind has exactly one rule (tested).
KINDS: dict[str, tuple[str, ...]] = {
    "KG901": ("corrupt",),
    "KG902": ("limit", "timeout"),
    "KG903": ("unknown_format", "unsupported"),
    "KG904": ("io",),
    "KG905": ("crash",),
    "KG906": ("internal",),
}

RULES: tuple[Rule, ...] = (
    Rule(
        id="KG901",
        name="unparseable-content",
        title="Content could not be parsed",
        severity=Severity.HIGH,
        cwe="CWE-20",
        rationale=(
            "A truncated, corrupt or malformed file cannot be judged. Loaders often parse "
            "differently from scanners, so a file the scanner cannot read may still load and run."
        ),
        remediation="Do not load the file. Obtain a fresh copy from a trusted source and re-scan.",
        check=_problems(KINDS["KG901"]),
    ),
    Rule(
        id="KG902",
        name="limit-exceeded",
        title="A scanner limit was exceeded",
        severity=Severity.HIGH,
        cwe="CWE-400",
        rationale=(
            "Part of the artifact was not analysed because it exceeded a size, depth, time or "
            "memory limit. Oversized structures are also a denial-of-service vector on their own."
        ),
        remediation=(
            "Treat the file as unsafe. If it is legitimately large, raise the limit in the policy "
            "([tool.kerasguard.limits]) and re-scan."
        ),
        check=_problems(KINDS["KG902"]),
    ),
    Rule(
        id="KG903",
        name="unknown-format",
        title="Unknown or unsupported format",
        severity=Severity.MEDIUM,
        cwe="CWE-20",
        rationale=(
            "kerasguard does not recognise this file or feature, so it cannot say it is safe. "
            "An unknown file is never reported clean."
        ),
        remediation="Check what the file is; load only formats kerasguard can scan.",
        check=_problems(KINDS["KG903"]),
    ),
    Rule(
        id="KG904",
        name="unreadable",
        title="File could not be read",
        severity=Severity.HIGH,
        cwe="CWE-703",
        rationale="An I/O error (permissions, a file changing or vanishing) stopped the scan.",
        remediation="Fix access to the file and re-scan; never load a file that was not scanned.",
        check=_problems(KINDS["KG904"]),
    ),
    Rule(
        id="KG905",
        name="parser-crash",
        title="A parser crashed on this input",
        severity=Severity.CRITICAL,
        cwe="CWE-119",
        rationale=(
            "A native parser (libhdf5 via h5py) crashed or was killed while reading metadata in its "
            "resource-limited child. The same bytes may crash or exploit any loader that parses them."
        ),
        remediation="Do not open the file with h5py or Keras. Report it to your security team.",
        check=_problems(KINDS["KG905"]),
    ),
    Rule(
        id="KG906",
        name="scanner-error",
        title="The scanner failed while judging this input",
        severity=Severity.HIGH,
        cwe="CWE-703",
        rationale=(
            "A reader, a rule, the advisory enrichment or the policy raised an unexpected error on this "
            "file, so part of it was never judged. A file the scanner could not judge is never clean: "
            "the scan is incomplete (exit code 2) whatever the severity thresholds or ignores say."
        ),
        remediation=(
            "Do not load the file. Report the message to the kerasguard maintainers with the file if "
            "you can share it, and re-scan with a fixed version."
        ),
        check=_problems(KINDS["KG906"]),
    ),
)


RULES_BY_KIND: dict[str, Rule] = {kind: rule for rule in RULES for kind in KINDS[rule.id]}
