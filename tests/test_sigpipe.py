"""A host that restores SIGPIPE's default is not killed by a write to a child that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

SCRIPT = """
import os, signal, sys
from kerasguard.sigpipe import no_sigpipe
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # what some host applications do
read_end, write_end = os.pipe()
os.close(read_end)  # the child that read this pipe died
if sys.argv[1] == "guarded":
    try:
        with no_sigpipe():
            os.write(write_end, b"task\\n")
    except BrokenPipeError:
        print("EPIPE", flush=True)
    # the mask is restored: SIGPIPE is deliverable again, and nothing was left pending
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    print("blocked" if signal.SIGPIPE in blocked else "unblocked", signal.SIGPIPE in signal.sigpending())
else:
    os.write(write_end, b"task\\n")
    print("survived")
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_a_write_to_a_dead_reader_raises_instead_of_killing() -> None:
    done = _run("guarded")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["EPIPE", "unblocked", "False"]


def test_without_the_guard_such_a_host_is_killed() -> None:
    """The control: the same write, unguarded, is fatal under SIG_DFL (what the guard prevents)."""
    done = _run("unguarded")
    assert done.returncode == -signal.SIGPIPE
    assert "survived" not in done.stdout
