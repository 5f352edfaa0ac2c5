"""Scan targets in forked worker processes (``--jobs``): real parallelism for the pure-Python readers.

Workers are forked once imports are done, so each starts in a few milliseconds. A worker parses hostile
input, so nothing it sends is unpickled: each result is one JSON line in an explicit wire form that the
parent checks field by field. A worker that dies, hangs or answers outside the protocol turns the file
it was scanning into a KG905 (or KG902 for a hang) finding, never into a missing or clean file. Files
it had been handed but not started go to another worker. Reports come back in target order.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import selectors
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from kerasguard.findings import FileReport, Finding, Location, Severity, Suppression
from kerasguard.formats.artifact import ProblemKind
from kerasguard.formats.context import ReadContext
from kerasguard.policy import Limits
from kerasguard.rules import RULES_BY_ID
from kerasguard.sigpipe import no_sigpipe

AUTO_MIN_TARGETS = 8  # below this, forking costs more than it saves
AUTO_MAX_WORKERS = 8
MAX_RESULT_BYTES = 256 * 1024 * 1024  # one file's report; far above any real one
DEPTH = 2  # tasks queued per worker, to hide the pipe round trip; only the first can be in progress
EXIT_GRACE_S = 5.0
_READ_CHUNK = 1 << 20


# ---------------------------------------------------------------- how many workers


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_jobs(n_targets: int) -> int:
    """``--jobs auto``: one worker per usable CPU, at most 8, once there are enough targets to pay for it."""
    if n_targets < AUTO_MIN_TARGETS:
        return 1
    return max(1, min(usable_cpus(), AUTO_MAX_WORKERS))


def os_threads() -> int | None:
    """Threads of this process as the kernel counts them (``Threads:`` in /proc/self/status), or None.

    ``threading.active_count()`` sees only threads started by :mod:`threading`; native threads (JAX/XLA
    starts about 17, BLAS pools, an embedding program's) count too: any of them may hold a lock.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def can_fork() -> bool:
    """Whether workers can be forked safely: Linux, and no other thread at all (Python or native) that
    could hold a lock (stdio, logging, malloc, a progress bar's) the worker would then wait on forever.
    Unknown thread count: no fork (the scan runs in this process)."""
    if not (sys.platform.startswith("linux") and hasattr(os, "fork")):
        return False
    return threading.active_count() == 1 and os_threads() == 1


# ---------------------------------------------------------------- the wire form


class InvalidResult(Exception):
    """A worker's answer does not follow the protocol."""


def encode_report(report: FileReport) -> dict[str, Any]:
    """A lossless JSON form of one report (``to_dict`` rounds durations and drops empty fields)."""
    return {
        "path": report.path,
        "format": report.format,
        "complete": report.complete,
        "size": report.size,
        "duration_s": report.duration_s,
        "suppressed": report.suppressed,
        "findings": [_encode_finding(f) for f in report.findings],
        "suppressions": [
            {
                "finding": _encode_finding(s.finding),
                "kind": s.kind,
                "reason": s.reason,
                "policy": s.policy,
                "applied": s.applied,
                "new_severity": None if s.new_severity is None else s.new_severity.name,
            }
            for s in report.suppressions
        ],
    }


def _encode_finding(f: Finding) -> dict[str, Any]:
    return {
        "rule_id": f.rule_id,
        "severity": f.severity.name,
        "title": f.title,
        "message": f.message,
        "location": {
            "file": f.location.file,
            "member": f.location.member,
            "pointer": f.location.pointer,
            "h5path": f.location.h5path,
        },
        "evidence": f.evidence,
        "cves": list(f.cves),
        "cwe": f.cwe,
        "remediation": f.remediation,
    }


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise InvalidResult(what)


def _fields(raw: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    _expect(isinstance(raw, dict) and set(raw) == keys, f"{what} must be an object with keys {sorted(keys)}")
    out: dict[str, Any] = raw
    return out


def _str(raw: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = raw[key]
    _expect(isinstance(value, str) or (optional and value is None), f"{key!r} must be a string")
    return value


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    _expect(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{key!r} must be >= 0")
    return int(value)


_REPORT_KEYS = frozenset(
    {"path", "format", "complete", "size", "duration_s", "suppressed", "findings", "suppressions"}
)
_SUPPRESSION_KEYS = frozenset({"finding", "kind", "reason", "policy", "applied", "new_severity"})
_FINDING_KEYS = frozenset(
    {"rule_id", "severity", "title", "message", "location", "evidence", "cves", "cwe", "remediation"}
)
_LOCATION_KEYS = frozenset({"file", "member", "pointer", "h5path"})
_SEVERITIES = {s.name: s for s in Severity}


def _finding(raw: Any) -> Finding:
    f = _fields(raw, _FINDING_KEYS, "finding")
    _expect(f["rule_id"] in RULES_BY_ID, f"unknown rule id {f['rule_id']!r}")
    _expect(f["severity"] in _SEVERITIES, f"unknown severity {f['severity']!r}")
    loc = _fields(f["location"], _LOCATION_KEYS, "location")
    cves = f["cves"]
    _expect(isinstance(cves, list) and all(isinstance(c, str) for c in cves), "'cves' must list strings")
    return Finding(
        rule_id=f["rule_id"],
        severity=_SEVERITIES[f["severity"]],
        title=_str(f, "title"),
        message=_str(f, "message"),
        location=Location(
            file=_str(loc, "file"),
            member=_str(loc, "member", optional=True),
            pointer=_str(loc, "pointer", optional=True),
            h5path=_str(loc, "h5path", optional=True),
        ),
        evidence=_str(f, "evidence"),
        cves=tuple(cves),
        cwe=_str(f, "cwe", optional=True),
        remediation=_str(f, "remediation"),
    )


def _suppression(raw: Any) -> Suppression:
    s = _fields(raw, _SUPPRESSION_KEYS, "suppression")
    _expect(s["kind"] in ("ignore", "severity", "allow"), f"unknown suppression kind {s['kind']!r}")
    _expect(isinstance(s["applied"], bool), "'applied' must be true or false")
    new = s["new_severity"]
    _expect(new is None or new in _SEVERITIES, f"unknown severity {new!r}")
    return Suppression(
        finding=_finding(s["finding"]),
        kind=s["kind"],
        reason=_str(s, "reason"),
        policy=_str(s, "policy"),
        applied=s["applied"],
        new_severity=None if new is None else _SEVERITIES[new],
    )


def decode_report(raw: Any) -> FileReport:
    """The inverse of :func:`encode_report`; raises :class:`InvalidResult` on anything else."""
    r = _fields(raw, _REPORT_KEYS, "report")
    _expect(isinstance(r["complete"], bool), "'complete' must be true or false")
    duration = r["duration_s"]
    _expect(
        isinstance(duration, int | float) and not isinstance(duration, bool) and math.isfinite(duration),
        "'duration_s' must be a finite number",
    )
    _expect(isinstance(r["findings"], list), "'findings' must be a list")
    _expect(isinstance(r["suppressions"], list), "'suppressions' must be a list")
    return FileReport(
        path=_str(r, "path"),
        format=_str(r, "format"),
        findings=tuple(_finding(f) for f in r["findings"]),
        complete=r["complete"],
        size=_count(r, "size"),
        duration_s=max(0.0, float(duration)),
        suppressed=_count(r, "suppressed"),
        suppressions=tuple(_suppression(s) for s in r["suppressions"]),
    )


def parse_result(line: bytes, index: int, display: str) -> FileReport:
    """One result line for target ``index`` (the worker's oldest unanswered task)."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise InvalidResult(f"not JSON: {str(exc)[:200]}") from None
    msg = _fields(msg, frozenset({"index", "report"}), "result")
    _expect(msg["index"] == index and type(msg["index"]) is int, f"expected the result of task {index}")
    report = decode_report(msg["report"])
    _expect(report.path == display, "the report names another file")
    return report


# ---------------------------------------------------------------- the worker side


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _worker_main(
    task_fd: int, result_fd: int, scan_one: Callable[[int, ReadContext], FileReport], ctx: ReadContext
) -> None:
    """Read task indices, one per line, until end of input; answer each with one JSON line."""
    pending = b""
    while True:
        data = os.read(task_fd, 4096)
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            index = int(line)
            report = scan_one(index, ctx)
            _write_all(
                result_fd, json.dumps({"index": index, "report": encode_report(report)}).encode() + b"\n"
            )


# ---------------------------------------------------------------- the parent side


ScanOne = Callable[[int, ReadContext], FileReport]  # runs in a worker
Failed = Callable[[int, ProblemKind, str], FileReport]  # runs in the parent


def scan_in_workers(
    displays: Sequence[str],
    limits: Limits,
    jobs: int,
    scan_one: ScanOne,
    failed: Failed,
    progress: Callable[[str], None] | None = None,
) -> list[FileReport]:
    """Reports for the files named by ``displays``, in their order, scanned by up to ``jobs`` forked
    workers. ``scan_one(index, ctx)`` scans file ``index`` in a worker; ``failed(index, kind, message)``
    builds, in the parent, the report of a file whose worker died or answered garbage. The engine passes
    both, so this module knows nothing of targets or rules (no import back into the engine)."""
    _warm_up()
    return _Pool(displays, limits, jobs, scan_one, failed, progress).run()


def _warm_up() -> None:
    """Load what every file needs once, before forking, instead of once per worker (the advisory
    database came with the rule context)."""
    from kerasguard.rules.keras_api import keras_api

    keras_api()


@dataclass
class _Worker:
    pid: int
    tasks: int  # write end of its task pipe
    results: int  # read end of its result pipe
    pending: deque[int] = field(default_factory=deque)  # in order; only the first can be in progress
    since: float = 0.0  # when the first pending task became the one in progress
    buf: bytearray = field(default_factory=bytearray)


class _Pool:
    def __init__(
        self,
        displays: Sequence[str],
        limits: Limits,
        jobs: int,
        scan_one: ScanOne,
        failed: Failed,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.displays = displays
        self.limits = limits
        self.jobs = max(1, min(jobs, len(displays)))
        self.scan_one = scan_one
        self.failed = failed
        self.progress = progress
        self.reports: list[FileReport | None] = [None] * len(displays)
        self.queue: deque[int] = deque(range(len(displays)))
        self.workers: dict[int, _Worker] = {}  # by pid
        self.selector = selectors.DefaultSelector()
        self.forks_left = len(displays) + self.jobs  # every death but an idle one uses up a file
        # Readers stop themselves at file_timeout_s and rules follow: only a stuck worker gets here.
        self.budget = 4 * limits.file_timeout_s + 60.0

    def run(self) -> list[FileReport]:
        finished = False
        # Objects that exist now are left out of the workers' garbage collections, so those do not
        # write to (and copy) every page they inherited.
        gc.freeze()
        try:
            while self.queue or any(w.pending for w in self.workers.values()):
                while len(self.workers) < self.jobs and self.queue and self._spawn():
                    pass
                if not self.workers:
                    self._scan_here()  # no worker can be started: scan in this process instead
                    break
                self._feed()
                self._wait()
            finished = True
        finally:
            self._shutdown(kill=not finished)
            gc.unfreeze()
        out = [r for r in self.reports if r is not None]
        if len(out) != len(self.displays):  # unreachable: every file is answered, failed or scanned here
            raise RuntimeError("scan workers lost a file")
        return out

    def _spawn(self) -> bool:
        if self.forks_left <= 0:
            return False
        self.forks_left -= 1
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (task_r, task_w, result_r, result_w):
                os.close(fd)
            self.forks_left = 0
            return False
        if pid == 0:
            self._be_worker(task_r, result_w, (task_w, result_r))
        os.close(task_r)
        os.close(result_w)
        worker = _Worker(pid, task_w, result_r)
        self.workers[pid] = worker
        self.selector.register(result_r, selectors.EVENT_READ, worker)
        return True

    def _be_worker(self, task_fd: int, result_fd: int, parent_ends: tuple[int, int]) -> NoReturn:
        """The forked child: only its own two pipe ends, its own ReadContext (and HDF5 child)."""
        code = 70
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it kills its workers
            for fd in (*parent_ends, *(fd for w in self.workers.values() for fd in (w.tasks, w.results))):
                os.close(fd)
            ctx = ReadContext(limits=self.limits)
            try:
                _worker_main(task_fd, result_fd, self.scan_one, ctx)
            finally:
                ctx.close()
            code = 0
        except BaseException:  # the exit status tells the parent; never unwind into the parent's code
            traceback.print_exc()
        finally:
            os._exit(code)

    def _feed(self) -> None:
        for worker in list(self.workers.values()):
            while len(worker.pending) < DEPTH and self.queue:
                index = self.queue.popleft()
                try:
                    with no_sigpipe():
                        _write_all(worker.tasks, b"%d\n" % index)
                except OSError:  # it died: its result pipe tells how
                    self.queue.appendleft(index)
                    break
                if not worker.pending:
                    worker.since = time.monotonic()
                worker.pending.append(index)

    def _wait(self) -> None:
        now = time.monotonic()
        timeout = min([1.0, *(w.since + self.budget - now for w in self.workers.values() if w.pending)])
        for key, _ in self.selector.select(max(0.0, timeout)):
            worker: _Worker = key.data
            if worker.pid in self.workers:
                self._read(worker)
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.pending and now > worker.since + self.budget:
                self._fail(worker, "timeout", f"scan worker gave no result within {self.budget:.0f} s")

    def _read(self, worker: _Worker) -> None:
        data = os.read(worker.results, _READ_CHUNK)
        if not data:
            self._fail(worker, "crash", "")
            return
        start = len(worker.buf)
        worker.buf += data
        end = worker.buf.find(b"\n", start)
        while end >= 0:
            line = bytes(worker.buf[:end])
            del worker.buf[: end + 1]
            if not worker.pending:
                self._fail(worker, "crash", "scan worker sent a result it was not asked for")
                return
            index = worker.pending[0]
            try:
                report = parse_result(line, index, self.displays[index])
            except InvalidResult as exc:
                self._fail(worker, "crash", f"scan worker sent an invalid result: {exc}")
                return
            worker.pending.popleft()
            worker.since = time.monotonic()
            self._done(index, report)
            end = worker.buf.find(b"\n")
        if len(worker.buf) > MAX_RESULT_BYTES:
            self._fail(worker, "limit", f"scan worker's result exceeds {MAX_RESULT_BYTES} bytes")

    def _done(self, index: int, report: FileReport) -> None:
        self.reports[index] = report
        if self.progress:
            self.progress(self.displays[index])

    def _fail(self, worker: _Worker, kind: ProblemKind, message: str) -> None:
        """Stop ``worker``; its file in progress gets the blame, the others go back to the queue."""
        status = self._stop(worker)
        if not worker.pending:
            return  # died between files: nothing to blame, a new worker takes over
        index = worker.pending.popleft()
        self.queue.extendleft(reversed(worker.pending))
        worker.pending.clear()
        self._done(index, self.failed(index, kind, message or f"scan worker {_describe(status)}"))

    def _stop(self, worker: _Worker) -> int | None:
        """Kill and reap one worker; its wait status (a dead one keeps the status it died with)."""
        del self.workers[worker.pid]
        self.selector.unregister(worker.results)
        os.close(worker.tasks)
        os.close(worker.results)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
        return _reap(worker.pid, block=True)

    def _scan_here(self) -> None:
        ctx = ReadContext(limits=self.limits)
        try:
            while self.queue:
                index = self.queue.popleft()
                self._done(index, self.scan_one(index, ctx))
        finally:
            ctx.close()

    def _shutdown(self, kill: bool) -> None:
        """End of input for every worker and a short grace to exit (none after an error), then SIGKILL."""
        for worker in self.workers.values():
            os.close(worker.tasks)
        deadline = time.monotonic() + (0.0 if kill else EXIT_GRACE_S)
        for worker in self.workers.values():
            while _reap(worker.pid, block=False) is None:
                if time.monotonic() >= deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                    _reap(worker.pid, block=True)
                    break
                time.sleep(0.001)
            self.selector.unregister(worker.results)
            os.close(worker.results)
        self.workers.clear()
        self.selector.close()


def _reap(pid: int, block: bool) -> int | None:
    """The wait status of a worker that has exited (None: still running; -1: reaped by someone else)."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # SIGCHLD ignored by the embedding program: the kernel reaped it
        return -1
    return status if done else None


def _describe(status: int | None) -> str:
    if status is None or status < 0:
        return "died while scanning this file"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by {name} while scanning this file"
    return f"exited with status {os.waitstatus_to_exitcode(status)} while scanning this file"
