"""Offline advisory database (OSV records) and the stack audit built on it.

Nothing here imports keras, tensorflow, torch or h5py: installed versions come from metadata files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerasguard._lazy import lazy_exports

if TYPE_CHECKING:
    from kerasguard.advisories.audit import AuditReport, Vulnerability, audit_environment, audit_inventory
    from kerasguard.advisories.database import AdvisoryDatabase, default_user_dir, load_database
    from kerasguard.advisories.models import Advisory, AffectedPackage, Interval, parse_advisory

# Imported on first use: the scanner imports ``kerasguard.advisories.enrich``, which runs this package
# first; it must not pull in the environment audit (importlib.metadata, packaging.markers) with it.
_LAZY = {
    "AuditReport": "kerasguard.advisories.audit",
    "Vulnerability": "kerasguard.advisories.audit",
    "audit_environment": "kerasguard.advisories.audit",
    "audit_inventory": "kerasguard.advisories.audit",
    "AdvisoryDatabase": "kerasguard.advisories.database",
    "default_user_dir": "kerasguard.advisories.database",
    "load_database": "kerasguard.advisories.database",
    "Advisory": "kerasguard.advisories.models",
    "AffectedPackage": "kerasguard.advisories.models",
    "Interval": "kerasguard.advisories.models",
    "parse_advisory": "kerasguard.advisories.models",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "Advisory",
    "AdvisoryDatabase",
    "AffectedPackage",
    "AuditReport",
    "Interval",
    "Vulnerability",
    "audit_environment",
    "audit_inventory",
    "default_user_dir",
    "load_database",
    "parse_advisory",
]
