from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.errors import PolicyError
from kerasguard.findings import Severity
from kerasguard.policy import Policy, load_policy, policy_from_mapping


def test_defaults_without_file(tmp_path: Path) -> None:
    policy = load_policy(search_from=tmp_path)
    assert policy == Policy(source="<default>")
    assert policy.fail_on is Severity.HIGH


def test_pyproject_table_is_found_upwards(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kerasguard]\nfail_on = "medium"\n[tool.kerasguard.limits]\nmax_members = 5\n'
        '[[tool.kerasguard.allow.custom_objects]]\nname = "acme>Layer"\nreason = "reviewed"\n'
        '[tool.kerasguard.severity]\nKG306 = "info"\n'
    )
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    policy = load_policy(search_from=sub)
    assert policy.fail_on is Severity.MEDIUM
    assert policy.limits.max_members == 5
    assert policy.allow.allows("custom_objects", "acme>Layer") is not None
    assert policy.severity_for("KG306", Severity.HIGH) is Severity.INFO


def test_kerasguard_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.kerasguard]\nfail_on = "low"\n')
    (tmp_path / "kerasguard.toml").write_text('fail_on = "critical"\n')
    assert load_policy(search_from=tmp_path).fail_on is Severity.CRITICAL


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"fail_on": "severe"}, "fail_on"),
        ({"limits": {"max_members": -1}}, "limits.max_members"),
        ({"limits": {"max_memberz": 1}}, "limits.max_memberz"),
        ({"allow": {"modules": [{"name": "os"}]}}, "reason"),
        ({"allow": {"modules": [{"name": "os", "reason": " "}]}}, "reason"),
        ({"ignore": [{"rule": "KG101"}]}, "reason"),
        ({"limits": {"max_members": True}}, "limits.max_members"),
        ({"severity": {"KG101": 3}}, "severity.KG101"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_policy_names_the_key(data: dict[str, object], needle: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_mapping(data, source="test.toml")
    assert needle in str(err.value)
    assert "test.toml" in str(err.value)


def test_invalid_toml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "kerasguard.toml"
    bad.write_text("fail_on = [\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)


def test_ignore_matches_rule_and_path() -> None:
    policy = policy_from_mapping({"ignore": [{"rule": "KG306", "path": "models/*", "reason": "vendored"}]})
    assert policy.ignored("KG306", "models/a.keras")
    assert not policy.ignored("KG306", "other/a.keras")
    assert not policy.ignored("KG101", "models/a.keras")


def test_non_utf8_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "kerasguard.toml"
    bad.write_bytes(b"\xff\xfe fail_on = 'high'")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)


def test_store_section() -> None:
    policy = policy_from_mapping(
        {"store": {"sources": ["https://huggingface.co/acme"], "default_stage": "staging"}}
    )
    assert policy.store.sources == ("https://huggingface.co/acme",)
    with pytest.raises(PolicyError, match="default_stage"):
        policy_from_mapping({"store": {"stages": ["dev"], "default_stage": "staging"}})
    with pytest.raises(PolicyError, match="at least one stage"):
        policy_from_mapping({"store": {"stages": [], "default_stage": "staging"}})


def test_keras_version_must_be_a_version(tmp_path: Path) -> None:
    bad = tmp_path / "kerasguard.toml"
    bad.write_text('keras_version = "banana"\n')
    with pytest.raises(PolicyError, match=r"'keras_version'.*'banana'"):
        load_policy(bad)
    bad.write_text('keras_version = "3.15.1"\n')
    assert load_policy(bad).keras_version == "3.15.1"


def test_kerasguard_toml_accepts_the_pyproject_table(tmp_path: Path) -> None:
    """The README's [tool.kerasguard] snippet pasted into kerasguard.toml works as it is."""
    toml = tmp_path / "kerasguard.toml"
    toml.write_text('[tool.kerasguard]\nfail_on = "medium"\n[tool.kerasguard.limits]\nmax_members = 5\n')
    for policy in (load_policy(toml), load_policy(search_from=tmp_path)):
        assert policy.fail_on is Severity.MEDIUM and policy.limits.max_members == 5
    toml.write_text('fail_on = "low"\n[tool.kerasguard]\nfail_on = "medium"\n')
    with pytest.raises(PolicyError) as mixed:
        load_policy(toml)
    assert "both bare" in mixed.value.message and mixed.value.hint
    toml.write_text("[tool.black]\nline-length = 100\n")
    with pytest.raises(PolicyError) as other:
        load_policy(toml)
    assert "unknown policy key 'tool'" in other.value.message and "[tool.kerasguard]" in str(other.value.hint)
