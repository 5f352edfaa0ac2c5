"""The trust pipeline a pushed model passes before it may be served: proof of origin, then a scan.

It runs on the store's private plaintext copy (the same bytes that were hashed and encrypted in one
pass), so what was checked is exactly what is stored. A model that fails is not rejected: it is kept
in quarantine with the reasons and the report, for an admin to investigate or release.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from kerasguard.errors import KerasGuardError
from kerasguard.policy import Policy
from kerasguard.scanning.gate import gate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The outcome of admission: admitted, or quarantined with reasons."""

    admitted: bool
    reasons: tuple[str, ...] = ()
    signer: str | None = None
    report: dict[str, Any] | None = None
    checks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "admitted": self.admitted,
            "reasons": list(self.reasons),
            "signer": self.signer,
            "checks": dict(self.checks),
        }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def policy_document(policy: Policy) -> str:
    """The policy as canonical JSON: stored with each model so its admission can be reviewed later."""
    return json.dumps(_plain(policy), sort_keys=True, separators=(",", ":"))


def policy_digest(document: str) -> str:
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def signature_name(model_filename: str) -> str:
    """Where kerasguard.integrity looks for a file's signature: ``<file>.sig`` beside it."""
    return model_filename + ".sig"


def verify_signature(model: Path, signature: Path, policy: Policy, name: str, version: str) -> str:
    """Check the model's signature per policy and return the signer; raise KerasGuardError if it fails.

    This is the only place the store touches ``kerasguard.integrity``.
    """
    try:
        from kerasguard import integrity
    except ImportError:
        raise KerasGuardError("signature verification is not available in this installation") from None
    verified = integrity.verify(
        model, policy=policy, model_name=name, model_version=version, signature=signature
    )
    for attr in ("signer_name", "claimed_signer"):
        value = getattr(verified, attr, None)
        if value:
            return str(value)
    return "verified signer"


def scan_report(model: Path, policy: Policy) -> tuple[dict[str, Any] | None, list[str]]:
    """Scan; returns (report, reasons it fails). A scanner crash fails closed."""
    from kerasguard.scanning.engine import scan

    try:
        report = scan(model, policy)
    except Exception as exc:
        log.exception("scan of a pushed model crashed")
        return None, [f"scan failed: {type(exc).__name__}: {exc}"]
    return report.to_dict(), list(gate(report, policy).reasons())


def admit(
    model: Path,
    policy: Policy,
    *,
    name: str,
    version: str,
    digest: str,
    expect_digest: str | None,
    signature: Path | None,
) -> Decision:
    """Run every check (all of them, so the report is complete) and decide."""
    reasons: list[str] = []
    checks: dict[str, str] = {}
    signer: str | None = None
    if expect_digest is not None:
        if expect_digest.lower() != digest:
            reasons.append(f"digest {digest} does not match the expected {expect_digest}")
            checks["digest"] = "failed"
        else:
            checks["digest"] = "ok"
    elif policy.trust.require == "digest":
        reasons.append("policy requires an expected digest and none was given")
        checks["digest"] = "missing"
    if policy.trust.require == "signature" or policy.trust.models or signature is not None:
        if signature is None:
            reasons.append("policy requires a signature and the push has none")
            checks["signature"] = "missing"
        else:
            try:
                signer = verify_signature(model, signature, policy, name, version)
                checks["signature"] = "ok"
            except KerasGuardError as exc:
                reasons.append(f"signature check failed: {exc.message}")
                checks["signature"] = "failed"
            except Exception as exc:  # a verifier bug must not admit the model
                reasons.append(f"signature check crashed: {type(exc).__name__}: {exc}")
                checks["signature"] = "error"
    if policy.trust.allow_unsafe_skip_scan:
        log.warning("allow_unsafe_skip_scan: admitting %s:%s without a scan", name, version)
        checks["scan"] = "skipped (allow_unsafe_skip_scan)"
        return Decision(admitted=not reasons, reasons=tuple(reasons), signer=signer, checks=checks)
    report, scan_reasons = scan_report(model, policy)
    checks["scan"] = "failed" if scan_reasons else "ok"
    reasons.extend(scan_reasons)
    return Decision(admitted=not reasons, reasons=tuple(reasons), signer=signer, report=report, checks=checks)
