"""Lambda functions in Keras configs, as facts: where each one is, who carries it, and what its code is.

Keras stores a Lambda's function as base64 of ``marshal.dumps(function.__code__)`` (Keras 3
``__lambda__`` objects, Keras 2 ``Lambda`` configs, tf.keras 2.x ``__tuple__``-wrapped lists). The
bytes are decoded here, bounded, and summarised by :mod:`kerasguard.formats.marshal_safe` (never
unmarshalled), so the rules (KG101) judge facts and never decode anything themselves. A function in an
encoding this reader does not know is still recorded, with no code bytes: Keras may decode it.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import Artifact, JsonDocument
from kerasguard.formats.config_walk import ObjRef
from kerasguard.formats.marshal_safe import MarshalSummary, summarize


@dataclass(frozen=True)
class LambdaFunction:
    """One function a config carries as code, with its decoded summary."""

    document: JsonDocument  # the config it is in
    pointer: str  # JSON pointer of the code value
    owner: str  # what carries it, for messages ("Lambda 'l' function", "Dense 'd' activation (__lambda__)")
    code_type: str  # type name of the value the config holds there
    code_bytes: int  # decoded marshal bytes; 0 when there is no decodable code
    summary: MarshalSummary


def lambda_functions(art: Artifact) -> list[LambdaFunction]:
    """Every Lambda function in every config of ``art``, in document order."""
    out = []
    for doc, ref in cw.refs(art):
        if ref.kind == "class":
            cfg = ref.config
            if not isinstance(cfg, dict) or ("function" not in cfg and "output_shape_type" not in cfg):
                continue  # what lambda_codes yields nothing for without looking further: most layers
        elif ref.kind != "lambda":
            continue  # functions and special objects carry no code
        owner = cw.index(doc).enclosing(ref.pointer) if ref.kind == "lambda" else None
        for found in lambda_codes(ref, owner):
            data = decode_code(found.code)
            summary = summarize(data) if data else MarshalSummary(layout=None, problem="no code string")
            out.append(
                LambdaFunction(
                    doc, found.pointer, found.owner, type(found.code).__name__, len(data or b""), summary
                )
            )
    return out


# Base64 text decoded per Lambda for evidence; real lambdas are a few KB.
MAX_CODE_CHARS = 4 * 1024 * 1024


@dataclass(frozen=True)
class LambdaCode:
    pointer: str  # where the code lives
    owner: str  # what carries it, for the message
    code: Any  # the base64 text (or whatever the config holds there)


def decode_code(code: Any) -> bytes | None:
    """The bytes ``python_utils.func_load`` would unmarshal: base64, or raw text when that fails."""
    if isinstance(code, list | tuple) and code:
        code = code[0]
    if not isinstance(code, str):
        return None
    text = code[:MAX_CODE_CHARS]
    try:
        return binascii.a2b_base64(text.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error):
        return text.encode("raw_unicode_escape", "replace")


def lambda_codes(ref: ObjRef, owner: ObjRef | None = None) -> Iterator[LambdaCode]:
    """Bytecode carried by ``ref``: a Keras 3 ``__lambda__`` or a Keras 2 Lambda config.

    ``owner`` is the object holding a ``__lambda__`` (its layer), named in the message.
    """
    cfg = ref.config
    if ref.kind == "lambda":
        inner = cfg if isinstance(cfg, dict) else {}
        code = inner.get("code", inner.get("value"))
        key = ref.pointer.rsplit("/", 1)[-1]
        where = f"{owner.class_name} {owner.layer_name or ''!r} {key}" if owner else "object"
        yield LambdaCode(ref.pointer, f"{where} (__lambda__)", code)
        return
    if ref.kind != "class" or not isinstance(cfg, dict):
        return
    name = ref.layer_name or ref.class_name
    function = unwrap_tuple(cfg.get("function"))
    if isinstance(function, list) or (isinstance(function, str) and cfg.get("function_type") == "lambda"):
        yield LambdaCode(f"{ref.pointer}/config/function", f"{ref.class_name} {name!r} function", function)
    elif is_lambda_layer(ref) and not _judged_elsewhere(function, cfg.get("function_type")):
        # A function in an encoding this scanner does not know: Keras may still decode it. Code.
        yield LambdaCode(f"{ref.pointer}/config/function", f"{ref.class_name} {name!r} function", function)
    output_shape = unwrap_tuple(cfg.get("output_shape"))
    if cfg.get("output_shape_type") == "lambda" and isinstance(output_shape, list | str):
        yield LambdaCode(
            f"{ref.pointer}/config/output_shape", f"{ref.class_name} {name!r} output_shape", output_shape
        )


def unwrap_tuple(value: Any) -> Any:
    """tf.keras 2.x metadata writes tuples as ``{"class_name": "__tuple__", "items": [...]}``."""
    if (
        isinstance(value, dict)
        and value.get("class_name") == "__tuple__"
        and isinstance(value.get("items"), list)
    ):
        return value["items"]
    return value


def is_lambda_layer(ref: ObjRef) -> bool:
    """A Lambda layer of any Keras (``Lambda``, ``keras.layers.Lambda``, a registered ``pkg>Lambda``)."""
    return ref.class_name.rsplit(">", 1)[-1].rsplit(".", 1)[-1] == "Lambda"


def _judged_elsewhere(function: Any, function_type: Any) -> bool:
    """Lambda functions other rules judge: a named function (Keras 2 ``function_type: function``, KG2xx),
    a Keras 3 reference or ``__lambda__`` (a ref of its own), a raw value that is not code, or none."""
    if function is None:
        return True
    if isinstance(function, str):
        return function_type in ("function", "raw", None)
    return cw.as_ref(function) is not None
