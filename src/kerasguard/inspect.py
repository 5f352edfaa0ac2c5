"""`inspect`: what a human reviewer needs to approve an untrusted model, without loading it.

The architecture as a tree, every object and function the config references, assets, a weights summary
and the scan findings. Everything comes from the same readers the scanner uses.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from kerasguard.findings import FileReport
from kerasguard.formats import config_walk
from kerasguard.formats.artifact import Artifact, H5Object
from kerasguard.policy import Policy
from kerasguard.rules import weight_shapes
from kerasguard.scanning.engine import analyse

# Config keys worth showing next to a layer in the tree.
DETAIL_KEYS = (
    "units",
    "filters",
    "kernel_size",
    "strides",
    "activation",
    "input_dim",
    "output_dim",
    "rate",
    "batch_shape",
    "batch_input_shape",
    "dtype",
)


@dataclass
class LayerNode:
    """One layer (or model) of the architecture."""

    class_name: str
    name: str
    module: str | None
    pointer: str
    details: dict[str, str] = field(default_factory=dict)
    children: list[LayerNode] = field(default_factory=list)
    parameters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "name": self.name,
            "module": self.module,
            "pointer": self.pointer,
            "details": self.details,
            "parameters": self.parameters,
            "children": [c.to_dict() for c in self.children],
        }


@dataclass(frozen=True)
class Reference:
    """An object or function named by the config (what a loader will resolve and import)."""

    kind: str  # "class" | "function" | "registered"
    module: str | None
    name: str
    registered_name: str | None
    pointer: str


@dataclass(frozen=True)
class WeightGroup:
    path: str
    datasets: int
    parameters: int
    declared_bytes: int
    stored_bytes: int


@dataclass
class Inspection:
    """The review of one artifact."""

    path: str
    format: str
    layers: list[LayerNode]
    references: list[Reference]
    assets: list[tuple[str, int, str]]
    weights: list[WeightGroup]
    report: FileReport
    # sha256 of the file (or of a directory's canonical manifest), as `kerasguard hash` and `verify --digest`.
    digest: str | None = None
    digest_error: str | None = None
    # The Keras version the file says saved it (metadata.json or the HDF5 root attribute): a claim, not proof.
    claimed_keras_version: str | None = None

    @property
    def total_parameters(self) -> int:
        return sum(w.parameters for w in self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "digest": self.digest,
            "digest_error": self.digest_error,
            "claimed_keras_version": self.claimed_keras_version,
            "layers": [layer.to_dict() for layer in self.layers],
            "references": [r.__dict__ for r in self.references],
            "assets": [{"name": n, "size": s, "kind": k} for n, s, k in self.assets],
            "weights": {
                "datasets": sum(w.datasets for w in self.weights),
                "parameters": self.total_parameters,
                "declared_bytes": sum(w.declared_bytes for w in self.weights),
                "stored_bytes": sum(w.stored_bytes for w in self.weights),
                "groups": [w.__dict__ for w in self.weights],
            },
            "report": self.report.to_dict(),
        }


def _layer_tree(node: Any, pointer: str, depth: int = 0) -> list[LayerNode]:
    """Layers found under a config node; nested models and wrappers become children."""
    if depth > 64:
        return []
    found: list[LayerNode] = []
    if isinstance(node, dict):
        cls = node.get("class_name")
        cfg = node.get("config")
        if isinstance(cls, str) and isinstance(cfg, dict) and ("name" in cfg or "layers" in cfg):
            details = {
                k: _short(cfg[k]) for k in DETAIL_KEYS if k in cfg and cfg[k] is not None and _shown(cfg[k])
            }
            layer = LayerNode(
                class_name=cls,
                name=str(cfg.get("name", "")),
                module=node.get("module") if isinstance(node.get("module"), str) else None,
                pointer=pointer,
                details=details,
            )
            for key in ("layers", "layer", "forward_layer", "backward_layer", "cell", "cells"):
                if key in cfg:
                    layer.children += _layer_tree(cfg[key], f"{pointer}/config/{key}", depth + 1)
            return [layer]
        for key, value in node.items():
            found += _layer_tree(value, f"{pointer}/{config_walk.escape(key)}", depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _layer_tree(value, f"{pointer}/{i}", depth + 1)
    return found


def _shown(value: Any) -> bool:
    return not isinstance(value, dict) or "class_name" in value


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("class_name"))
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _references(art: Artifact) -> list[Reference]:
    """Object and function references a loader would resolve (the scanner's own config walk)."""
    out: list[Reference] = []
    for _doc, ref in config_walk.refs(art):
        if ref.kind == "lambda":
            out.append(Reference("function", None, "__lambda__ (bytecode)", None, ref.pointer))
        elif ref.module is not None or ref.registered_name is not None or ref.kind == "function":
            name = (ref.function_name or "") if ref.kind == "function" else ref.class_name
            kind = "function" if ref.kind == "function" else "class"
            if ref.registered_name and ref.registered_name not in (ref.class_name, name):
                kind = "registered"
            out.append(Reference(kind, ref.module, name, ref.registered_name, ref.pointer))
    return out


def _group_of(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p]
    if parts and parts[0] in ("layers", "model_weights", "optimizer", "optimizer_weights") and len(parts) > 2:
        return "/".join(parts[:2])
    return "/".join(parts[:-1]) or "/"


def _weights(art: Artifact) -> list[WeightGroup]:
    groups: dict[str, list[H5Object]] = {}
    for h5 in art.h5_files:
        for obj in h5.datasets:
            groups.setdefault(_group_of(obj.path), []).append(obj)
    out = []
    for path, objs in sorted(groups.items()):
        params = sum(math.prod(o.shape) for o in objs if o.shape is not None)
        out.append(
            WeightGroup(
                path=path,
                datasets=len(objs),
                parameters=params,
                declared_bytes=sum(o.declared_bytes or 0 for o in objs),
                stored_bytes=sum(o.stored_bytes or 0 for o in objs),
            )
        )
    return out


def _parameters_by_layer(art: Artifact) -> dict[str, int]:
    """Parameter counts per layer name, from the stored dataset shapes.

    Legacy .h5 groups weights by layer name; the Keras 3 layout by class-derived paths, which the scanner's
    architecture model (``weight_shapes``) maps back to layer names for the standard layers.
    """
    datasets = [o for h5 in art.h5_files for o in h5.datasets if o.shape is not None]
    counts: dict[str, int] = {}
    for obj in datasets:
        parts = obj.path.strip("/").split("/")
        if parts[0] == "model_weights" and len(parts) > 2:
            assert obj.shape is not None
            counts[parts[1]] = counts.get(parts[1], 0) + math.prod(obj.shape)
    # Parameters under each group path ("/", "/layers/", "/layers/dense/"...): one pass over the datasets,
    # so the cost stays linear however many layers and datasets a hostile file declares.
    under: dict[str, int] = {}
    for obj in datasets:
        assert obj.shape is not None
        size, prefix = math.prod(obj.shape), "/"
        under[prefix] = under.get(prefix, 0) + size
        for part in obj.path.strip("/").split("/")[:-1]:
            prefix += part + "/"
            under[prefix] = under.get(prefix, 0) + size
    for doc in art.model_configs:
        owners = {
            var.owner_path.rstrip("/") + "/": var.layer for var in weight_shapes.expected_vars(doc.value)
        }
        for owner, layer in owners.items():
            if under.get(owner):
                counts.setdefault(layer, under[owner])
    return counts


def _attach_parameters(layers: list[LayerNode], counts: dict[str, int]) -> None:
    for layer in layers:
        if layer.name in counts:
            layer.parameters = counts[layer.name]
        _attach_parameters(layer.children, counts)


def _claimed_keras_version(art: Artifact) -> str | None:
    """What the file claims about the Keras that saved it (bounded: it is the file's own word)."""
    for doc in art.json_docs:
        if doc.role == "metadata" and isinstance(doc.value, dict):
            version = doc.value.get("keras_version")
            if isinstance(version, str):
                return version[:64]
    for h5 in art.h5_files:
        version = h5.root_attrs.get("keras_version")
        if version:
            return version[:64]
    return None


def _digest(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """(digest, None) or (None, why not): a file that cannot be hashed is reported, not fatal."""
    from kerasguard.errors import KerasGuardError
    from kerasguard.integrity.manifest import compute_manifest

    try:
        return compute_manifest(path, "sha256").digest(), None
    except (KerasGuardError, OSError) as exc:
        return None, str(getattr(exc, "message", None) or exc)


def inspect_model(path: str | os.PathLike[str], policy: Policy | None = None) -> Inspection:
    """Review one model file or directory without loading it."""
    art, report = analyse(path, policy)
    digest, digest_error = _digest(path)
    layers: list[LayerNode] = []
    for doc in art.model_configs:
        layers += _layer_tree(doc.value, "")
    weights = _weights(art)
    _attach_parameters(layers, _parameters_by_layer(art))
    assets = [
        (m.location.member or m.name, m.size, m.kind)
        for m in art.members
        if "assets/" in (m.location.member or "") or not m.expected
    ]
    return Inspection(
        path=str(path),
        format=art.format,
        layers=layers,
        references=_references(art),
        assets=assets,
        weights=weights,
        report=report,
        digest=digest,
        digest_error=digest_error,
        claimed_keras_version=_claimed_keras_version(art),
    )
