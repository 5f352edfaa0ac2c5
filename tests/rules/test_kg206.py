"""KG206: lookup layers reading their vocabulary from a path or URL (CVE-2025-12058)."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved, scan_e2e
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def lookup(class_name: str, **config: object) -> dict[str, object]:
    return keras_ref("keras.layers", class_name, {"name": "lk", "num_oov_indices": 1, **config})


def test_string_lookup_remote_vocabulary() -> None:
    found = hits(findings(artifact(config_of(attack("vocabulary_path")))), "KG206")
    assert len(found) == 1
    assert found[0].severity is Severity.HIGH
    assert found[0].location.pointer == "/config/layers/1/config/vocabulary"
    assert "gs://" in found[0].message and "CVE-2025-12058" in found[0].cves


@pytest.mark.parametrize(
    ("class_name", "key", "value", "remote"),
    [
        ("IntegerLookup", "vocabulary", "/etc/passwd", False),
        ("TextVectorization", "vocabulary", "https://169.254.169.254/latest/meta-data", True),
        ("TextVectorization", "idf_weights", "s3://bucket/idf", True),
        ("MyLookup", "vocabulary", "file:///etc/hosts", False),
    ],
)
def test_path_and_url_vocabularies(class_name: str, key: str, value: str, remote: bool) -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, lookup(class_name, **{key: value}))
    found = hits(findings(artifact(config)), "KG206")
    assert len(found) == 1
    assert ("remote" in found[0].message) is remote


def test_inline_vocabulary_and_adapted_layers_are_fine() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, lookup("StringLookup", vocabulary=["a", "b", "c"], idf_weights=None))
    layers(config).insert(2, lookup("IntegerLookup", vocabulary=None))
    assert hits(findings(artifact(config)), "KG206") == []


# StringLookup needs TensorFlow to be built, so this is its Keras 3.15.1 get_config() written by hand.
STRING_LOOKUP = {
    "module": "keras.layers",
    "class_name": "StringLookup",
    "config": {
        "name": "string_lookup",
        "trainable": True,
        "dtype": {
            "module": "keras",
            "class_name": "DTypePolicy",
            "config": {"name": "int64"},
            "registered_name": None,
        },
        "invert": False,
        "max_tokens": None,
        "num_oov_indices": 1,
        "oov_token": "[UNK]",
        "mask_token": None,
        "output_mode": "int",
        "sparse": False,
        "pad_to_max_tokens": False,
        "vocabulary_dtype": "string",
        "idf_weights": None,
        "vocabulary": ["cat", "dog", "bird"],
        "vocabulary_size": 4,
        "encoding": "utf-8",
        "oov_method": "hash",
        "salt": None,
    },
    "registered_name": None,
    "build_config": {"input_shape": [None, 1]},
}


def test_hand_written_string_lookup_with_inline_vocabulary_is_clean() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, STRING_LOOKUP)
    for rule in ("KG206", "KG204", "KG205", "KG501"):
        assert hits(findings(artifact(config)), rule) == [], rule


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("vocabulary_path"))
    assert hits(found, "KG206")
