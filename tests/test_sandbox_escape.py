"""Attacks on the sandbox from a real Lambda payload: host sockets, host files, scratch, foreign ABIs,
and the start-up CPU budget.

The targets are this machine's real services: PostgreSQL's and MariaDB's Unix sockets, Redis on
TCP 127.0.0.1:6379, every other listening path socket of the host, and an abstract socket the
test itself listens on. Before each attack the test checks that it can reach the target itself,
so a "blocked" result cannot come from a target that is simply not there.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kerasguard.errors import SandboxError
from kerasguard.policy import Sandbox as SandboxPolicy
from kerasguard.sandbox.capabilities import probe
from kerasguard.sandbox.config import ChildLimits, Layers
from kerasguard.sandbox.launcher import ChildProcess, spawn
from kerasguard.sandbox.model import SandboxedModel
from support import sandbox_payloads as payloads

pytestmark = [pytest.mark.keras, pytest.mark.slow]

INFO = probe()
X = np.linspace(-1, 1, 16, dtype="float32").reshape(2, 8)
POSTGRES = "/var/run/postgresql/.s.PGSQL.5432"
MARIADB = "/run/mysqld/mysqld.sock"
REDIS_PORT = 6379
SCRATCH_MB = 8


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support import kmodels

    path = tmp_path_factory.mktemp("models") / "mlp.keras"
    kmodels.mlp().save(path)
    return path


def limits(**overrides: float) -> ChildLimits:
    base = ChildLimits.from_policy(
        SandboxPolicy(memory_mb=2048, cpu_seconds=60, wall_seconds=60.0, scratch_mb=SCRATCH_MB)
    )
    return ChildLimits(**{**base.__dict__, **overrides})


def run_payload(model: Path, layers: Layers | None = None, lim: ChildLimits | None = None) -> np.ndarray:
    with spawn(model, lim or limits(), layers=layers, safe_mode=False) as child:
        return load_and_predict(child)


def load_and_predict(child: ChildProcess) -> np.ndarray:
    reply, _ = child.request("load")
    return np.asarray(SandboxedModel(child, reply).predict(X))


def reachable_unix(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def host_path_sockets(limit: int = 6) -> list[str]:
    """Other listening path-named sockets of this host (from /proc/net/unix)."""
    found: list[str] = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        listening = len(fields) >= 8 and fields[7].startswith("/") and int(fields[3], 16) & 0x10000
        if listening and fields[7] not in (POSTGRES, MARIADB, *found) and reachable_unix(fields[7]):
            found.append(fields[7])
    return found[:limit]


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, object]]:
    """The real services, checked reachable from the test process, plus an abstract listener."""
    for path in (POSTGRES, MARIADB):
        assert reachable_unix(path), f"{path} is not reachable even from the test: the attack proves nothing"
    with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=2):
        pass
    name = f"kerasguard-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(8)
    assert reachable_unix("\0" + name)
    marker = Path(tempfile.gettempdir()) / f"kerasguard-host-file-{os.getpid()}"
    marker.write_text("host /tmp")
    try:
        yield {
            "unix_paths": [POSTGRES, MARIADB, *host_path_sockets()],
            "abstract": name,
            "tcp_port": REDIS_PORT,
            "host_file": str(marker),
        }
    finally:
        listener.close()
        marker.unlink()


LAYERS = {
    "all": Layers(),
    "seccomp": Layers(network_namespace=False, mount_namespace=False, capabilities=False, landlock=False),
    "mount-namespace": Layers(network_namespace=False, capabilities=False, landlock=False, seccomp=False),
}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_payload_reaches_no_host_socket_and_fills_no_host_disk(
    layer: str, tmp_path: Path, mlp_file: Path, targets: dict[str, object]
) -> None:
    if layer != "all" and not INFO.is_active(layer):
        pytest.skip(f"{layer} not available here: {INFO.get(layer).detail}")
    # Without the mount namespace scratch is only counted (and the child killed): see the test below.
    fill = 3 * SCRATCH_MB if LAYERS[layer].mount_namespace else 0
    model = payloads.lambda_model(
        mlp_file, tmp_path / "reach.keras", payloads.host_reach, fill_mib=fill, **targets
    )
    codes = [float(c) for c in run_payload(model, LAYERS[layer])[0]]
    paths = list(targets["unix_paths"])  # type: ignore[call-overload]
    *path_codes, abstract, tcp, pair, run_dir, host_file, signal_parent, own_parent, scratch_mib = codes
    assert len(path_codes) == len(paths)
    names = [*paths, "abstract", "tcp", "socketpair"]
    by_target = dict(zip(names, [*path_codes, abstract, tcp, pair], strict=True))
    if layer == "all":
        assert payloads.SUCCEEDED not in by_target.values(), by_target
        assert run_dir == errno.ENOENT and host_file == errno.ENOENT
        assert signal_parent == errno.EPERM and own_parent == errno.EPERM
        assert scratch_mib <= SCRATCH_MB
    elif layer == "seccomp":
        assert set(by_target.values()) == {errno.EACCES}, by_target  # socket() itself is refused
        assert signal_parent == errno.EPERM and own_parent == errno.EPERM  # without Landlock's scoping
    else:  # a private root: no path under /run, no host /tmp, scratch is a small tmpfs
        assert all(by_target[p] == errno.ENOENT for p in paths), by_target
        assert run_dir == errno.ENOENT and host_file == errno.ENOENT
        assert 0 < scratch_mib <= SCRATCH_MB


def test_without_the_mount_namespace_scratch_is_counted_and_the_child_killed(
    tmp_path: Path, mlp_file: Path
) -> None:
    """The fallback when the mount namespace is opted out: the parent adds up scratch's disk usage."""
    fill = payloads.fill_scratch
    model = payloads.lambda_model(mlp_file, tmp_path / "fill.keras", fill, mib=3 * SCRATCH_MB)
    child = spawn(model, limits(), layers=Layers(mount_namespace=False), safe_mode=False)
    with pytest.raises(SandboxError) as err:
        load_and_predict(child)
    child.close()
    assert err.value.limit == "files" and "scratch_mb" in err.value.message
    assert not Path(child.config.scratch).exists()  # and the parent removed what it wrote


@pytest.mark.skipif(not INFO.is_active("seccomp"), reason="needs seccomp")
def test_foreign_abi_system_call_kills_the_child_at_once(tmp_path: Path, mlp_file: Path) -> None:
    """``int 0x80`` used to kill only the calling thread, and the load then hung until the wall clock."""
    model = payloads.lambda_model(mlp_file, tmp_path / "int80.keras", payloads.int80, number=20)
    lim = limits(wall_seconds=60.0, startup_wall_seconds=120.0)
    child = spawn(model, lim, safe_mode=False)
    started = time.monotonic()
    with pytest.raises(SandboxError) as err:
        load_and_predict(child)
    elapsed = time.monotonic() - started
    child.close()
    assert "SIGSYS" in err.value.message and "foreign ABI" in err.value.message
    assert elapsed < 30, f"the load took {elapsed:.0f}s: the child hung instead of dying"
    assert child.stats.exit_status == "signal SIGSYS"


def test_start_up_cpu_budget_is_enforced(mlp_file: Path) -> None:
    """Start-up has its own CPU budget (the per-request one is tested in test_sandbox_child)."""
    with pytest.raises(SandboxError) as err:
        spawn(mlp_file, limits(startup_cpu_seconds=1))
    assert err.value.limit == "cpu"
    assert "1s for start-up and load" in err.value.message
