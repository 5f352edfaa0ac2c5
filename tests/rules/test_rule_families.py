"""Rule modules follow ID families: each module holds one family, and every rule is in its family's module."""

from __future__ import annotations

import importlib
import pkgutil

import kerasguard.rules
from kerasguard.rules import RULES

FAMILIES = {
    "code_exec": "KG1",
    "references": "KG2",
    "archive": "KG3",
    "hdf5": "KG4",
    "resources": "KG5",
    "provenance": "KG6",
    "incomplete": "KG9",
}


def _modules_with_rules() -> dict[str, tuple[object, ...]]:
    out = {}
    for info in pkgutil.iter_modules(kerasguard.rules.__path__):
        module = importlib.import_module(f"kerasguard.rules.{info.name}")
        rules = getattr(module, "RULES", None)
        if rules and rules is not RULES:  # not a module that only imports the registry (docs)
            out[info.name] = tuple(rules)
    return out


def test_every_module_with_rules_is_a_family_and_holds_only_that_family() -> None:
    modules = _modules_with_rules()
    assert set(modules) == set(FAMILIES)
    for name, rules in modules.items():
        wrong = [r.id for r in rules if not r.id.startswith(FAMILIES[name])]  # type: ignore[attr-defined]
        assert wrong == [], f"rules/{name}.py holds {wrong}, outside its family {FAMILIES[name]}xx"


def test_every_rule_is_in_exactly_one_family_module_with_its_check() -> None:
    homes: dict[str, list[str]] = {}
    for name, rules in _modules_with_rules().items():
        for r in rules:
            homes.setdefault(r.id, []).append(name)  # type: ignore[attr-defined]
    assert {r.id: homes.get(r.id) for r in RULES} == {r.id: [_family(r.id)] for r in RULES}
    for r in RULES:
        if r.id.startswith("KG9"):
            continue  # scanner-level findings are built by the engine, their check finds nothing
        assert r.check.__module__ == f"kerasguard.rules.{_family(r.id)}", r.id


def _family(rule_id: str) -> str:
    return next(name for name, prefix in FAMILIES.items() if rule_id.startswith(prefix))
