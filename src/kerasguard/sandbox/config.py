"""What the parent tells the child: limits, layers to apply, paths and load options (sent as JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kerasguard.policy import MiB
from kerasguard.policy import Sandbox as SandboxPolicy

# XLA reserves about 1.6 GB of address space before it loads anything; RLIMIT_AS is a coarse
# backstop above the real (cgroup or RSS-monitor) memory limit, never the limit itself.
ADDRESS_SPACE_HEADROOM = 2048 * MiB


@dataclass(frozen=True)
class ChildLimits:
    """Resource limits in bytes and seconds."""

    memory_bytes: int
    address_space_bytes: int
    cpu_seconds: int  # per request
    wall_seconds: float  # per request
    file_bytes: int
    open_files: int
    startup_cpu_seconds: int = 300  # start-up and load together
    startup_wall_seconds: float = 300.0
    scratch_bytes: int = 512 * MiB

    @classmethod
    def from_policy(cls, policy: SandboxPolicy) -> ChildLimits:
        memory = policy.memory_mb * MiB
        return cls(
            memory_bytes=memory,
            address_space_bytes=memory + ADDRESS_SPACE_HEADROOM,
            cpu_seconds=max(1, policy.cpu_seconds),
            wall_seconds=max(0.1, policy.wall_seconds),
            file_bytes=policy.max_file_mb * MiB,
            open_files=max(16, policy.max_open_files),
            startup_cpu_seconds=max(1, policy.startup_cpu_seconds),
            startup_wall_seconds=max(0.1, policy.startup_wall_seconds),
            scratch_bytes=max(1, policy.scratch_mb) * MiB,
        )


@dataclass(frozen=True)
class Layers:
    """Which confinement steps the child must apply (it fails rather than skip one it was asked for)."""

    network_namespace: bool = True
    allow_network: bool = False  # the policy allows network: no namespace, no TCP rules, INET sockets
    mount_namespace: bool = True
    capabilities: bool = True
    landlock: bool = True
    seccomp: bool = True


@dataclass(frozen=True)
class ChildConfig:
    """Everything the child needs; it receives nothing else (no inherited environment)."""

    model_path: str
    scratch: str
    limits: ChildLimits
    layers: Layers = field(default_factory=Layers)
    safe_mode: bool = True
    compile: bool = True
    custom_objects: dict[str, str] = field(default_factory=dict)  # name -> "module:qualname"
    sys_path: tuple[str, ...] = ()  # roots of the caller's custom-object modules
    max_payload: int = 1 << 30

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChildConfig:
        return cls(
            model_path=str(data["model_path"]),
            scratch=str(data["scratch"]),
            limits=ChildLimits(**data["limits"]),
            layers=Layers(**data["layers"]),
            safe_mode=bool(data["safe_mode"]),
            compile=bool(data["compile"]),
            custom_objects={str(k): str(v) for k, v in data["custom_objects"].items()},
            sys_path=tuple(str(p) for p in data["sys_path"]),
            max_payload=int(data["max_payload"]),
        )
