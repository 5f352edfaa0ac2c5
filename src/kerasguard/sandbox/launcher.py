"""Start the sandboxed child, talk to it, and turn every way it can fail into a precise error.

The parent never trusts the child: every reply is bounded and validated (:mod:`.ipc`), every
request has a wall-clock deadline, the CPU budget is re-armed per request, memory is watched by
the kernel (cgroup) and by :class:`MemoryMonitor`, and when the child dies the cause is worked out
from its exit status, resource usage and the cgroup's OOM counter. The parent itself never dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kerasguard.errors import ModelError, SandboxError
from kerasguard.escaping import printable
from kerasguard.sandbox import _linux, bootstrap, cgroup
from kerasguard.sandbox.capabilities import SandboxInfo, probe
from kerasguard.sandbox.config import ChildConfig, ChildLimits, Layers
from kerasguard.sandbox.ipc import Array, Channel, ChannelClosed, ProtocolError, Timeout, TruncatedFrame
from kerasguard.sandbox.monitor import MemoryMonitor, Sample
from kerasguard.tempdirs import private_dir

log = logging.getLogger("kerasguard.sandbox")
child_log = logging.getLogger("kerasguard.sandbox.child")

# Variables the child may inherit: backend choice and thread counts. Nothing else crosses.
PASS_ENV = (
    "KERAS_BACKEND",
    "JAX_PLATFORMS",
    "JAX_ENABLE_X64",
    "XLA_FLAGS",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_CPP_MIN_LOG_LEVEL",
)
OUTPUT_TAIL_BYTES = 16 * 1024
CLOSE_GRACE_S = 3.0
MEMORY_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)
_MEMORY_TEXT = ("bad_alloc", "MemoryError", "RESOURCE_EXHAUSTED", "Out of memory", "Cannot allocate memory")


def child_env(scratch: Path) -> dict[str, str]:
    """The whole environment of the child: a few backend variables and its private scratch."""
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.setdefault("KERAS_BACKEND", "jax")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(
        PATH="/usr/bin:/bin",
        HOME=str(scratch),
        TMPDIR=str(scratch),
        KERAS_HOME=str(scratch / ".keras"),
        LANG="C.UTF-8",
    )
    return env


def choose_layers(info: SandboxInfo, *, allow_network: bool, disable: Collection[str] = ()) -> Layers:
    """Every layer this machine offers, minus ``disable`` (used by tests to check one layer alone)."""

    def want(name: str) -> bool:
        return info.is_active(name) and name not in disable

    return Layers(
        network_namespace=want("network-namespace") and not allow_network,
        allow_network=allow_network,
        mount_namespace=want("mount-namespace"),
        capabilities=want("capabilities"),
        landlock=want("landlock"),
        seccomp=want("seccomp"),
    )


@dataclass
class ChildStats:
    """What the load event reports about the child."""

    pid: int = 0
    layers: dict[str, str] = field(default_factory=dict)
    startup_s: float | None = None
    peak_rss_bytes: int = 0
    cgroup_peak_bytes: int | None = None
    samples: list[Sample] = field(default_factory=list)
    exit_status: str | None = None
    failure: str | None = None

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        """The event's view; the memory curve (up to 1000 points, ~20 KB) only with ``samples``."""
        out: dict[str, Any] = {
            "pid": self.pid,
            "layers": dict(self.layers),
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "cgroup_peak_bytes": self.cgroup_peak_bytes,
            "memory": {
                "peak_rss_bytes": max((s.rss_bytes for s in self.samples), default=self.peak_rss_bytes),
                "samples": len(self.samples),
                "duration_s": self.samples[-1].t_s if self.samples else None,
            },
            "exit_status": self.exit_status,
            "failure": self.failure,
        }
        if samples:
            out["memory_samples"] = [[s.t_s, s.rss_bytes] for s in self.samples]
        return out


class ChildProcess:
    """One sandboxed child. Create with :func:`spawn`; always :meth:`close` (also a context manager)."""

    def __init__(self, config: ChildConfig, placement: cgroup.Placement | None, python: str) -> None:
        self.config = config
        self.limits = config.limits
        self.stats = ChildStats()
        self._python = python
        self._placement = placement
        self._group: cgroup.ChildGroup | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._monitor: MemoryMonitor | None = None
        self._lock = threading.RLock()
        self._tail = bytearray()
        self._tail_lock = threading.Lock()
        self._drainer: threading.Thread | None = None
        self._killed_for: str | None = None
        self._reported: str | None = None  # a fatal error the child reported before it was killed
        self._reaped = False
        self._closed = False
        self._cpu_rearm = True
        self._timeout_s = config.limits.wall_seconds
        self._cpu_clock: int | None = None
        # Start-up and the load share one budget (CPU: the child's initial RLIMIT_CPU; wall: this
        # deadline); each later request gets the per-request budget.
        self._phase = "startup"
        self._startup_deadline = time.monotonic() + config.limits.startup_wall_seconds

    # -- lifecycle ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        scratch = Path(self.config.scratch)
        try:
            # From a thread that lives as long as this process: the kernel sends the parent-death
            # signal when the *thread* that forked the child exits, and a caller's worker thread may.
            self._popen = _spawn_from_long_lived_thread(
                subprocess.Popen,
                bootstrap.command("child", str(p2c_r), str(c2p_w), python=self._python),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=scratch,
                env=child_env(scratch),
                pass_fds=(p2c_r, c2p_w),
                start_new_session=True,
            ).result()
        except OSError as exc:
            os.close(p2c_w)
            os.close(c2p_r)
            raise SandboxError(f"cannot start the sandboxed child: {exc}", limit=None) from None
        finally:  # the child's ends: only the child may hold them, or EOF would never come
            os.close(p2c_r)
            os.close(c2p_w)
        pid = self._popen.pid
        self.stats.pid = pid
        self._cpu_clock = process_cpu_clock(pid)
        self._channel = Channel(c2p_r, p2c_w, max_payload=self.config.max_payload)
        assert self._popen.stdout is not None
        self._drainer = threading.Thread(
            target=self._drain, args=(self._popen.stdout,), name=f"kerasguard-output-{pid}", daemon=True
        )
        self._drainer.start()
        if self._placement is not None:
            try:
                self._group = cgroup.ChildGroup.create(self._placement, self.limits.memory_bytes)
                self._group.add(pid)
            except OSError as exc:
                self.kill("startup")
                self._cleanup()
                raise SandboxError(f"cannot put the child in a memory cgroup: {exc}", limit=None) from None
        self._monitor = MemoryMonitor(
            pid,
            rss_limit=None if self._group is not None else self.limits.memory_bytes,
            on_exceeded=lambda rss: self.kill("memory"),
            # Without the mount namespace's size-capped tmpfs, scratch is a host directory: count it.
            scratch=None if self.config.layers.mount_namespace else self.config.scratch,
            scratch_limit=self.limits.scratch_bytes,
            on_scratch_exceeded=lambda used: self.kill("scratch"),
        )
        self._monitor.start(recording=True)

    def _handshake(self) -> None:
        assert self._channel is not None
        started = time.monotonic()
        reply, _ = self._exchange(
            {"op": "config", "config": self.config.to_dict()},
            (),
            timeout_s=max(0.0, self._startup_deadline - started),
        )
        self.stats.startup_s = time.monotonic() - started
        applied = reply.get("layers")
        if not isinstance(applied, dict):
            raise self._fail(ProtocolError("ready message without a layer report"))
        self.stats.layers = {str(k): str(v)[:300] for k, v in applied.items()}
        self.stats.layers = {
            "wall-clock": f"{self.limits.startup_wall_seconds:g}s start-up and load, "
            f"{self.limits.wall_seconds:g}s per request",
            **self.stats.layers,
        }
        if self._group is not None:
            self.stats.layers["memory-cgroup"] = (
                f"cgroup v{self._group.version}: {self.limits.memory_bytes} bytes"
            )
        else:
            self.stats.layers["rss-monitor"] = f"kill above {self.limits.memory_bytes} bytes RSS"
        wanted = {
            "network-namespace": self.config.layers.network_namespace
            and not self.config.layers.allow_network,
            "mount-namespace": self.config.layers.mount_namespace,
            "capabilities": self.config.layers.capabilities
            and (os.geteuid() == 0 or "user-namespace" in applied),
            "landlock": self.config.layers.landlock,
            "seccomp": self.config.layers.seccomp,
        }
        missing = [name for name, on in wanted.items() if on and name not in applied]
        if missing:
            raise self._fail(
                ProtocolError(f"the child did not apply required layer(s): {', '.join(missing)}")
            )

    def close(self) -> None:
        """Ask the child to exit, kill it if it does not, and remove its cgroup and scratch."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.alive() and self._channel is not None:
                with contextlib.suppress(SandboxError, OSError):
                    self._channel.send({"op": "close"})
                    self._channel.recv(time.monotonic() + CLOSE_GRACE_S)
            self._reap(timeout_s=CLOSE_GRACE_S)
            self._cleanup()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> bool:
        return self._popen is not None and not self._reaped and self._killed_for is None

    def kill(self, reason: str) -> None:
        """SIGKILL the child's process group and cgroup; the first reason given is the one reported."""
        if self._killed_for is None:
            self._killed_for = reason
        if self._popen is not None and not self._reaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        if self._group is not None:
            self._group.kill_all()

    # -- requests ----------------------------------------------------------------------------

    def request(
        self, op: str, header: Mapping[str, Any] | None = None, arrays: Sequence[Array] = ()
    ) -> tuple[dict[str, Any], list[Array]]:
        """Send one request and wait (up to the wall-clock limit) for its answer."""
        with self._lock:
            if self._closed or not self.alive():
                raise SandboxError(
                    "the sandboxed child is no longer running"
                    + (f" (it was stopped: {self.stats.failure})" if self.stats.failure else ""),
                    limit=self.stats.failure,
                )
            if op == "load" and self._phase == "startup":
                # The load finishes the start-up budget (CPU limit still the initial one).
                timeout = max(0.0, self._startup_deadline - time.monotonic())
                result = self._exchange({"op": op, **(header or {})}, arrays, timeout_s=timeout)
                self._phase = "request"
                return result
            self._phase = "request"
            self._arm_cpu()
            return self._exchange({"op": op, **(header or {})}, arrays, timeout_s=self.limits.wall_seconds)

    def refresh_stats(self) -> ChildStats:
        """Bring the memory figures up to date while the child is still running."""
        if self._monitor is not None and not self._closed:
            self._monitor.sample_now()
            samples, peak, _ = self._monitor.snapshot()
            self.stats.samples = samples
            self.stats.peak_rss_bytes = max(self.stats.peak_rss_bytes, peak)
        if self._group is not None:
            self.stats.cgroup_peak_bytes = self._group.peak_bytes()
        return self.stats

    def record_memory(self, on: bool) -> None:
        if self._monitor is not None:
            self._monitor.record(on)

    def _exchange(
        self, message: Mapping[str, Any], arrays: Sequence[Array], *, timeout_s: float
    ) -> tuple[dict[str, Any], list[Array]]:
        assert self._channel is not None
        self._timeout_s = timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            self._channel.send(message, arrays)
            reply, out = self._channel.recv(deadline)
        except ProtocolError as exc:
            if str(exc).startswith("message too large to send"):
                raise  # our own request was too large: the child is fine
            raise self._fail(exc) from None
        except (ChannelClosed, Timeout) as exc:
            raise self._fail(exc) from None
        if reply.get("ok") is True:
            return reply, out
        raise self._child_error(reply.get("error"))

    def _arm_cpu(self) -> None:
        """Give each request the full CPU budget: soft limit = CPU used so far + cpu_seconds."""
        if not self._cpu_rearm or self._popen is None:
            return
        used = cpu_seconds(self._popen.pid, self._cpu_clock)
        if used is None:
            return
        soft = math.ceil(used) + self.limits.cpu_seconds
        try:
            resource.prlimit(self._popen.pid, resource.RLIMIT_CPU, (soft, soft + 1))
        except (OSError, ValueError):
            self._cpu_rearm = False  # not privileged: the budget covers the child's whole life

    # -- failures ----------------------------------------------------------------------------

    def _child_error(self, error: Any) -> KerasErrorLike:
        """A structured error the child reported (it is still alive unless the limit was fatal)."""
        if not isinstance(error, dict):
            return self._fail(ProtocolError("error reply without an error object"))
        kind = _clean(error.get("type"), 80) or "Error"
        message = _clean(error.get("message"), 4000, keep_newlines=True)
        stage = _clean(error.get("stage"), 40)
        code = error.get("errno")
        if stage in ("confine", "import"):
            self._reap(timeout_s=CLOSE_GRACE_S)
            self.stats.failure = "startup"
            self._cleanup()
            return SandboxError(
                f"the sandbox could not be set up ({stage}): {kind}: {message}",
                limit=None,
                hint="run `kerasguard sandbox-info`; a layer the machine reported as available failed",
            )
        if error.get("memory") is True:
            self.kill("memory")
            self._reported = f"{kind}: {message}"
            return self._fail(ChannelClosed(self._reported))
        if code in (errno.EMFILE, errno.ENFILE, errno.EFBIG):
            self.kill("files")
            self._reported = f"{kind}: {message}"
            return self._fail(ChannelClosed(self._reported))
        return ModelError(f"Keras raised {kind} during {stage or 'a request'}: {message}", error_type=kind)

    def _fail(self, cause: SandboxError) -> SandboxError:
        """Stop the child, find out why it failed, clean up, and describe it."""
        if isinstance(cause, Timeout):
            self.kill("wall")
        elif isinstance(cause, ProtocolError) and not isinstance(cause, TruncatedFrame):
            self.kill("protocol")  # a truncated frame is judged by how the child ended (below)
        status, usage = self._reap(timeout_s=1.0)
        reason, detail = self._classify(status, usage, cause)
        self.stats.failure = reason
        self._cleanup()
        limit = reason if reason in ("memory", "cpu", "wall", "files", "protocol") else None
        tail = self.output_tail()
        hint = f"last output of the child:\n{tail}" if tail else None
        return SandboxError(f"sandboxed child failed: {detail}", limit=limit, hint=hint)

    def _classify(self, status: int | None, usage: Any, cause: SandboxError) -> tuple[str, str]:
        lim = self.limits
        text = self.output_tail()
        sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
        oom = self._group.oom_kills() if self._group is not None else 0
        hit = self._group.hit_limit() if self._group is not None else False
        mib = lim.memory_bytes // (1024 * 1024)
        peak = _mib(self.stats.peak_rss_bytes)
        during = "for start-up and load" if self._phase == "startup" else "per request"
        if self._killed_for == "wall":
            return "wall", f"no answer within the wall-clock limit of {self._timeout_s:g}s {during}; killed"
        if self._reported and self._killed_for == "memory":
            return "memory", (
                f"an allocation failed at the memory limit of {mib} MiB (address-space backstop "
                f"{_mib(lim.address_space_bytes)}; peak RSS {peak}): {self._reported}"
            )
        if self._killed_for == "memory" or oom > 0 or (sig == signal.SIGKILL and hit):
            if oom or hit:
                how = "killed by the kernel OOM killer in its cgroup"
            else:
                how = "killed by the RSS monitor"
            return "memory", f"exceeded the memory limit of {mib} MiB ({how}; peak RSS {peak})"
        if self._killed_for == "scratch":
            return "files", (
                f"wrote more than scratch_mb ({_mib(lim.scratch_bytes)}) to its scratch directory "
                "(counted by the parent: no mount namespace); killed"
            )
        if self._killed_for == "files":
            return (
                "files",
                f"hit a file limit (max_file_mb / max_open_files): {self._reported or cause.message}",
            )
        if self._killed_for == "protocol":
            return "protocol", f"broke the protocol: {cause.message}"
        budget = lim.startup_cpu_seconds if self._phase == "startup" else lim.cpu_seconds
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= budget):
            return "cpu", f"used its CPU-time limit of {budget}s {during}; killed"
        if sig == signal.SIGXFSZ:
            return "files", f"wrote a file larger than the limit of {_mib(lim.file_bytes)}"
        if sig == signal.SIGSYS:
            return "crash", "killed by seccomp (SIGSYS): a system call of a foreign ABI (int 0x80, x32)"
        if sig in MEMORY_SIGNALS and (any(m in text for m in _MEMORY_TEXT) or hit):
            name = signal.Signals(sig).name
            return "memory", f"aborted ({name}) on an allocation failure under the memory limit"
        if sig is not None:
            return "crash", f"died with signal {signal.Signals(sig).name}"
        if isinstance(cause, TruncatedFrame):
            return "protocol", f"broke the protocol: {cause.message}"
        if code is not None:
            return "crash", f"exited with status {code} ({cause.message})"
        return "crash", cause.message

    # -- plumbing ----------------------------------------------------------------------------

    def _reap(self, timeout_s: float) -> tuple[int | None, Any]:
        """Wait for the child (killing it after ``timeout_s``); returns (wait status, rusage)."""
        if self._popen is None or self._reaped:
            return None, None
        pid = self._popen.pid
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                self._reaped = True
                return None, None
            if got == pid:
                break
            if time.monotonic() >= deadline:
                self.kill(self._killed_for or "close")
                got, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.005)
        self._reaped = True
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        self.stats.exit_status = describe_status(status)
        self.stats.peak_rss_bytes = max(self.stats.peak_rss_bytes, usage.ru_maxrss * 1024)
        return status, usage

    def _cleanup(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            samples, peak, _ = self._monitor.snapshot()
            self.stats.samples = samples
            self.stats.peak_rss_bytes = max(self.stats.peak_rss_bytes, peak)
        if not self._reaped:
            self.kill(self._killed_for or "close")
            self._reap(timeout_s=CLOSE_GRACE_S)
        if self._group is not None:
            self.stats.cgroup_peak_bytes = self._group.peak_bytes()
            self._group.remove()
            self._group = None
        if self._channel is not None:
            self._channel.close()
        if self._drainer is not None:
            self._drainer.join(timeout=1)
        if self._popen is not None and self._popen.stdout is not None:
            self._popen.stdout.close()
        shutil.rmtree(self.config.scratch, ignore_errors=True)
        self._closed = True

    def _drain(self, stream: IO[bytes]) -> None:
        """Keep the tail of the child's stdout/stderr for diagnostics; log it at DEBUG."""
        reader = getattr(stream, "read1", stream.read)
        while True:
            try:
                chunk = reader(65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            with self._tail_lock:
                self._tail += chunk
                del self._tail[:-OUTPUT_TAIL_BYTES]
            if child_log.isEnabledFor(logging.DEBUG):
                child_log.debug(
                    "[child %d] %s", self.stats.pid, _clean(chunk.decode("utf-8", "replace"), 4000)
                )

    def output_tail(self, limit: int = 2000) -> str:
        with self._tail_lock:
            text = bytes(self._tail[-limit:]).decode("utf-8", "replace")
        return _clean(text, limit, keep_newlines=True)


KerasErrorLike = SandboxError | ModelError

_SpawnRequest = tuple[Future[Any], Any, tuple[Any, ...], dict[str, Any]]
_spawn_requests: queue.SimpleQueue[_SpawnRequest] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawn_from_long_lived_thread(fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
    """Run ``fn`` (Popen) on one daemon thread that lives as long as the process.

    The kernel sends the parent-death signal when the thread that forked the child exits. A daemon
    thread is never joined at interpreter shutdown (a ThreadPoolExecutor's worker is, before the
    caller's own non-daemon threads finish), so children die only with the process.
    """
    global _spawner
    future: Future[Any] = Future()
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_serve_spawns, name="kerasguard-spawner", daemon=True)
            _spawner.start()
    _spawn_requests.put((future, fn, args, kwargs))
    return future


def _serve_spawns() -> None:
    while True:
        future, fn, args, kwargs = _spawn_requests.get()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller, who raises it
            future.set_exception(exc)


def spawn(
    model_path: str | os.PathLike[str],
    limits: ChildLimits,
    *,
    layers: Layers | None = None,
    info: SandboxInfo | None = None,
    safe_mode: bool = True,
    compile: bool = True,
    custom_objects: Mapping[str, str] | None = None,
    sys_path: Sequence[str] = (),
    use_cgroup: bool = True,
    python: str | None = None,
) -> ChildProcess:
    """Start a confined child for ``model_path`` and wait until it is ready to load it."""
    info = info or probe()
    layers = layers or choose_layers(info, allow_network=False)
    placement = None
    if use_cgroup and info.is_active("memory-cgroup"):
        placement, _ = cgroup.locate()
    scratch = str(private_dir("scratch"))
    config = ChildConfig(
        model_path=os.path.abspath(model_path),  # the child runs in its scratch directory
        scratch=scratch,
        limits=limits,
        layers=layers,
        safe_mode=safe_mode,
        compile=compile,
        custom_objects=dict(custom_objects or {}),
        sys_path=tuple(sys_path),
        max_payload=limits.memory_bytes,
    )
    child = ChildProcess(config, placement, python or sys.executable)
    try:
        child._spawn()
        child._handshake()
    except BaseException:
        child.close()
        raise
    return child


def process_cpu_clock(pid: int) -> int | None:
    """The CPU-time clock of another process (clock_getcpuclockid), read in about a microsecond."""
    clock = ctypes.c_int()
    try:
        if _linux.libc().clock_getcpuclockid(ctypes.c_int(pid), ctypes.byref(clock)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return clock.value


def cpu_seconds(pid: int, clock: int | None = None) -> float | None:
    """User + system CPU time of a live process (its CPU clock, else /proc/<pid>/stat)."""
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.WEXITSTATUS(status)}"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB"


def _clean(value: Any, limit: int, *, keep_newlines: bool = False) -> str:
    """Child-supplied text, made printable and short (it may be attacker-controlled); not a string: ""."""
    return printable(value, keep_newlines=keep_newlines, limit=limit) if isinstance(value, str) else ""
