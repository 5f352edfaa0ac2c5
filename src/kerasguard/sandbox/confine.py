"""Confinement steps the child applies to itself, in an order that leaves no gap.

``early`` runs while the child is still single-threaded (before NumPy or the backend start their
thread pools): rlimits, new network and mount namespaces (inside a user namespace when not root),
the private filesystem (:mod:`.mountns`), dropping capabilities and Landlock. All of these are
per-thread in Linux, so applying them later would leave the backend's threads unconfined.
``late`` runs after the trusted imports: the seccomp filter (synchronised to every thread), which
denies ``execve`` among others, so it must come after imports that spawn helpers.
"""

from __future__ import annotations

import os
import resource
import sys
import sysconfig

from kerasguard.sandbox import _linux, landlock, mountns
from kerasguard.sandbox.config import ChildConfig, ChildLimits

# Read-only system paths a Python + XLA process needs: shared libraries, the loader cache, CPU
# topology (XLA and XNNPACK size their thread pools from it), and harmless device files.
SYSTEM_READ_PATHS = (
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
)


def apply_rlimits(limits: ChildLimits) -> None:
    """Hard limits the child can lower but never raise (it keeps no CAP_SYS_RESOURCE)."""
    cpu = limits.startup_cpu_seconds  # the parent re-arms it per request once the model is loaded
    settings = (
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_AS, limits.address_space_bytes, limits.address_space_bytes),
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL one second later
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
    )
    for which, soft, hard in settings:
        resource.setrlimit(which, (soft, hard))


def enter_namespaces(network: bool, mounts: bool) -> tuple[str, bool]:
    """New network and/or mount namespaces; returns (description, whether a user namespace was made).

    Not root: a user namespace comes first (it is what allows the others), and in it this process
    holds a full capability set until :func:`drop_capabilities` runs.
    """
    flags = (_linux.CLONE_NEWNET if network else 0) | (_linux.CLONE_NEWNS if mounts else 0)
    names = [n for n, on in (("network", network), ("mount", mounts)) if on]
    if os.geteuid() == 0:
        _linux.unshare(flags)
        return f"new {' + '.join(names)} namespace", False
    uid, gid = os.geteuid(), os.getegid()
    _linux.unshare(_linux.CLONE_NEWUSER | flags)
    _linux.write_id_maps(uid, gid)
    return f"new user + {' + '.join(names)} namespace", True


def drop_capabilities() -> str:
    _linux.drop_all_capabilities()
    if _linux.effective_capabilities() != 0:
        raise OSError(1, "capabilities are still effective after dropping them")
    return "no capabilities, securebits locked"


def python_read_paths() -> list[str]:
    """Where this interpreter and its packages live (read-only for the child)."""
    paths = [p for p in sys.path if p]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(key)
        if value:
            paths.append(value)
    return [os.path.realpath(p) for p in paths if os.path.exists(p)]


def apply_landlock(config: ChildConfig) -> str:
    read_only = [*python_read_paths(), *config.sys_path, *SYSTEM_READ_PATHS, config.model_path]
    done = landlock.restrict(read_only, [config.scratch], deny_tcp=not config.layers.allow_network)
    extra = "TCP bind/connect denied" if done.network else "no TCP rules (ABI < 4)"
    scoped = ", signals and abstract sockets scoped" if done.scoped else ""
    return f"ABI {done.abi}: read-only {len(done.read_only)} paths, read-write scratch; {extra}{scoped}"


def mount_plan(config: ChildConfig) -> mountns.MountPlan:
    return mountns.MountPlan(
        read_only=tuple([*python_read_paths(), *config.sys_path]),
        model=config.model_path,
        scratch=config.scratch,
        scratch_bytes=config.limits.scratch_bytes,
    )


def early(config: ChildConfig) -> dict[str, str]:
    """Steps that must happen before any thread exists. Raises OSError naming the failed step."""
    applied: dict[str, str] = {}
    layers = config.layers
    if layers.seccomp:
        import pyseccomp  # noqa: F401  (now: its import runs ldconfig, which Landlock would forbid)
    apply_rlimits(config.limits)
    applied["rlimits"] = (
        f"AS={config.limits.address_space_bytes} CPU={config.limits.startup_cpu_seconds}s "
        f"FSIZE={config.limits.file_bytes} NOFILE={config.limits.open_files} CORE=0"
    )
    network = layers.network_namespace and not layers.allow_network
    scratch = config.scratch
    in_user_namespace = False

    def namespaces() -> str:
        nonlocal in_user_namespace
        detail, in_user_namespace = enter_namespaces(network, layers.mount_namespace)
        return detail

    steps = (
        ("namespaces", network or layers.mount_namespace, namespaces),
        ("mount-namespace", layers.mount_namespace, lambda: mountns.build(mount_plan(config), scratch)),
        ("capabilities", layers.capabilities, drop_capabilities),
        ("landlock", layers.landlock, lambda: apply_landlock(config)),
    )
    for name, wanted, step in steps:
        if not wanted:
            continue
        if name == "capabilities" and os.geteuid() != 0 and not in_user_namespace:
            continue  # an ordinary user outside any user namespace has nothing to drop
        try:
            detail = step()
        except OSError as exc:
            raise OSError(exc.errno, f"{name}: {exc.strerror or exc}") from None
        if name == "namespaces":
            if network:
                applied["network-namespace"] = detail
            if in_user_namespace:
                applied["user-namespace"] = "uid/gid mapped to the caller's; capabilities dropped below"
        else:
            applied[name] = detail
    return applied


def late(config: ChildConfig) -> dict[str, str]:
    """Steps after the trusted imports: the seccomp filter on every thread."""
    if not config.layers.seccomp:
        return {}
    from kerasguard.sandbox import seccomp

    try:
        report = seccomp.install(allow_network=config.layers.allow_network)
    except OSError as exc:
        raise OSError(exc.errno, f"seccomp: {exc.strerror or exc}") from None
    sockets = "non-INET sockets" if config.layers.allow_network else "all sockets"
    return {
        "seccomp": f"{len(report.denied)} syscall rules; {sockets} and new processes refused; "
        "foreign-ABI syscalls kill the process"
    }
