"""Every config rule survives arbitrary config-shaped JSON (a rule crash would be KG906)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from support.kgconfig import artifact, findings

KEYS = st.sampled_from(
    [
        "class_name",
        "config",
        "module",
        "registered_name",
        "layers",
        "inbound_nodes",
        "input_layers",
        "output_layers",
        "keras_history",
        "function",
        "function_type",
        "output_shape",
        "output_shape_type",
        "vocabulary",
        "units",
        "kernel_size",
        "batch_shape",
        "build_config",
        "input_shape",
        "name",
        "filepath",
        "node_def",
        "op",
        "args",
    ]
)
VALUES = st.sampled_from(
    [
        "Lambda",
        "__lambda__",
        "__keras_tensor__",
        "function",
        "TorchModuleWrapper",
        "TFSMLayer",
        "TFOpLambda",
        "keras.layers",
        "os",
        "builtins",
        "lambda",
        "gs://x",
        "../x",
        "pkg>Name",
        "4wEAAAA=",
    ]
)
LEAVES = st.none() | st.booleans() | st.integers(-5, 2**45) | st.floats() | VALUES | st.text(max_size=6)
CONFIGS = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=60,
)


@settings(max_examples=200, deadline=None)
@given(CONFIGS, st.sampled_from(["3.15.1", "3.8.0", "2.15.0", None]))
def test_rules_never_crash(config: Any, version: str | None) -> None:
    document = {"class_name": "Functional", "config": {"layers": [config], "input_layers": config}}
    findings(artifact(document), keras_version=version)  # asserts no KG905


def test_unparseable_keras_version_counts_as_unknown() -> None:
    """The scanner validates keras_version; the rules still never trust a bad one to lower severity."""
    from kerasguard.rules.ref_judge import FIRST_SAFE_IMPORT, keras_before

    assert keras_before("not a version", FIRST_SAFE_IMPORT) is None
    assert keras_before("3.8.1", FIRST_SAFE_IMPORT) is True
    assert keras_before("3.9.0", FIRST_SAFE_IMPORT) is False
