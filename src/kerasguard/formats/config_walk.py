"""Walk Keras model configs and recognise the object references Keras would resolve.

Malicious objects hide anywhere Keras deserialises: inside sub-models, wrappers (TimeDistributed,
Bidirectional), activations, initializers, ``compile_config`` (optimizer, loss, metrics in lists or
dicts), ``build_config``, dtype policies. So rules never look at fixed paths: they see every nested
dict and list, each with its RFC 6901 JSON pointer. The walk is iterative (no recursion limit to
hit), bounded by a node budget, and computed once per document.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, JsonDocument

# Containers visited per document before the walk stops. The JSON reader caps documents at
# max_json_bytes (16 MiB), which bounds this too; the reader pass reports a truncated walk.
DEFAULT_MAX_NODES = 1_000_000

# Keras 3 "special" objects: values, not references to code.
SPECIAL_CLASS_NAMES = frozenset(
    {
        "__keras_tensor__",
        "__tensor__",
        "__numpy__",
        "__bytes__",
        "__slice__",
        "__ellipsis__",
        "__typespec__",
    }
)

RefKind = Literal["class", "function", "lambda", "special"]


def escape(token: str | int) -> str:
    """One JSON pointer reference token (RFC 6901)."""
    text = str(token)
    if "~" in text or "/" in text:
        return text.replace("~", "~0").replace("/", "~1")
    return text


@dataclass(frozen=True)
class ObjRef:
    """A dict Keras treats as an object to deserialise: ``{"class_name", "config", "module"?, ...}``.

    ``in_layers`` is true when the dict is an entry of a ``layers`` list (Functional and
    Sequential build each entry as a layer, or, before Keras 3.9, call whatever it resolves to).
    """

    pointer: str
    node: dict[str, Any]
    class_name: str
    module: str | None
    registered_name: str | None
    config: Any
    kind: RefKind
    in_layers: bool

    @property
    def function_name(self) -> str | None:
        """For ``{"class_name": "function"}`` refs: the function name Keras looks up (``config``)."""
        return self.config if self.kind == "function" and isinstance(self.config, str) else None

    @property
    def qualified(self) -> str:
        """``module.name`` as Keras resolves it, or the bare name when there is no module."""
        name = self.function_name if self.kind == "function" else self.class_name
        name = name or ""
        return f"{self.module}.{name}" if self.module else name

    @property
    def layer_name(self) -> str | None:
        """The object's ``name`` (in its config, or beside it in Keras 2 ``layers[]`` entries)."""
        if isinstance(self.config, dict) and isinstance(self.config.get("name"), str):
            return str(self.config["name"])
        name = self.node.get("name")
        return name if isinstance(name, str) else None


# Where a container sits, as a chain of (parent, token) links (None is the document itself): a link is
# one tuple per container, where a pointer string grows with the depth; pointers are built on demand.
NodePath = tuple[Any, str | int] | None


def pointer_of(path: NodePath, memo: dict[int, str] | None = None) -> str:
    """The RFC 6901 pointer of ``path`` (``memo``: pointers already built, by id of their link)."""
    tokens: list[str | int] = []
    head = ""
    while path is not None:
        if memo is not None:
            known = memo.get(id(path))
            if known is not None:
                head = known
                break
        path, token = path
        tokens.append(token)
    if not tokens:
        return head
    tokens.reverse()
    plain = [t if type(t) is str and "~" not in t and "/" not in t else escape(t) for t in tokens]
    return head + "/" + "/".join(plain)


@dataclass
class ConfigIndex:
    """Everything one walk of a config document found."""

    paths: list[tuple[NodePath, Any]] = field(default_factory=list)  # (path, dict | list), walk order
    refs: list[ObjRef] = field(default_factory=list)
    cache: dict[Any, Any] = field(default_factory=dict)  # per-document results rules share (judgements)
    truncated: bool = False
    visited: int = 0
    _by_pointer: dict[str, ObjRef] | None = None

    @property
    def nodes(self) -> list[tuple[str, Any]]:
        """``(pointer, dict | list)`` of every container, in walk order (pointers built here)."""
        memo: dict[int, str] = {}
        out = []
        for path, node in self.paths:
            pointer = pointer_of(path, memo)
            if path is not None:
                memo[id(path)] = pointer
            out.append((pointer, node))
        return out

    def enclosing(self, pointer: str) -> ObjRef | None:
        """The nearest object reference strictly containing ``pointer`` (e.g. a Lambda's layer)."""
        if self._by_pointer is None:
            self._by_pointer = {r.pointer: r for r in self.refs}
        while pointer:
            pointer = pointer.rsplit("/", 1)[0]
            found = self._by_pointer.get(pointer)
            if found is not None and found.kind == "class":
                return found
        return None


def as_ref(node: Any, pointer: str = "", in_layers: bool = False) -> ObjRef | None:
    """Recognise a Keras object reference.

    Keras 3: ``{"module", "class_name", "config", "registered_name"}``; Keras 2: ``{"class_name",
    "config"}``; function refs ``{"class_name": "function", "module": m, "config": name}``; lambdas
    ``{"class_name": "__lambda__", "config": {...}}``. Keras deserialises any dict holding both
    ``class_name`` and ``config``, so a ``module`` alone is not required.
    """
    if not isinstance(node, dict):
        return None
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        return None
    if "config" not in node and "module" not in node:
        return None
    module, registered = node.get("module"), node.get("registered_name")
    # Built without the frozen dataclass's __init__ (one object.__setattr__ per field): a config holds
    # thousands of references. Same fields in the same order, same frozen object.
    ref = _new_object(ObjRef)
    _set_attribute(
        ref,
        "__dict__",
        {
            "pointer": pointer,
            "node": node,
            "class_name": class_name,
            "module": module if isinstance(module, str) else None,
            "registered_name": registered if isinstance(registered, str) else None,
            "config": node.get("config"),
            "kind": _KINDS.get(class_name, "class"),
            "in_layers": in_layers,
        },
    )
    return ref


# The kind of a reference by its class_name ("class" for any other name).
_KINDS: dict[str, RefKind] = {
    **dict.fromkeys(SPECIAL_CLASS_NAMES, "special"),
    "__lambda__": "lambda",
    "function": "function",
}
_new_object, _set_attribute = object.__new__, object.__setattr__


_CONTAINERS = (dict, list)


def walk(value: Any, max_nodes: int = DEFAULT_MAX_NODES) -> Iterator[tuple[str, Any, bool]]:
    """Yield ``(pointer, container, in_layers)`` for every dict and list, parents before children.

    Stops after ``max_nodes`` containers; callers use :func:`index` to learn whether it did.
    Pointers are built for containers only: leaves (most of a config) cost one isinstance each.
    """
    if not isinstance(value, _CONTAINERS):
        return
    stack: list[tuple[str, Any, bool]] = [("", value, False)]
    seen = 0
    while stack and seen < max_nodes:
        pointer, node, in_layers = stack.pop()
        seen += 1
        yield pointer, node, in_layers
        if isinstance(node, dict):
            children = [
                (f"{pointer}/{escape(key)}", child, False)
                for key, child in node.items()
                if isinstance(child, _CONTAINERS)
            ]
        else:
            layers_list = pointer.endswith("/layers")
            children = [
                (f"{pointer}/{i}", child, layers_list)
                for i, child in enumerate(node)
                if isinstance(child, _CONTAINERS)
            ]
        children.reverse()  # pushed in reverse so they pop in document order
        stack.extend(children)


def build_index(value: Any, max_nodes: int = DEFAULT_MAX_NODES) -> ConfigIndex:
    """Walk once and collect containers and object references: :func:`walk`'s order and pointers,
    in one loop (a config holds tens of thousands of containers: no generator step or call per node,
    and a pointer string only for each object reference; the others are built on demand)."""
    out = ConfigIndex()
    if not isinstance(value, _CONTAINERS):
        return out
    paths, refs = out.paths, out.refs
    memo: dict[int, str] = {}  # pointers of the references' links, which their children extend
    stack: list[tuple[NodePath, Any, bool]] = [(None, value, False)]
    pop, push = stack.pop, stack.append
    visited = 0
    while stack:
        path, node, in_layers = pop()
        visited += 1
        if visited > max_nodes:
            out.truncated = True
            break
        paths.append((path, node))
        if isinstance(node, dict):
            if "class_name" in node:
                pointer = pointer_of(path, memo)
                ref = as_ref(node, pointer, in_layers)
                if ref is not None:
                    refs.append(ref)
                    if path is not None:
                        memo[id(path)] = pointer
            for key, child in reversed(node.items()):  # pushed in reverse: they pop in document order
                if isinstance(child, _CONTAINERS):
                    push(((path, key), child, False))
        else:
            layers_list = path is not None and path[1] == "layers"
            for i in range(len(node) - 1, -1, -1):
                child = node[i]
                if isinstance(child, _CONTAINERS):
                    push(((path, i), child, layers_list))
    out.visited = visited
    return out


_CACHE: dict[int, tuple[weakref.ref[JsonDocument], ConfigIndex]] = {}


def _forget(key: int, _ref: object) -> None:
    _CACHE.pop(key, None)


def index(doc: JsonDocument, max_nodes: int = DEFAULT_MAX_NODES) -> ConfigIndex:
    """The walk of ``doc``, computed once per document (many rules read the same config)."""
    key = id(doc)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is doc:
        return hit[1]
    result = build_index(doc.value, max_nodes)
    _CACHE[key] = (weakref.ref(doc, functools.partial(_forget, key)), result)
    return result


def looks_like_keras_config(value: Any) -> bool:
    """A JSON document shaped like a serialised Keras model (``model.to_json()``, a bare config.json)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("class_name"), str)
        and isinstance(value.get("config"), dict)
    )


def config_documents(art: Artifact) -> list[JsonDocument]:
    """Documents Keras deserialises: model and training configs, and JSON files shaped like a model."""
    out: list[JsonDocument] = []
    for doc in art.json_docs:
        if doc.value is None:
            continue
        keras_json = doc.role == "json" and looks_like_keras_config(doc.value)
        if doc.role in ("model_config", "training_config") or keras_json:
            out.append(doc)
    return out


def refs(art: Artifact) -> Iterator[tuple[JsonDocument, ObjRef]]:
    """Every object reference in every config document of ``art``."""
    for doc in config_documents(art):
        for ref in index(doc).refs:
            yield doc, ref


def at(doc: JsonDocument, pointer: str) -> Location:
    """The location of ``pointer`` inside ``doc``."""
    return doc.location.child(pointer=pointer)


def is_class_like(name: str) -> bool:
    """Python classes are CamelCase identifiers; functions named as classes (``run``) are not.

    A Keras 2 registered name (``package>Name``) is judged by its ``Name`` part.
    """
    name = name.rsplit(">", 1)[-1]
    return bool(name) and name[0].isupper() and name.replace("_", "a").isalnum()


ACTIVATION_KEYS = frozenset({"activation", "recurrent_activation", "inner_activation", "gate_activation"})


def activation_strings(
    index: ConfigIndex, skip: Callable[[str], bool] = lambda name: False
) -> Iterator[tuple[str, str]]:
    """``(pointer, name)`` of activations given by name (``"activation": "relu"``), but those whose name
    ``skip`` accepts (a config names hundreds of known activations: their pointers are never built)."""
    for path, node in index.paths:
        if isinstance(node, dict) and not ACTIVATION_KEYS.isdisjoint(node):
            for key in sorted(ACTIVATION_KEYS.intersection(node)):
                value = node[key]
                if isinstance(value, str) and not skip(value):
                    yield f"{pointer_of(path)}/{escape(key)}", value


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def scheme_of(path: str) -> str | None:
    """The URL scheme of a path-like config value (``gs``, ``https``...), None for plain paths."""
    match = _URL_SCHEME.match(path.strip())
    return match.group(1).lower() if match else None


def top_package(module: str) -> str:
    return module.split(".", 1)[0]
