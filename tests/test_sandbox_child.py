"""The sandboxed child with real Keras: results, isolation layers one by one, and every way it fails.

Payload models are real MLPs whose config an attacker extended with a bytecode Lambda; they load
with safe_mode=False inside the child only. Each test starts one child (about 2-4 s).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kerasguard import tempdirs
from kerasguard.errors import ModelError, SandboxError
from kerasguard.policy import Sandbox as SandboxPolicy
from kerasguard.sandbox import cgroup
from kerasguard.sandbox.capabilities import probe
from kerasguard.sandbox.config import ChildLimits, Layers
from kerasguard.sandbox.launcher import ChildProcess, spawn
from kerasguard.sandbox.model import SandboxedModel
from support import sandbox_payloads as payloads

pytestmark = [pytest.mark.keras, pytest.mark.slow]  # every test starts a sandbox child

INFO = probe()
X = np.linspace(-1, 1, 16, dtype="float32").reshape(2, 8)


@pytest.fixture(scope="session")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support import kmodels

    path = tmp_path_factory.mktemp("models") / "mlp.keras"
    kmodels.mlp().save(path)
    return path


@pytest.fixture(scope="session")
def mlp_expected(mlp_file: Path) -> np.ndarray:
    import keras

    return np.asarray(keras.saving.load_model(mlp_file).predict(X, verbose=0))


def load_and_predict(child: ChildProcess) -> np.ndarray:
    """Keras runs a Lambda's code when it builds the model and again when it traces predict."""
    reply, _ = child.request("load")
    return np.asarray(SandboxedModel(child, reply).predict(X))


def limits(**overrides: float) -> ChildLimits:
    policy = SandboxPolicy(memory_mb=2048, cpu_seconds=60, wall_seconds=60.0, max_file_mb=64)
    base = ChildLimits.from_policy(policy)
    return ChildLimits(**{**base.__dict__, **overrides})


def start(
    model: Path, *, layers: Layers | None = None, lim: ChildLimits | None = None, use_cgroup: bool = True
) -> ChildProcess:
    """A child for a payload model: safe_mode is off, as an attacker needs it to be."""
    return spawn(model, lim or limits(), layers=layers, safe_mode=False, use_cgroup=use_cgroup)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on 127.0.0.1 in the test's own network namespace; records connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


# -- a benign model ----------------------------------------------------------------------------


def test_sandboxed_mlp_predicts_like_in_process_keras(mlp_file: Path, mlp_expected: np.ndarray) -> None:
    child = spawn(mlp_file, limits())
    reply, _ = child.request("load")
    with SandboxedModel(child, reply) as model:
        got = model.predict(X)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, mlp_expected, rtol=1e-6, atol=1e-6)
        assert [s.shape for s in model.input_spec] == [(None, 8)]
        assert [s.shape for s in model.output_spec] == [(None, 3)]
        assert "dense" in model.summary()
        # The layers the machine offers are really in force on the child process.
        status = Path(f"/proc/{model.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if INFO.is_active("seccomp"):
            assert fields["Seccomp"].strip() == "2"
        if INFO.is_active("landlock") or INFO.is_active("seccomp"):
            assert fields["NoNewPrivs"].strip() == "1"
        if os.geteuid() == 0 and INFO.is_active("capabilities"):
            assert int(fields["CapEff"].strip(), 16) == 0
        if INFO.is_active("network-namespace"):
            assert os.readlink(f"/proc/{model.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        if INFO.is_active("memory-cgroup"):
            assert "kerasguard-" in Path(f"/proc/{model.pid}/cgroup").read_text()
        if INFO.is_active("mount-namespace"):  # its own root: read-only, with /proc read-only too
            mountinfo = Path(f"/proc/{model.pid}/mountinfo").read_text().splitlines()
            mounts = {f[4]: f[5] for f in (line.split() for line in mountinfo)}
            assert mounts["/"].startswith("ro,") and mounts["/proc"].startswith("ro,")
            assert "/run" not in mounts and mounts[child.config.scratch].startswith("rw,")
        # A wrong input is Keras's error, reported without killing the child.
        with pytest.raises(ModelError):
            model.predict(np.ones((2, 5), "float32"))
        np.testing.assert_allclose(model.predict(X), mlp_expected, rtol=1e-6, atol=1e-6)
    assert model.closed
    with pytest.raises(SandboxError):
        model.predict(X)
    assert not Path(child.config.scratch).exists()


# -- isolation layers, one at a time and together ----------------------------------------------

NONE = Layers(
    network_namespace=False, mount_namespace=False, capabilities=False, landlock=False, seccomp=False
)
LAYER_CASES = {
    "network-namespace": Layers(mount_namespace=False, capabilities=False, landlock=False, seccomp=False),
    "landlock": Layers(network_namespace=False, mount_namespace=False, capabilities=False, seccomp=False),
    "seccomp": Layers(network_namespace=False, mount_namespace=False, capabilities=False, landlock=False),
    "all": Layers(),
}


def _run_escape(tmp_path: Path, mlp_file: Path, layers: Layers, port: int) -> tuple[np.ndarray, Path, Path]:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    outside, exec_marker = tmp_path / "written-outside", tmp_path / "exec-ran"
    model_path = payloads.lambda_model(
        mlp_file,
        tmp_path / "escape.keras",
        payloads.escape_attempts,
        port=port,
        secret=str(secret),
        outside=str(outside),
        exec_marker=str(exec_marker),
    )
    with start(model_path, layers=layers) as child:
        codes = load_and_predict(child)[0]
    return codes, outside, exec_marker


@pytest.mark.parametrize("layer", list(LAYER_CASES))
def test_lambda_payload_is_contained_by_each_layer(
    layer: str, tmp_path: Path, mlp_file: Path, listener: tuple[int, list[object]]
) -> None:
    if layer != "all" and not INFO.is_active(layer):
        pytest.skip(f"{layer} not available here: {INFO.get(layer).detail}")
    port, accepted = listener
    codes, outside, exec_marker = _run_escape(tmp_path, mlp_file, LAYER_CASES[layer], port)
    sock, secret, write, run = (float(c) for c in codes)
    if layer == "network-namespace":
        assert sock == errno.ENETUNREACH
    elif layer == "seccomp":
        assert sock == errno.EACCES  # socket(AF_INET) refused
        assert run == errno.EPERM  # fork refused
        assert not exec_marker.exists()
    elif layer == "landlock":
        if (
            INFO.get("landlock").detail.startswith("ABI")
            and "TCP not covered" not in INFO.get("landlock").detail
        ):
            assert sock == errno.EACCES
        assert secret == errno.EACCES
        assert write == errno.EACCES
        assert run == errno.EACCES  # /bin/sh is not executable under the ruleset
        assert not outside.exists() and not exec_marker.exists()
    else:
        assert payloads.SUCCEEDED not in (sock, secret, write, run), codes
        assert not outside.exists() and not exec_marker.exists()
    assert not accepted, "the payload reached the test's listener"


def test_without_layers_the_same_payload_escapes(
    tmp_path: Path, mlp_file: Path, listener: tuple[int, list[object]]
) -> None:
    """Control: the payload really does what the other tests say is blocked."""
    port, accepted = listener
    codes, outside, exec_marker = _run_escape(tmp_path, mlp_file, NONE, port)
    assert [float(c) for c in codes] == [payloads.SUCCEEDED] * 4
    assert outside.read_text() == "escaped" and exec_marker.exists()
    time.sleep(0.3)
    assert accepted


# -- a child that misbehaves -------------------------------------------------------------------


def test_model_printing_to_stdout_does_not_corrupt_the_protocol(
    tmp_path: Path, mlp_file: Path, mlp_expected: np.ndarray
) -> None:
    noisy = payloads.lambda_model(mlp_file, tmp_path / "noisy.keras", payloads.noisy)
    with start(noisy) as child:
        got = load_and_predict(child)
        np.testing.assert_allclose(got, mlp_expected, rtol=1e-6, atol=1e-6)
        assert "hello from the model" in child.output_tail(100_000)


def test_hanging_child_hits_the_wall_clock_limit(tmp_path: Path, mlp_file: Path) -> None:
    hang = payloads.lambda_model(mlp_file, tmp_path / "hang.keras", payloads.hang)
    child = start(hang, lim=limits(wall_seconds=10.0))
    started = time.monotonic()
    with pytest.raises(SandboxError) as err:
        load_and_predict(child)
    assert err.value.limit == "wall"
    assert "wall-clock limit of 10s" in err.value.message
    assert time.monotonic() - started < 30
    assert not child.alive()
    child.close()


def test_spinning_child_hits_the_cpu_limit(tmp_path: Path, mlp_file: Path) -> None:
    """The per-request budget covers the spinning predict only, never the start-up (which used to
    eat it on a busy machine and made this test flaky)."""
    spin = payloads.lambda_model(mlp_file, tmp_path / "spin.keras", payloads.spin_in_predict)
    with start(spin, lim=limits(cpu_seconds=3)) as child, pytest.raises(SandboxError) as err:
        load_and_predict(child)
    assert err.value.limit == "cpu"
    assert "3s per request" in err.value.message
    assert child.stats.exit_status in ("signal SIGXCPU", "signal SIGKILL")


@pytest.mark.parametrize(
    ("fn", "expected"),
    [(payloads.exit_now, "exited with status 7"), (payloads.segfault, "died with signal SIGSEGV")],
    ids=["exit", "segfault"],
)
def test_child_that_dies_gives_a_precise_error(
    tmp_path: Path, mlp_file: Path, fn: object, expected: str
) -> None:
    path = payloads.lambda_model(mlp_file, tmp_path / "dies.keras", fn, status=7)  # type: ignore[arg-type]
    with start(path) as child, pytest.raises(SandboxError) as err:
        load_and_predict(child)
    assert err.value.limit is None
    assert expected in err.value.message
    assert child.stats.failure == "crash"


def test_file_size_limit(tmp_path: Path, mlp_file: Path) -> None:
    path = payloads.lambda_model(mlp_file, tmp_path / "big.keras", payloads.big_file, mib=4)
    with start(path, lim=limits(file_bytes=1 << 20)) as child, pytest.raises(SandboxError) as err:
        load_and_predict(child)
    assert err.value.limit == "files"
    assert "File too large" in err.value.message


@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup", "rss-monitor"])
def test_memory_growth_is_killed_at_the_memory_limit(
    tmp_path: Path, mlp_file: Path, use_cgroup: bool
) -> None:
    if use_cgroup and not INFO.is_active("memory-cgroup"):
        pytest.skip(f"no memory cgroup: {INFO.get('memory-cgroup').detail}")
    path = payloads.lambda_model(mlp_file, tmp_path / "grow.keras", payloads.grow_memory, step_mib=32)
    memory = 1024 << 20
    child = start(
        path,
        lim=limits(memory_bytes=memory, address_space_bytes=memory + (4096 << 20)),
        use_cgroup=use_cgroup,
    )
    child.record_memory(True)
    with pytest.raises(SandboxError) as err:
        load_and_predict(child)
    child.close()
    assert err.value.limit == "memory"
    how = "OOM killer" if use_cgroup else "RSS monitor"
    assert how in err.value.message
    assert child.stats.peak_rss_bytes > 512 << 20
    assert len(child.stats.samples) > 3
    assert max(s.rss_bytes for s in child.stats.samples) > 512 << 20


def test_layer_that_fails_to_apply_fails_closed(tmp_path: Path, mlp_file: Path) -> None:
    """A child asked for a layer it cannot apply refuses to start instead of running without it."""
    if not INFO.is_active("landlock"):
        pytest.skip("needs Landlock to build a failing case")
    bad_limits = limits(open_files=3)  # too few descriptors for Python to import anything
    with pytest.raises(SandboxError) as err:
        spawn(mlp_file, bad_limits)
    assert "could not be set up" in err.value.message or "failed" in err.value.message


def test_child_exits_when_its_parent_dies(mlp_file: Path) -> None:
    """A parent killed mid-session leaves no sandboxed child running."""
    script = (
        "import os, sys\n"
        "from kerasguard.policy import Sandbox\n"
        "from kerasguard.sandbox.config import ChildLimits\n"
        "from kerasguard.sandbox.launcher import spawn\n"
        f"child = spawn({str(mlp_file)!r}, ChildLimits.from_policy(Sandbox(memory_mb=2048)))\n"
        "child.request('load')\n"
        "print(os.getpid(), child.stats.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[-1])
    done_pid = int(done.stdout.split()[-2])
    deadline = time.monotonic() + 30
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(pid)
    left = list(Path(tempfile.gettempdir()).glob(f"kerasguard-scratch-{done_pid}-*"))
    assert left, "the killed parent left its child's scratch directory"
    tempdirs.private_dir("scratch").rmdir()  # the next sandbox sweeps it
    assert not any(d.exists() for d in left)
    placement, _ = cgroup.locate()
    if placement is not None:
        cgroup.remove_stale(placement)  # the dead parent's empty group


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
