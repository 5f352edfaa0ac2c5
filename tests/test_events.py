"""Load events: one JSON object per load, on the `kerasguard.events` logger."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

from kerasguard.loading.events import LOGGER_NAME, SCHEMA, JsonEventFormatter, LoadEvent, emit, log_events_to

REQUIRED = {
    "source",
    "sha256",
    "signer",
    "policy",
    "verdict",
    "findings",
    "duration_s",
    "peak_rss_bytes",
    "child",
    "failure",
}


def test_event_is_one_json_line_with_every_field() -> None:
    stream = io.StringIO()
    handler = log_events_to(stream)
    try:
        event = LoadEvent(source="m.keras", policy="kerasguard.toml")
        event.child = {"peak_rss_bytes": 123, "memory_samples": [[0.0, 100], [0.1, 123]]}
        event.fail("failed", "sandbox", "memory", "sandboxed child failed: exceeded the memory limit")
        data = emit(event)
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    parsed = json.loads(lines[0])
    assert parsed == json.loads(json.dumps(data))
    assert set(parsed) >= REQUIRED
    assert parsed["schema"] == SCHEMA
    assert parsed["failure"] == {
        "stage": "sandbox",
        "reason": "memory",
        "message": "sandboxed child failed: exceeded the memory limit",
    }
    assert parsed["peak_rss_bytes"] == 123
    assert parsed["duration_s"] >= 0


def test_formatter_handles_ordinary_records() -> None:
    record = logging.LogRecord("kerasguard.loader", logging.WARNING, __file__, 1, "UNSAFE: %s", ("x",), None)
    assert json.loads(JsonEventFormatter().format(record)) == {
        "logger": "kerasguard.loader",
        "level": "WARNING",
        "message": "UNSAFE: x",
    }


def test_importing_kerasguard_loads_neither_keras_nor_the_sandbox() -> None:
    code = (
        "import sys, kerasguard; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'jax', 'tensorflow', 'torch')]; "
        "bad += [m for m in sys.modules "
        "if m.startswith(('kerasguard.sandbox', 'kerasguard.loading.loader'))]; "
        "print(bad); assert callable(kerasguard.load_model); assert kerasguard.SandboxedModel"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_child_stats_keep_a_memory_summary_and_the_curve_only_on_request() -> None:
    from kerasguard.policy import policy_from_mapping
    from kerasguard.sandbox.launcher import ChildStats
    from kerasguard.sandbox.monitor import Sample

    stats = ChildStats(peak_rss_bytes=300, samples=[Sample(0.01 * i, 100 + i) for i in range(1000)])
    short = stats.to_dict()
    assert "memory_samples" not in short
    assert short["memory"] == {"peak_rss_bytes": 1099, "samples": 1000, "duration_s": 9.99}
    assert len(json.dumps(short)) < 500  # was ~20 KB per load event
    assert len(stats.to_dict(samples=True)["memory_samples"]) == 1000
    assert policy_from_mapping({"sandbox": {"memory_samples": True}}).sandbox.memory_samples is True
