"""What readers extract from an artifact. Readers fill these; rules only read them.

Readers know formats, not risk: they record facts (names, sizes, references, parse problems).
Rules turn facts into findings. Nothing here imports keras or runs the artifact's content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kerasguard.findings import Location

ProblemKind = Literal[
    "corrupt", "limit", "unsupported", "io", "crash", "timeout", "unknown_format", "internal"
]


@dataclass(frozen=True)
class ReadProblem:
    """A reader could not fully analyse something. Always surfaces as a KG9xx finding."""

    location: Location
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class ZipMember:
    """One zip entry as the central directory and its local header describe it."""

    name: str
    raw_name: bytes
    compress_type: int
    compress_size: int
    file_size: int
    flag_bits: int
    external_attr: int
    create_system: int
    header_offset: int
    data_offset: int | None = None
    local_name: bytes | None = None
    local_compress_type: int | None = None
    local_problem: str | None = None
    overlaps: tuple[str, ...] = ()  # names of members whose bytes this member's bytes share
    link_target: str | None = None  # for symlink members: the first bytes of the target path
    crc: int | None = None  # CRC-32 of the uncompressed data, as the central directory declares it

    @property
    def encrypted(self) -> bool:
        return bool(self.flag_bits & 0x1)

    @property
    def is_symlink(self) -> bool:
        return self.create_system == 3 and (self.external_attr >> 16) & 0o170000 == 0o120000

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass
class ZipListing:
    """An archive (top level or nested) and its members."""

    location: Location
    kind: str  # "keras" | "npz" | "zip"
    members: list[ZipMember] = field(default_factory=list)
    declared_entries: int = 0
    depth: int = 0
    prefix_bytes: int = 0  # bytes before the archive proper (prepended data, a polyglot)
    anomalies: list[str] = field(default_factory=list)  # archive-level ambiguities between unzip tools
    truncated: bool = False  # the reader stopped at limits.max_members


@dataclass(frozen=True)
class DuplicateKey:
    pointer: str  # RFC 6901 pointer to the duplicated member
    key: str
    used: str  # short repr of the value a loader (last one wins in Python json) would use
    count: int = 2  # how many times the key appears in that object
    dropped: str = ""  # short repr of the first value, which Python drops (first-wins parsers keep it)


@dataclass(frozen=True)
class JsonQuirk:
    """Something Python's json accepts that strict JSON parsers reject or read differently."""

    pointer: str
    kind: str  # "bom" | "encoding" | "non_finite" | "huge_number" | "lone_surrogate" | "truncated"
    detail: str


@dataclass
class JsonDocument:
    """A parsed JSON document. ``role`` says what it is to Keras."""

    location: Location
    role: str  # "model_config" | "metadata" | "weights_index" | "training_config" | "json"
    value: Any = None
    size: int = 0
    depth: int = 0
    duplicate_keys: list[DuplicateKey] = field(default_factory=list)
    quirks: list[JsonQuirk] = field(default_factory=list)


@dataclass(frozen=True)
class H5Object:
    """One object in an HDF5 file, described without reading dataset data."""

    path: str
    # "group" | "dataset" | "soft_link" | "external_link" | "hard_link" (a second link to an object
    # already seen; link_target is its first path) | "datatype" | "other"
    kind: str
    link_target: str | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    itemsize: int | None = None
    declared_bytes: int | None = None
    stored_bytes: int | None = None
    external: tuple[tuple[str, int, int], ...] = ()
    is_virtual: bool = False
    virtual_sources: tuple[str, ...] = ()
    chunks: tuple[int, ...] | None = None
    filters: tuple[str, ...] = ()
    attrs: tuple[tuple[str, str], ...] = ()
    layout: str | None = None  # "compact" | "contiguous" | "chunked" | "virtual"


@dataclass
class H5File:
    """An HDF5 file (standalone or inside an archive)."""

    location: Location
    role: str  # "keras_weights" | "legacy_model" | "legacy_weights" | "weights_shard" | "hdf5"
    objects: list[H5Object] = field(default_factory=list)
    root_attrs: dict[str, str] = field(default_factory=dict)

    @property
    def datasets(self) -> list[H5Object]:
        return [o for o in self.objects if o.kind == "dataset"]


@dataclass(frozen=True)
class ShardRef:
    """A shard file named by a sharded-weights index (``*.weights.json``) and what became of it."""

    location: Location  # the index
    name: str  # as written in the index
    status: str  # "read" | "missing" | "escapes" (not a plain file name in the index's folder)
    detail: str = ""


@dataclass(frozen=True)
class PickleGlobal:
    """An import a pickle performs. ``resolved`` is False when STACK_GLOBAL's operands are not
    string constants of the stream (computed at load time): the name is then unknowable statically."""

    module: str
    name: str
    opcode: str
    position: int
    resolved: bool = True


@dataclass
class PickleInfo:
    """A pickle stream walked by opcode only (never unpickled)."""

    location: Location
    globals: list[PickleGlobal] = field(default_factory=list)
    opcodes: int = 0
    protocol: int | None = None
    calls: int = 0  # REDUCE / INST / OBJ / NEWOBJ / NEWOBJ_EX / BUILD
    name: str = ""  # file or member name the pickle came from
    role: str = "pickle"  # "pickle" | "npy_object" (the data of an object-dtype .npy)
    streams: int = 0  # concatenated pickles (each ended by STOP)
    size: int = 0


@dataclass(frozen=True)
class NpyInfo:
    """A .npy header (in an npz or alone)."""

    location: Location
    descr: str
    shape: tuple[int, ...]
    fortran_order: bool
    declared_bytes: int
    stored_bytes: int
    has_object: bool


@dataclass(frozen=True)
class GraphOp:
    """A TensorFlow graph node from a SavedModel (top-level graph or function library)."""

    location: Location
    op: str
    node: str
    function: str | None = None
    inputs: tuple[str, ...] = ()  # NodeDef.input, bounded
    attrs: tuple[tuple[str, str], ...] = ()  # string attrs (s, list.s) and Const string values
    calls: tuple[str, ...] = ()  # functions named by func attrs (PartitionedCall f=...)


@dataclass(frozen=True)
class Member:
    """A file inside the artifact (archive member or directory file) and what it was read as."""

    location: Location
    name: str
    size: int
    kind: str  # sniffed kind: "zip" | "hdf5" | "pickle" | "npy" | "json" | "protobuf" | "data" ...
    expected: bool = True


@dataclass(frozen=True)
class DirEntry:
    """One entry of an unzipped model directory, seen with lstat (links are never followed)."""

    name: str  # path relative to the directory, "/"-separated
    kind: str  # "file" | "dir" | "symlink" | "other" (fifo, socket, device)
    size: int = 0
    link_target: str | None = None


@dataclass
class DirListing:
    """An unzipped Keras model directory and everything in it."""

    location: Location
    kind: str  # "keras_dir"
    entries: list[DirEntry] = field(default_factory=list)
    truncated: bool = False  # stopped at limits.max_members


@dataclass(frozen=True)
class YamlTag:
    """A YAML tag found by text search in a legacy YAML config, resolved against %TAG directives."""

    location: Location
    line: int
    raw: str  # as written, e.g. "!!python/object/apply:os.system"
    tag: str  # resolved, e.g. "tag:yaml.org,2002:python/object/apply:os.system"

    @property
    def is_python(self) -> bool:
        return self.tag.startswith("tag:yaml.org,2002:python/")


@dataclass
class Artifact:
    """Everything the readers learned about one scanned artifact."""

    path: str
    format: str
    location: Location
    size: int = 0
    zips: list[ZipListing] = field(default_factory=list)
    json_docs: list[JsonDocument] = field(default_factory=list)
    h5_files: list[H5File] = field(default_factory=list)
    pickles: list[PickleInfo] = field(default_factory=list)
    npy_arrays: list[NpyInfo] = field(default_factory=list)
    graph_ops: list[GraphOp] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    dirs: list[DirListing] = field(default_factory=list)
    yaml_tags: list[YamlTag] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shard_refs: list[ShardRef] = field(default_factory=list)

    def problem(self, location: Location, kind: ProblemKind, message: str) -> None:
        self.problems.append(ReadProblem(location, kind, message))

    @property
    def model_configs(self) -> list[JsonDocument]:
        return [d for d in self.json_docs if d.role == "model_config" and d.value is not None]
