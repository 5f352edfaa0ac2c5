"""The shipped allowlist: loads without keras, and matches what the installed keras generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kerasguard.rules.keras_api import keras_api

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = ROOT / "src" / "kerasguard" / "rules" / "data" / "keras_api.json"


def test_allowlist_contents() -> None:
    api = keras_api()
    assert api.keras_version == "3.15.1"
    assert {
        "keras.layers.Dense",
        "keras.src.models.functional.Functional",
        "keras.DTypePolicy",
    } <= api.classes
    assert {"keras.activations.relu", "keras.ops.add", "keras.metrics.mean_squared_error"} <= api.functions
    assert "keras.utils.get_file" not in api.functions and "keras.utils.get_file" in api.non_modeling
    assert "keras.layers.deserialize" not in api.functions
    assert not {"keras.layers.TFSMLayer", "keras.layers.TorchModuleWrapper"} & api.classes
    assert "relu" in api.builtin_functions and "Dense" in api.class_names


def test_rules_run_without_importing_keras() -> None:
    code = (
        "import sys, json\n"
        "from kerasguard.findings import Location\n"
        "from kerasguard.formats.artifact import Artifact\n"
        "from kerasguard.formats.json_strict import parse_json_bytes\n"
        "from kerasguard.policy import Policy\n"
        "from kerasguard.rules import RuleContext\n"
        "from kerasguard.scanning.engine import run_rules\n"
        "art = Artifact(path='m', format='keras', location=Location('m'))\n"
        "cfg = {'class_name': 'Sequential', 'config': {'layers': [{'module': 'os', 'class_name': 'system',"
        " 'config': {}}]}}\n"
        "parse_json_bytes(json.dumps(cfg).encode(), Location('m'), 'model_config', Policy().limits, art)\n"
        "found, _ = run_rules(art, RuleContext(Policy(), None))\n"
        "assert any(f.rule_id == 'KG201' for f in found)\n"
        "bad = [m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.keras
def test_shipped_allowlist_is_what_the_generator_writes(tmp_path: Path) -> None:
    """Regenerate from the installed keras: the committed file must be current (or re-run the script)."""
    pytest.importorskip("keras")
    out = tmp_path / "keras_api.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_keras_api.py"), str(out)],
        check=True,
        capture_output=True,
    )
    generated = json.loads(out.read_text())
    shipped = json.loads(SHIPPED.read_text())
    if generated["keras_version"] != shipped["keras_version"]:
        pytest.skip(f"installed keras {generated['keras_version']} differs from {shipped['keras_version']}")
    assert generated == shipped
