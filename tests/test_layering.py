"""The import layering of src/kerasguard, read with ``ast`` (nothing is imported).

Each top-level module or package sits in a layer; a module may import its own layer and the ones below,
never one above, and no set of modules imports itself in a circle. Imports under ``if TYPE_CHECKING:``
do not run and are not counted; function-level (lazy) imports run and are counted. Importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``: those parent packages count as imported when
they belong to another top-level package. The root package ``kerasguard`` is the public facade (lazy
re-exports that load nothing): ``import kerasguard`` is allowed from anywhere.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A top-level module or package of src/kerasguard must be in exactly one layer.
LAYERS: tuple[frozenset[str], ...] = (
    # the data model, the policy and small utilities everything shares
    frozenset(
        {
            "_version",
            "_lazy",
            "errors",
            "findings",
            "policy",
            "suppressions",
            "sigpipe",
            "tempdirs",
            "gcpause",
            "distmeta",
            "npzfile",
            "escaping",
        }
    ),
    # readers (facts), the advisory database, signing, the sandbox machinery
    frozenset({"formats", "advisories", "integrity", "sandbox"}),
    # rules: risk judged from the readers' facts
    frozenset({"rules"}),
    # the scan pipeline, and rendering its reports
    frozenset({"scanning", "render"}),
    # the load pipeline, the reviewer's view, signed saving
    frozenset({"loading", "inspect", "saving"}),
    # the model store, upgrade regression checks
    frozenset({"store", "golden"}),
    # services and ML tools built on load and the store
    frozenset({"serve", "console", "probe", "robustness", "data", "attach"}),
    # entry points and generators
    frozenset({"cli", "__main__", "policy_reference"}),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "kerasguard").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for sub in node.body for sub in ast.walk(sub))
    return skipped


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(module: str) -> set[str]:
    """The kerasguard modules ``module`` imports when it runs (its own parents excluded)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("kerasguard")
        ):
            assert node.module is not None
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "kerasguard")
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{module}: relative import (use absolute kerasguard.* imports)")
    out = set()
    for target in found:
        parts = target.split(".")
        for i in range(2, len(parts) + 1):  # the target and its parent packages, root excluded
            name = ".".join(parts[:i])
            if name in MODULES and name != module and (i == len(parts) or _top(name) != _top(module)):
                out.add(name)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _layer(module: str) -> int:
    top = _top(module)
    found = [i for i, layer in enumerate(LAYERS) if top in layer]
    assert found, f"kerasguard.{top} is in no layer: add it to LAYERS"
    return found[0]


def test_every_module_has_one_layer() -> None:
    tops = {_top(m) for m in MODULES if m != "kerasguard"}
    placed = [name for layer in LAYERS for name in layer]
    assert len(placed) == len(set(placed)), "a name is in two layers"
    assert tops == set(placed), f"unplaced: {sorted(tops - set(placed))}; stale: {sorted(set(placed) - tops)}"


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = sorted(
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in GRAPH.items()
        if m != "kerasguard"
        for t in targets
        if t != "kerasguard" and _layer(t) > _layer(m)
    )
    assert upward == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circle() -> None:
    assert cycles(GRAPH) == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The detectors themselves, on small graphs with a known answer."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert (
        _layer("kerasguard.formats.dispatch")
        < _layer("kerasguard.rules.code_exec")
        < _layer("kerasguard.cli")
    )
    # the scan workers take callables: they do not import the engine that calls them
    assert "kerasguard.scanning.engine" not in GRAPH["kerasguard.scanning.workers"]
    # readers do not import the rules layer
    assert not [t for m in GRAPH if _top(m) == "formats" for t in GRAPH[m] if _top(t) == "rules"]


def test_nothing_shipped_or_documented_points_outside_the_repository() -> None:
    """Facts from the team's shared notes are written out, never cited by a path users do not have."""
    root = Path(__file__).resolve().parent.parent
    tracked = subprocess.run(
        ["git", "ls-files", "src", "docs", "README.md", "SECURITY.md", "CHANGELOG.md"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    citing = [name for name in tracked if "shared/reference" in (root / name).read_text(errors="replace")]
    assert citing == []
