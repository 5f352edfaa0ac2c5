"""KG4xx: weight files (HDF5, .npy, shards) that read host files, allocate unbounded memory, or cannot
fit the model.

Keras never writes links, external storage or virtual datasets, never compresses weights and
always stores every byte it declares; each rule flags a departure from that. Severity rises to
critical when the Keras that will load the file (policy ``keras_version``, else the installed
one; never the version the file claims) is affected by the CVE the feature exploits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from kerasguard.findings import Location, Severity
from kerasguard.formats.artifact import (
    Artifact,
    H5File,
    H5Object,
    JsonDocument,
)
from kerasguard.policy import GiB, MiB
from kerasguard.rules.base import Hit, Rule, RuleContext
from kerasguard.rules.weight_shapes import ExpectedVar, expected_elements, expected_vars, shape_fits

# Keras versions affected, checked against released Keras wheels (the records in advisories/data carry
# the sources; "||" separates ranges).
AFFECTED: dict[str, str] = {
    "CVE-2026-0897": ">=3.0.0,<3.12.1 || >=3.13.0,<3.13.2",
    "CVE-2026-1669": ">=3.0.0,<3.12.1 || >=3.13.0,<3.13.2",
    "CVE-2026-12480": "<3.12.2 || >=3.13.0,<3.14.1",
    "CVE-2026-12570": "<3.12.3 || >=3.13.0,<3.15.0",
}
BOMB_CVES = ("CVE-2026-0897", "CVE-2026-12570")
# Keras 3.12.3/3.15.0 (#22975) refuses a dataset only when it declares > 4 GiB AND > 1000x stored.
KERAS_BOMB_FLOOR = 4 * GiB
KERAS_BOMB_RATIO = 1000
INT64_LIMIT = 1 << 63


@functools.lru_cache(maxsize=256)
def keras_affected(version: str | None, cve: str) -> bool:
    """Whether that Keras is affected; unknown or unparsable versions count as affected.

    Cached: every dataset of every file asks it again, and parsing specifiers costs ~50 µs.
    """
    if version is None:
        return True
    try:
        parsed = Version(version)
        return any(parsed in SpecifierSet(r.strip()) for r in AFFECTED[cve].split("||"))
    except (InvalidVersion, InvalidSpecifier):
        return True


def _escalate(ctx: RuleContext, cve: str) -> Severity:
    return Severity.CRITICAL if keras_affected(ctx.keras_version, cve) else Severity.HIGH


def _at(h5: H5File, obj: H5Object) -> Location:
    return h5.location.child(h5path=obj.path)


def _size(n: int) -> str:
    for unit, scale in (
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", GiB),
        ("MiB", MiB),
        ("KiB", 1024),
    ):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _shape(obj: H5Object) -> str:
    return "null" if obj.shape is None else "(" + ", ".join(str(d) for d in obj.shape) + ")"


def _datasets(art: Artifact) -> Iterator[tuple[H5File, H5Object]]:
    for h5 in art.h5_files:
        for obj in h5.objects:
            if obj.kind == "dataset":
                yield h5, obj


# ---------------------------------------------------------------- KG401-KG403: reads of other files


def check_links(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for h5 in art.h5_files:
        for obj in h5.objects:
            if obj.kind == "soft_link":
                yield Hit(
                    _at(h5, obj),
                    f"soft link to {obj.link_target}",
                    f"-> {obj.link_target}",
                    severity=_escalate(ctx, "CVE-2026-12480"),
                )
            elif obj.kind == "external_link":
                yield Hit(
                    _at(h5, obj),
                    f"external link into another file: {obj.link_target}",
                    f"-> {obj.link_target}",
                    severity=_escalate(ctx, "CVE-2026-12480"),
                )
            elif obj.kind == "other" and obj.link_target:
                yield Hit(
                    _at(h5, obj),
                    f"link of a {obj.link_target}",
                    obj.link_target,
                    severity=_escalate(ctx, "CVE-2026-12480"),
                )
            elif obj.kind == "hard_link":
                yield Hit(
                    _at(h5, obj),
                    f"second hard link to {obj.link_target} (an alias, or a cycle)",
                    f"= {obj.link_target}",
                    severity=Severity.MEDIUM,
                )


def check_external(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for h5, obj in _datasets(art):
        if obj.external:
            files = ", ".join(f"{name} [{offset}:+{size}]" for name, offset, size in obj.external)
            yield Hit(
                _at(h5, obj),
                f"dataset data is read from outside the file: {files}",
                files,
                severity=_escalate(ctx, "CVE-2026-1669"),
            )


def check_virtual(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for h5, obj in _datasets(art):
        if obj.is_virtual:
            sources = ", ".join(obj.virtual_sources) or "unknown sources"
            yield Hit(
                _at(h5, obj),
                f"virtual dataset mapped from {sources}",
                sources,
                severity=_escalate(ctx, "CVE-2026-12480"),
            )


# ---------------------------------------------------------------- KG404-KG407: allocation


def check_dataspace(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    max_dims = ctx.policy.limits.h5_max_dims
    for h5, obj in _datasets(art):
        if obj.shape is None:
            continue
        elements = 1
        for d in obj.shape:
            elements *= d
        reasons = []
        if len(obj.shape) > max_dims:
            reasons.append(f"rank {len(obj.shape)} exceeds h5_max_dims={max_dims}")
        if any(d < 0 for d in obj.shape):
            reasons.append("a negative dimension")
        if any(d >= INT64_LIMIT for d in obj.shape) or elements >= INT64_LIMIT:
            reasons.append(f"{elements} elements overflow a 64-bit size")
        elif (obj.declared_bytes or 0) >= INT64_LIMIT:
            reasons.append(f"{obj.declared_bytes} bytes overflow a 64-bit size")
        if reasons:
            yield Hit(
                _at(h5, obj),
                f"invalid dataspace {_shape(obj)}: {'; '.join(reasons)}",
                f"shape {_shape(obj)} dtype {obj.dtype}",
            )


@dataclass(frozen=True)
class _Bomb:
    h5: H5File
    obj: H5Object
    declared: int
    stored: int


def _under_stored(art: Artifact, ctx: RuleContext) -> Iterator[_Bomb]:
    """Datasets declaring more than h5_bomb_ratio times what they store (any size)."""
    ratio = ctx.policy.limits.h5_bomb_ratio
    for h5, obj in _datasets(art):
        declared, stored = obj.declared_bytes or 0, obj.stored_bytes or 0
        if declared > 0 and declared > ratio * max(stored, 1):
            yield _Bomb(h5, obj, declared, stored)


def _keras_allocates(bomb: _Bomb, ctx: RuleContext) -> bool:
    """Whether the target Keras reads the dataset in full instead of refusing it first."""
    if keras_affected(ctx.keras_version, "CVE-2026-12570"):
        return True
    return not (bomb.declared > KERAS_BOMB_FLOOR and bomb.declared > KERAS_BOMB_RATIO * bomb.stored)


def check_bomb(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    floor = ctx.policy.limits.h5_bomb_floor
    for bomb in _under_stored(art, ctx):
        if bomb.declared <= floor:
            continue
        allocates = _keras_allocates(bomb, ctx)
        note = (
            "the target Keras reads it in full before any shape check"
            if allocates
            else ("the target Keras refuses it, older Keras and other loaders allocate it")
        )
        yield Hit(
            _at(bomb.h5, bomb.obj),
            f"dataset declares {_size(bomb.declared)} {_shape(bomb.obj)} but stores "
            f"{_size(bomb.stored)}; {note}",
            f"shape {_shape(bomb.obj)} {bomb.obj.dtype} declared={bomb.declared} stored={bomb.stored} "
            f"layout={bomb.obj.layout} filters={','.join(bomb.obj.filters) or 'none'}",
            severity=Severity.CRITICAL if allocates else Severity.HIGH,
        )


def check_large(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    limit = ctx.policy.limits.h5_large_dataset
    for h5, obj in _datasets(art):
        declared = obj.declared_bytes or 0
        if declared > limit:
            yield Hit(
                _at(h5, obj),
                f"dataset declares {_size(declared)} (over h5_large_dataset={_size(limit)})",
                f"shape {_shape(obj)} {obj.dtype} declared={declared} stored={obj.stored_bytes}",
            )


def _load_units(art: Artifact) -> dict[str, list[H5File]]:
    """Files Keras loads together: all shards of an index are one unit, other files one each."""
    units: dict[str, list[H5File]] = {}
    for h5 in art.h5_files:
        key = "shards" if h5.role == "weights_shard" else str(h5.location)
        units.setdefault(key, []).append(h5)
    return units


def check_total(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    limits = ctx.policy.limits
    bombs = list(_under_stored(art, ctx))
    for key, files in _load_units(art).items():
        where = art.location if key == "shards" else files[0].location
        unit_bombs = [b for b in bombs if any(b.h5 is f for f in files)]
        bomb_total = sum(b.declared for b in unit_bombs)
        if len(unit_bombs) >= 2 and bomb_total > limits.h5_bomb_floor:
            allocates = all(_keras_allocates(b, ctx) for b in unit_bombs)
            yield Hit(
                where,
                f"{len(unit_bombs)} datasets together declare {_size(bomb_total)} but store "
                f"{_size(sum(b.stored for b in unit_bombs))}",
                ", ".join(f"{b.obj.path}={b.declared}" for b in unit_bombs[:10]),
                severity=Severity.CRITICAL if allocates else Severity.HIGH,
            )
            continue
        total = sum(o.declared_bytes or 0 for f in files for o in f.datasets)
        if total > limits.h5_total_declared:
            yield Hit(
                where,
                f"datasets declare {_size(total)} in total "
                f"(over h5_total_declared={_size(limits.h5_total_declared)})",
                f"total_declared={total} files={len(files)}",
                severity=Severity.MEDIUM,
            )


# ---------------------------------------------------------------- KG408: shapes vs architecture


def _container(loc: Location) -> tuple[str, str]:
    """The folder or archive folder a file sits in, to pair config.json with model.weights.h5."""
    if loc.member:
        return loc.file, loc.member.rpartition("/")[0]
    return loc.file.rpartition("/")[0], ""


def _config_for(h5: H5File, art: Artifact) -> JsonDocument | None:
    configs = art.model_configs
    if h5.role == "legacy_model":
        own = [d for d in configs if d.location == h5.location.child(h5path="/@model_config")]
        return own[0] if own else None
    if h5.role == "keras_weights":
        near = [
            d
            for d in configs
            if d.location.h5path is None and _container(d.location) == _container(h5.location)
        ]
        return near[0] if len(near) == 1 else None
    return None


def legacy_match(candidates: list[ExpectedVar], comps: list[str]) -> ExpectedVar | None:
    var = comps[-1].split(":")[0]
    fits = [e for e in candidates if e.var_name == var and all(c in comps[:-1] for c in e.legacy_chain)]
    return fits[0] if fits and len({f.shape for f in fits}) == 1 else None


def _pairs(h5: H5File, expected: list[ExpectedVar]) -> Iterator[tuple[H5Object, ExpectedVar]]:
    datasets = {o.path: o for o in h5.datasets}
    if h5.role == "keras_weights":
        groups = {o.path: o for o in h5.objects if o.kind == "group"}
        for ev in expected:
            obj = datasets.get(ev.k3_path)
            group = groups.get(ev.owner_path) if obj is not None else None
            owner = None if group is None else dict(group.attrs).get("name")  # attributes of the ones asked
            if obj is None or (ev.owner_name and owner is not None and owner != ev.owner_name):
                continue  # not where Keras would look, or the mapping is not certain
            yield obj, ev
        return
    by_top: dict[str, list[ExpectedVar]] = {}
    for ev in expected:
        by_top.setdefault(ev.legacy_top, []).append(ev)
    for path, obj in datasets.items():
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "model_weights":
            continue  # /model_weights/<layer>/<weight name...>
        match = legacy_match(by_top.get(parts[2], []), parts[3:])
        if match is not None:
            yield obj, match


def check_architecture(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    floor = ctx.policy.limits.h5_bomb_floor
    for h5 in art.h5_files:
        config = _config_for(h5, art)
        if config is None:
            continue
        expected = expected_vars(config.value)
        for obj, ev in _pairs(h5, expected):
            if obj.shape is None or shape_fits(ev.shape, obj.shape):
                continue
            actual = math.prod(obj.shape)
            want = expected_elements(ev.shape, obj.shape)
            over = actual > want if want is not None else (obj.declared_bytes or 0) > floor
            dims = "(" + ", ".join("?" if d is None else str(d) for d in ev.shape) + ")"
            yield Hit(
                _at(h5, obj),
                f"{ev.layer_class} layer {ev.layer!r} {ev.var_name} must have shape {dims}, "
                f"the file declares {_shape(obj)}"
                + ("; Keras reads all of it before noticing" if over else ""),
                f"expected {dims} declared {_shape(obj)} ({obj.declared_bytes} bytes)",
                severity=Severity.HIGH if over else Severity.MEDIUM,
            )


# ---------------------------------------------------------------- KG410: shard references


def check_shards(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for ref in art.shard_refs:
        if ref.status == "escapes":
            yield Hit(ref.location, f"shard {ref.name!r} {ref.detail}; it was not read", ref.name)


def check_npy_bombs(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    limits = ctx.policy.limits
    for npy in art.npy_arrays:
        if npy.has_object:
            continue  # an object array's size is pointers; its data is a pickle (KG104/KG105)
        declared, stored = npy.declared_bytes, npy.stored_bytes
        if declared > limits.npy_bomb_floor and declared > limits.npy_bomb_ratio * max(stored, 1):
            yield Hit(
                npy.location,
                f".npy declares {declared} bytes of {npy.descr} data (shape {npy.shape}) but holds only "
                f"{stored}: loading allocates the declared size first",
                f"declared={declared} stored={stored} ratio>{limits.npy_bomb_ratio} "
                f"floor={limits.npy_bomb_floor}",
            )


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG401",
        name="h5-link",
        title="HDF5 soft, external or aliased link",
        severity=Severity.HIGH,
        cwe="CWE-59",
        cves=("CVE-2026-12480",),
        rationale=(
            "A soft link or external link makes a weight path resolve to another object or to "
            "another file on the loading host; Keras before 3.12.2 / 3.14.1 follows them and "
            "loads host data as weights (exfiltrated by re-saving or through outputs). Keras never "
            "writes links. Critical when the target Keras follows them. A second hard link to an "
            "object is reported at medium: harmless to Keras, but never written by it, and a link "
            "cycle hangs tools that walk the file."
        ),
        remediation="Do not load the file; re-export the weights with Keras from a trusted source.",
        example="f['layers/dense/vars/0'] = h5py.ExternalLink('/etc/secret.h5', '/data')",
        references=("https://github.com/keras-team/keras/pull/22801",),
        check=check_links,
    ),
    Rule(
        id="KG402",
        name="h5-external-storage",
        title="HDF5 dataset stored in external files",
        severity=Severity.HIGH,
        cwe="CWE-73",
        cves=("CVE-2026-1669",),
        rationale=(
            "External storage ('dataset.external') maps a dataset's bytes to arbitrary host files "
            "(for example /etc/passwd); reading the weight reads the file. Keras before 3.12.1 / "
            "3.13.2 reads them (critical for those). Keras never writes external storage."
        ),
        remediation="Do not load the file. Treat it as an attempt to read local files.",
        example="f.create_dataset('w', shape=(60,), dtype='u1', external=[('/etc/passwd', 0, 60)])",
        references=("https://github.com/keras-team/keras/pull/22057",),
        check=check_external,
    ),
    Rule(
        id="KG403",
        name="h5-virtual-dataset",
        title="HDF5 virtual dataset",
        severity=Severity.HIGH,
        cwe="CWE-73",
        cves=("CVE-2026-12480",),
        rationale=(
            "A virtual dataset is assembled from datasets in other files named inside the file; "
            "reading it opens those files on the loading host. Keras before 3.12.2 / 3.14.1 reads "
            "them (critical for those). Keras never writes virtual datasets."
        ),
        remediation="Do not load the file; re-export the weights from a trusted source.",
        references=("https://github.com/keras-team/keras/pull/22801",),
        check=check_virtual,
    ),
    Rule(
        id="KG404",
        name="h5-invalid-dataspace",
        title="HDF5 dataset with an invalid dataspace",
        severity=Severity.HIGH,
        cwe="CWE-190",
        cves=BOMB_CVES,
        rationale=(
            "Negative dimensions, more than h5_max_dims (64) dimensions, or an element or byte "
            "count of 2**63 or more. Keras computes sizes with numpy int64 products, which wrap "
            "around at 2**63: such a shape can pass a size check as a small or negative number "
            "and then allocate or index out of range. No real model has one."
        ),
        remediation="Do not load the file.",
        check=check_dataspace,
    ),
    Rule(
        id="KG405",
        name="h5-shape-bomb",
        title="HDF5 dataset declares far more than it stores (shape bomb)",
        severity=Severity.HIGH,
        cwe="CWE-770",
        cves=BOMB_CVES,
        rationale=(
            "A chunked, compressed, never-written dataset can declare gigabytes while storing "
            "almost nothing: a 17 KB .keras made Keras allocate about 9 GB and crash. Keras 3.15.1 "
            "refuses a dataset only when it declares more than 4 GiB AND more than 1000 times what "
            "it stores, and it reads the data before comparing the shape with the model: a 3 GiB "
            "declaration still made 3.15.1 allocate about 9 GB. Keras writes every weight "
            "uncompressed and in full (declared == stored), so this rule flags any dataset "
            "declaring more than h5_bomb_ratio (100) times its stored bytes once it declares more "
            "than h5_bomb_floor (64 MiB): 100x leaves room for legitimately compressed non-Keras "
            "files, and 64 MiB is an allocation worth stopping while small, sparse or empty "
            "datasets stay quiet. Critical when the target Keras reads it in full, high when "
            "the target Keras refuses it (older Keras and other loaders do not)."
        ),
        remediation=(
            "Do not load the file. If you must, upgrade to Keras >= 3.12.3 or >= 3.15.0 and load it "
            "in a memory-limited sandbox (kerasguard load_model)."
        ),
        example=(
            "f.create_dataset('layers/dense/vars/0', shape=(2**31, 1024), dtype='f4', "
            "chunks=(1, 1024), compression='gzip')  # 8 GiB declared, ~1 KiB stored"
        ),
        references=(
            "https://github.com/keras-team/keras/pull/21880",
            "https://github.com/keras-team/keras/pull/22975",
        ),
        check=check_bomb,
    ),
    Rule(
        id="KG406",
        name="h5-large-dataset",
        title="HDF5 dataset declares more than 1 GiB",
        severity=Severity.MEDIUM,
        cwe="CWE-400",
        cves=BOMB_CVES,
        rationale=(
            "The CVE-2026-0897 detection guidance asks to alert on weight files whose datasets "
            "declare more than 1 GB: loading allocates at least that much at once. Large real "
            "models exist, so this is a medium finding to review, raised by h5_large_dataset."
        ),
        remediation=(
            "Confirm the model really has a weight this large and comes from a trusted source; "
            "load it with a memory limit."
        ),
        check=check_large,
    ),
    Rule(
        id="KG407",
        name="h5-total-declared",
        title="HDF5 datasets declare too much in total, or many small bombs",
        severity=Severity.HIGH,
        cwe="CWE-770",
        cves=BOMB_CVES,
        rationale=(
            "Keras's own guard judges one dataset at a time, so many datasets each under its "
            "4 GiB floor, or each under h5_bomb_floor, add up to an unbounded allocation. Reported "
            "per load unit (one file, or all shards of an index): at high or critical when two or "
            "more under-stored datasets together declare more than h5_bomb_floor, at medium when "
            "all datasets together declare more than h5_total_declared (16 GiB)."
        ),
        remediation="Do not load the file unless its size is expected; load it with a memory limit.",
        check=check_total,
    ),
    Rule(
        id="KG408",
        name="h5-shape-mismatch",
        title="HDF5 weight shape cannot belong to the model architecture",
        severity=Severity.HIGH,
        cwe="CWE-20",
        cves=BOMB_CVES,
        rationale=(
            "The model config fixes the shape of every variable of Dense, Conv1D/2D/3D, Embedding, "
            "BatchNormalization, LSTM, GRU and SimpleRNN layers (including inside nested models, "
            "Bidirectional and TimeDistributed). Keras reads a weight's data before it compares "
            "shapes, so a weight that is larger than its variable is allocated in full and signals "
            "a tampered file (high); a smaller or differently shaped one means the weights do not "
            "belong to this architecture (medium). Only variables whose place and shape are certain "
            "are compared."
        ),
        remediation="Do not load the file; the weights were altered or belong to another model.",
        check=check_architecture,
    ),
    Rule(
        id="KG410",
        name="shard-outside-folder",
        title="Sharded weights index names a file outside its folder",
        severity=Severity.HIGH,
        cwe="CWE-22",
        rationale=(
            "Keras opens each shard named in a *.weights.json index next to the index. A name with "
            "a path separator, '..', a drive or an absolute path, or a shard that is a symlink "
            "leading out of the folder, makes the load read a file the model's publisher does not "
            "control. kerasguard does not read it."
        ),
        remediation="Use only indexes whose shards are plain files next to the index.",
        check=check_shards,
    ),
    Rule(
        id="KG409",
        name="npy-declared-size-bomb",
        title=".npy declares far more data than it holds",
        severity=Severity.HIGH,
        cwe="CWE-789",
        rationale=(
            "An .npy header declares a shape and dtype; numpy allocates the declared size before reading. "
            "A few bytes can declare terabytes. Keras refuses an npz member declaring more than 4 GiB and "
            "100x its compressed size only since 3.12.3/3.15.0; anything under 4 GiB is still allocated. "
            "kerasguard flags any array declaring more than npy_bomb_floor (64 MiB) and more than "
            "npy_bomb_ratio (100) times the bytes it stores."
        ),
        remediation=(
            "Do not load the file. If the array is legitimately sparse or truncated, obtain a complete "
            "copy; tune [tool.kerasguard.limits] npy_bomb_floor / npy_bomb_ratio only with a reason."
        ),
        check=check_npy_bombs,
        references=("https://github.com/keras-team/keras/pull/23016",),
    ),
)
