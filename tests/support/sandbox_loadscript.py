"""Run ``kerasguard.load_model`` in a fresh process and print what happened as one JSON line.

Used by the sandbox tests that need a different process environment than pytest's: a non-root
user, a seccomp filter that makes Landlock answer ENOSYS, a parent that gets SIGKILLed.
``python sandbox_loadscript.py MODEL POLICIES_JSON [--hold]``: one load (and predict) per policy
mapping; with ``--hold`` the process prints after the first load and then waits to be killed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import numpy as np

from kerasguard import load_model
from kerasguard.errors import KerasGuardError
from kerasguard.loading.events import EVENT_ATTR
from kerasguard.policy import policy_from_mapping

events: list[dict[str, Any]] = []


class _Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        data = getattr(record, EVENT_ATTR, None)
        if isinstance(data, dict):
            events.append(data)


def read(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


def status_field(pid: int, name: str) -> str:
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def main(argv: list[str]) -> int:
    model_path, policies = argv[0], json.loads(argv[1])
    hold = "--hold" in argv
    logger = logging.getLogger("kerasguard.events")
    logger.addHandler(_Collect())
    logger.setLevel(logging.INFO)
    results: list[dict[str, Any]] = []
    for mapping in policies:
        policy = policy_from_mapping(mapping, source="test-only-policy")
        result: dict[str, Any]
        try:
            model = load_model(model_path, policy=policy, safe_mode=False)
            y = model.predict(np.ones((2, 8), "float32"))
            pid = model.pid
            own_ns = os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
            result = {
                "ok": True,
                "shape": list(y.shape),
                "output": np.asarray(y).tolist(),
                "pid": pid,
                "uid": os.getuid(),
                "layers": model.layers,
                "cap_eff": status_field(pid, "CapEff"),
                "cap_bnd": status_field(pid, "CapBnd"),
                "own_user_namespace": own_ns,
                "cgroup": read(f"/proc/{pid}/cgroup"),
            }
            if hold:
                print(json.dumps(result), flush=True)
                while True:
                    time.sleep(1)
            model.close()
        except KerasGuardError as exc:
            result = {"ok": False, "type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        result["event"] = events[-1] if events else None
        results.append(result)
    print(json.dumps(results, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
