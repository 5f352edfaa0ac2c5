"""A seccomp deny-list for the child, loaded after its trusted imports and before it opens the model.

Default allow (Keras, XLA and NumPy use a wide and changing set of syscalls), then deny what a
model never needs: new programs, new processes, other processes' memory, every socket (the child
talks to its parent over inherited pipes only; with ``sandbox.network`` only AF_INET/AF_INET6),
namespaces, mounts, kernel modules, BPF, io_uring (its operations bypass seccomp), raising
rlimits, signals to any other process (also through ``F_SETOWN``), and the ``prctl`` options that
would undo the parent-death signal the bootstrap set before this filter. Denied calls fail with an
errno, so a payload sees an error instead of silently working, and the child reports it. A system
call of a foreign ABI (``int 0x80``, x32) kills the whole process at once: the filter cannot judge
those numbers, and killing only the calling thread would leave the load hanging until the wall
clock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass

CLONE_THREAD = 0x00010000

# Calls a loaded model never needs; each fails with EPERM.
DENIED: tuple[str, ...] = (
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fspick",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "open_by_handle_at",
    "name_to_handle_at",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "acct",
    "quotactl",
    "syslog",
    "setrlimit",
    "uselib",
)
# Socket calls: with no socket allowed these are unreachable, denied anyway in case a descriptor
# was created before the filter (or inherited against expectations).
SOCKET_CALLS: tuple[str, ...] = ("socketpair", "connect", "bind", "listen", "accept", "accept4")
AF_MAX = 46  # families the kernel knows are below this; socket() refuses the rest with EAFNOSUPPORT
NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# Signals may only go to the child itself: a root child without Landlock's signal scoping could
# otherwise kill its parent (same uid), directly or through F_SETOWN/FIOSETOWN and SIGIO.
SIGNAL_TO_PID_ARG0 = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
SIGNAL_CALLS_DENIED = ("tkill", "pidfd_open", "pidfd_send_signal")
F_SETOWN, F_SETOWN_EX = 8, 15
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902
# prctl options that would undo what the bootstrap set up: clearing or changing the parent-death
# signal (a payload would then outlive a killed parent), and naming a process that may ptrace the
# child (Yama). Other setters only restrict, need capabilities the child dropped, are locked by the
# securebits, or touch nothing outside the child (PR_SET_DUMPABLE: the child is dumpable already,
# and clearing it hides nothing from its parent); see docs/sandbox.md.
PR_SET_PDEATHSIG, PR_SET_PTRACER = 1, 0x59616D61
PRCTL_DENIED = (PR_SET_PDEATHSIG, PR_SET_PTRACER)


@dataclass(frozen=True)
class SeccompReport:
    denied: tuple[str, ...]
    unknown: tuple[str, ...]  # names this architecture does not have


def available() -> tuple[bool, str]:
    """Whether a filter can be built here, and why not."""
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, RuntimeError, OSError) as exc:
        return False, f"pyseccomp unusable: {exc} (install the 'sandbox' extra and libseccomp2)"
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            if not any(line.startswith("Seccomp:") for line in fh):
                return False, "kernel built without seccomp"
    except OSError as exc:
        return False, f"cannot read /proc/self/status: {exc.strerror}"
    return True, "pyseccomp + libseccomp"


def install(*, allow_network: bool = False, own_pid: int | None = None) -> SeccompReport:
    """Load the filter into every thread of this process and all future ones. Irreversible."""
    import pyseccomp as sc

    filt = sc.SyscallFilter(sc.ALLOW)
    filt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    filt.set_attr(sc.Attr.CTL_TSYNC, 1)  # every existing thread (XLA pools), not only this one
    # Without SPEC_ALLOW the kernel turns on the Speculative Store Bypass mitigation for any
    # seccomp-filtered task, which made predict 4-5x slower here. SSB leaks data inside one
    # process; the untrusted code already runs in this process, so the mitigation buys nothing.
    with contextlib.suppress(OSError, ValueError, RuntimeError):  # libseccomp < 2.5.0
        filt.set_attr(sc.Attr.CTL_SSB, 1)
    with contextlib.suppress(OSError, ValueError, RuntimeError):  # libseccomp < 2.5.0
        filt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # a binary tree of syscall numbers, not a linear list
    denied: list[str] = []
    unknown: list[str] = []

    def rule(action: int, name: str, *args: object) -> None:
        try:
            filt.add_rule(action, name, *args)
        except (OSError, ValueError, RuntimeError):  # unknown on this architecture
            unknown.append(name)
        else:
            denied.append(name)

    for name in DENIED:
        rule(sc.ERRNO(errno.EPERM), name)
    # New processes are denied; new threads (CLONE_THREAD) are allowed. clone3 hides its flags in
    # memory seccomp cannot read, so it reports ENOSYS and libc falls back to clone.
    rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if allow_network:
        # The kernel reads the family as a 32-bit int: compare only the low half, or a caller could
        # hide AF_UNIX behind set upper bits.
        for family in range(AF_MAX):
            if family not in NETWORK_FAMILIES:
                rule(sc.ERRNO(errno.EACCES), "socket", sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, family))
        rule(sc.ERRNO(errno.EACCES), "socketpair")
    else:
        rule(sc.ERRNO(errno.EACCES), "socket")
        for name in SOCKET_CALLS:
            rule(sc.ERRNO(errno.EACCES), name)
    rule(sc.ERRNO(errno.EPERM), "prlimit64", sc.Arg(2, sc.NE, 0))
    pid = os.getpid() if own_pid is None else own_pid
    for name in SIGNAL_TO_PID_ARG0:  # kill(0) (own group) is refused too: the child needs neither
        rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, pid))
    for name in SIGNAL_CALLS_DENIED:
        rule(sc.ERRNO(errno.EPERM), name)
    for command in (F_SETOWN, F_SETOWN_EX):
        rule(sc.ERRNO(errno.EPERM), "fcntl", sc.Arg(1, sc.EQ, command))
    for request in (FIOSETOWN, SIOCSPGRP):
        rule(sc.ERRNO(errno.EPERM), "ioctl", sc.Arg(1, sc.EQ, request))
    for option in PRCTL_DENIED:  # the kernel reads the option as an int: match the low 32 bits
        rule(sc.ERRNO(errno.EPERM), "prctl", sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, option))
    filt.load()
    return SeccompReport(tuple(dict.fromkeys(denied)), tuple(unknown))
