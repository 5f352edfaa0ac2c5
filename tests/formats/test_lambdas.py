"""Lambda functions as reader facts: found in every encoding, decoded and summarised in formats/."""

from __future__ import annotations

import base64
import json
import marshal
from typing import Any

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.json_strict import parse_json_bytes
from kerasguard.formats.lambdas import lambda_functions
from kerasguard.policy import Limits


def payload(x: Any) -> Any:
    import os

    return os.system("id")


CODE = base64.b64encode(marshal.dumps(payload.__code__)).decode("ascii")


def artifact(config: dict[str, Any]) -> Artifact:
    art = Artifact(path="m.keras", format="keras", location=Location("m.keras"))
    doc = parse_json_bytes(
        json.dumps(config).encode(), Location("m.keras", member="config.json"), "model_config", Limits(), art
    )
    assert doc is not None
    return art


def model(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "s", "layers": list(layers)}}


def test_a_keras2_lambda_is_decoded_and_summarised() -> None:
    art = artifact(
        model(
            {
                "class_name": "Lambda",
                "config": {"name": "l", "function": [CODE, None, None], "function_type": "lambda"},
            }
        )
    )
    [fn] = lambda_functions(art)
    assert fn.pointer == "/config/layers/0/config/function"
    assert fn.owner == "Lambda 'l' function"
    assert fn.code_bytes == len(marshal.dumps(payload.__code__))
    assert "system" in fn.summary.describe()


def test_a_tf_keras_tuple_wrapped_lambda_is_decoded() -> None:
    function = {"class_name": "__tuple__", "items": [CODE, None, None]}
    art = artifact(
        model(
            {"class_name": "Lambda", "config": {"name": "t", "function": function, "function_type": "lambda"}}
        )
    )
    [fn] = lambda_functions(art)
    assert fn.code_bytes > 0
    assert "system" in fn.summary.describe()


def test_a_function_in_an_unknown_encoding_is_still_a_fact_with_no_code() -> None:
    art = artifact(model({"class_name": "Lambda", "config": {"name": "u", "function": {"blob": 7}}}))
    [fn] = lambda_functions(art)
    assert fn.code_bytes == 0
    assert fn.code_type == "dict"


def test_a_named_function_is_not_bytecode() -> None:
    art = artifact(
        model(
            {"class_name": "Lambda", "config": {"name": "n", "function": "relu", "function_type": "function"}}
        )
    )
    assert lambda_functions(art) == []


def test_a_lambda_output_shape_without_a_function_is_found() -> None:
    # A layer with no "function" key is passed over quickly unless it says output_shape_type.
    art = artifact(
        model(
            {
                "class_name": "Dense",
                "config": {"name": "o", "output_shape": [CODE, None, None], "output_shape_type": "lambda"},
            }
        )
    )
    [fn] = lambda_functions(art)
    assert fn.pointer == "/config/layers/0/config/output_shape"
    assert "system" in fn.summary.describe()
