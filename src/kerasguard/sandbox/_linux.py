"""Thin ctypes wrappers for the Linux calls Python 3.11 lacks: unshare, prctl, mounts, capabilities.

Every wrapper raises ``OSError`` with the real errno; callers decide whether a missing layer is fatal.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Never regain capabilities: not through uid 0, setuid fixups, keep-caps or ambient raises; all locked.
SECUREBITS_LOCKED_DOWN = sum(1 << bit for bit in range(8)) & ~(1 << 4)  # everything except KEEP_CAPS
CAPABILITY_VERSION_3 = 0x20080522

CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64


@cache
def libc() -> ctypes.CDLL:
    """The C library, loaded once with errno support."""
    # Not ctypes.util.find_library: it runs ldconfig in a subprocess.
    return ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    """unshare(2); the caller must be single-threaded for CLONE_NEWUSER."""
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises OSError naming the target."""
    enc = [None if v is None else os.fsencode(v) for v in (source, target, fstype, data)]
    result = libc().mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3])
    _check(result, f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(libc().umount2(os.fsencode(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (glibc has no wrapper)."""
    new = ctypes.create_string_buffer(os.fsencode(new_root))
    old = ctypes.create_string_buffer(os.fsencode(put_old))
    syscall(SYS_PIVOT_ROOT, ctypes.c_void_p(ctypes.addressof(new)), ctypes.c_void_p(ctypes.addressof(old)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) with unsigned long arguments."""
    ul = ctypes.c_ulong
    return _check(libc().prctl(ctypes.c_int(option), ul(arg2), ul(arg3), ul(arg4), ul(arg5)), "prctl")


def syscall(number: int, *args: int | ctypes.c_void_p) -> int:
    """A raw syscall with integer or pointer arguments."""
    converted = [a if isinstance(a, ctypes.c_void_p) else ctypes.c_long(a) for a in args]
    fn = libc().syscall
    fn.restype = ctypes.c_long
    return _check(int(fn(ctypes.c_long(number), *converted)), f"syscall {number}")


def set_no_new_privs() -> None:
    """No setuid/file-capability gains after this; required by seccomp and Landlock for non-root."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies."""
    prctl(PR_SET_PDEATHSIG, sig)


def last_capability() -> int:
    try:
        with open(CAP_LAST_CAP_FILE, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 40


def drop_bounding_set() -> None:
    """Remove every capability from the bounding set (needs CAP_SETPCAP; root has it)."""
    for cap in range(last_capability() + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno != 22:  # EINVAL: capability unknown to this kernel
                raise


def write_id_maps(uid: int, gid: int) -> None:
    """Map our own uid/gid into a fresh user namespace (after CLONE_NEWUSER)."""
    with open("/proc/self/setgroups", "w", encoding="ascii") as fh:
        fh.write("deny")
    with open("/proc/self/uid_map", "w", encoding="ascii") as fh:
        fh.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w", encoding="ascii") as fh:
        fh.write(f"{gid} {gid} 1")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_all_capabilities() -> None:
    """Leave this process (even as uid 0) with no capability it could use or ever regain."""
    prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    drop_bounding_set()
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc().capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def effective_capabilities() -> int:
    """The CapEff mask of this process from /proc (0 when unreadable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0
