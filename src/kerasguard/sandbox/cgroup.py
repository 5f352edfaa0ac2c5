"""A per-child control group: a hard memory limit the kernel enforces (OOM kill) and a task limit.

The group is nested under the caller's own cgroup, so limits an outer supervisor put on the caller
still apply. cgroup v1 (``memory`` + ``pids`` hierarchies) and v2 (``memory.max``/``pids.max`` when
the caller's group delegates those controllers) are supported; ``None`` means neither is writable.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "kerasguard-"
_counter = itertools.count()


def own_cgroups(proc_file: str = "/proc/self/cgroup") -> dict[str, str]:
    """Map controller name (``memory``, ``pids``; ``""`` for v2) to this process's cgroup path."""
    out: dict[str, str] = {}
    try:
        with open(proc_file, encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) != 3:
                    continue
                _, controllers, path = parts
                for name in controllers.split(",") if controllers else [""]:
                    out[name] = path
    except OSError:
        pass
    return out


def _v2_mount(root: Path) -> Path | None:
    for candidate in (root / "unified", root):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Placement:
    """Where a child group would go, found by :func:`locate`."""

    version: int
    memory_parent: Path
    pids_parent: Path | None


def locate(root: Path = CGROUP_ROOT, proc_file: str = "/proc/self/cgroup") -> tuple[Placement | None, str]:
    """Find a writable place for a memory-limited child group, or say why there is none."""
    mine = own_cgroups(proc_file)
    if "memory" in mine:
        parent = root / "memory" / mine["memory"].lstrip("/")
        if (parent / "memory.limit_in_bytes").is_file() and os.access(parent, os.W_OK):
            pids = root / "pids" / mine.get("pids", "/").lstrip("/")
            pids_ok = (pids / "cgroup.procs").is_file()
            return Placement(1, parent, pids if pids_ok and os.access(pids, os.W_OK) else None), (
                f"cgroup v1 memory under {parent}"
            )
        why_v1 = f"cgroup v1 memory group {parent} is not writable"
    else:
        why_v1 = "no cgroup v1 memory hierarchy"
    mount = _v2_mount(root)
    if mount is not None and "" in mine:
        parent = mount / mine[""].lstrip("/")
        try:
            delegated = (parent / "cgroup.subtree_control").read_text().split()
        except OSError:
            delegated = []
        if "memory" in delegated and os.access(parent, os.W_OK):
            return Placement(2, parent, parent if "pids" in delegated else None), f"cgroup v2 under {parent}"
        return None, f"{why_v1}; cgroup v2 {parent} does not delegate the memory controller"
    return None, why_v1


class ChildGroup:
    """One child's control group; create with :meth:`create`, always :meth:`remove` it."""

    def __init__(self, placement: Placement, name: str, memory_bytes: int, pids_max: int) -> None:
        self.version = placement.version
        self.memory_dir = placement.memory_parent / name
        self.pids_dir = placement.pids_parent / name if placement.pids_parent else None
        if self.version == 2 and self.pids_dir == self.memory_dir:
            self.pids_dir = None  # one directory holds both in v2
        self.memory_bytes = memory_bytes
        self._dirs = [d for d in (self.memory_dir, self.pids_dir) if d is not None]
        for d in self._dirs:
            d.mkdir(mode=0o755)
        try:
            if self.version == 1:
                _write(self.memory_dir / "memory.limit_in_bytes", memory_bytes)
                with contextlib.suppress(OSError):  # no swap accounting on this kernel
                    _write(self.memory_dir / "memory.memsw.limit_in_bytes", memory_bytes)
                if self.pids_dir is not None:
                    _write(self.pids_dir / "pids.max", pids_max)
            else:
                _write(self.memory_dir / "memory.max", memory_bytes)
                with contextlib.suppress(OSError):
                    _write(self.memory_dir / "memory.swap.max", 0)
                with contextlib.suppress(OSError):
                    _write(self.memory_dir / "pids.max", pids_max)
        except OSError:
            self.remove()
            raise

    @classmethod
    def create(cls, placement: Placement, memory_bytes: int, pids_max: int = 1024) -> ChildGroup:
        remove_stale(placement)
        name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        return cls(placement, name, memory_bytes, pids_max)

    def add(self, pid: int) -> None:
        """Move ``pid`` into the group (raises OSError if the kernel refuses)."""
        for d in self._dirs:
            _write(d / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        try:
            text = (self.memory_dir / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill_all(self) -> None:
        """SIGKILL everything in the group (threads and any process that escaped the session)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def peak_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return _read_int(self.memory_dir / name)

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this group (0 when unknown)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = (self.memory_dir / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def hit_limit(self) -> bool:
        """Whether usage ever reached the limit (failcnt in v1, max events in v2)."""
        if self.version == 1:
            return (_read_int(self.memory_dir / "memory.failcnt") or 0) > 0
        try:
            text = (self.memory_dir / "memory.events").read_text()
        except OSError:
            return False
        return any(
            line.startswith(("max ", "oom ")) and not line.endswith(" 0") for line in text.splitlines()
        )

    def remove(self, timeout_s: float = 2.0) -> None:
        """Kill what is left and delete the directories; waits briefly for the kernel to empty them."""
        deadline = time.monotonic() + timeout_s
        for d in self._dirs:
            while True:
                self.kill_all()
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)


def remove_stale(placement: Placement, timeout_s: float = 2.0) -> list[Path]:
    """Kill what is left in groups of kerasguard processes that died, then delete the groups.

    A child whose parent died without cleaning up (before the parent-death signal existed, or a
    payload that survived it some other way) may still be running in its group: it is SIGKILLed,
    not only abandoned. A leftover group would also keep its parent group (perhaps a supervisor's)
    from being removed. Only groups named after a process that no longer exists are touched.
    """
    removed: list[Path] = []
    parents = {placement.memory_parent, placement.pids_parent} - {None}
    for parent in parents:
        assert parent is not None
        try:
            candidates = list(parent.glob(f"{PREFIX}*-*"))
        except OSError:
            continue
        for group in candidates:
            owner = group.name[len(PREFIX) :].split("-", 1)[0]
            if not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            deadline = time.monotonic() + timeout_s
            while True:
                for pid in _procs(group):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    group.rmdir()
                    removed.append(group)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
    return removed


def _procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _write(path: Path, value: int) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(str(value))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
