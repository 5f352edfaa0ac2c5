"""A private mount namespace: the child's whole filesystem is built from read-only binds and tmpfs.

Run by the child after ``unshare(CLONE_NEWNS)`` (with ``CLONE_NEWUSER`` when not root) and before it
drops its capabilities. The new root is an empty tmpfs, made read-only once populated, holding at
their usual paths only: the system's read-only library trees, the interpreter and its packages,
CPU topology, four harmless device nodes, ``/proc`` (read-only), the model copy and the scratch
directory, a fresh tmpfs of a fixed size. There is no ``/run``, ``/var``, ``/home``, host ``/tmp`` or
``/etc`` beyond the loader cache, so no path-named socket of the host exists in the child's world,
and what it writes to scratch lives in memory charged to its own cgroup and vanishes with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from kerasguard.sandbox import _linux

# Top-level trees of the system (a symlink on merged-/usr systems is recreated as the same symlink).
SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
READ_ONLY_EXTRA = ("/sys/devices/system/cpu",)
ROOT_TMPFS_BYTES = 4 * 1024 * 1024  # directories and mount points only; read-only once populated

_STATVFS_TO_MS = (
    (os.ST_NOSUID, _linux.MS_NOSUID),
    (os.ST_NODEV, _linux.MS_NODEV),
    (os.ST_NOEXEC, _linux.MS_NOEXEC),
    (os.ST_NOATIME, _linux.MS_NOATIME),
    (os.ST_NODIRATIME, _linux.MS_NODIRATIME),
    (os.ST_RELATIME, _linux.MS_RELATIME),
)


@dataclass(frozen=True)
class MountPlan:
    """What the child's filesystem will contain (absolute host paths, seen at the same paths)."""

    read_only: tuple[str, ...]  # trees and files bound read-only
    model: str
    scratch: str
    scratch_bytes: int


def _locked_flags(path: str) -> int:
    """Flags of the mount holding ``path`` that a read-only remount must keep (a user namespace
    may not clear them)."""
    try:
        flags = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in _STATVFS_TO_MS if flags & st)


def _outermost(paths: Iterable[str]) -> list[str]:
    """Drop paths that lie under another one in the list (their tree is bound already)."""
    chosen: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths}, key=len):
        if not _under(path, chosen):
            chosen.append(path)
    return chosen


def _under(path: str, trees: Iterable[str]) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in trees)


def _make_point(new_root: str, path: str, *, directory: bool) -> str:
    target = new_root + path
    os.makedirs(target if directory else os.path.dirname(target), mode=0o755, exist_ok=True)
    if not directory and not os.path.lexists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    return target


def _bind(new_root: str, path: str, *, read_only: bool = True) -> bool:
    """Bind host ``path`` at the same path in the new root; False if it does not exist."""
    if os.path.islink(path) and os.path.dirname(path) in ("/", "/etc"):
        target = os.readlink(path)  # /lib -> usr/lib and friends: the same link, not a copy
        os.makedirs(new_root + os.path.dirname(path), mode=0o755, exist_ok=True)
        if not os.path.lexists(new_root + path):
            os.symlink(target, new_root + path)
        resolved = os.path.realpath(path)
        if _under(resolved, SYSTEM_TREES):
            return True
        return _bind(new_root, resolved, read_only=read_only)
    if not os.path.exists(path):
        return False
    real = os.path.realpath(path)
    point = _make_point(new_root, path, directory=os.path.isdir(real))
    _linux.mount(real, point, None, _linux.MS_BIND | _linux.MS_REC)
    if read_only:
        flags = _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY | _linux.MS_NOSUID
        _linux.mount(None, point, None, flags | _locked_flags(real))
    return True


def build(plan: MountPlan, new_root: str) -> str:
    """Replace this process's view of the filesystem (call inside a fresh mount namespace).

    ``new_root`` is an existing empty directory (the host side of the scratch directory) used as
    the mount point of the new root before ``pivot_root``. Raises OSError naming the failed mount.
    """
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)  # nothing propagates back
    _linux.mount(
        "kerasguard-root",
        new_root,
        "tmpfs",
        _linux.MS_NOSUID,
        f"size={ROOT_TMPFS_BYTES},mode=0755",
    )
    for tree in SYSTEM_TREES:
        _bind(new_root, tree)
    for path in _outermost([*plan.read_only, *SYSTEM_FILES, *READ_ONLY_EXTRA]):
        if not _under(path, SYSTEM_TREES):
            _bind(new_root, path)
    for device in DEVICES:
        if os.path.exists(device):
            point = _make_point(new_root, device, directory=False)
            _linux.mount(device, point, None, _linux.MS_BIND)
    _bind(new_root, "/proc")  # read-only: a root child may not write /proc/sys, even without Landlock
    _bind(new_root, plan.model)
    scratch = _make_point(new_root, plan.scratch, directory=True)
    _linux.mount(
        "kerasguard-scratch",
        scratch,
        "tmpfs",
        _linux.MS_NOSUID | _linux.MS_NODEV,
        f"size={max(plan.scratch_bytes, 4096)},mode=0700",
    )
    os.chdir(new_root)
    _linux.pivot_root(".", ".")  # the old root ends up stacked under the new one ...
    _linux.umount(".", _linux.MNT_DETACH)  # ... and is detached: no path leads back to the host
    os.chdir("/")
    _linux.mount(None, "/", None, _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY | _linux.MS_NOSUID)
    mib = plan.scratch_bytes / (1024 * 1024)
    return f"private root: {len(plan.read_only)} read-only paths, model read-only, scratch tmpfs {mib:g} MiB"
