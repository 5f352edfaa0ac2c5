"""Training records (written by TrainingGuard) read back for the store: bounded, strict, validated.

A record travels as a sealed attachment of a model version (``store push --training-record``): its
digest is in the version's MAC-covered provenance, so it cannot be swapped afterwards without detection.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from kerasguard.errors import DataError

RECORD_SCHEMA = "kerasguard.training-record/v1"
#: The default bound when reading a record (the store passes its ``max_attachment_bytes``).
MAX_RECORD_BYTES = 48 * 1024
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "data_manifest": (str, type(None)),
    "hyperparameters": dict,
    "metrics": list,
    "anomalies": list,
    "stopped": bool,
}


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def read_training_record(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_RECORD_BYTES
) -> tuple[dict[str, Any], str]:
    """(the record, its sha256 digest); DataError when it is too large, not JSON or not a record."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"training record {path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise DataError(
            f"training record {path}: larger than {max_bytes} bytes",
            hint="record fewer epochs or anomalies, or raise [store] max_attachment_bytes",
        )
    try:
        record = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"training record {path}: not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise DataError(f"training record {path}: not a JSON object")
    for key, kind in _REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise DataError(f"training record {path}: missing or invalid {key!r}")
    if record["schema"] != RECORD_SCHEMA:
        raise DataError(f"training record {path}: schema {record['schema']!r:.80} is not {RECORD_SCHEMA}")
    return record, "sha256:" + hashlib.sha256(data).hexdigest()
