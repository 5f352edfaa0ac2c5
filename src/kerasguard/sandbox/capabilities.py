"""Which isolation layers this machine can give a sandboxed child, measured rather than assumed.

Namespaces and capability dropping are tried for real in a throw-away subprocess; Landlock and
seccomp are asked of the kernel. ``kerasguard sandbox-info`` prints the result and the loader logs
it, so a missing layer is always visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from kerasguard.errors import PolicyError
from kerasguard.policy import SANDBOX_LAYERS
from kerasguard.sandbox import bootstrap, cgroup, landlock, seccomp

# The order in which layers are reported (strongest containment first).
LAYER_ORDER = (
    "memory-cgroup",
    "rlimits",
    "wall-clock",
    "network-namespace",
    "mount-namespace",
    "capabilities",
    "landlock",
    "seccomp",
    "private-tmp",
    "parent-death",
    "scrubbed-env",
)


@dataclass(frozen=True)
class Layer:
    """One isolation layer: whether it is active here and what exactly (or why not)."""

    name: str
    active: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "active": self.active, "detail": self.detail}


@dataclass(frozen=True)
class SandboxInfo:
    """The layers available on this machine."""

    layers: tuple[Layer, ...]

    def get(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def is_active(self, name: str) -> bool:
        return any(layer.name == name and layer.active for layer in self.layers)

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.active)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if not layer.active)

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": list(self.active),
            "missing": list(self.missing),
            "layers": [layer.to_dict() for layer in self.layers],
        }


def _probe_in_subprocess() -> dict[str, tuple[bool, str]]:
    try:
        done = subprocess.run(
            bootstrap.command("probe", site=False),
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return {k: (bool(v[0]), str(v[1])) for k, v in data.items()}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError, TypeError) as exc:
        why = f"probe subprocess failed: {type(exc).__name__}: {exc}"
        return {"netns": (False, why), "mntns": (False, why), "caps": (False, why)}


def measure() -> SandboxInfo:
    """Probe every layer now (about 50 ms: it starts one small subprocess)."""
    tried = _probe_in_subprocess()
    placement, why_cgroup = cgroup.locate()
    abi = landlock.abi_version()
    sc_ok, sc_why = seccomp.available()
    caps_ok, caps_why = tried["caps"]
    layers = {
        "memory-cgroup": Layer("memory-cgroup", placement is not None, why_cgroup),
        "rlimits": Layer("rlimits", True, "RLIMIT_AS (backstop), CPU, FSIZE, NOFILE, CORE=0"),
        "wall-clock": Layer("wall-clock", True, "parent kills the child's process group on timeout"),
        "network-namespace": Layer("network-namespace", *tried["netns"]),
        "mount-namespace": Layer("mount-namespace", *tried.get("mntns", (False, "not probed"))),
        "capabilities": Layer("capabilities", caps_ok, caps_why),
        "landlock": Layer(
            "landlock",
            abi >= 1,
            f"ABI {abi}" + ("" if abi >= 4 else "; TCP not covered (needs ABI 4)")
            if abi
            else "not available",
        ),
        "seccomp": Layer("seccomp", sc_ok, sc_why),
        "private-tmp": Layer("private-tmp", True, "0700 scratch directory as cwd, HOME and TMPDIR"),
        "parent-death": Layer(
            "parent-death",
            True,
            "PR_SET_PDEATHSIG(SIGKILL) before the child runs code"
            + ("; seccomp keeps it set" if sc_ok else "; without seccomp a payload can clear it"),
        ),
        "scrubbed-env": Layer("scrubbed-env", True, "only backend and thread variables are passed"),
    }
    return SandboxInfo(tuple(layers[name] for name in LAYER_ORDER))


# What to do when a required layer is missing (shown in the refusal).
FIXES = {
    "memory-cgroup": "run as root with a writable cgroup v1 memory hierarchy, or give the caller a cgroup v2 "
    "group that delegates the memory controller (systemd-run --user -p Delegate=yes ...)",
    "network-namespace": "allow unshare(CLONE_NEWNET): as root, or with unprivileged user namespaces "
    "(sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone = 1, no AppArmor userns "
    "restriction); in a container, allow unshare/clone in its seccomp profile",
    "mount-namespace": "allow unshare(CLONE_NEWNS) and mount/pivot_root: as root, or with unprivileged user "
    "namespaces (see network-namespace); in a container, allow them in its seccomp profile",
    "capabilities": "allow capset/prctl(PR_CAPBSET_DROP) (blocked by a seccomp profile?)",
    "landlock": "boot a kernel with CONFIG_SECURITY_LANDLOCK=y and landlock in lsm=, and in a container "
    "allow the landlock_* system calls in its seccomp profile",
    "seccomp": "install libseccomp2 and the 'sandbox' extra (pip install 'kerasguard[sandbox]')",
}


def default_required(euid: int | None = None) -> tuple[str, ...]:
    """Layers a load needs unless the policy says otherwise: every one for root; for other users all
    but the memory cgroup (not writable without delegation; the RSS monitor stands in)."""
    root = (os.geteuid() if euid is None else euid) == 0
    return tuple(name for name in SANDBOX_LAYERS if root or name != "memory-cgroup")


def check_required(info: SandboxInfo, required: tuple[str, ...], *, allow_network: bool = False) -> None:
    """Refuse (PolicyError) when a required layer is not available on this machine."""
    missing = [
        name
        for name in required
        if not info.is_active(name) and not (allow_network and name == "network-namespace")
    ]
    if not missing:
        return
    lines = [f"  {name}: {info.get(name).detail}" for name in missing]
    fixes = [f"  {name}: {FIXES[name]}" for name in missing]
    raise PolicyError(
        f"the sandbox layer(s) {', '.join(missing)} required by the policy are not available here:\n"
        + "\n".join(lines),
        hint="fix:\n"
        + "\n".join(fixes)
        + "\nor opt out explicitly: [sandbox] require = [...] without them (logged at every load)",
    )


_lock = threading.Lock()
_cached: SandboxInfo | None = None


def probe(*, refresh: bool = False) -> SandboxInfo:
    """The layers of this machine, measured once per process."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = measure()
        return _cached
