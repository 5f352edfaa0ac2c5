"""`--jobs`: forked scan workers give the report a single process gives, and fail closed.

Real processes throughout: a mixed corpus of real Keras models and attacks scanned with jobs=1 and
jobs=2 (in-process and through the CLI), workers killed from the progress callback, and pools whose
worker dies, hangs or answers for the wrong file. Timings belong to bench/bench_perfile.py, not here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kerasguard.findings import FileReport, Finding, Location, ScanReport, Severity, Suppression
from kerasguard.formats.artifact import ProblemKind
from kerasguard.formats.context import ReadContext
from kerasguard.policy import Limits, Policy
from kerasguard.scanning import workers as scan_workers
from kerasguard.scanning.engine import Target, scan_many
from kerasguard.scanning.workers import InvalidResult, decode_report, encode_report, parse_result

ROOT = Path(__file__).resolve().parent.parent
# Keras (JAX) is loaded in this process to build the corpus; JAX warns at every fork. The workers never
# call into JAX (the scan path never imports it), so its threads' locks are never waited on.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def comparable(report: ScanReport) -> dict[str, Any]:
    doc = report.to_dict()
    for f in doc["files"]:
        f.pop("duration_s")
    return doc


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Benign models, attacks (config, HDF5, zip, pickle) and junk: 14 files."""
    pytest.importorskip("keras")
    from support import attacks, kmodels

    folder = tmp_path_factory.mktemp("jobs")
    kmodels.mlp().save(folder / "mlp.keras")
    kmodels.cnn().save(folder / "cnn.keras")
    kmodels.mlp().save(folder / "mlp.h5")
    base = folder / "mlp.keras"
    for name in (
        "lambda_bytecode",
        "foreign_module_layer",
        "shape_bomb_8gib",
        "soft_link",
        "zip_traversal",
        "duplicate_config",
        "npz_raw_pickle",
        "huge_units",
        "truncated",
    ):
        build, _ = attacks.KERAS_ATTACKS[name]
        build(base, folder / f"attack_{name}.keras")
    attacks.random_bytes(folder / "junk.keras")
    (folder / "empty.keras").write_bytes(b"")
    return folder


def worker_pids() -> list[int]:
    """Forked scan workers: this process's children running this process's command line."""
    me = os.getpid()
    own = Path(f"/proc/{me}/cmdline").read_bytes()
    pids = []
    for task in Path(f"/proc/{me}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == own:
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


# ---------------------------------------------------------------- same report


@pytest.mark.keras
def test_two_workers_give_the_sequential_report(corpus: Path, fork_despite_threads: None) -> None:
    one = scan_many([corpus], Policy(), jobs=1)
    seen: list[str] = []
    two = scan_many([corpus], Policy(), jobs=2, progress=seen.append)
    assert comparable(two) == comparable(one)
    assert sorted(seen) == sorted(r.path for r in one.files)  # one advance per file
    assert len(one.files) == 14 and one.findings and not one.complete  # the corpus exercises every path
    assert worker_pids() == []  # nothing left running


@pytest.mark.keras
def test_cli_jobs_two_and_auto_match_jobs_one(corpus: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    docs = {}
    for jobs in ("1", "2", "auto"):
        out = tmp_path / f"{jobs}.json"
        cmd = [sys.executable, "-m", "kerasguard", "scan", str(corpus), "-f", "json", "-o", str(out)]
        done = subprocess.run([*cmd, "--jobs", jobs], env=env, capture_output=True, timeout=240)
        assert done.returncode == 2, done.stderr  # truncated and junk files: incomplete scan
        doc = json.loads(out.read_text())
        for f in doc["files"]:
            f.pop("duration_s")
        docs[jobs] = doc
    assert docs["2"] == docs["1"] == docs["auto"]


# ---------------------------------------------------------------- failing workers


@pytest.mark.keras
def test_workers_killed_mid_run_turn_their_files_into_findings(
    corpus: Path, fork_despite_threads: None
) -> None:
    one = comparable(scan_many([corpus], Policy(), jobs=1))
    killed: list[int] = []

    def kill_workers(name: str) -> None:
        if not killed:  # after the first result: every worker holds files
            killed.extend(worker_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    started = time.monotonic()
    report = scan_many([corpus], Policy(), jobs=2, progress=kill_workers)
    assert time.monotonic() - started < 120
    assert len(killed) == 2
    doc = comparable(report)
    assert [f["path"] for f in doc["files"]] == [f["path"] for f in one["files"]]
    blamed = [f for f in doc["files"] if any("scan worker" in x["message"] for x in f["findings"])]
    assert 1 <= len(blamed) <= 2
    for f in blamed:
        assert not f["complete"]
        assert [x["rule_id"] for x in f["findings"]] == ["KG905"]
        assert "killed by SIGKILL" in f["findings"][0]["message"]
    others = [f for f in doc["files"] if f not in blamed]
    assert others == [f for f in one["files"] if f["path"] not in {b["path"] for b in blamed}]
    assert report.exit_code(Severity.HIGH) == 2
    assert worker_pids() == []


def fake_targets(n: int) -> list[Target]:
    return [Target(Path(f"/models/{i}.keras"), f"/models/{i}.keras") for i in range(n)]


def run_pool(
    n: int, scan_one: scan_workers.ScanOne, jobs: int = 2, budget: float | None = None
) -> list[FileReport]:
    targets = fake_targets(n)

    def failed(index: int, kind: ProblemKind, message: str) -> FileReport:
        finding = Finding("KG905", Severity.CRITICAL, kind, message, Location(targets[index].display))
        return FileReport(path=targets[index].display, format="unknown", findings=(finding,), complete=False)

    pool = scan_workers._Pool([t.display for t in targets], Limits(), jobs, scan_one, failed, None)
    if budget is not None:
        pool.budget = budget
    return pool.run()


def clean(index: int) -> FileReport:
    return FileReport(path=f"/models/{index}.keras", format="keras")


def test_a_file_that_kills_its_worker_is_blamed_and_the_rest_are_scanned() -> None:
    def scan_one(index: int, ctx: ReadContext) -> FileReport:
        if index == 3:
            os._exit(9)  # what a native parser crash looks like from the parent
        return clean(index)

    reports = run_pool(10, scan_one)
    assert [r.path for r in reports] == [t.display for t in fake_targets(10)]
    assert [r.complete for r in reports] == [i != 3 for i in range(10)]
    assert reports[3].findings[0].message == "scan worker exited with status 9 while scanning this file"
    assert worker_pids() == []


def test_every_file_killing_its_worker_still_ends() -> None:
    def scan_one(index: int, ctx: ReadContext) -> FileReport:
        os.kill(os.getpid(), signal.SIGSEGV)
        return clean(index)

    reports = run_pool(5, scan_one)
    assert all(not r.complete and "SIGSEGV" in r.findings[0].message for r in reports)


def test_a_stuck_worker_is_killed_after_its_budget() -> None:
    def scan_one(index: int, ctx: ReadContext) -> FileReport:
        if index == 1:
            time.sleep(3600)
        return clean(index)

    started = time.monotonic()
    reports = run_pool(4, scan_one, budget=1.0)
    assert time.monotonic() - started < 30
    assert [r.complete for r in reports] == [True, False, True, True]
    assert reports[1].findings[0].title == "timeout"


def test_a_result_for_another_file_is_refused() -> None:
    def scan_one(index: int, ctx: ReadContext) -> FileReport:
        return clean(0 if index == 2 else index)  # file 2 claims to be file 0

    reports = run_pool(4, scan_one, jobs=1)
    assert [r.complete for r in reports] == [True, True, False, True]
    assert "invalid result: the report names another file" in reports[2].findings[0].message


# ---------------------------------------------------------------- the wire form


def full_report() -> FileReport:
    finding = Finding(
        rule_id="KG101",
        severity=Severity.CRITICAL,
        title="t",
        message="m \ud800 \u00e9",
        location=Location("a.keras", member="config.json", pointer="", h5path=""),
        evidence="e",
        cves=("CVE-2025-9905",),
        cwe=None,
        remediation="r",
    )
    suppressions = (
        Suppression(finding, "ignore", "why", "/repo/kerasguard.toml", applied=False),
        Suppression(finding, "severity", "[severity] sets it to low", "p.toml", True, Severity.LOW),
    )
    return FileReport(
        "a.keras",
        "keras",
        (finding,),
        complete=False,
        size=3,
        duration_s=0.1234567891,
        suppressions=suppressions,
    )


def test_wire_form_round_trips_exactly() -> None:
    report = full_report()
    line = json.dumps({"index": 4, "report": encode_report(report)}).encode()
    assert parse_result(line, 4, "a.keras") == report


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda d: d.update(size=-1), "'size' must be >= 0"),
        (lambda d: d.update(complete=1), "'complete'"),
        (lambda d: d.update(extra=1), "keys"),
        (lambda d: d["findings"][0].update(rule_id="KG999"), "unknown rule id"),
        (lambda d: d["findings"][0].update(severity="fatal"), "unknown severity"),
        (lambda d: d["findings"][0]["location"].update(file=None), "'file' must be a string"),
        (lambda d: d["findings"][0].update(cves="CVE-1"), "'cves'"),
        (lambda d: d.update(duration_s=float("nan")), "finite"),
        (lambda d: d["suppressions"][0].update(kind="forget"), "unknown suppression kind"),
        (lambda d: d["suppressions"][0].update(applied="yes"), "'applied'"),
        (lambda d: d["suppressions"][1].update(new_severity="none"), "unknown severity"),
        (lambda d: d["suppressions"][0]["finding"].update(rule_id="KG999"), "unknown rule id"),
    ],
)
def test_wire_form_is_checked_field_by_field(edit: Any, error: str) -> None:
    raw = encode_report(full_report())
    edit(raw)
    with pytest.raises(InvalidResult, match=error):
        decode_report(raw)


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[]", b'{"index": 5, "report": {}}', b'{"index": true, "report": {}}', b"[" * 100000],
)
def test_result_lines_outside_the_protocol_are_refused(line: bytes) -> None:
    with pytest.raises(InvalidResult):
        parse_result(line, 1 if b"true" in line else 4, "a.keras")


# ---------------------------------------------------------------- how many workers


def test_auto_jobs_needs_enough_targets_and_caps_at_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_workers, "usable_cpus", lambda: 32)
    assert scan_workers.auto_jobs(7) == 1
    assert scan_workers.auto_jobs(8) == 8
    monkeypatch.setattr(scan_workers, "usable_cpus", lambda: 2)
    assert scan_workers.auto_jobs(165) == 2


GUARD_SCRIPT = """
import _thread, threading, time
from kerasguard.scanning import workers as scan_workers

def settle():
    for _ in range(300):  # a joined thread is gone for Python before the kernel has reaped it
        if scan_workers.os_threads() == 1:
            return
        time.sleep(0.01)

assert scan_workers.os_threads() == 1 and scan_workers.can_fork()

# A thread the threading module does not know (as JAX/XLA, BLAS or an embedding program start) counts.
release, done = _thread.allocate_lock(), _thread.allocate_lock()
release.acquire(); done.acquire()
def native():
    release.acquire(); done.release()
_thread.start_new_thread(native, ())
assert threading.active_count() == 1 and scan_workers.os_threads() == 2
assert not scan_workers.can_fork()
release.release(); done.acquire(); settle()
assert scan_workers.can_fork()

stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
assert not scan_workers.can_fork()
stop.set(); thread.join(); settle()
assert scan_workers.can_fork()
print("ok")
"""


def run_fresh(script: str) -> str:
    """A fresh interpreter: this test process may already run JAX's threads."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_no_fork_while_any_other_thread_runs() -> None:
    assert run_fresh(GUARD_SCRIPT).strip() == "ok"


@pytest.mark.keras
def test_no_fork_once_jax_has_started_its_threads() -> None:
    """decision 27 measured the wrong thing: JAX starts native threads that threading never sees."""
    script = (
        "import os, threading\nos.environ['KERAS_BACKEND'] = 'jax'\n"
        "import jax.numpy as jnp\njnp.ones(4).sum().block_until_ready()\n"
        "from kerasguard.scanning import workers as scan_workers\n"
        "print(threading.active_count(), scan_workers.os_threads(), scan_workers.can_fork())\n"
    )
    python_threads, os_threads, can_fork = run_fresh(script).split()
    assert python_threads == "1" and int(os_threads) > 1 and can_fork == "False"
