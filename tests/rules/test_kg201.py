"""KG201: references to modules outside the Keras family (CVE-2025-1550)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from kerasguard.findings import Severity
from kerasguard.policy import policy_from_mapping
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved, scan_e2e
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def test_cve_2025_1550_subprocess_run_layer() -> None:
    found = hits(findings(artifact(config_of(attack("foreign_module_layer")))), "KG201")
    assert len(found) == 1
    assert found[0].severity is Severity.CRITICAL
    assert found[0].location.pointer == "/config/layers/1"
    assert "subprocess.run" in found[0].message and "CVE-2025-1550" in found[0].cves


@pytest.mark.parametrize(
    ("module", "class_name"),
    [
        ("os", "system"),
        ("builtins", "exec"),
        ("subprocess", "Popen"),
        ("posix", "system"),
        ("shutil", "rmtree"),
    ],
)
def test_standard_library_classes_and_functions_are_critical(module: str, class_name: str) -> None:
    config = config_of(saved("mlp"))
    config["config"]["layers"][1]["config"]["kernel_initializer"] = keras_ref(module, class_name, {})
    found = hits(findings(artifact(config)), "KG201")
    assert len(found) == 1 and found[0].severity is Severity.CRITICAL
    assert found[0].location.pointer == "/config/layers/1/config/kernel_initializer"


def test_builtins_function_must_be_a_keras_builtin() -> None:
    config = config_of(saved("mlp"))
    config["compile_config"]["loss"] = keras_ref("builtins", "function", "eval")
    config["compile_config"]["metrics"] = [keras_ref("builtins", "function", "mean_squared_error")]
    found = hits(findings(artifact(config)), "KG201")
    assert [h.location.pointer for h in found] == ["/compile_config/loss"]
    assert "builtins.eval" in found[0].message


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.8.0", Severity.CRITICAL),
        (None, Severity.CRITICAL),
        ("3.15.1", None),
        ("2.15.0", Severity.CRITICAL),
    ],
)
def test_foreign_function_severity_follows_the_loading_keras(
    version: str | None, expected: Severity | None
) -> None:
    """Keras < 3.9 imports the module named in the config; later versions resolve only registered code."""
    config = config_of(saved("mlp"))
    config["compile_config"]["loss"] = keras_ref("mylib.losses", "function", "mylib>focal", "mylib>focal")
    found = hits(findings(artifact(config), keras_version=version), "KG201")
    assert [h.severity for h in found] == ([expected] if expected else [])
    if expected is None:
        assert len(hits(findings(artifact(config), keras_version=version), "KG205")) == 1


def test_foreign_function_named_as_class_is_critical_even_with_registered_name() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref("numpy", "load", {"file": "/etc/passwd"}, "x>load"))
    found = hits(findings(artifact(config)), "KG201")
    assert len(found) == 1 and found[0].severity is Severity.CRITICAL


def test_keras2_lambda_function_from_os_module() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(
        1,
        keras_ref(
            None, "Lambda", {"name": "l", "function": "system", "function_type": "function", "module": "os"}
        ),
    )
    found = hits(findings(artifact(config)), "KG201")
    assert len(found) == 1 and "os.system" in found[0].message
    assert found[0].location.pointer == "/config/layers/1/config/function"
    assert "function='system'" in found[0].evidence


def test_policy_allowlist_turns_foreign_module_into_info() -> None:
    config = config_of(saved("mlp"))
    config["compile_config"]["loss"] = keras_ref("mylib.losses", "function", "focal", None)
    policy = policy_from_mapping(
        {"allow": {"functions": [{"name": "mylib.losses.focal", "reason": "our focal loss, reviewed"}]}}
    )
    assert hits(findings(artifact(config), policy=policy, keras_version=None), "KG201") == []
    info = hits(findings(artifact(config), policy=policy, keras_version=None), "KG205")
    assert len(info) == 1 and info[0].severity is Severity.INFO and "reviewed" in info[0].message


def test_benign_and_custom_models_have_no_foreign_module() -> None:
    for name in ("mlp", "custom_layer", "mixed_precision"):
        assert hits(findings(artifact(config_of(saved(name))), keras_version=None), "KG201") == []


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("foreign_module_layer"))
    assert hits(found, "KG201", "KG203")


def test_typespec_from_the_standard_library() -> None:
    config = config_of(saved("mlp"))
    spec = {
        "class_name": "__typespec__",
        "spec_name": "system",
        "module": "os",
        "config": [],
        "registered_name": None,
    }
    ok = {
        "class_name": "__typespec__",
        "spec_name": "TensorSpec",
        "module": "tensorflow.python.framework.tensor_spec",
        "config": [[None, 3], "float32", None],
        "registered_name": None,
    }
    config["config"]["layers"][1]["config"]["spec"] = spec
    config["config"]["layers"][2]["config"]["spec"] = ok
    found = hits(findings(artifact(config)), "KG201")
    assert [h.location.pointer for h in found] == ["/config/layers/1/config/spec"]


@pytest.mark.parametrize(
    ("module", "name", "rule"),
    [
        ("tensorflow.python.ops.math_ops", "add", None),
        ("tensorflow.python.ops.nn_ops", "relu", None),
        ("tensorflow.python.ops.io_ops", "write_file", "KG202"),
        ("tensorflow.python.ops.script_ops", "numpy_function", "KG202"),
        ("tensorflow.python.framework.ops", "convert_to_tensor", "KG201"),
    ],
)
def test_tf_keras_lambda_of_tensorflow_functions(module: str, name: str, rule: str | None) -> None:
    config = config_of(saved("mlp"))
    lam = {"name": "l", "function": name, "function_type": "function", "module": module}
    layers(config).insert(1, keras_ref(None, "Lambda", lam))
    found = {r for r in ("KG201", "KG202", "KG204", "KG205") if hits(findings(artifact(config)), r)}
    assert found == ({rule} if rule else set())


def test_foreign_function_is_judged_for_the_worst_keras_unless_pinned(tmp_path: Path) -> None:
    """A Lambda calling numpy.testing.measure (it runs exec on its argument): Keras 3.15.1 beside the
    scanner must not lower the severity, since Keras < 3.9 or tf-keras would import and run it."""
    import numpy.testing

    from kerasguard.policy import Policy
    from kerasguard.scanning.engine import installed_keras_version, scan
    from support import attacks

    assert "exec(" in inspect.getsource(numpy.testing.measure)  # the helper really executes its argument
    assert installed_keras_version() is not None

    def edit(config: dict[str, object]) -> None:
        layers(config).insert(
            1,
            keras_ref(
                "keras.layers",
                "Lambda",
                {
                    "name": "measure",
                    "function": keras_ref("numpy.testing", "function", "measure"),
                    "arguments": {"times": 1},
                },
            ),
        )

    evil = attacks.edit_config(saved("mlp"), tmp_path / "measure.keras", edit)
    worst = hits(scan(evil), "KG201", "KG205")
    assert [(f.rule_id, f.severity) for f in worst] == [("KG201", Severity.CRITICAL)]
    assert "does not pin keras_version" in worst[0].message
    pinned = scan(evil, Policy(keras_version="3.15.1")).findings
    assert [f.rule_id for f in hits(pinned, "KG201", "KG205")] == ["KG205"]
    old = scan(evil, Policy(keras_version="3.8.0")).findings
    assert [f.severity for f in hits(old, "KG201")] == [Severity.CRITICAL]
