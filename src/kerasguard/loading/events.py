"""One structured JSON event per model load, on the stdlib logger ``kerasguard.events``.

Every call of :func:`kerasguard.load_model` emits exactly one event, whether the model was loaded,
refused by the policy, or failed: where it came from, its digest and signer, the policy, the
verdict, the findings, how long it took, the child's peak memory and memory curve, and why it
failed (memory exhaustion is recorded as ``"memory"``). The log message is the JSON line itself,
so any handler records it; :class:`JsonEventFormatter` prints only the JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from kerasguard.findings import ScanReport

LOGGER_NAME = "kerasguard.events"
SCHEMA = "kerasguard.load/1"
EVENT_ATTR = "kerasguard_event"

log = logging.getLogger(LOGGER_NAME)


@dataclass
class Failure:
    stage: str  # source | copy | verify | scan | policy | sandbox | load
    reason: str  # untrusted-source | integrity | findings | incomplete-scan | memory | cpu | wall | ...
    message: str


@dataclass
class LoadEvent:
    """The record of one load attempt; the loader fills it in as the pipeline advances."""

    source: str
    started: float = field(default_factory=time.monotonic)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    canonical: str | None = None
    sha256: str | None = None
    size: int | None = None
    verification: str | None = None  # "digest" | "signature" | None (not required, not done)
    signer: str | None = None
    policy: str = "<default>"
    mode: str = "sandbox"  # "sandbox" | "in-process"
    safe_mode: bool = True
    unsafe_switches: list[str] = field(default_factory=list)
    scan: str = "not-run"  # clean | findings-below-threshold | refused | incomplete | skipped | not-run
    findings: list[dict[str, str]] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)  # layers active / missing on this machine
    child: dict[str, Any] = field(default_factory=dict)  # ChildStats: peak memory, samples, exit
    verdict: str = "failed"  # loaded | refused | failed
    failure: Failure | None = None
    duration_s: float | None = None

    def fail(self, verdict: str, stage: str, reason: str, message: str) -> None:
        self.verdict = verdict
        self.failure = Failure(stage, reason, message[:2000])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("started")
        peak = self.child.get("peak_rss_bytes")
        return {
            "event": "load",
            "schema": SCHEMA,
            **data,
            "peak_rss_bytes": peak,
        }


def emit(event: LoadEvent) -> dict[str, Any]:
    """Finish ``event`` (duration) and log it once; returns the JSON-ready dict."""
    event.duration_s = round(time.monotonic() - event.started, 4)
    data = event.to_dict()
    level = logging.INFO if event.verdict == "loaded" else logging.WARNING
    log.log(level, json.dumps(data, separators=(",", ":"), default=str), extra={EVENT_ATTR: data})
    return data


class JsonEventFormatter(logging.Formatter):
    """Formats a load event as its JSON line (other records as a small JSON object)."""

    def format(self, record: logging.LogRecord) -> str:
        data = getattr(record, EVENT_ATTR, None)
        if data is None:
            data = {"logger": record.name, "level": record.levelname, "message": record.getMessage()}
        return json.dumps(data, separators=(",", ":"), default=str)


def log_events_to(stream: IO[str] | None = None) -> logging.Handler:
    """Attach a JSON-lines handler for load events (to stderr by default); returns it for removal."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonEventFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


class LoadEventCatcher(logging.Handler):
    """Keeps the last load event logged while attached: callers read its verdict or its sha256."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event: dict[str, Any] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.event = getattr(record, EVENT_ATTR, self.event)


@contextmanager
def caught_load_event() -> Iterator[LoadEventCatcher]:
    """A catcher on the events logger (at INFO) for the duration of the block; it prints nothing."""
    catcher = LoadEventCatcher()
    level = log.level
    log.addHandler(catcher)
    log.setLevel(logging.INFO)
    try:
        yield catcher
    finally:
        log.removeHandler(catcher)
        log.setLevel(level)


def summarize_findings(report: ScanReport) -> list[dict[str, str]]:
    return [
        {"rule_id": f.rule_id, "severity": str(f.severity), "location": str(f.location)}
        for f in report.findings
    ]
