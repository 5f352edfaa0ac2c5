"""Reader pass: TorchModuleWrapper payloads become nested blobs; oversized configs are reported."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.findings import Location
from kerasguard.formats import config_payloads
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact, read_blob
from kerasguard.formats.json_strict import parse_json_bytes
from kerasguard.policy import Limits

EVIL = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."


def model(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "m", "layers": list(layers)}}


def torch(module: str) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "TorchModuleWrapper",
        "config": {"name": "t", "module": module},
    }


def read(config: Any, limits: Limits | None = None) -> Artifact:
    limits = limits or Limits()
    art = Artifact(path="m.keras", format="keras", location=Location("m.keras"))
    data = json.dumps(config).encode()
    parse_json_bytes(data, Location("m.keras", member="config.json"), "model_config", limits, art)
    config_payloads.extract_payloads(art, ReadContext(limits=limits), read_blob)
    return art


def test_pickle_payload_becomes_a_nested_member() -> None:
    art = read(model(torch(base64.b64encode(EVIL).decode())))
    [member] = art.members
    assert member.kind == "pickle" and member.size == len(EVIL)
    assert str(member.location) == "m.keras!/config.json!/base64:/config/layers/0/config/module"


def test_payload_with_whitespace_is_decoded_like_keras() -> None:
    text = base64.b64encode(pickle.dumps([1, 2], protocol=2)).decode()
    spaced = "\n".join(text[i : i + 10] for i in range(0, len(text), 10))
    art = read(model(torch(spaced)))
    assert [m.size for m in art.members] == [len(pickle.dumps([1, 2], protocol=2))]


def test_invalid_base64_is_a_corrupt_problem() -> None:
    art = read(model(torch("abc")))
    assert art.members == []
    assert [(p.kind, p.location.member) for p in art.problems] == [
        ("corrupt", "config.json!/base64:/config/layers/0/config/module")
    ]


def test_oversized_payload_is_not_decoded() -> None:
    art = read(model(torch(base64.b64encode(bytes(4096)).decode())), Limits(max_pickle_bytes=1024))
    assert art.members == [] and [p.kind for p in art.problems] == ["limit"]


def test_config_too_large_to_walk_is_a_limit_problem() -> None:
    layers = [{"class_name": "Dense", "config": {"units": 1}} for _ in range(50)]
    art = read(model(*layers), Limits(max_config_nodes=20))
    assert [p.kind for p in art.problems] == ["limit"]
    assert "max_config_nodes=20" in art.problems[0].message


def test_a_bug_becomes_a_problem_and_keeps_the_artifact(monkeypatch: pytest.MonkeyPatch) -> None:
    from kerasguard.formats import config_walk

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(config_walk, "index", boom)
    art = read(model())
    assert [p.kind for p in art.problems] == ["internal"] and art.json_docs


def test_open_artifact_runs_the_pass_on_files(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(model(torch(base64.b64encode(EVIL).decode()))))
    art = open_artifact(path, ReadContext(limits=Limits()))
    assert [m.name for m in art.members] == ["config.json", "torch_module.pt"]


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.integers()
        | st.text(max_size=12)
        | st.sampled_from(["TorchModuleWrapper", "module", "gA=="]),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["class_name", "config", "module", "name", "x"]), inner, max_size=4
            )
        ),
        max_leaves=30,
    )
)
def test_any_config_never_raises(value: Any) -> None:
    art = read({"class_name": "Sequential", "config": {"layers": [value]}})
    assert all(p.kind != "crash" for p in art.problems)
