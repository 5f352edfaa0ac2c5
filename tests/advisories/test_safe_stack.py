"""require_safe_stack(): raises (or warns) on a vulnerable running stack, never imports it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import kerasguard
from kerasguard.errors import KerasGuardError, UnsafeStackError
from kerasguard.policy import policy_from_mapping
from support.audit_fakes import SiteFactory


@pytest.fixture
def running_stack(monkeypatch: pytest.MonkeyPatch, make_site: SiteFactory):  # type: ignore[no-untyped-def]
    """Pretend the running interpreter's path holds only the given distributions."""

    def use(dists: dict[str, str], hdf5: str | None = None) -> Path:
        site = make_site(dists, hdf5=hdf5)
        monkeypatch.setattr(sys, "path", [str(site)])
        return site

    return use


def test_vulnerable_keras_raises_with_upgrade_advice(running_stack) -> None:  # type: ignore[no-untyped-def]
    running_stack({"keras": "3.13.1", "numpy": "2.0.0"})
    with pytest.raises(UnsafeStackError) as info:
        kerasguard.require_safe_stack(kerasguard.Policy())
    err = info.value
    assert isinstance(err, KerasGuardError)
    assert "keras 3.13.1 is affected by" in err.message and "CVE-2026-1462 (critical)" in err.message
    assert "smallest safe upgrade: keras 3.15.1" in err.message
    assert err.report is not None and err.hint


def test_safe_stack_returns_the_report(running_stack) -> None:  # type: ignore[no-untyped-def]
    running_stack({"keras": "3.15.1", "h5py": "3.16.0"}, hdf5="2.0.0")
    report = kerasguard.require_safe_stack(kerasguard.Policy())
    assert {p.name for p in report.packages} == {"keras", "h5py"}
    assert [v.advisory.id for v in report.vulnerabilities] == ["KGSA-2026-0007"]  # medium: below threshold


def test_warn_policy(running_stack) -> None:  # type: ignore[no-untyped-def]
    running_stack({"tf-keras": "2.21.0"})
    policy = policy_from_mapping({"audit": {"on_vulnerable": "warn"}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = kerasguard.require_safe_stack(policy)
    assert [w.category for w in caught] == [kerasguard.UnsafeStackWarning]
    assert "KGSA-2026-0001" in str(caught[0].message) and "no tf-keras release fixes" in str(
        caught[0].message
    )
    assert report.vulnerabilities


def test_stricter_threshold_and_accepted_advisory(running_stack) -> None:  # type: ignore[no-untyped-def]
    running_stack({"h5py": "3.16.0"}, hdf5="2.0.0")
    with pytest.raises(UnsafeStackError, match="KGSA-2026-0007"):
        kerasguard.require_safe_stack(policy_from_mapping({"audit": {"fail_on": "medium"}}))
    accepted = {"audit": {"fail_on": "medium", "ignore": [{"id": "KGSA-2026-0007", "reason": "sandboxed"}]}}
    kerasguard.require_safe_stack(policy_from_mapping(accepted))


def test_unjudgeable_stack_version_is_unsafe(running_stack) -> None:  # type: ignore[no-untyped-def]
    running_stack({"keras": "three.fifteen"})
    with pytest.raises(UnsafeStackError, match=r"cannot judge:.*invalid version"):
        kerasguard.require_safe_stack(kerasguard.Policy())


def test_policy_file_is_found_from_the_working_directory(
    running_stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    running_stack({"keras": "3.15.0"})
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.kerasguard.audit]\non_vulnerable = "warn"\n')
    monkeypatch.chdir(project)
    with pytest.warns(kerasguard.UnsafeStackWarning, match="KGSA-2026-0005"):
        kerasguard.require_safe_stack()  # policy found from the working directory: warn
    with pytest.raises(UnsafeStackError):
        kerasguard.require_safe_stack(kerasguard.Policy())  # the default policy raises


def test_real_stack_check_imports_nothing_it_judges() -> None:
    code = textwrap.dedent(
        """
        import sys, kerasguard
        report = kerasguard.require_safe_stack(kerasguard.Policy())
        assert {p.name for p in report.packages} >= {"keras", "h5py"}, report.packages
        loaded = {"keras", "h5py", "tensorflow", "torch", "jax"} & set(sys.modules)
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
