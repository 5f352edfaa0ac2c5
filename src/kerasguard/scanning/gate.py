"""The gate: does a scan report let the file through under a policy?

One decision for every caller that acts on a scan (``kerasguard scan`` and ``inspect`` exit codes,
``load_model``, store admission), so they cannot drift apart. The decision itself is
:func:`kerasguard.findings.decide` (the data layer, so ``ScanReport.exit_code`` can use it too);
this module applies the policy's threshold.
"""

from __future__ import annotations

from kerasguard.findings import FileReport, GateVerdict, ScanReport, Severity, decide
from kerasguard.policy import Policy

__all__ = ["GateVerdict", "gate"]


def gate(report: ScanReport | FileReport, policy: Policy, *, fail_on: Severity | None = None) -> GateVerdict:
    """Pass, or refuse with the reasons: findings at or above the threshold, or an incomplete scan.

    The threshold is the policy's ``fail_on`` unless the caller overrides it (``scan --fail-on``).
    """
    return decide(report, policy.fail_on if fail_on is None else fail_on)
