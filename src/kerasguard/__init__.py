"""kerasguard: a security gate for Keras models.

Scanning never imports keras, tensorflow or torch and never unpickles anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerasguard._lazy import lazy_exports
from kerasguard._version import __version__
from kerasguard.errors import (
    AdvisoryError,
    AuditError,
    FormatError,
    IntegrityError,
    KerasGuardError,
    ModelError,
    PolicyError,
    SandboxError,
    StoreError,
    UnsafeModelError,
    UnsafeStackError,
    UntrustedSourceError,
)

if TYPE_CHECKING:
    from kerasguard.advisories.stack import UnsafeStackWarning, require_safe_stack
    from kerasguard.data.guard import TrainingGuard
    from kerasguard.findings import FileReport, Finding, Location, ScanReport, Severity
    from kerasguard.integrity.verifying import verify
    from kerasguard.loading.loader import load_model
    from kerasguard.policy import Policy, load_policy
    from kerasguard.sandbox.model import SandboxedModel
    from kerasguard.saving import save_model
    from kerasguard.scanning.engine import scan, scan_many

# Imported on first use: save_model needs keras, verify needs cryptography, load_model pulls in
# the sandbox machinery; ``import kerasguard`` must pull in none of them (and never keras). The
# scanner is lazy too, so that commands that do not scan (``kerasguard --help``) start fast.
_LAZY = {
    "FileReport": "kerasguard.findings",
    "Finding": "kerasguard.findings",
    "Location": "kerasguard.findings",
    "ScanReport": "kerasguard.findings",
    "Severity": "kerasguard.findings",
    "Policy": "kerasguard.policy",
    "load_policy": "kerasguard.policy",
    "scan": "kerasguard.scanning.engine",
    "scan_many": "kerasguard.scanning.engine",
    "require_safe_stack": "kerasguard.advisories.stack",
    "UnsafeStackWarning": "kerasguard.advisories.stack",
    "save_model": "kerasguard.saving",
    "verify": "kerasguard.integrity.verifying",
    "load_model": "kerasguard.loading.loader",
    "SandboxedModel": "kerasguard.sandbox.model",
    "TrainingGuard": "kerasguard.data.guard",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "AdvisoryError",
    "AuditError",
    "FileReport",
    "Finding",
    "FormatError",
    "IntegrityError",
    "KerasGuardError",
    "Location",
    "ModelError",
    "Policy",
    "PolicyError",
    "SandboxError",
    "SandboxedModel",
    "ScanReport",
    "Severity",
    "StoreError",
    "TrainingGuard",
    "UnsafeModelError",
    "UnsafeStackError",
    "UnsafeStackWarning",
    "UntrustedSourceError",
    "__version__",
    "load_model",
    "load_policy",
    "require_safe_stack",
    "save_model",
    "scan",
    "scan_many",
    "verify",
]
