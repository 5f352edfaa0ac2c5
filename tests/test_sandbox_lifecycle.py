"""The child never outlives its parent, and leftovers of dead parents are killed, not only swept."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kerasguard.policy import Sandbox as SandboxPolicy
from kerasguard.sandbox import bootstrap, cgroup
from kerasguard.sandbox.capabilities import probe
from kerasguard.sandbox.config import ChildLimits, Layers
from kerasguard.sandbox.launcher import ChildProcess, spawn
from kerasguard.sandbox.monitor import disk_usage
from support import sandbox_payloads as payloads

INFO = probe()
TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
SKIP_SCAN = {"allow_unsafe_skip_scan": True, "allow_unsafe_deserialization": True}


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not running(pid)


def test_scratch_disk_usage_counts_allocated_bytes_and_gives_up_on_file_floods(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"\1" * (1 << 20))
    with open(tmp_path / "sparse.bin", "wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB that occupies nothing
    used = disk_usage(str(tmp_path))
    assert used is not None and (1 << 20) <= used < (2 << 20)
    for i in range(20):
        (tmp_path / f"f{i}").touch()
    assert disk_usage(str(tmp_path), max_entries=10) is None


# A protocol-speaking stand-in for the child that, like the real bootstrap, first asks for SIGKILL
# when its parent (thread) dies, then answers every request with {"ok": true}.
FAKE_CHILD = """\
#!{python}
import ctypes, json, os, struct, sys
ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)
read_fd, write_fd = int(sys.argv[-2]), int(sys.argv[-1])
def read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(read_fd, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
while True:
    magic, json_len, payload_len = struct.unpack("<4sIQ", read(16))
    read(json_len + payload_len)
    body = json.dumps({{"ok": True, "layers": {{}}, "arrays": []}}).encode()
    os.write(write_fd, struct.pack("<4sIQ", b"KGS1", len(body), 0) + body)
"""


def test_a_child_started_from_a_short_lived_thread_outlives_that_thread(tmp_path: Path) -> None:
    """The parent-death signal fires when the forking *thread* exits; children are forked by a
    long-lived spawner thread, so a caller's worker thread ending does not kill its model."""
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_CHILD.format(python=sys.executable))
    fake.chmod(0o755)
    lim = ChildLimits.from_policy(SandboxPolicy(memory_mb=1024))
    none = Layers(
        network_namespace=False, mount_namespace=False, capabilities=False, landlock=False, seccomp=False
    )
    started: list[ChildProcess] = []

    def start() -> None:
        started.append(spawn("/dev/null", lim, layers=none, use_cgroup=False, python=str(fake)))

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    (child,) = started
    with child:
        time.sleep(0.5)  # a parent-death signal would have arrived by now
        assert running(child.stats.pid)
        child.request("ping")


def test_a_child_whose_parent_is_already_gone_exits_before_running_anything() -> None:
    """The race check: the bootstrap compares getppid() with the pid that started it."""
    argv = bootstrap.command("probe", site=False)
    parent_arg = argv.index(str(os.getpid()))
    argv[parent_arg] = "1"  # as if the parent had died and the child had been re-parented to init
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 4 and done.stdout == ""
    argv[parent_arg] = str(os.getpid())
    assert subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0


# The child's parent watch, then what a payload does after it: neuter os._exit, keep a thread.
WATCHED = """\
import os, sys, threading, time
from kerasguard.sandbox import child
read_fd, write_fd = os.pipe()
child.watch_parent(read_fd)
os._exit = lambda *args, **kwargs: None
threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
os.close(write_fd)  # the parent's end of the control pipe closes
time.sleep(3600)
"""


def test_the_parent_watch_exits_even_after_a_payload_replaced_os_exit() -> None:
    """The watch thread looked os._exit up when the pipe closed, so a payload that replaced it
    left the thread spinning and the child alive (when the parent-death signal was also gone)."""
    watched = subprocess.Popen(
        [sys.executable, "-c", WATCHED], env={**os.environ, "PYTHONPATH": str(SRC)}, stderr=subprocess.PIPE
    )
    try:
        status = watched.wait(timeout=20)
    except subprocess.TimeoutExpired:
        status = None
    finally:
        watched.kill()
        watched.communicate()
    assert status == 4  # EXIT_PARENT_GONE


@pytest.mark.skipif(not INFO.is_active("memory-cgroup"), reason=INFO.get("memory-cgroup").detail)
def test_processes_left_in_a_dead_parents_group_are_killed() -> None:
    placement, _ = cgroup.locate()
    assert placement is not None
    dead_pid = 2**22 + 4242  # above pid_max: never a live process
    stale = cgroup.ChildGroup(placement, f"{cgroup.PREFIX}{dead_pid}-0", 256 << 20, 64)
    survivor = subprocess.Popen(["sleep", "600"])
    try:
        stale.add(survivor.pid)
        removed = cgroup.remove_stale(placement)
        assert survivor.wait(timeout=10) == -signal.SIGKILL
        assert stale.memory_dir in removed and not stale.memory_dir.exists()
    finally:
        survivor.kill()
        stale.remove()


def load_then_kill_the_parent(tmp_path: Path, payload: Any) -> dict[str, Any]:
    """Load a payload model in a separate parent, SIGKILL that parent, assert the child died with it.

    Returns what the parent printed after the load (child pid, model output, cgroup)."""
    from support import kmodels

    base = tmp_path / "mlp.keras"
    kmodels.mlp().save(base)
    marker = f"kg-outlive-{os.getpid()}"[:15]
    model = payloads.lambda_model(base, tmp_path / "outlive.keras", payload, marker=marker)
    parent = subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "support" / "sandbox_loadscript.py"),
            str(model),
            json.dumps([{"trust": SKIP_SCAN}]),
            "--hold",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{SRC}:{TESTS}", "KERAS_BACKEND": "jax"},
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, parent.stderr.read()[-3000:] if parent.stderr else ""
        loaded: dict[str, Any] = json.loads(line)
        child = int(loaded["pid"])
        threads = {p.read_text().strip() for p in Path(f"/proc/{child}/task").glob("*/comm")}
        assert marker in threads, "the payload did not run: the test would prove nothing"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        survived = not wait_gone(child, 10)
        if survived:
            os.kill(child, signal.SIGKILL)
        assert not survived, f"child {child} survived its parent"
        group = next((line for line in loaded["cgroup"].splitlines() if cgroup.PREFIX in line), None)
        if group is not None:  # nothing of the child is left in its group either
            path = group.split(":", 2)[2]
            procs = Path(f"/sys/fs/cgroup/memory{path}/cgroup.procs")
            leftover = procs.read_text().split() if procs.exists() else []
            assert not [p for p in leftover if running(int(p))]
        return loaded
    finally:
        parent.kill()
        parent.wait()
        placement, _ = cgroup.locate()
        if placement is not None:
            cgroup.remove_stale(placement)


@pytest.mark.slow
@pytest.mark.keras
def test_child_dies_with_its_sigkilled_parent_even_if_it_ignores_exit(tmp_path: Path) -> None:
    """A payload that neuters os._exit and keeps a non-daemon thread used to outlive a SIGKILLed
    parent (re-parented to init). With PR_SET_PDEATHSIG the kernel kills it with the parent."""
    load_then_kill_the_parent(tmp_path, payloads.outlive_parent)


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.skipif(not INFO.is_active("seccomp"), reason="needs seccomp")
def test_a_payload_cannot_clear_the_parent_death_signal(tmp_path: Path) -> None:
    """The same payload that first called prctl(PR_SET_PDEATHSIG, 0) used to survive: seccomp
    lets nothing after the bootstrap change that signal (libc call or raw call with high bits),
    nor open the child to ptrace by an unrelated process (PR_SET_PTRACER)."""
    loaded = load_then_kill_the_parent(tmp_path, payloads.undo_parent_death_signal)
    libc_call, raw_call, ptracer, still_set = loaded["output"][0]
    assert (libc_call, raw_call, ptracer) == (errno.EPERM, errno.EPERM, errno.EPERM)
    assert still_set == signal.SIGKILL
