"""Zip archives (.keras, .npz, nested zips): structure facts, then each member routed to its reader.

Stored members (how Keras writes every member) are analysed in place: a window on the same file,
so a 2 GiB ``model.weights.h5`` costs what its metadata costs. Compressed members are decoded in
bounded streams. What a member *is* comes from its bytes; its *role* (model config, weights...)
from its name in a Keras archive, as the Keras loader decides it.
"""

from __future__ import annotations

import functools
import os
import stat
import struct
import zlib
from collections.abc import Callable
from dataclasses import replace

from kerasguard.escaping import printable
from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, Member, ZipListing, ZipMember
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadBlob, ReadContext
from kerasguard.formats.sniff import HDF5_MAGIC, ZIP_MAGICS, sniff
from kerasguard.formats.zip import inflate as zip_inflate
from kerasguard.formats.zip import layout as zip_layout
from kerasguard.formats.zip.inflate import InflateError, Spool
from kerasguard.formats.zip.layout import FLAG_STRONG_ENCRYPTION, Source

# What Keras's loader does with each top-level name of a .keras archive.
KERAS_ROLES = {
    "config.json": "model_config",
    "metadata.json": "metadata",
    "model.weights.h5": "keras_weights",
}
KERAS_EXPECTED = frozenset({"config.json", "metadata.json", "model.weights.h5", "model.weights.npz"})
ASSETS_PREFIX = "assets/"
READ_KINDS = frozenset({"zip", "hdf5", "pickle", "npy", "json", "yaml", "protobuf"})
SNIFF_BYTES = 4096
LINK_BYTES = 4096
MAX_DISPLAY = 512


def is_expected_keras_name(name: str) -> bool:
    """Whether a Keras archive or directory legitimately holds ``name``."""
    return name in KERAS_EXPECTED or name == "assets" or name.startswith(ASSETS_PREFIX)


def display_name(name: str) -> str:
    """A member name safe to print: non-printables escaped, length clipped."""
    return printable(name, limit=MAX_DISPLAY) or "<empty name>"


def archive_kind(name: str, members: list[ZipMember]) -> str:
    """ "keras" (named .keras or holding config.json), "npz" (only .npy members) or "zip"."""
    files = [m.name for m in members if not m.is_dir]
    if name.lower().endswith(".keras") or "config.json" in files:
        return "keras"
    if files and all(n.endswith(".npy") for n in files):
        return "npz"
    return "zip"


def read_zip(blob: Blob, art: Artifact, ctx: ReadContext, depth: int, read_blob: ReadBlob) -> None:
    """Record the archive's structure on ``art`` and read every member a loader could use."""
    try:
        with blob.open() as fh:
            _read(Source(fh, blob.size), blob, art, ctx, depth, read_blob)
    except OSError as exc:
        art.problem(blob.location, "io", f"cannot read archive: {exc.strerror or exc}")
    except struct.error:  # only if the file shrinks while it is read: the sizes checked no longer hold
        art.problem(blob.location, "io", "archive changed while it was being read")


def has_trailing_zip(blob: Blob) -> bool:
    """Whether a blob that does not start like a zip still ends with one (zipfile would open it)."""
    try:
        with blob.open() as fh:
            src = Source(fh, blob.size)
            end = zip_layout.find_end_record(src, zip_layout.ZipLayout())
            if end is None or end.entries == 0:
                return False
            extra = zip_layout.LOC64_SIZE + zip_layout.EOCD64_SIZE if end.zip64 else 0
            start = end.offset - end.cd_size - extra
            return start >= 0 and src.read_at(start, 4) == zip_layout.CD_SIG
    except OSError:
        return False


def _read(src: Source, blob: Blob, art: Artifact, ctx: ReadContext, depth: int, read_blob: ReadBlob) -> None:
    budget = ctx.limits.max_members - ctx.zip_entries
    if budget <= 0:
        art.problem(
            blob.location,
            "limit",
            f"archive not read: this artifact already holds max_members={ctx.limits.max_members} "
            "archive entries",
        )
        return
    layout = zip_layout.parse(src, budget)
    ctx.zip_entries += len(layout.members)
    listing = ZipListing(
        location=blob.location,
        kind=archive_kind(blob.name, layout.members),
        members=layout.members,
        declared_entries=layout.declared_entries,
        depth=depth,
        prefix_bytes=layout.prefix,
        anomalies=layout.anomalies,
        truncated=layout.truncated,
    )
    listing.anomalies.extend(_hdf5_superblocks(src))
    art.zips.append(listing)
    for kind, message in layout.problems:
        art.problem(blob.location, kind, message)
    _fill_link_targets(src, listing)
    if layout.prefix and src.read_at(0, 4) in ZIP_MAGICS:
        # The archive was opened by its start, so nothing else has looked at the prepended bytes:
        # streaming unzippers (and a second archive glued in front) live there.
        prefix = _window(blob, 0, layout.prefix, blob.location.child(member="<prefix>"), "<prefix>")
        read_blob(prefix, art, ctx, depth + 1)
    used = {m.name: i for i, m in enumerate(listing.members)}  # zipfile keeps the last entry of a name
    seen: set[tuple[int | None, int, int, int]] = set()
    for i, member in enumerate(listing.members):
        if used[member.name] != i or member.is_dir:
            continue
        span = (member.data_offset, member.compress_size, member.compress_type, member.file_size)
        if span in seen:
            continue  # another entry aliasing the same bytes (KG304): already analysed once
        seen.add(span)
        if ctx.expired():
            art.problem(blob.location, "timeout", "file_timeout_s reached: remaining members not analysed")
            return
        role = KERAS_ROLES.get(member.name) if listing.kind == "keras" else None
        _read_member(src, blob, art, ctx, depth, read_blob, member, role)


def _hdf5_superblocks(src: Source) -> list[str]:
    """h5py looks for a superblock at 0, 512, 1024, 2048...: a zip can carry one (a polyglot)."""
    found = []
    offset = 512
    while offset + 8 <= src.size:
        if src.read_at(offset, 8) == HDF5_MAGIC:
            found.append(
                f"HDF5 superblock at offset {offset}: h5py (legacy .h5 loading) reads this file as HDF5"
            )
        offset *= 2
    return found


def _window(blob: Blob, offset: int, size: int, location: Location, name: str) -> Blob:
    """``size`` bytes at ``offset`` of ``blob`` without copying a file-backed blob."""
    if blob.data is not None:
        return Blob.from_bytes(blob.data[offset : offset + size], location, name)
    return Blob(location=location, name=name, size=size, path=blob.path, offset=blob.offset + offset)


def _fill_link_targets(src: Source, listing: ZipListing) -> None:
    for i, m in enumerate(listing.members):
        if not m.is_symlink or m.data_offset is None or m.encrypted:
            continue
        head = b""
        try:
            for chunk in zip_inflate.decompress(
                src.stream(m.data_offset, m.compress_size), m.compress_type, m.file_size
            ):
                head += chunk
                if len(head) >= LINK_BYTES:
                    break
        except InflateError:
            pass
        target = head[:LINK_BYTES].decode("utf-8", "replace")
        listing.members[i] = replace(m, link_target=target)


def _read_member(
    src: Source,
    blob: Blob,
    art: Artifact,
    ctx: ReadContext,
    depth: int,
    read_blob: ReadBlob,
    m: ZipMember,
    role: str | None,
) -> None:
    loc = blob.location.child(member=display_name(m.name))
    if m.data_offset is None:
        art.problem(loc, "corrupt", f"member cannot be located: {m.local_problem}")
        return
    if m.encrypted or m.flag_bits & FLAG_STRONG_ENCRYPTION:
        return  # a fact for the rules (KG305): without the password nobody reads it
    if m.compress_type not in zip_inflate.DECODED_METHODS:
        art.problem(
            loc,
            "unsupported",
            f"member is compressed with {zip_inflate.method_name(m.compress_type)}, which kerasguard "
            "does not decode (nor does Python's zipfile)",
        )
        return
    if m.data_offset + m.compress_size > blob.size:
        return  # truncated: recorded as a corrupt problem by the layout parser
    if m.compress_type == 0:
        size = min(m.compress_size, m.file_size)  # zipfile stops at whichever comes first
        if size <= ctx.limits.crc_check_max_bytes:
            _check_crc(m, _stored_crc(src, blob, m.data_offset, size), art, loc)
        read_blob(_window(blob, m.data_offset, size, loc, m.name), art, ctx, depth + 1, role)
        return
    _read_compressed(src, art, ctx, depth, read_blob, m, role, loc)


_CRC_CHUNK = 1 << 20
Crc32 = Callable[[bytes | bytearray | memoryview, int], int]


@functools.cache
def stored_crc32() -> Crc32:
    """The CRC-32 of stored members: zlib-ng's (SIMD, ~6x zlib's: a 32 MB weights member in ~2.5 ms of CPU
    instead of ~10-15 ms, decision 62) when it is installed, else zlib's. Both compute the same function
    of the bytes (tested); imported on first use, not at start-up."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib.crc32
    return zlib_ng.crc32


def _stored_crc(src: Source, blob: Blob, offset: int, size: int) -> int:
    """CRC-32 of ``size`` bytes at ``offset`` of ``blob`` (fewer where it is shorter), as ``src.stream``
    reads them, but copied once: a weights member of tens of MB is read into one reused buffer."""
    end = min(offset + size, src.size)
    if end <= offset:
        return 0
    crc32 = stored_crc32()
    if blob.data is not None:
        return crc32(memoryview(blob.data)[offset:end], 0)
    fd = -1
    if blob.path is not None and hasattr(os, "preadv"):
        try:  # never blocks (a FIFO swapped in would): only a regular file is read this way
            fd = os.open(blob.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                fd = -1
        except OSError:
            fd = -1
    if fd < 0:
        crc = 0
        for chunk in src.stream(offset, end - offset):
            crc = crc32(chunk, crc)
        return crc
    try:
        view = memoryview(bytearray(min(_CRC_CHUNK, end - offset)))
        crc, pos = 0, offset
        while pos < end:
            n = os.preadv(fd, [view[: min(len(view), end - pos)]], blob.offset + pos)
            if n <= 0:
                break
            crc = crc32(view[:n], crc)
            pos += n
        return crc
    finally:
        os.close(fd)


def _check_crc(m: ZipMember, crc: int, art: Artifact, loc: Location) -> None:
    """zipfile refuses a member whose bytes do not match its CRC-32: corrupted or edited in place."""
    if m.crc is not None and crc != m.crc:
        art.problem(
            loc,
            "corrupt",
            f"CRC-32 mismatch (declared {m.crc:08x}, content {crc:08x}): the member was corrupted or "
            "edited after the archive was written, and zipfile refuses to read it",
        )


def _refusal(m: ZipMember, ctx: ReadContext) -> str | None:
    """Why a compressed member must not be decompressed at all, judged on declared sizes."""
    lim = ctx.limits
    if m.file_size > lim.max_member_bytes:
        return f"declares {m.file_size} bytes uncompressed, above max_member_bytes={lim.max_member_bytes}"
    if m.file_size > lim.compression_ratio_floor and m.file_size > lim.max_compression_ratio * max(
        m.compress_size, 1
    ):
        return (
            f"declares {m.file_size} bytes from {m.compress_size} compressed (ratio above "
            f"max_compression_ratio={lim.max_compression_ratio}): a decompression bomb"
        )
    if ctx.inflated_bytes + m.file_size > lim.max_total_uncompressed:
        return f"would exceed max_total_uncompressed={lim.max_total_uncompressed} for this artifact"
    return None


def _kind_cap(kind: str, ctx: ReadContext) -> tuple[int, str]:
    lim = ctx.limits
    if kind in ("json", "yaml"):
        return lim.max_json_bytes, "max_json_bytes"
    if kind == "pickle":
        return lim.max_pickle_bytes, "max_pickle_bytes"
    return lim.max_member_bytes, "max_member_bytes"


def _read_compressed(
    src: Source,
    art: Artifact,
    ctx: ReadContext,
    depth: int,
    read_blob: ReadBlob,
    m: ZipMember,
    role: str | None,
    loc: Location,
) -> None:
    refusal = _refusal(m, ctx)
    if refusal:
        art.problem(loc, "limit", f"member not decompressed: it {refusal}")
        return
    assert m.data_offset is not None
    chunks = zip_inflate.decompress(src.stream(m.data_offset, m.compress_size), m.compress_type, m.file_size)
    crc = 0
    try:
        with Spool() as spool:
            head = bytearray()
            for chunk in chunks:
                spool.write(chunk)
                crc = zlib.crc32(chunk, crc)
                head += chunk[: SNIFF_BYTES - len(head)]
                if spool.size >= SNIFF_BYTES:
                    break
            kind = sniff(bytes(head), m.name)
            if kind not in READ_KINDS:
                art.members.append(Member(loc, m.name, m.file_size, kind))
                return
            cap, cap_name = _kind_cap(kind, ctx)
            if m.file_size > cap:
                art.members.append(Member(loc, m.name, m.file_size, kind))
                art.problem(loc, "limit", f"{kind} member of {m.file_size} bytes exceeds {cap_name}={cap}")
                return
            for chunk in chunks:
                if ctx.expired():
                    art.problem(loc, "timeout", "file_timeout_s reached while decompressing this member")
                    return
                spool.write(chunk)
                crc = zlib.crc32(chunk, crc)
            ctx.inflated_bytes += spool.size
            _check_crc(m, crc, art, loc)
            read_blob(spool.blob(loc, m.name), art, ctx, depth + 1, role)
    except InflateError as exc:
        art.problem(loc, "corrupt", f"member cannot be decompressed: {exc}")
    except OSError as exc:
        art.problem(loc, "io", f"cannot spool decompressed member: {exc.strerror or exc}")
    finally:
        chunks.close()
