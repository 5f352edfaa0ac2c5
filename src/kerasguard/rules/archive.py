"""KG3xx: archive and container rules (zip members, model directories, JSON ambiguity).

Readers record what an archive *says* (names, attributes, sizes, header disagreements); these rules
judge it. Most zip tricks are parser differentials: the scanner, Keras's ``zipfile`` and ``unzip``
each see a different archive. Where Keras's own view is known the messages say which one it uses.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Iterator

from kerasguard.findings import Location, Severity
from kerasguard.formats.artifact import Artifact, DirListing, JsonDocument, ZipListing, ZipMember
from kerasguard.formats.zip.archive import KERAS_EXPECTED, display_name, is_expected_keras_name
from kerasguard.formats.zip.inflate import method_name
from kerasguard.formats.zip.layout import FLAG_STRONG_ENCRYPTION, RECOVERED_NOTE
from kerasguard.rules.base import Hit, Rule, RuleContext, capped

KERAS_4GIB = 1 << 32
KERAS_EXTRACT_FLOOR = 1 << 28
KERAS_RATIO = 100
NAME_MAX = 255
PATH_MAX = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Keys that decide which class or function a Keras config builds or imports.
CONFIG_IDENTITY_KEYS = frozenset({"class_name", "module", "registered_name", "function", "config", "fn"})


def _loc(listing: ZipListing, m: ZipMember) -> Location:
    return listing.location.child(member=display_name(m.name))


def _escapes(name: str, target: str) -> bool:
    """Whether link ``target``, resolved next to ``name``, leaves the directory tree."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), norm))
    return resolved == ".." or resolved.startswith("../")


# --- KG301 -----------------------------------------------------------------------------------------


def path_issues(m: ZipMember) -> list[tuple[Severity, str]]:
    """Why a member name is unsafe to extract, most severe first."""
    issues: list[tuple[Severity, str]] = []
    raw, name = m.raw_name, m.name
    norm = name.replace("\\", "/")
    if b"\x00" in raw:
        issues.append(
            (
                Severity.HIGH,
                f"name contains a NUL byte: Python's zipfile (Keras) cuts it to {display_name(name)!r}, "
                "other tools keep the whole name",
            )
        )
    if not raw:
        issues.append((Severity.LOW, "empty member name"))
    if norm.startswith("/"):
        issues.append((Severity.HIGH, "absolute path (or UNC share): extraction writes outside the target"))
    elif _DRIVE.match(norm):
        issues.append((Severity.HIGH, "drive letter: extraction on Windows writes outside the target"))
    if ".." in norm.split("/"):
        issues.append((Severity.HIGH, "'..' component: extraction can write outside the target directory"))
    if "\\" in name and not any(sev is Severity.HIGH for sev, _ in issues):
        issues.append(
            (
                Severity.MEDIUM,
                "backslash in name: a separator on Windows and in Keras's asset paths, a plain "
                "character for zipfile on Linux",
            )
        )
    if len(raw) > PATH_MAX or any(len(part.encode()) > NAME_MAX for part in norm.split("/")):
        issues.append((Severity.LOW, f"overlong name ({len(raw)} bytes): tools truncate or fail differently"))
    if _CONTROL.search(name.replace("\x00", "")):
        issues.append((Severity.LOW, "control characters in name: listings and logs can be spoofed"))
    issues.sort(key=lambda item: -int(item[0]))
    return issues


def _check_kg301(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        hits = []
        for m in listing.members:
            issues = path_issues(m)
            if issues:
                hits.append(
                    Hit(
                        _loc(listing, m),
                        "; ".join(text for _, text in issues),
                        evidence=f"raw name {m.raw_name[:200]!r}",
                        severity=issues[0][0],
                    )
                )
        yield from capped(hits, listing.location, "members with unsafe paths")


# --- KG302 -----------------------------------------------------------------------------------------


def _check_kg302(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        hits = []
        for m in listing.members:
            if not m.is_symlink:
                continue
            target = m.link_target or ""
            escapes = _escapes(m.name, target)
            hits.append(
                Hit(
                    _loc(listing, m),
                    "symlink member"
                    + (" pointing outside the extraction directory" if escapes else "")
                    + ": unzip tools create the link (Keras's zipfile writes the target text as a file), "
                    "so later members or readers follow it",
                    evidence=f"-> {target[:200]}",
                    severity=Severity.HIGH if escapes else Severity.MEDIUM,
                )
            )
        yield from capped(hits, listing.location, "symlink members")
    for folder in art.dirs:
        yield from _dir_links(folder)


def _dir_links(folder: DirListing) -> Iterator[Hit]:
    for entry in folder.entries:
        if entry.kind != "symlink":
            continue
        target = entry.link_target or ""
        escapes = _escapes(entry.name, target)
        role_file = entry.name in KERAS_EXPECTED
        why = []
        if role_file:
            why.append("Keras reads this file through the link")
        if escapes:
            why.append("it points outside the model directory")
        yield Hit(
            folder.location.child(member=display_name(entry.name)),
            "symlink in a model directory (not followed, so its target was not scanned)"
            + (": " + " and ".join(why) if why else ""),
            evidence=f"-> {target[:200]}",
            severity=Severity.HIGH if (role_file or escapes) else Severity.MEDIUM,
        )


# --- KG303 -----------------------------------------------------------------------------------------


def _check_kg303(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        by_name: dict[str, list[int]] = defaultdict(list)
        by_fold: dict[str, set[str]] = defaultdict(set)
        for i, m in enumerate(listing.members):
            by_name[m.name].append(i)
            by_fold[m.name.casefold()].add(m.name)
        hits = []
        for name, indices in by_name.items():
            if len(indices) < 2:
                continue
            first, last = listing.members[indices[0]], listing.members[indices[-1]]
            keras_role = listing.kind == "keras" and name in KERAS_EXPECTED
            raws = {listing.members[i].raw_name for i in indices}
            hits.append(
                Hit(
                    _loc(listing, last),
                    f"{display_name(name)!r} appears {len(indices)} times; Python's zipfile (Keras) uses "
                    f"entry #{indices[-1]} (offset {last.header_offset}), tools that keep the first use "
                    f"entry #{indices[0]} (offset {first.header_offset})"
                    + ("; the raw names differ after a NUL byte" if len(raws) > 1 else ""),
                    evidence=f"sizes {[listing.members[i].file_size for i in indices][:10]}",
                    severity=Severity.HIGH if keras_role else Severity.MEDIUM,
                )
            )
        for names in by_fold.values():
            if len(names) > 1:
                shown = sorted(display_name(n) for n in names)[:5]
                hits.append(
                    Hit(
                        listing.location,
                        "member names differ only in case: extracting on a case-insensitive file system "
                        "(macOS, Windows) overwrites one with another",
                        evidence=", ".join(shown),
                        severity=Severity.LOW,
                    )
                )
        yield from capped(hits, listing.location, "duplicate names")


# --- KG304 -----------------------------------------------------------------------------------------


def _check_kg304(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        hits = [Hit(listing.location, text, severity=Severity.MEDIUM) for text in listing.anomalies]
        for m in listing.members:
            if m.overlaps:
                hits.append(
                    Hit(
                        _loc(listing, m),
                        "member bytes overlap other members: the same compressed data is expanded more "
                        "than once (overlapping-file zip bomb) or one member hides inside another",
                        evidence="overlaps " + ", ".join(display_name(n) for n in m.overlaps[:5]),
                        severity=Severity.HIGH,
                    )
                )
            if m.local_problem and m.local_problem != RECOVERED_NOTE:
                hits.append(Hit(_loc(listing, m), m.local_problem, severity=Severity.MEDIUM))
        yield from capped(hits, listing.location, "structural disagreements")


# --- KG305 -----------------------------------------------------------------------------------------


def _check_kg305(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        hits = [
            Hit(
                _loc(listing, m),
                "encrypted member: its content cannot be scanned (Keras cannot read it without a "
                "password; tools that prompt for one can)",
                evidence=f"flags 0x{m.flag_bits:04x}, {method_name(m.compress_type)}",
            )
            for m in listing.members
            if m.encrypted or m.flag_bits & FLAG_STRONG_ENCRYPTION or m.compress_type == 99
        ]
        yield from capped(hits, listing.location, "encrypted members")


# --- KG306 -----------------------------------------------------------------------------------------


def _check_kg306(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        if listing.kind != "keras":
            continue
        hits = [
            Hit(_loc(listing, m), "member outside the Keras layout; Keras extracts it with the assets")
            for m in listing.members
            if not is_expected_keras_name(m.name.rstrip("/") if m.is_dir else m.name)
        ]
        yield from capped(hits, listing.location, "unexpected members")
    for folder in art.dirs:
        hits = []
        for entry in folder.entries:
            where = folder.location.child(member=display_name(entry.name))
            if entry.kind == "other":
                hits.append(
                    Hit(
                        where,
                        "special file (FIFO, socket or device) in a model directory: opening it can block "
                        "a loader or read a device",
                        severity=Severity.MEDIUM,
                    )
                )
            elif not is_expected_keras_name(entry.name) and "/" not in entry.name:
                hits.append(Hit(where, f"unexpected {entry.kind} in a Keras model directory"))
        yield from capped(hits, folder.location, "unexpected entries")


# --- KG307 -----------------------------------------------------------------------------------------


def _check_kg307(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    limit = ctx.policy.limits.max_members
    for listing in art.zips:
        if listing.truncated or listing.declared_entries > limit:
            yield Hit(
                listing.location,
                f"archive declares {listing.declared_entries} entries and holds at least "
                f"{len(listing.members)}; the limit is max_members={limit}",
                evidence=f"declared {listing.declared_entries}",
            )
    for folder in art.dirs:
        if folder.truncated:
            yield Hit(folder.location, f"model directory holds more than max_members={limit} entries")


# --- KG308 -----------------------------------------------------------------------------------------


def _keras_verdict(m: ZipMember) -> str:
    ratio_bomb = m.file_size > KERAS_RATIO * m.compress_size
    if ratio_bomb and m.file_size > KERAS_4GIB:
        return "Keras >= 3.12.3/3.15.0 refuses it; older versions allocate it"
    if ratio_bomb and m.file_size > KERAS_EXTRACT_FLOOR:
        return "Keras >= 3.12.4/3.15.1 refuses to extract it; it is read in memory below 4 GiB"
    return "below Keras's own thresholds (4 GiB in memory, 256 MiB extracted, 100x), so Keras reads it"


def _check_kg308(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    lim = ctx.policy.limits
    for listing in art.zips:
        hits = []
        for m in listing.members:
            ratio = m.file_size / max(m.compress_size, 1)
            if m.file_size > lim.max_member_bytes:
                hits.append(
                    Hit(
                        _loc(listing, m),
                        f"member declares {m.file_size} bytes uncompressed, above max_member_bytes="
                        f"{lim.max_member_bytes}; {_keras_verdict(m)}",
                        evidence=f"{m.compress_size} -> {m.file_size} bytes",
                    )
                )
            elif m.file_size > lim.compression_ratio_floor and ratio > lim.max_compression_ratio:
                hits.append(
                    Hit(
                        _loc(listing, m),
                        f"member expands {ratio:.0f}x ({m.compress_size} -> {m.file_size} bytes), above "
                        f"max_compression_ratio={lim.max_compression_ratio}; {_keras_verdict(m)}",
                        evidence=f"{method_name(m.compress_type)}, {m.compress_size} -> {m.file_size} bytes",
                    )
                )
        total = sum(m.file_size for m in listing.members)
        if total > lim.max_total_uncompressed:
            hits.append(
                Hit(
                    listing.location,
                    f"members declare {total} bytes in total, above max_total_uncompressed="
                    f"{lim.max_total_uncompressed}: extracting the archive fills memory or disk",
                    evidence=f"{len(listing.members)} members",
                )
            )
        yield from capped(hits, listing.location, "oversized members")


# --- KG309 -----------------------------------------------------------------------------------------


def _check_kg309(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        if listing.depth == 0:
            continue
        if listing.depth == 1 and listing.location.member == "model.weights.npz":
            continue  # how Keras stores weights_format="npz"
        yield Hit(
            listing.location,
            f"archive nested at depth {listing.depth} ({listing.kind}); its content was scanned too",
            evidence=f"{len(listing.members)} members",
        )


# --- KG310 -----------------------------------------------------------------------------------------

_QUIRK_TEXT = {
    "non_finite": "NaN or Infinity values (Python accepts them; JSON does not)",
    "huge_number": "integers beyond 64 bits (other parsers overflow or round them)",
    "bom": "a byte order mark (Python's json.loads(bytes) accepts it; strict parsers do not)",
    "encoding": "a UTF-16/32 encoding (Python's json.loads(bytes) detects it; most tools expect UTF-8)",
    "lone_surrogate": "lone UTF-16 surrogates (not valid Unicode; parsers replace, reject or keep them)",
    "truncated": "more ambiguities than were recorded",
}


def _doc_hits(doc: JsonDocument) -> Iterator[Hit]:
    for dup in doc.duplicate_keys:
        identity = doc.role == "model_config" and dup.key in CONFIG_IDENTITY_KEYS
        yield Hit(
            doc.location.child(pointer=dup.pointer),
            f"key {display_name(dup.key)!r} appears {dup.count} times in one object; Python's json "
            f"(Keras) keeps the last value {dup.used}, first-wins parsers keep {dup.dropped}",
            evidence=f"kept {dup.used}; dropped {dup.dropped}",
            severity=Severity.HIGH if identity else Severity.MEDIUM,
        )
    by_kind: dict[str, list[str]] = defaultdict(list)
    for quirk in doc.quirks:
        by_kind[quirk.kind].append(quirk.pointer)
    for kind, pointers in by_kind.items():
        where = doc.location.child(pointer=pointers[0]) if pointers[0] else doc.location
        yield Hit(
            where,
            f"document contains {_QUIRK_TEXT.get(kind, kind)}"
            + (f" at {len(pointers)} places" if len(pointers) > 1 else ""),
            evidence=", ".join(p or "/" for p in pointers[:5]),
            severity=Severity.LOW,
        )


def _check_kg310(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc in art.json_docs:
        yield from _doc_hits(doc)


# --- KG311 -----------------------------------------------------------------------------------------


def _check_kg311(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for listing in art.zips:
        if listing.kind != "keras" or listing.truncated:
            continue
        if not any(m.name == "config.json" for m in listing.members):
            yield Hit(
                listing.location,
                "Keras archive without config.json: Keras cannot load it, so whatever opens it is not "
                "the Keras loader (or the file is truncated or another format named .keras)",
                evidence=f"{len(listing.members)} members",
            )


# --- KG107 -----------------------------------------------------------------------------------------


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG301",
        name="unsafe-member-path",
        title="Archive member with an unsafe path",
        severity=Severity.HIGH,
        cwe="CWE-22",
        cves=("CVE-2026-12479",),
        rationale=(
            "Keras extracts archive members to a temporary directory when it loads assets. Names that "
            "are absolute, contain `..`, a drive letter or (on Windows and in Keras's asset paths) "
            "backslash separators write outside that directory in Keras before 3.12.2/3.14.0 "
            "(GHSA-hqp4-2352-xf5r) and 3.12.3/3.15.0 (CVE-2026-12479), and in any tool that extracts "
            "without a filter (zip slip). A NUL byte makes Python's zipfile see a different name than "
            "other tools (`config.json\\x00x` is `config.json` to Keras). High for traversal and NUL; "
            "medium for a bare backslash; low for empty, overlong or control-character names, which "
            "break or spoof tools rather than write files."
        ),
        remediation=(
            "Do not extract or load the archive. Re-export the model with `model.save()` from a trusted "
            "environment, and upgrade Keras to at least 3.12.3 / 3.15.0."
        ),
        example="A member named `assets/../../../../home/user/.bashrc`.",
        references=(
            "https://github.com/keras-team/keras/pull/23017",
            "https://github.com/keras-team/keras/pull/22194",
            "https://security.snyk.io/research/zip-slip-vulnerability",
        ),
        check=_check_kg301,
    ),
    Rule(
        id="KG302",
        name="symlink-member",
        title="Symbolic link inside an archive or model directory",
        severity=Severity.MEDIUM,
        cwe="CWE-59",
        rationale=(
            "A zip member whose Unix mode is a symlink becomes a link when `unzip` or similar tools "
            "extract it; a later member written through it, or a program reading the extracted tree, "
            "reaches a file outside it. Python's zipfile (Keras) writes the link target as a plain file "
            "instead, which is why this is medium, and high when the target leaves the directory. In "
            "an unzipped model directory Keras follows links: a linked `config.json` or "
            "`model.weights.h5` makes Keras read a file kerasguard did not scan (high), and any link "
            "that leaves the directory is high too."
        ),
        remediation=(
            "Replace links with the real files from a trusted source, or load the model from a `.keras` "
            "file. Never extract untrusted archives with tools that restore symlinks."
        ),
        example="A member `assets/data` with mode 0120777 and content `/etc`.",
        references=("https://cwe.mitre.org/data/definitions/59.html",),
        check=_check_kg302,
    ),
    Rule(
        id="KG303",
        name="duplicate-member",
        title="Duplicate member names in an archive",
        severity=Severity.MEDIUM,
        cwe="CWE-436",
        rationale=(
            "Two central-directory entries with the same name are never produced by Keras. Python's "
            "zipfile (and so Keras) reads the last one and extraction overwrites in order; tools that "
            "keep the first, and reviewers who open the archive with them, see a different file. High "
            "when the duplicated name is one Keras loads (`config.json`, `model.weights.h5`...): the "
            "model that runs is not the one a first-wins scanner judged. Names that differ only in "
            "case collide on case-insensitive file systems (low)."
        ),
        remediation="Reject the archive; re-export the model from a trusted environment.",
        example="`config.json` twice: a benign one first, one with a Lambda layer last.",
        references=("https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT",),
        check=_check_kg303,
    ),
    Rule(
        id="KG304",
        name="header-mismatch",
        title="Zip structures disagree (parser differential or overlapping members)",
        severity=Severity.MEDIUM,
        cwe="CWE-436",
        rationale=(
            "A zip is described twice: by local headers before each member and by the central "
            "directory at the end. Python's zipfile trusts the central directory, streaming "
            "unzippers trust local headers; names, methods or sizes that differ, data prepended "
            "before the archive (a polyglot), several end records or a comment that does not end the "
            "file make tools extract different content, so what was scanned may not be what runs "
            "(medium). Members whose bytes overlap are high: that is how non-recursive zip bombs "
            "expand one compressed block many times, and how one member hides inside another."
        ),
        remediation="Reject the archive. A model exported by Keras has none of these properties.",
        example="Two central-directory entries pointing at the same local header (overlapping bomb).",
        references=(
            "https://www.bamsoftware.com/hacks/zipbomb/",
            "https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT",
        ),
        check=_check_kg304,
    ),
    Rule(
        id="KG305",
        name="encrypted-member",
        title="Encrypted archive member",
        severity=Severity.MEDIUM,
        cwe="CWE-693",
        rationale=(
            "Encrypted members cannot be scanned. Keras cannot read them either (it passes no "
            "password), but any tool or person given the password can, so the archive carries content "
            "nobody has inspected. Medium: not directly loadable by Keras, but a classic way to smuggle "
            "a payload past scanners."
        ),
        remediation="Obtain an unencrypted model from the publisher and scan that.",
        references=("https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT",),
        check=_check_kg305,
    ),
    Rule(
        id="KG306",
        name="unexpected-member",
        title="Unexpected file in a Keras archive or model directory",
        severity=Severity.LOW,
        cwe="CWE-912",
        rationale=(
            "Keras writes only `config.json`, `metadata.json`, `model.weights.h5` or "
            "`model.weights.npz`, and `assets/**`. Anything else is ignored by the loader but extracted "
            "with the assets to a temporary directory, and may be a second stage for another tool or a "
            "sign of tampering. Low because Keras does not execute it (its content is scanned anyway); "
            "special files (FIFOs, devices) in a model directory are medium since opening them can "
            "block a loader or read a device."
        ),
        remediation="Remove the extra files, or re-export the model with `model.save()`.",
        example="A `.keras` that also contains `payload.pkl` or `run.sh`.",
        references=("https://keras.io/guides/serialization_and_saving/",),
        check=_check_kg306,
    ),
    Rule(
        id="KG307",
        name="too-many-members",
        title="Archive or model directory with too many entries",
        severity=Severity.MEDIUM,
        cwe="CWE-400",
        rationale=(
            "Python's zipfile keeps every central-directory entry in memory when it opens an archive, "
            "and Keras extracts every member when the archive has assets. Hundreds of thousands of "
            "entries exhaust memory, inodes or time before any model is built. A Keras model has a "
            "handful. Entries beyond `max_members` were not read (see also KG902)."
        ),
        remediation=(
            "Reject the archive, or raise `max_members` in the policy if the model legitimately ships "
            "many assets."
        ),
        check=_check_kg307,
    ),
    Rule(
        id="KG308",
        name="decompression-bomb",
        title="Archive member expands far beyond its stored size",
        severity=Severity.HIGH,
        cwe="CWE-409",
        rationale=(
            "Keras writes members uncompressed, so a member that declares far more bytes than it "
            "stores is a decompression bomb: reading `config.json` or `model.weights.h5` into memory, "
            "or extracting assets, exhausts memory or disk. Keras itself refuses only members over 4 "
            "GiB at 100x (3.12.3/3.15.0) and extractions over 256 MiB at 100x (3.12.4/3.15.1); "
            "earlier versions have no guard. kerasguard is stricter: `max_compression_ratio` above "
            "`compression_ratio_floor`, `max_member_bytes` per member and `max_total_uncompressed` per "
            "archive. High: a denial of service on whatever host loads the model."
        ),
        remediation=(
            "Reject the archive. If a model really needs compressed members, re-save it with Keras "
            "(which stores them) or raise the limits in the policy after review."
        ),
        example="A 1 KB archive whose `model.weights.h5` declares 10 GiB.",
        references=(
            "https://github.com/keras-team/keras/pull/23010",
            "https://github.com/keras-team/keras/pull/23101",
            "https://www.bamsoftware.com/hacks/zipbomb/",
        ),
        check=_check_kg308,
    ),
    Rule(
        id="KG309",
        name="nested-archive",
        title="Archive nested inside an archive",
        severity=Severity.INFO,
        cwe="CWE-409",
        rationale=(
            "An archive inside a model archive (other than Keras's own `model.weights.npz`) is unusual "
            "and is how recursive bombs and hidden payloads are packed. kerasguard scans nested content "
            "up to `max_nesting` levels, so this is informational: findings inside are reported on "
            "their own."
        ),
        remediation="Check why the model ships an archive; remove it if it is not needed.",
        check=_check_kg309,
    ),
    Rule(
        id="KG310",
        name="ambiguous-json",
        title="JSON that parsers read differently",
        severity=Severity.MEDIUM,
        cwe="CWE-436",
        rationale=(
            "Keras parses `config.json` with Python's json, which keeps the last of duplicate keys and "
            "accepts NaN, Infinity, huge integers, a BOM, UTF-16/32 and lone surrogates. Other parsers "
            "(including other scanners and review tools) keep the first duplicate or reject the file, "
            "so they judge a different model than the one Keras builds. Python never writes duplicate "
            "keys: they are medium, and high when the key decides what Keras builds or imports in a "
            "model config (`class_name`, `module`, `registered_name`, `config`...). The other "
            "ambiguities are low."
        ),
        remediation="Reject the file, or re-export the model with `model.save()`.",
        example='`{"class_name": "Dense", "class_name": "Lambda", ...}`: Keras builds a Lambda.',
        references=(
            "https://bishopfox.com/blog/json-interoperability-vulnerabilities",
            "https://www.rfc-editor.org/rfc/rfc8259#section-4",
            "https://www.rfc-editor.org/rfc/rfc6901",
        ),
        check=_check_kg310,
    ),
    Rule(
        id="KG311",
        name="missing-model-config",
        title="Keras archive without config.json",
        severity=Severity.MEDIUM,
        cwe="CWE-20",
        rationale=(
            "Every `.keras` file Keras writes has `config.json`, and Keras cannot load one without it. "
            "A `.keras` without it is truncated, tampered with, or another format under a Keras name; "
            "whatever will open it is not the Keras loader, so a clean Keras scan says little about it."
        ),
        remediation="Obtain the model again from a trusted source; check what the file really is.",
        check=_check_kg311,
    ),
)
