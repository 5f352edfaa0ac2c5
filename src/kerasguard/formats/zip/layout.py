"""Zip structure: end record (incl. zip64), central directory, local headers. No member data is read.

The archive is interpreted the way CPython's ``zipfile`` does (that is what Keras uses), and every
place where another unzip tool would see something different is recorded as a fact: data before the
archive, a comment that does not end the file, local headers that disagree with the central
directory, members whose bytes overlap. Declared sizes are never trusted for allocation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from kerasguard.formats.artifact import ProblemKind, ZipMember

EOCD_SIG = b"PK\x05\x06"
EOCD_FMT = "<4s4H2LH"
EOCD_SIZE = 22
LOC64_SIG = b"PK\x06\x07"
LOC64_FMT = "<4sLQL"
LOC64_SIZE = 20
EOCD64_SIG = b"PK\x06\x06"
EOCD64_FMT = "<4sQ2H2L4Q"
EOCD64_SIZE = 56
CD_SIG = b"PK\x01\x02"
CD_FMT = "<4s4B4HL2L5H2L"
CD_SIZE = 46
LH_SIG = b"PK\x03\x04"
LH_FMT = "<4s2B4HL2L2H"
LH_SIZE = 30
DD_SIG = b"PK\x07\x08"

MAX_COMMENT = 0xFFFF
MAX_EXTRACT_VERSION = 63  # zipfile refuses archives needing a newer version
MAX_CD_BYTES = 32 * 1024 * 1024  # no legitimate model archive comes near; bounds memory for names
FLAG_ENCRYPTED = 0x1
FLAG_DATA_DESCRIPTOR = 0x8
FLAG_STRONG_ENCRYPTION = 0x40
FLAG_UTF8 = 0x800
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
RECOVERED_NOTE = "recovered from its local header only (no central directory entry)"


class Source:
    """Random access to a blob's bytes through one open handle."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self.size = size

    def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        self._fh.seek(offset)
        return self._fh.read(min(n, self.size - offset))

    def stream(self, offset: int, n: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Up to ``n`` bytes from ``offset`` in chunks (short if the file is short)."""
        pos, end = offset, min(offset + n, self.size)
        while pos < end:
            data = self.read_at(pos, min(chunk, end - pos))
            if not data:
                return
            pos += len(data)
            yield data


@dataclass
class EndRecord:
    """The end of central directory record, zip64 values applied as zipfile applies them."""

    offset: int
    entries: int
    cd_size: int
    cd_offset: int
    comment_len: int
    zip64: bool = False


@dataclass
class ZipLayout:
    """Everything known about an archive's structure."""

    members: list[ZipMember] = field(default_factory=list)
    declared_entries: int = 0
    prefix: int = 0
    cd_start: int = 0
    anomalies: list[str] = field(default_factory=list)
    problems: list[tuple[ProblemKind, str]] = field(default_factory=list)
    recovered: bool = False
    truncated: bool = False  # stopped at max_members

    def problem(self, kind: ProblemKind, message: str) -> None:
        self.problems.append((kind, message))


def _decode_name(raw: bytes, flags: int) -> tuple[str, bool]:
    """Decode as zipfile does: UTF-8 when flagged, else cp437. Returns (text, decoded_cleanly)."""
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8"), True
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace"), False
    return raw.decode("cp437"), True


def loader_name(decoded: str) -> str:
    """The name zipfile exposes: cut at the first NUL."""
    cut = decoded.find("\x00")
    return decoded if cut < 0 else decoded[:cut]


def find_end_record(src: Source, layout: ZipLayout) -> EndRecord | None:
    """Locate the end record like zipfile's ``_EndRecData`` (the last signature in the tail wins)."""
    size = src.size
    if size < EOCD_SIZE:
        return None
    window_start = max(size - MAX_COMMENT - 1 - EOCD_SIZE, 0)
    window = src.read_at(window_start, size - window_start)
    tail = window[-EOCD_SIZE:]
    if len(tail) == EOCD_SIZE and tail[:4] == EOCD_SIG and tail[-2:] == b"\x00\x00":
        pos = size - EOCD_SIZE
    else:
        idx = window.rfind(EOCD_SIG)
        if idx < 0 or len(window) - idx < EOCD_SIZE:
            return None
        pos = window_start + idx
    rec = window[pos - window_start : pos - window_start + EOCD_SIZE]
    fields = struct.unpack(EOCD_FMT, rec)
    disk, disk_cd, entries, cd_size, cd_offset, comment_len = fields[1], fields[2], *fields[4:8]
    trailing = size - pos - EOCD_SIZE
    if trailing != comment_len:
        layout.anomalies.append(
            f"the end record declares a {comment_len}-byte comment but {trailing} bytes follow it"
        )
    other = _other_exact_end_record(window, window_start, size, pos)
    if other is not None:
        layout.anomalies.append(
            f"another end record at offset {other} also ends exactly at the end of the file: zipfile "
            f"uses the one at {pos}, tools that search forward use the other"
        )
    if disk or disk_cd:
        layout.anomalies.append(f"end record names disk {disk} (central directory on disk {disk_cd})")
    end = EndRecord(pos, entries, cd_size, cd_offset, comment_len)
    _apply_zip64(src, end, layout)
    return end


def _other_exact_end_record(window: bytes, window_start: int, size: int, chosen: int) -> int | None:
    """An end record other than ``chosen`` whose comment length also reaches the end of the file.

    Stored archives nested inside (npz weights) end with signatures of their own, but their comment
    lengths never reach the outer file's end, so they are not counted.
    """
    idx = len(window)
    for _ in range(64):
        idx = window.rfind(EOCD_SIG, 0, idx)
        if idx < 0:
            return None
        pos = window_start + idx
        if pos == chosen or len(window) - idx < EOCD_SIZE:
            continue
        (comment_len,) = struct.unpack("<H", window[idx + 20 : idx + 22])
        if pos + EOCD_SIZE + comment_len == size:
            return pos
    return None


def _apply_zip64(src: Source, end: EndRecord, layout: ZipLayout) -> None:
    """zipfile reads the zip64 record just before the locator and ignores the locator's offset."""
    loc = src.read_at(end.offset - LOC64_SIZE, LOC64_SIZE)
    if len(loc) != LOC64_SIZE or loc[:4] != LOC64_SIG:
        return
    _sig, diskno, reloff, disks = struct.unpack(LOC64_FMT, loc)
    if diskno != 0 or disks > 1:
        layout.problem("corrupt", "zip64 locator says the archive spans several disks; zipfile refuses it")
        return
    rec_pos = end.offset - LOC64_SIZE - EOCD64_SIZE
    rec = src.read_at(rec_pos, EOCD64_SIZE)
    if len(rec) != EOCD64_SIZE or rec[:4] != EOCD64_SIG:
        layout.anomalies.append("zip64 locator present but no zip64 end record precedes it")
        return
    fields = struct.unpack(EOCD64_FMT, rec)
    end.entries, end.cd_size, end.cd_offset = fields[7], fields[8], fields[9]
    end.zip64 = True
    if reloff != rec_pos:
        layout.anomalies.append(
            f"zip64 locator points at offset {reloff} but the zip64 record is at {rec_pos}"
        )


def parse(src: Source, max_members: int) -> ZipLayout:
    """Parse structure; problems and anomalies are recorded on the returned layout."""
    layout = ZipLayout()
    end = find_end_record(src, layout)
    if end is None:
        layout.problem(
            "corrupt",
            "no end-of-central-directory record: the archive is truncated or not a zip "
            "(zipfile, hence Keras, refuses it)",
        )
        _recover(src, layout, max_members)
        return layout
    layout.declared_entries = end.entries
    extra = LOC64_SIZE + EOCD64_SIZE if end.zip64 else 0
    concat = end.offset - end.cd_size - end.cd_offset - extra
    start = end.cd_offset + concat  # == end.offset - cd_size - extra: zipfile trusts the size
    layout.cd_start = start
    if start < 0:
        layout.problem("corrupt", "central directory would start before the file: zipfile refuses it")
        _recover(src, layout, max_members)
        return layout
    if end.entries > max_members:
        layout.truncated = True
        layout.problem(
            "limit",
            f"archive declares {end.entries} entries; only the first {max_members} are read "
            f"(max_members={max_members})",
        )
    _parse_central_directory(src, end, start, concat, layout, max_members)
    corrupt = any(kind == "corrupt" for kind, _ in layout.problems)
    if not layout.members and corrupt and src.read_at(0, 4) == LH_SIG:
        _recover(src, layout, max_members)
        return layout
    layout.prefix = max(concat, 0)
    if concat > 0:
        layout.anomalies.append(
            f"{concat} bytes precede the archive (prepended data or a polyglot file): zipfile shifts "
            "every offset by that amount, tools that trust the offsets read something else"
        )
    elif concat < 0:
        layout.anomalies.append(
            f"central directory offset {end.cd_offset} disagrees with its position {start}"
        )
    if not layout.problems and len(layout.members) != end.entries:
        layout.anomalies.append(
            f"end record declares {end.entries} entries but the central directory holds {len(layout.members)}"
        )
    _check_local_headers(src, layout)
    return layout


def _parse_central_directory(
    src: Source, end: EndRecord, start: int, concat: int, layout: ZipLayout, max_members: int
) -> None:
    size = end.cd_size
    if size > MAX_CD_BYTES:
        layout.problem(
            "limit",
            f"central directory of {size} bytes exceeds {MAX_CD_BYTES} bytes; only the start is read",
        )
        size = MAX_CD_BYTES
    available = src.size - start
    if size > available:
        layout.problem(
            "corrupt", f"central directory declares {size} bytes but only {available} remain in the file"
        )
        size = max(available, 0)
    pos, stop = start, start + size
    while pos < stop:
        if len(layout.members) >= max_members:
            layout.truncated = True
            if end.entries <= max_members:  # not announced by the end record: say it now
                layout.problem(
                    "limit", f"central directory holds more than max_members={max_members} entries"
                )
            return
        fixed = src.read_at(pos, min(CD_SIZE, stop - pos))
        index = len(layout.members)
        if len(fixed) != CD_SIZE:
            layout.problem("corrupt", f"central directory truncated in entry #{index} at offset {pos}")
            return
        f = struct.unpack(CD_FMT, fixed)
        if f[0] != CD_SIG:
            layout.problem("corrupt", f"bad central directory signature in entry #{index} at offset {pos}")
            return
        nlen, elen, clen = f[12], f[13], f[14]
        var = src.read_at(pos + CD_SIZE, nlen + elen + clen)
        if len(var) != nlen + elen + clen or pos + CD_SIZE + len(var) > stop:
            layout.problem(
                "corrupt", f"central directory entry #{index} at offset {pos} runs past the directory"
            )
            return
        pos += CD_SIZE + len(var)
        member = _member_from_cd(f, var[:nlen], var[nlen : nlen + elen], concat, index, layout)
        if member is not None:
            layout.members.append(member)


def _member_from_cd(
    f: tuple[int | bytes, ...], raw: bytes, extra: bytes, concat: int, index: int, layout: ZipLayout
) -> ZipMember | None:
    (create_system, extract_version, flags, method) = (int(f[2]), int(f[3]), int(f[5]), int(f[6]))
    csize, fsize, offset = int(f[10]), int(f[11]), int(f[18])
    decoded, clean = _decode_name(raw, flags)
    if not clean:
        layout.problem(
            "corrupt",
            f"name of entry #{index} is flagged UTF-8 but is not valid UTF-8: zipfile refuses the archive",
        )
    if extract_version > MAX_EXTRACT_VERSION:
        layout.problem(
            "unsupported",
            f"entry #{index} needs zip version {extract_version / 10:.1f}; zipfile refuses the archive",
        )
    try:
        fsize, csize, offset = _zip64_extra(extra, fsize, csize, offset, for_local=False)
    except ValueError as exc:
        layout.problem("corrupt", f"entry #{index} ({loader_name(decoded)!r}): {exc}")
    return ZipMember(
        name=loader_name(decoded),
        raw_name=raw,
        compress_type=method,
        compress_size=csize,
        file_size=fsize,
        flag_bits=flags,
        external_attr=int(f[17]),
        create_system=create_system,
        header_offset=offset + concat,
        crc=int(f[9]),
    )


def _zip64_extra(
    extra: bytes, fsize: int, csize: int, offset: int, *, for_local: bool
) -> tuple[int, int, int]:
    """Apply a zip64 extra field the way zipfile's ``_decodeExtra`` does (raises ValueError)."""
    while len(extra) >= 4:
        tp, ln = struct.unpack("<HH", extra[:4])
        if ln + 4 > len(extra):
            raise ValueError(f"corrupt extra field {tp:04x} (size={ln}); zipfile refuses the archive")
        if tp == 0x0001:
            data = extra[4 : ln + 4]
            try:
                if fsize in (U64_MAX, U32_MAX) or (for_local and csize == U32_MAX):
                    (fsize,) = struct.unpack("<Q", data[:8])
                    data = data[8:]
                if csize == U32_MAX:
                    (csize,) = struct.unpack("<Q", data[:8])
                    data = data[8:]
                if not for_local and offset == U32_MAX:
                    (offset,) = struct.unpack("<Q", data[:8])
            except struct.error:
                raise ValueError("corrupt zip64 extra field; zipfile refuses the archive") from None
        extra = extra[ln + 4 :]
    return fsize, csize, offset


def _check_local_headers(src: Source, layout: ZipLayout) -> None:
    """Fill data offsets and local facts; record disagreements and overlapping members."""
    for i, m in enumerate(layout.members):
        layout.members[i] = _with_local_header(src, m, layout)
    _mark_overlaps(layout)


def _with_local_header(src: Source, m: ZipMember, layout: ZipLayout) -> ZipMember:
    issues: list[str] = []
    if m.header_offset < 0 or m.header_offset + LH_SIZE > src.size:
        return replace(m, local_problem=f"local header offset {m.header_offset} is outside the file")
    head = src.read_at(m.header_offset, LH_SIZE)
    f = struct.unpack(LH_FMT, head)
    if f[0] != LH_SIG:
        return replace(m, local_problem=f"no local header signature at offset {m.header_offset}")
    flags, method, _crc, csize, fsize, nlen, elen = (int(x) for x in f[3:5] + f[7:12])
    var = src.read_at(m.header_offset + LH_SIZE, nlen + elen)
    if len(var) != nlen + elen:
        return replace(m, local_problem="local header runs past the end of the file")
    local_raw, local_extra = var[:nlen], var[nlen:]
    data_offset = m.header_offset + LH_SIZE + nlen + elen
    local_decoded, _ = _decode_name(local_raw, flags)
    cd_decoded, _ = _decode_name(m.raw_name, m.flag_bits)
    if local_decoded != cd_decoded:
        issues.append(
            f"local header names {local_decoded!r} but the central directory says {cd_decoded!r} "
            "(zipfile refuses the member; streaming unzippers use the local name)"
        )
    if method != m.compress_type:
        issues.append(f"local header says compression method {method}, central directory {m.compress_type}")
    if (flags ^ m.flag_bits) & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
        issues.append("encryption flags differ between local header and central directory")
    if not (flags & FLAG_DATA_DESCRIPTOR):
        try:
            fsize, csize, _ = _zip64_extra(local_extra, fsize, csize, 0, for_local=True)
        except ValueError:
            issues.append("local header has a corrupt extra field")
        if (csize, fsize) != (m.compress_size, m.file_size):
            issues.append(
                f"local header sizes ({csize} stored, {fsize} uncompressed) differ from the central "
                f"directory ({m.compress_size}, {m.file_size})"
            )
    if m.compress_type == 0 and m.compress_size != m.file_size:
        issues.append(f"stored member declares {m.file_size} bytes but stores {m.compress_size}")
    data_end = data_offset + m.compress_size
    if data_end > src.size:
        issues.append(f"member data ends at {data_end}, past the end of the file ({src.size} bytes)")
        layout.problem("corrupt", f"member {m.name!r} is truncated: its data runs past the end of the file")
    elif layout.cd_start and data_end > layout.cd_start and m.header_offset < layout.cd_start:
        issues.append("member data runs into the central directory")
    return replace(
        m,
        data_offset=data_offset,
        local_name=local_raw,
        local_compress_type=method,
        local_problem="; ".join(issues) or None,
    )


def _mark_overlaps(layout: ZipLayout) -> None:
    """Members whose [header, data end) ranges intersect: the zip-bomb and content-aliasing trick."""
    spans = sorted(
        (m.header_offset, (m.data_offset or m.header_offset) + m.compress_size, i)
        for i, m in enumerate(layout.members)
        if m.data_offset is not None
    )
    shared: dict[int, set[int]] = {}
    active: list[tuple[int, int]] = []  # (end, index) of spans that may still overlap later ones
    for start, end, i in spans:
        active = [(e, j) for e, j in active if e > start]
        for _e, j in active:
            shared.setdefault(i, set()).add(j)
            shared.setdefault(j, set()).add(i)
        active.append((end, i))
        if len(active) > 64:  # bound the work on hostile archives; overlaps are already proven
            active = sorted(active)[-64:]
    for i, others in shared.items():
        m = layout.members[i]
        names = tuple(sorted({layout.members[j].name for j in others}))
        layout.members[i] = replace(m, overlaps=names)


def _recover(src: Source, layout: ZipLayout, max_members: int) -> None:
    """Walk local headers from the start, as streaming unzippers do, so content is still scanned."""
    pos = 0
    while True:
        head = src.read_at(pos, LH_SIZE)
        if len(head) != LH_SIZE or head[:4] != LH_SIG:
            break
        if len(layout.members) >= max_members:
            layout.truncated = True
            layout.problem("limit", f"more than max_members={max_members} local headers; the rest not read")
            break
        f = struct.unpack(LH_FMT, head)
        flags, method, csize, fsize, nlen, elen = (int(x) for x in (f[3], f[4], f[8], f[9], f[10], f[11]))
        var = src.read_at(pos + LH_SIZE, nlen + elen)
        if len(var) != nlen + elen:
            break
        try:
            fsize, csize, _ = _zip64_extra(var[nlen:], fsize, csize, 0, for_local=True)
        except ValueError:
            break
        decoded, _ = _decode_name(var[:nlen], flags)
        data_offset = pos + LH_SIZE + nlen + elen
        member = ZipMember(
            name=loader_name(decoded),
            raw_name=var[:nlen],
            compress_type=method,
            compress_size=csize,
            file_size=fsize,
            flag_bits=flags,
            external_attr=0,
            create_system=0,
            header_offset=pos,
            data_offset=data_offset,
            local_name=var[:nlen],
            local_compress_type=method,
            local_problem=RECOVERED_NOTE,
        )
        if data_offset + csize > src.size:
            layout.problem("corrupt", f"member {member.name!r} is truncated")
            member = replace(member, compress_size=max(src.size - data_offset, 0))
        layout.members.append(member)
        if flags & FLAG_DATA_DESCRIPTOR and csize == 0:
            layout.anomalies.append(
                "recovery stopped at a member whose size is only in a trailing data descriptor"
            )
            break
        pos = data_offset + csize
        if src.read_at(pos, 4) == DD_SIG:
            pos += 16
    if layout.members:
        layout.recovered = True
        layout.anomalies.append(
            f"central directory unusable: {len(layout.members)} member(s) recovered from local headers "
            "(streaming unzippers read these; zipfile refuses the archive)"
        )
