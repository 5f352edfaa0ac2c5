"""A compromised child that lies in the protocol: the parent must stay small and raise SandboxError.

The fake child is a real process started by the real launcher (``spawn(python=...)`` runs it in
place of the interpreter); it reads the parent's config frame and answers with a hostile frame.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from kerasguard.errors import SandboxError
from kerasguard.policy import Sandbox as SandboxPolicy
from kerasguard.sandbox.config import ChildLimits, Layers
from kerasguard.sandbox.ipc import MAGIC, check_json_depth
from kerasguard.sandbox.launcher import spawn

NO_LAYERS = Layers(
    network_namespace=False, mount_namespace=False, capabilities=False, landlock=False, seccomp=False
)
GiB = 1 << 30

FAKE_CHILD = """\
#!{python}
import os, struct, sys, time
read_fd, write_fd = int(sys.argv[-2]), int(sys.argv[-1])
magic, json_len, payload_len = struct.unpack("<4sIQ", os.read(read_fd, 16))
need = json_len + payload_len
while need:
    need -= len(os.read(read_fd, need))
os.write(write_fd, {frame!r})
time.sleep({linger})
"""


def fake_child(tmp_path: Path, frame: bytes, linger: float = 0.0) -> str:
    path = tmp_path / "fake-python"
    path.write_text(FAKE_CHILD.format(python=sys.executable, frame=frame, linger=linger))
    path.chmod(0o755)
    return str(path)


def frame(body: bytes, payload_len: int = 0) -> bytes:
    return struct.pack("<4sIQ", MAGIC, len(body), payload_len) + body


def start(python: str, *, wall: float = 20.0) -> None:
    lim = ChildLimits.from_policy(SandboxPolicy(memory_mb=4096, startup_wall_seconds=wall))
    spawn("/dev/null", lim, layers=NO_LAYERS, use_cgroup=False, python=python)


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_announcing_2_gib_and_sending_ten_bytes_costs_the_parent_nothing(tmp_path: Path) -> None:
    body = json.dumps({"ok": True, "layers": {}, "arrays": [2 * GiB]}).encode()
    python = fake_child(tmp_path, frame(body, 2 * GiB) + b"\x93NUMPY" + b"\0" * 4, linger=1.0)
    baseline, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with pytest.raises(SandboxError) as err:
            start(python)
    finally:
        done.set()
        sampler.join()
    assert err.value.limit == "protocol"
    assert "closed after" in err.value.message
    assert peak[0] - baseline < 64 << 20, f"parent RSS grew by {(peak[0] - baseline) >> 20} MiB"


def test_reply_nested_200000_levels_is_a_protocol_error(tmp_path: Path) -> None:
    python = fake_child(tmp_path, frame(b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(SandboxError) as err:
        start(python)
    assert err.value.limit == "protocol"
    assert "nested deeper" in err.value.message


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (MAGIC + b"\x10\x00", "closed after 6 of 16 bytes"),  # half a header, then exit
        (struct.pack("<4sIQ", MAGIC, 100, 0) + b'{"ok": true', "closed after 11 of 100 bytes"),  # short JSON
        (frame(b'{"ok": tru'), "not JSON"),
        (frame(b'{"ok": true, "layers": {}}\xff'), "not JSON"),
        (frame(b'["not", "an", "object"]'), "must be a JSON object"),
        (frame(b'{"ok": true, "arrays": [1e400]}', 0), "array lengths"),
        (frame(b'{"ok": true, "layers": {}, "arrays": [10]}', 10) + b"0123456789", ".npy"),
        (frame(b'{"ok": true, "n": ' + b"9" * 5000 + b"}"), "undecodable|not JSON"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "bad frame magic"),
    ],
    ids=[
        "half-header",
        "short-json",
        "bad-json",
        "bad-utf8",
        "not-object",
        "bad-lengths",
        "bad-npy",
        "huge-int",
        "magic",
    ],
)
def test_malformed_frames_are_protocol_errors(tmp_path: Path, sent: bytes, expected: str) -> None:
    with pytest.raises(SandboxError, match=expected) as err:
        start(fake_child(tmp_path, sent))
    assert err.value.limit == "protocol"


def test_child_that_closes_before_answering_is_a_crash_not_a_hang(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(SandboxError) as err:
        start(fake_child(tmp_path, b""), wall=60.0)
    assert err.value.limit is None and "exited with status 0" in err.value.message
    assert time.monotonic() - started < 30


def test_depth_check_ignores_brackets_inside_strings() -> None:
    check_json_depth(json.dumps({"text": "[" * 10_000}).encode())
    check_json_depth(json.dumps([[[[1]]]]).encode(), limit=4)
    with pytest.raises(SandboxError):
        check_json_depth(json.dumps([[[[[1]]]]]).encode(), limit=4)
