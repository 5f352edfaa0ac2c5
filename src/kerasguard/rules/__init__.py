"""The rule registry: an explicit tuple, ordered by ID."""

from __future__ import annotations

from kerasguard.rules import (
    archive,
    code_exec,
    hdf5,
    incomplete,
    provenance,
    references,
    resources,
)
from kerasguard.rules.base import Hit, Rule, RuleContext

RULES: tuple[Rule, ...] = tuple(
    sorted(
        (
            *code_exec.RULES,
            *references.RULES,
            *archive.RULES,
            *hdf5.RULES,
            *resources.RULES,
            *provenance.RULES,
            *incomplete.RULES,
        ),
        key=lambda r: r.id,
    )
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}

__all__ = ["RULES", "RULES_BY_ID", "Hit", "Rule", "RuleContext"]
