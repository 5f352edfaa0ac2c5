"""KG102: TorchModuleWrapper with an embedded torch.save payload (CVE-2025-49655)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.policy import Limits
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved, scan_e2e
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def wrapper(module: str, name: str = "torch") -> dict[str, object]:
    return keras_ref("keras.layers", "TorchModuleWrapper", {"name": name, "module": module})


def test_torch_wrapper_zip_payload_is_critical() -> None:
    found = hits(findings(artifact(config_of(attack("torch_wrapper")))), "KG102")
    assert len(found) == 1
    assert found[0].severity is Severity.CRITICAL
    assert found[0].location.pointer == "/config/layers/1/config/module"
    assert "zip archive" in found[0].message
    assert "CVE-2025-49655" in found[0].cves


def test_raw_pickle_payload_is_described() -> None:
    config = config_of(saved("mlp"))
    evil = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    layers(config).insert(1, wrapper(base64.b64encode(evil).decode()))
    found = hits(findings(artifact(config)), "KG102")
    assert len(found) == 1 and "pickle (protocol 4)" in found[0].message


def test_invalid_base64_still_reported() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, wrapper("@@@ not base64 @@@"))
    assert len(hits(findings(artifact(config)), "KG102")) == 1


def test_wrapper_without_payload_and_other_modules_are_not_reported() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, wrapper(""))
    layers(config).insert(2, keras_ref("keras.layers", "Dense", {"name": "d", "units": 2, "module": "x"}))
    assert hits(findings(artifact(config)), "KG102") == []


def test_payload_is_fed_back_through_the_dispatcher(tmp_path: Path) -> None:
    """The decoded payload becomes a nested member (the zip/pickle readers report its content)."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config_of(attack("torch_wrapper"))))
    art = open_artifact(path, ReadContext(limits=Limits()))
    nested = [m for m in art.members if m.name == "torch_module.pt"]
    assert len(nested) == 1
    assert nested[0].kind == "zip"
    assert nested[0].location.member == "base64:/config/layers/1/config/module"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")
        z.writestr("archive/version", b"3\n")
    assert nested[0].size == len(buf.getvalue())


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("torch_wrapper"))
    assert hits(found, "KG102")
