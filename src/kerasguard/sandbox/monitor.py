"""Parent-side watch on the child's memory: samples while it loads, and an RSS limit of last resort.

Sampling ``/proc/<pid>/status`` costs a few microseconds; it runs every 20 ms while recording
(startup and load, whose growth the load event reports) and every 250 ms otherwise. Without a
memory cgroup the monitor is what turns "the child is using too much memory" into a kill. Without
a mount namespace (whose tmpfs caps scratch), it also adds up the scratch directory's disk usage
every 250 ms and reports when it passes the limit: accounting, not a hard cap.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_SAMPLES = 1000
MAX_SCRATCH_ENTRIES = 100_000  # more files than this in scratch counts as over the limit


@dataclass(frozen=True)
class Sample:
    t_s: float
    rss_bytes: int


@dataclass(frozen=True)
class ProcStatus:
    rss_bytes: int
    hwm_bytes: int
    vm_peak_bytes: int


def read_status(pid: int) -> ProcStatus | None:
    """VmRSS, VmHWM and VmPeak of ``pid`` (None once it is gone or a zombie)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmPeak"):
                    values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if "VmRSS" not in values:
        return None
    return ProcStatus(values["VmRSS"], values.get("VmHWM", 0), values.get("VmPeak", 0))


def disk_usage(root: str, max_entries: int = MAX_SCRATCH_ENTRIES) -> int | None:
    """Bytes allocated under ``root`` (sparse files count what they use); None above ``max_entries``."""
    total, seen, stack = 0, 0, [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > max_entries:
                return None
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


class MemoryMonitor:
    """Samples one process until :meth:`stop`; calls ``on_exceeded`` once if RSS passes ``limit``."""

    def __init__(
        self,
        pid: int,
        *,
        rss_limit: int | None,
        on_exceeded: Callable[[int], None],
        fast_s: float = 0.02,
        slow_s: float = 0.25,
        scratch: str | None = None,
        scratch_limit: int = 0,
        on_scratch_exceeded: Callable[[int | None], None] | None = None,
    ) -> None:
        self.pid = pid
        self.rss_limit = rss_limit
        self.on_exceeded = on_exceeded
        self.fast_s = fast_s
        self.slow_s = slow_s
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self.peak_rss = 0
        self.vm_peak = 0
        self._stride = 1
        self._tick = 0
        self._recording = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"kerasguard-monitor-{pid}", daemon=True)
        self.scratch = scratch
        self.scratch_limit = scratch_limit
        self.on_scratch_exceeded = on_scratch_exceeded
        self._next_scratch_check = 0.0

    def start(self, *, recording: bool = True) -> None:
        if recording:
            self._recording.set()
        self._thread.start()

    def record(self, on: bool) -> None:
        """Switch detailed sampling on (a load) or off (serving predictions)."""
        if on:
            self._recording.set()
        else:
            self._recording.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def sample_now(self) -> None:
        status = read_status(self.pid)
        if status is None:
            return
        with self._lock:
            self.peak_rss = max(self.peak_rss, status.hwm_bytes, status.rss_bytes)
            self.vm_peak = max(self.vm_peak, status.vm_peak_bytes)
            if self._recording.is_set():
                self._tick += 1
                if self._tick % self._stride == 0:
                    self.samples.append(Sample(round(time.monotonic() - self.started, 3), status.rss_bytes))
                    if len(self.samples) >= MAX_SAMPLES:  # keep the whole curve at half the resolution
                        self.samples = self.samples[::2]
                        self._stride *= 2
        if self.rss_limit is not None and status.rss_bytes > self.rss_limit:
            self.rss_limit = None
            self.on_exceeded(status.rss_bytes)

    def snapshot(self) -> tuple[list[Sample], int, int]:
        with self._lock:
            return list(self.samples), self.peak_rss, self.vm_peak

    def check_scratch(self) -> None:
        """Report (once) when scratch holds more than the limit, or too many files to count."""
        if self.scratch is None or self.on_scratch_exceeded is None:
            return
        used = disk_usage(self.scratch)
        if used is None or used > self.scratch_limit:
            self.scratch = None
            self.on_scratch_exceeded(used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_now()
            now = time.monotonic()
            if now >= self._next_scratch_check:
                self._next_scratch_check = now + self.slow_s
                self.check_scratch()
            self._stop.wait(self.fast_s if self._recording.is_set() else self.slow_s)
