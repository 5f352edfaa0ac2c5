"""Layer probing and the per-child cgroup (real cgroupfs where writable, else skipped with the reason)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kerasguard.sandbox import cgroup, landlock
from kerasguard.sandbox.capabilities import LAYER_ORDER, measure

INFO = measure()


def test_every_layer_is_reported_with_a_reason() -> None:
    assert [layer.name for layer in INFO.layers] == list(LAYER_ORDER)
    for layer in INFO.layers:
        assert layer.detail, layer.name
    data = INFO.to_dict()
    assert sorted(data["active"] + data["missing"]) == sorted(LAYER_ORDER)
    json.dumps(data)


def test_landlock_report_matches_the_kernel() -> None:
    abi = landlock.abi_version()
    assert INFO.is_active("landlock") == (abi >= 1)
    if abi:
        assert INFO.get("landlock").detail.startswith(f"ABI {abi}")


def test_own_cgroups_parses_v1_and_v2_lines(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("12:pids:/a/b\n4:memory:/job/42\n3:cpu,cpuacct:/\n0::/user.slice/x\n")
    assert cgroup.own_cgroups(str(proc)) == {
        "pids": "/a/b",
        "memory": "/job/42",
        "cpu": "/",
        "cpuacct": "/",
        "": "/user.slice/x",
    }


def test_v2_without_delegated_memory_is_reported_missing(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    mine = root / "user.slice"
    mine.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io\n")
    (mine / "cgroup.subtree_control").write_text("cpu\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice\n")
    placement, why = cgroup.locate(root, str(proc))
    assert placement is None
    assert "does not delegate the memory controller" in why


def test_v2_with_delegated_memory_is_found(tmp_path: Path) -> None:
    root = tmp_path / "cgroupfs"
    mine = root / "svc"
    mine.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory pids\n")
    (mine / "cgroup.subtree_control").write_text("memory pids\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/svc\n")
    placement, _ = cgroup.locate(root, str(proc))
    assert placement is not None and placement.version == 2 and placement.memory_parent == mine


@pytest.mark.skipif(not INFO.is_active("memory-cgroup"), reason=INFO.get("memory-cgroup").detail)
def test_real_child_group_limits_a_process_and_is_removed() -> None:
    placement, _ = cgroup.locate()
    assert placement is not None
    group = cgroup.ChildGroup.create(placement, 256 << 20)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        group.add(proc.pid)
        assert proc.pid in group.pids()
        assert f"{group.memory_dir.name}" in Path(f"/proc/{proc.pid}/cgroup").read_text()
        limit_file = "memory.limit_in_bytes" if group.version == 1 else "memory.max"
        assert int((group.memory_dir / limit_file).read_text()) == 256 << 20
    finally:
        group.remove()
        proc.wait(timeout=10)
    assert proc.returncode == -9  # remove() kills what is left inside
    assert not group.memory_dir.exists()


@pytest.mark.skipif(not INFO.is_active("memory-cgroup"), reason=INFO.get("memory-cgroup").detail)
def test_real_child_group_oom_kills_and_counts() -> None:
    placement, _ = cgroup.locate()
    assert placement is not None
    group = cgroup.ChildGroup.create(placement, 64 << 20)
    hog = "b = []\nwhile True: b.append(bytearray(8 << 20))"
    proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(0.5)\n{hog}"])
    try:
        group.add(proc.pid)
        proc.wait(timeout=60)
        assert proc.returncode == -9
        assert group.oom_kills() >= 1 or group.hit_limit()
        peak = group.peak_bytes()
        assert peak is not None and peak >= 32 << 20
    finally:
        group.remove()


def test_probe_runs_without_site_packages() -> None:
    """The probe child uses only the standard library (it starts with -I -S)."""
    from kerasguard.sandbox import bootstrap

    done = subprocess.run(
        bootstrap.command("probe", site=False), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"netns", "mntns", "caps"}
    if os.geteuid() == 0:
        assert data["caps"][0] is True


@pytest.mark.skipif(not INFO.is_active("memory-cgroup"), reason=INFO.get("memory-cgroup").detail)
def test_groups_left_by_dead_processes_are_removed() -> None:
    placement, _ = cgroup.locate()
    assert placement is not None
    dead_pid = 2**22 + 12345  # above pid_max on this kernel: never a live process
    stale = placement.memory_parent / f"{cgroup.PREFIX}{dead_pid}-0"
    mine = placement.memory_parent / f"{cgroup.PREFIX}{os.getpid()}-999"
    stale.mkdir()
    mine.mkdir()
    try:
        removed = cgroup.remove_stale(placement)
        assert stale in removed and not stale.exists()
        assert mine.exists()  # a live owner's group is left alone
    finally:
        for d in (stale, mine):
            if d.exists():
                d.rmdir()
