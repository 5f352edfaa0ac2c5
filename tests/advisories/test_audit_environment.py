"""Installed distributions read from metadata files, and other interpreters probed with -I -S."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from kerasguard.advisories.audit import audit_environment
from kerasguard.advisories.environment import (
    current_environment,
    interpreter_environment,
    probe_interpreter,
    read_site_dirs,
)
from kerasguard.errors import AuditError
from support.audit_fakes import SiteFactory, write_dist, write_hdf5_library


def versions(site: Path) -> dict[str, str]:
    return {p.name: p.version for p in read_site_dirs([site], "t").packages}


def test_many_versions_in_fake_environments(make_site: SiteFactory) -> None:
    cases = {
        "3.12.0": 10,
        "3.12.1": 7,
        "3.12.3": 1,
        "3.12.4": 0,
        "3.13.0": 10,
        "3.13.1": 10,
        "3.13.2": 7,
        "3.14.0": 7,
        "3.14.1": 5,
        "3.15.0": 1,
        "3.15.1": 0,
    }
    for version, count in cases.items():
        site = make_site({"keras": version, "numpy": "2.1.0", "requests": "2.32.0"})
        report = audit_environment(site_packages=[site])
        keras = [v for v in report.vulnerabilities if v.package.name == "keras"]
        assert len(keras) == count, version
        assert report.exit_code() == (1 if count else 0), version
        assert len(report.packages) == 3


def test_metadata_kinds_and_precedence(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_dist(first, "keras", "3.13.1")
    write_dist(first, "old-style", "1.0", kind="egg-info-dir")
    write_dist(first, "distutils-thing", "0.3", kind="egg-info-file")
    write_dist(second, "keras", "3.15.1")  # shadowed: imports would find the first
    inv = read_site_dirs([first, second, tmp_path / "missing"], "t")
    assert {p.name: p.version for p in inv.packages} == {
        "keras": "3.13.1",
        "old-style": "1.0",
        "distutils-thing": "0.3",
    }
    assert any("shadowed" in n.message for n in inv.notes)


def test_broken_metadata_is_a_note(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_dist(site, "keras", "3.x.y")  # not PEP 440
    nover = site / "tf_keras-2.21.0.dist-info"
    nover.mkdir()
    (nover / "METADATA").write_text("Metadata-Version: 2.1\nName: tf-keras\n\n")
    (site / "h5py-3.16.0.dist-info").mkdir()  # METADATA missing
    report = audit_environment(site_packages=[site])
    messages = [str(n) for n in report.notes]
    assert any("keras: invalid version '3.x.y'" in m for m in messages)
    assert any("no Version field" in m for m in messages)
    assert any("metadata unreadable" in m for m in messages)
    # all three have advisories: the report must not call this clean without saying so
    assert {n.package for n in report.unaudited_covered} >= {"keras", "tf-keras"}
    assert report.exit_code() == 0 and report.complete


def test_h5py_judged_by_the_library_it_bundles(make_site: SiteFactory) -> None:
    old = make_site({"h5py": "3.15.1"}, hdf5="1.14.6")
    pkg = read_site_dirs([old], "t").packages[0]
    assert pkg.hdf5_version == "1.14.6" and pkg.hdf5_source and "bundled library" in pkg.hdf5_source
    report = audit_environment(site_packages=[old])
    assert {v.advisory.id for v in report.vulnerabilities} == {"KGSA-2026-0006", "KGSA-2026-0007"}
    assert all(v.via == "bundled HDF5 1.14.6" for v in report.vulnerabilities)
    # an h5py 3.15.1 built against HDF5 2.0.0 (no wheel): only the 2.2.0 advisory applies
    rebuilt = make_site({"h5py": "3.15.1"})
    lib = rebuilt.parents[1]  # <prefix>/lib
    (lib / "libhdf5.so.320").write_bytes(b"\0HDF5 library version: 2.0.0\0")
    report = audit_environment(site_packages=[rebuilt])
    assert [v.advisory.id for v in report.vulnerabilities] == ["KGSA-2026-0007"]
    # no library found: the wheel map stands in
    bare = make_site({"h5py": "3.12.1"})
    pkg = read_site_dirs([bare], "t").packages[0]
    assert pkg.hdf5_version == "1.14.4" and "wheel map" in (pkg.hdf5_source or "")


def test_only_filter_reads_just_the_stack(make_site: SiteFactory) -> None:
    site = make_site({"keras": "3.15.1", "numpy": "2.1.0"})
    inv = read_site_dirs([site], "t", only={"keras"})
    assert [p.name for p in inv.packages] == ["keras"]


def test_current_environment_is_the_running_venv() -> None:
    inv = current_environment()
    names = {p.key: p for p in inv.packages}
    assert "keras" in names and "h5py" in names and "numpy" in names
    from importlib import metadata

    assert names["keras"].version == metadata.version("keras")
    assert inv.markers["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_real_interpreter_is_probed_without_importing_packages() -> None:
    info = probe_interpreter(sys.executable)
    assert info.version == ".".join(map(str, sys.version_info[:3]))
    inv = interpreter_environment(sys.executable)
    found = {p.key: p.version for p in inv.packages}
    from importlib import metadata

    assert found["keras"] == metadata.version("keras")
    assert found["h5py"] == metadata.version("h5py")


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fakepython"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_fake_interpreter_answer_and_pth_dirs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    extra = tmp_path / "extra"
    write_dist(site, "numpy", "2.0.0")
    write_dist(extra, "keras", "3.13.1")
    (site / "paths.pth").write_text(f"# comment\n{extra}\nimport os; os.system('false')\nmissing-dir\n")
    answer = {
        "executable": "/x/python",
        "version": "3.12.1",
        "sys_path": [],
        "site": [str(site)],
        "user_site": None,
        "markers": {"python_version": "3.12", "sys_platform": "linux"},
    }
    fake = _script(tmp_path, f"cat <<'EOF'\n{json.dumps(answer)}\nEOF")
    report = audit_environment(python=fake)
    assert report.target == "Python 3.12.1 (/x/python)"
    assert {p.name for p in report.packages} == {"numpy", "keras"}
    assert any(v.package.name == "keras" for v in report.vulnerabilities)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("echo not json", "did not answer like a Python interpreter"),
        ("echo '{\"sys_path\": 3}'", "did not answer like a Python interpreter"),
        ("echo boom >&2; exit 3", "exited with status 3: boom"),
    ],
)
def test_broken_interpreters(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(AuditError, match=needle):
        probe_interpreter(_script(tmp_path, body))


def test_broken_python_paths(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no such file"):
        probe_interpreter(tmp_path / "nope")
    with pytest.raises(AuditError, match="is a directory"):
        probe_interpreter(tmp_path)
    plain = tmp_path / "plain"
    plain.write_text("print(1)")
    with pytest.raises(AuditError, match="not executable"):
        probe_interpreter(plain)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(64))
    garbage.chmod(0o755)
    with pytest.raises(AuditError, match="garbage"):
        probe_interpreter(garbage)


def test_site_packages_must_exist(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="not a directory"):
        audit_environment(site_packages=[tmp_path / "nope"])


def test_hdf5_library_detection_ignores_hl_and_unrelated(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_hdf5_library(site, "9.9.9", name="libhdf5_hl-abc.so.310.0.0")
    write_dist(site, "h5py", "3.14.0")
    pkg = read_site_dirs([site], "t").packages[0]
    assert pkg.hdf5_version == "1.14.6"  # the _hl library is not libhdf5: the wheel map is used


def test_site_packages_is_one_target(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="choose one target"):
        audit_environment(site_packages=[tmp_path], python=sys.executable)
