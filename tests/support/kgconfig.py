"""Helpers for the config rule tests: artifacts from real config.json content, real saved models.

Models are saved by real Keras once per test process (``saved``) and malicious variants are written
into real ``.keras`` archives by ``tests/support/attacks.py``. Rules are unit-tested on Artifacts built from
the archive's config.json with the project's strict JSON reader; ``scan_e2e`` runs the whole scanner
on the archive once the zip reader can open it.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

from kerasguard.findings import Finding, Location, Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.json_strict import parse_json_bytes
from kerasguard.policy import Policy
from kerasguard.rules import RuleContext
from kerasguard.scanning.engine import run_rules
from support import workdirs
from support.scanhelp import hits

TESTS = Path(__file__).resolve().parent.parent

KERAS_VERSION = "3.15.1"
_SAVED: dict[str, Path] = {}


def workdir() -> Path:
    """The session's folder for saved models and attack files (pytest's tmp_path_factory)."""
    return workdirs.shared_dir("config-tests")


def saved(name: str, fmt: str = "keras") -> Path:
    """A BENIGN model from tests/support/kmodels.py saved by real Keras as .keras (or legacy .h5)."""
    key = f"{name}.{fmt}"
    if key not in _SAVED:
        from support import kmodels

        path = workdir() / key
        kmodels.BENIGN[name]().save(path)
        _SAVED[key] = path
    return _SAVED[key]


def attack(builder_name: str, base: str = "mlp") -> Path:
    """A malicious .keras written by tests/support/attacks.py from a real saved model."""
    from support import attacks

    key = f"attack-{builder_name}-{base}"
    if key not in _SAVED:
        builder = getattr(attacks, builder_name)
        _SAVED[key] = builder(saved(base), workdir() / f"{key}.keras")
    return _SAVED[key]


def config_bytes(archive: Path) -> bytes:
    """config.json of a .keras archive as a loader sees it (the last entry of that name)."""
    with zipfile.ZipFile(archive) as z:
        infos = [i for i in z.infolist() if i.filename == "config.json"]
        return z.read(infos[-1])


def config_of(archive: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(config_bytes(archive))
    return value


def artifact(
    config: dict[str, Any] | bytes,
    role: str = "model_config",
    fmt: str = "keras",
    name: str = "model.keras",
    member: str | None = "config.json",
) -> Artifact:
    """An Artifact holding ``config`` parsed by the strict JSON reader, as the readers would fill it."""
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    art = Artifact(path=name, format=fmt, location=Location(name))
    doc = parse_json_bytes(data, Location(name, member=member), role, Policy().limits, art)
    assert doc is not None, art.problems
    return art


def findings(
    art: Artifact, policy: Policy | None = None, keras_version: str | None = KERAS_VERSION
) -> list[Finding]:
    # The Keras version a test names is the one the policy pins: only a pinned version lowers severities.
    policy = policy or Policy()
    if policy.keras_version is None and keras_version is not None:
        policy = dataclasses.replace(policy, keras_version=keras_version)
    found, _ = run_rules(art, RuleContext(policy=policy, keras_version=keras_version))
    crashed = hits(found, "KG905", "KG906")
    assert not crashed, crashed
    return found


def serious(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.severity >= Severity.HIGH]


def layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = config["config"]["layers"]
    return value


def keras_ref(
    module: str | None, class_name: str, config: Any, registered_name: Any = None
) -> dict[str, Any]:
    ref: dict[str, Any] = {"class_name": class_name, "config": config, "registered_name": registered_name}
    if module is not None:
        ref["module"] = module
    return ref


def scan_e2e(path: Path, policy: Policy | None = None) -> list[Finding]:
    """Findings of the whole scanner on ``path``."""
    from kerasguard.scanning.engine import scan

    return list(scan(path, policy).findings)
