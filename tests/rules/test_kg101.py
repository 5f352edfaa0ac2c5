"""KG101: Lambda layers carrying Python bytecode (CVE-2024-3660, CVE-2025-9905, CVE-2026-12481)."""

from __future__ import annotations

import base64
import json
import marshal
from pathlib import Path

import h5py
import pytest

from kerasguard.findings import Location, Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.json_strict import parse_json_bytes
from kerasguard.policy import Policy
from kerasguard.scanning.engine import scan
from support.kgconfig import (
    artifact,
    attack,
    config_of,
    findings,
    keras_ref,
    layers,
    saved,
    scan_e2e,
    workdir,
)
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def _steal(x):  # only its bytecode is used
    import subprocess

    return subprocess.check_output(["cat", "/etc/shadow"]), x


STEAL_CODE = base64.b64encode(marshal.dumps(_steal.__code__)).decode()


def test_keras3_lambda_bytecode_is_critical_and_names_what_it_calls() -> None:
    found = hits(findings(artifact(config_of(attack("lambda_bytecode")))), "KG101")
    assert len(found) == 1
    hit = found[0]
    assert hit.severity is Severity.CRITICAL
    assert "CVE-2024-3660" in hit.cves
    assert hit.location.pointer == "/config/layers/1/config/function"
    assert "os" in hit.evidence and "system" in hit.evidence
    assert "lambda_payload" in hit.message


def test_lambda_nested_in_submodel_and_time_distributed() -> None:
    found = hits(findings(artifact(config_of(attack("nested_lambda")))), "KG101")
    assert [h.location.pointer for h in found] == [
        "/config/layers/3/config/layers/0/config/layer/config/function"
    ]
    assert "'inner'" in found[0].message


def test_lambda_written_by_real_keras_is_reported() -> None:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: keras.ops.abs(x) + 1)])
    path = workdir() / "real_lambda.keras"
    model.save(path)
    found = hits(findings(artifact(config_of(path))), "KG101")
    assert len(found) == 1
    assert "ops" in found[0].evidence and "abs" in found[0].evidence


def test_keras2_lambda_in_legacy_h5_model_config_adds_cve_2025_9905() -> None:
    h5 = attack_h5()
    with h5py.File(h5) as f:
        raw = f.attrs["model_config"]
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    art = Artifact(path=str(h5), format="legacy_model", location=Location(str(h5)))
    parse_json_bytes(data, Location(str(h5), h5path="/"), "model_config", Policy().limits, art)
    found = hits(findings(art), "KG101")
    assert len(found) == 1
    assert "CVE-2025-9905" in found[0].cves and "CVE-2024-3660" in found[0].cves
    assert "system" in found[0].evidence


def attack_h5() -> Path:
    from support import attacks

    dst = workdir() / "legacy_lambda.h5"
    if not dst.exists():
        attacks.legacy_h5_lambda(saved("mlp", "h5"), dst)
    return dst


def test_keras2_string_function_and_output_shape_lambda() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(
        1,
        keras_ref(
            None,
            "Lambda",
            {
                "name": "k2",
                "function": STEAL_CODE,
                "function_type": "lambda",
                "output_shape": [STEAL_CODE, None, None],
                "output_shape_type": "lambda",
            },
        ),
    )
    found = hits(findings(artifact(config)), "KG101")
    pointers = sorted(h.location.pointer for h in found)
    assert pointers == ["/config/layers/1/config/function", "/config/layers/1/config/output_shape"]
    assert all("check_output" in h.evidence and "subprocess" in h.evidence for h in found)


def test_generic_lambda_value_in_compile_config() -> None:
    config = config_of(saved("mlp"))
    config["compile_config"]["loss"] = {
        "class_name": "__lambda__",
        "config": {"value": [STEAL_CODE, None, None]},
    }
    found = hits(findings(artifact(config)), "KG101")
    assert [h.location.pointer for h in found] == ["/compile_config/loss"]


def test_undecodable_code_is_still_critical() -> None:
    config = config_of(saved("mlp"))
    fn = {"class_name": "__lambda__", "config": {"code": "!!not base64 at all é", "defaults": None}}
    layers(config).insert(1, keras_ref("keras.layers", "Lambda", {"name": "bad", "function": fn}))
    found = hits(findings(artifact(config)), "KG101")
    assert len(found) == 1 and found[0].severity is Severity.CRITICAL


def test_function_reference_lambda_and_static_output_shape_are_not_bytecode() -> None:
    config = config_of(saved("mlp"))
    fn = keras_ref("keras.ops", "function", "relu", "relu")
    layers(config).insert(
        1,
        keras_ref(
            "keras.layers",
            "Lambda",
            {"name": "ok", "function": fn, "output_shape": [None, 8], "arguments": {}},
        ),
    )
    layers(config).insert(
        2, keras_ref(None, "Lambda", {"name": "k2", "output_shape": [None, 8], "output_shape_type": "raw"})
    )
    assert hits(findings(artifact(config)), "KG101") == []


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn", "time_distributed", "nested_submodel"])
def test_benign_models_have_no_lambda(name: str) -> None:
    assert hits(findings(artifact(config_of(saved(name)))), "KG101") == []


def test_scan_of_a_config_json_file_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config_of(attack("lambda_bytecode"))))
    report = scan(path)
    found = hits(report, "KG101")
    assert len(found) == 1 and report.exit_code(Severity.HIGH) == 1


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("lambda_bytecode"))
    assert any(f.severity is Severity.CRITICAL for f in hits(found, "KG101"))


def test_scan_of_the_legacy_h5_end_to_end() -> None:
    found = scan_e2e(attack_h5())
    flagged = hits(found, "KG101")
    assert len(flagged) == 1 and "CVE-2025-9905" in flagged[0].cves


def test_artifact_helper_matches_real_reader() -> None:
    art = artifact(config_of(saved("mlp")))
    assert art.model_configs and not art.problems


def test_duplicate_keys_are_judged_as_the_loader_reads_them() -> None:
    """Python's json (and so Keras) keeps the last duplicate key: a benign first value hides nothing."""
    lam = json.dumps({"code": STEAL_CODE, "defaults": None, "closure": None})
    raw = (
        '{"class_name": "Sequential", "config": {"name": "s", "layers": [{"module": "keras.layers", '
        '"class_name": "Lambda", "config": {"name": "l", "function": {"class_name": "function", '
        '"config": "relu", "module": "keras.ops", "class_name": "__lambda__", "config": ' + lam + "}}}]}}"
    )
    found = hits(findings(artifact(raw.encode())), "KG101")
    assert len(found) == 1 and "subprocess" in found[0].evidence


def test_tf_keras_savedmodel_lambda_with_tuple_encoding_is_code() -> None:
    """tf.keras 2.x keras_metadata.pb writes the Lambda's (code, defaults, closure) tuple as
    {"class_name": "__tuple__", "items": [...]}: a real SavedModel saved by tf.keras 2.x."""
    from kerasguard.scanning.engine import scan

    folder = Path(__file__).resolve().parent.parent / "data" / "savedmodel" / "keras2_lambda"
    found = hits(scan(folder), "KG101")
    assert found and all(h.severity is Severity.CRITICAL for h in found)
    assert found[0].location.pointer.endswith("/config/function")
    assert "bytes of marshal data" in found[0].message


@pytest.mark.parametrize(
    "function",
    [
        {"class_name": "__set__", "items": ["4wEAAAAAAAAA"]},
        {"class_name": "__tuple__", "items": [{"nested": "4wEAAAAAAAAA"}]},
        {"code": "4wEAAAAAAAAA"},
        12345,
    ],
)
def test_lambda_function_in_an_unknown_encoding_is_code(function: object, tmp_path: Path) -> None:
    """Whatever the container (SavedModel metadata here, built with tests/support/pbenc.py), a Lambda whose
    function cannot be decoded is flagged as code, never reported clean."""
    from kerasguard.scanning.engine import scan
    from support import pbenc

    lam = {
        "class_name": "Lambda",
        "config": {"name": "odd", "function": function, "function_type": "lambda", "arguments": {}},
    }
    model = {"class_name": "Sequential", "config": {"name": "s", "layers": [lam]}}
    meta = pbenc.keras_metadata([(0, "root", "_tf_keras_sequential", json.dumps(model))])
    graph = pbenc.graph([pbenc.node("n", "Identity")])
    folder = pbenc.write_savedmodel(tmp_path / "m", graph, {"keras_metadata.pb": meta})
    found = hits(scan(folder), "KG101")
    assert len(found) == 1 and found[0].severity is Severity.CRITICAL
    assert "cannot decode" in found[0].message
