"""The policy reference is generated from the policy's dataclasses and documents every key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kerasguard.policy import NOT_FROM_FILES, Policy
from kerasguard.policy_reference import render, sections


def test_every_key_of_every_table_has_a_meaning() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    undocumented = [row.split("|")[1].strip() for row in rows if row.rstrip().endswith("|  |")]
    assert rows and undocumented == []


def test_every_table_of_the_policy_is_in_the_reference() -> None:
    text = render()
    names = [name for name, _cls, _array in sections(Policy, "") if name]
    assert {"limits", "trust", "sandbox", "store", "serve", "probe", "trust.models"} <= set(names)
    for name, cls, is_array in sections(Policy, ""):
        if name:
            assert (f"[[{name}]]" if is_array else f"[{name}]") in text
        for f in dataclasses.fields(cls):
            if f.init and f.name not in NOT_FROM_FILES:
                assert f"| `{f.name}` |" in text


def test_the_checked_in_reference_is_current() -> None:
    assert (Path(__file__).parents[1] / "docs" / "policy.md").read_text() == render()


def test_every_example_of_the_reference_is_a_valid_policy() -> None:
    """The defaults shown are what the loader accepts (placeholders are plain strings to it)."""
    import re
    import tomllib

    from kerasguard.policy import policy_from_mapping

    blocks = re.findall(r"```toml\n(.*?)```", render(), re.S)
    assert len(blocks) > 10
    for block in blocks:
        policy_from_mapping(tomllib.loads(block), source="docs/policy.md")  # raises PolicyError if not
