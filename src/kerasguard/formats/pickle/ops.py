"""Pickle streams walked by opcode only; nothing is ever unpickled.

The walker reads each opcode's argument itself from a bounded, buffered stream (never
``pickletools.genops``, whose readers trust declared lengths), skips large payloads by seeking, and keeps
a tiny symbolic stack so STACK_GLOBAL's module and name can be resolved when they are string constants of
the stream (pushed directly or through the memo). What it cannot resolve it records as unresolved.
Opcode metadata (arguments, stack effects) comes from ``pickletools.opcodes``, precomputed per byte.
"""

from __future__ import annotations

import pickletools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from kerasguard.formats.artifact import Artifact, PickleGlobal, PickleInfo
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext

HIGHEST_PROTOCOL = 5
KEEP_TEXT = 4096  # characters of a string operand kept for names; the rest is skipped
CHECK_EVERY = 4096  # opcodes between deadline and memory checks
MAX_SYMBOLS = 1 << 21  # stack or memo entries; a hostile stream could otherwise grow them to gigabytes
CHUNK = 1 << 20

CALL_OPCODES = frozenset({"REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"})
STRING_OPCODES = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)


class PickleError(Exception):
    """The stream is not a valid pickle here; ``position`` is the byte offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at byte {position}")
        self.position = position


class WalkLimit(Exception):
    """The walk stopped at a limit (size, memory or time) rather than at a malformed byte."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _Str:
    """A string constant on the symbolic stack (what STACK_GLOBAL needs)."""

    value: str


class _Mark:
    """The MARK object on the symbolic stack."""


MARK = _Mark()
UNKNOWN = object()  # any value whose content the walker does not track


class _Stream:
    """Buffered, bounded reads: arguments larger than what remains are errors, never allocations."""

    def __init__(self, fh: BinaryIO, size: int, limit: int) -> None:
        self.fh = fh
        self.size = size
        self.end = min(size, limit)
        self.buf = b""
        self.base = 0  # stream offset of buf[0]
        self.i = 0  # read position in buf

    @property
    def pos(self) -> int:
        return self.base + self.i

    def _refill(self, need: int) -> None:
        """Make ``need`` bytes available at ``i`` (the caller checked they exist)."""
        rest = self.buf[self.i :]
        want = max(CHUNK, need - len(rest))
        more = self.fh.read(min(want, self.size - self.base - len(self.buf)))
        self.base += self.i
        self.buf = rest + more
        self.i = 0
        if len(self.buf) < need:
            raise PickleError("unexpected end of data", self.base + len(self.buf))

    def read(self, n: int) -> bytes:
        i = self.i
        if i + n <= len(self.buf):  # fast path: inside the buffer, hence inside the stream
            self.i = i + n
            return self.buf[i : i + n]
        if n > self.size - self.pos:
            raise PickleError(f"argument of {n} bytes but only {self.size - self.pos} remain", self.pos)
        self._refill(n)
        data = self.buf[:n]
        self.i = n
        return data

    def skip(self, n: int) -> None:
        """Skip a payload without reading it into memory."""
        if n > self.size - self.pos:
            raise PickleError(f"argument declares {n} bytes but only {self.size - self.pos} remain", self.pos)
        if self.i + n <= len(self.buf):
            self.i += n
            return
        target = self.pos + n
        self.fh.seek(target)
        self.buf, self.base, self.i = b"", target, 0

    def read_keep(self, n: int, keep: int) -> bytes:
        """Consume ``n`` bytes, returning at most the first ``keep``."""
        if n <= keep:
            return self.read(n)
        head = self.read(keep)
        self.skip(n - keep)
        return head

    def readline(self, keep: int = KEEP_TEXT) -> bytes:
        """Consume one newline-terminated line, returning at most ``keep`` bytes of it."""
        start = self.pos
        kept = b""
        while True:
            cut = self.buf.find(b"\n", self.i)
            stop = cut if cut >= 0 else len(self.buf)
            if len(kept) < keep:
                kept += self.buf[self.i : min(stop, self.i + keep - len(kept))]
            if cut >= 0:
                self.i = cut + 1
                return kept
            self.base += len(self.buf)
            self.buf, self.i = b"", 0
            if self.base < self.size:
                self.buf = self.fh.read(min(CHUNK, self.size - self.base))
            if not self.buf:
                raise PickleError("line argument without a newline", start)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _decimal(line: bytes, position: int) -> int:
    text = line.strip().rstrip(b"L")
    try:
        return int(text)
    except ValueError:
        raise PickleError(f"bad decimal argument {line[:40]!r}", position) from None


def _quoted(line: bytes) -> str:
    """STRING's argument is a quoted repr; for names we only need its text."""
    if len(line) >= 2 and line[:1] == line[-1:] and line[:1] in (b"'", b'"'):
        line = line[1:-1]
    return line.decode("latin-1")


ArgReader = Callable[[_Stream, int], object]


def _counted(width: int, signed: bool, keep_text: bool, opname: str) -> ArgReader:
    """Arguments prefixed by their length: keep string operands (bounded), skip everything else."""

    def read(s: _Stream, at: int) -> object:
        n = int.from_bytes(s.read(width), "little", signed=signed)
        if n < 0:
            raise PickleError(f"{opname} declares a negative length {n}", at)
        if keep_text:
            return _text(s.read_keep(n, KEEP_TEXT))
        s.skip(n)
        return None

    return read


def _fixed_int(width: int, signed: bool) -> ArgReader:
    return lambda s, at: int.from_bytes(s.read(width), "little", signed=signed)


def _skip_fixed(width: int) -> ArgReader:
    def read(s: _Stream, at: int) -> object:
        s.skip(width)
        return None

    return read


def _skip_line(s: _Stream) -> None:
    s.readline(0)


def _line_pair(s: _Stream, at: int) -> object:
    return (_text(s.readline()), _text(s.readline()))


LINE_READERS: dict[str, ArgReader] = {
    "decimalnl_short": lambda s, at: _decimal(s.readline(), at),
    "decimalnl_long": lambda s, at: _decimal(s.readline(), at),
    "floatnl": lambda s, at: _skip_line(s),
    "stringnl": lambda s, at: _quoted(s.readline()),
    "stringnl_noescape": lambda s, at: _text(s.readline()),
    "stringnl_noescape_pair": _line_pair,
    "unicodestringnl": lambda s, at: s.readline().decode("raw_unicode_escape", errors="backslashreplace"),
}
COUNTED: dict[str, tuple[int, bool]] = {
    "string1": (1, False),
    "bytes1": (1, False),
    "unicodestring1": (1, False),
    "long1": (1, False),
    "string4": (4, True),
    "long4": (4, True),
    "bytes4": (4, False),
    "unicodestring4": (4, False),
    "bytes8": (8, False),
    "unicodestring8": (8, False),
    "bytearray8": (8, False),
}
FIXED_INTS: dict[str, tuple[int, bool]] = {
    "uint1": (1, False),
    "uint2": (2, False),
    "uint4": (4, False),
    "uint8": (8, False),
    "int4": (4, True),
}


def _reader_for(op: pickletools.OpcodeInfo) -> ArgReader | None:
    desc = op.arg
    if desc is None:
        return None
    if desc.name in FIXED_INTS:
        return _fixed_int(*FIXED_INTS[desc.name])
    if desc.name == "float8":
        return _skip_fixed(8)
    if desc.name in LINE_READERS:
        return LINE_READERS[desc.name]
    if desc.name in COUNTED:
        width, signed = COUNTED[desc.name]
        return _counted(width, signed, op.name in STRING_OPCODES, op.name)
    raise RuntimeError(f"pickletools argument kind {desc.name} of {op.name} is not handled")


# what the walker does per opcode byte: (name, kind, argument reader, stack spec)
K_GENERIC, K_STRING, K_PUT, K_MEMOIZE, K_GET, K_MARK, K_POP, K_DUP, K_FRAME = range(9)
K_PROTO, K_STOP, K_GLOBAL, K_INST, K_STACK_GLOBAL, K_EXT, K_PUSH = range(9, 16)
_KINDS = {
    "PUT": K_PUT,
    "BINPUT": K_PUT,
    "LONG_BINPUT": K_PUT,
    "MEMOIZE": K_MEMOIZE,
    "GET": K_GET,
    "BINGET": K_GET,
    "LONG_BINGET": K_GET,
    "MARK": K_MARK,
    "POP": K_POP,
    "DUP": K_DUP,
    "FRAME": K_FRAME,
    "PROTO": K_PROTO,
    "STOP": K_STOP,
    "GLOBAL": K_GLOBAL,
    "INST": K_INST,
    "STACK_GLOBAL": K_STACK_GLOBAL,
    "EXT1": K_EXT,
    "EXT2": K_EXT,
    "EXT4": K_EXT,
}


@dataclass(frozen=True)
class _OpSpec:
    name: str
    kind: int
    reader: ArgReader | None
    mark_at: int  # index of the MARK in stack_before, -1 when none
    pops: int  # items popped besides a mark and its slice
    pushes: int
    is_call: bool


def _spec(op: pickletools.OpcodeInfo) -> _OpSpec:
    before = [d.name for d in op.stack_before]
    mark_at = before.index("mark") if "mark" in before else -1
    kind = K_STRING if op.name in STRING_OPCODES else _KINDS.get(op.name, K_GENERIC)
    if kind == K_GENERIC and not before and len(op.stack_after) == 1:
        kind = K_PUSH  # constants and empty containers: the most common opcodes
    return _OpSpec(
        name=op.name,
        kind=kind,
        reader=_reader_for(op),
        mark_at=mark_at,
        pops=mark_at if mark_at >= 0 else len(before),
        pushes=len(op.stack_after),
        is_call=op.name in CALL_OPCODES,
    )


SPECS: dict[int, _OpSpec] = {ord(op.code): _spec(op) for op in pickletools.opcodes}


class _Walker:
    """Symbolic execution of the stack effects of one stream (possibly several pickles)."""

    def __init__(self, info: PickleInfo, ctx: ReadContext) -> None:
        self.info = info
        self.ctx = ctx
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.in_pickle = False

    def run(self, s: _Stream) -> None:
        count = 0
        deadline = self.ctx.deadline
        while True:
            if s.i >= len(s.buf):
                if s.pos >= s.size:
                    break
                s._refill(1)
            at = s.base + s.i
            if at >= s.end:
                raise WalkLimit(
                    f"pickle is larger than max_pickle_bytes={s.end}; walked {s.end} bytes", "limit"
                )
            code = s.buf[s.i]
            s.i += 1
            spec = SPECS.get(code)
            if spec is None:
                raise PickleError(f"unknown opcode 0x{code:02x}", at)
            arg = spec.reader(s, at) if spec.reader is not None else None
            self.step(spec, at, arg)
            count += 1
            if count % CHECK_EVERY == 0:
                if deadline and time.monotonic() > deadline:
                    raise WalkLimit(f"pickle walk stopped by the file timeout at byte {at}", "timeout")
                if len(self.stack) > MAX_SYMBOLS or len(self.memo) > MAX_SYMBOLS:
                    message = f"pickle keeps more than {MAX_SYMBOLS} objects on its stack or memo"
                    raise WalkLimit(message, "limit")
        if self.in_pickle:
            raise PickleError("truncated pickle: no STOP opcode", s.pos)
        if self.info.streams == 0:
            raise PickleError("no pickle in the data", s.pos)

    def pop(self, spec: _OpSpec, at: int) -> object:
        if not self.stack:
            raise PickleError(f"stack underflow in {spec.name}", at)
        return self.stack.pop()

    def pop_mark(self, spec: _OpSpec, at: int) -> None:
        stack = self.stack
        while stack:
            if stack.pop() is MARK:
                return
        raise PickleError(f"{spec.name} without a MARK", at)

    def add_global(self, module: str, name: str, spec: _OpSpec, at: int, resolved: bool = True) -> None:
        self.info.globals.append(PickleGlobal(module, name, spec.name, at, resolved))

    def step(self, spec: _OpSpec, at: int, arg: object) -> None:
        info = self.info
        info.opcodes += 1
        if not self.in_pickle:
            self.in_pickle = True
            self.stack.clear()
            self.memo.clear()
        if spec.is_call:
            info.calls += 1
        kind = spec.kind
        stack = self.stack
        if kind == K_PUSH:
            stack.append(UNKNOWN)
        elif kind == K_GENERIC:
            if spec.mark_at >= 0:
                self.pop_mark(spec, at)
                for _ in range(spec.pops):
                    self.pop(spec, at)
            else:
                for _ in range(spec.pops):
                    if self.pop(spec, at) is MARK:
                        raise PickleError(f"{spec.name} consumed a MARK", at)
            stack.extend([UNKNOWN] * spec.pushes)
        elif kind == K_STRING:
            stack.append(_Str(arg) if isinstance(arg, str) else UNKNOWN)
        elif kind in (K_PUT, K_MEMOIZE):
            if not stack or stack[-1] is MARK:
                raise PickleError(f"{spec.name} with an empty stack", at)
            key = arg if kind == K_PUT else len(self.memo)
            assert isinstance(key, int)
            self.memo[key] = stack[-1]
        elif kind == K_GET:
            assert isinstance(arg, int)
            if arg not in self.memo:
                raise PickleError(f"{spec.name} of memo key {arg} that was never stored", at)
            stack.append(self.memo[arg])
        elif kind == K_MARK:
            stack.append(MARK)
        elif kind == K_POP:
            if stack and stack[-1] is MARK:
                stack.pop()
            else:
                self.pop(spec, at)
        elif kind == K_DUP:
            top = self.pop(spec, at)
            stack += [top, top]
        elif kind == K_FRAME:
            pass
        elif kind == K_PROTO:
            assert isinstance(arg, int)
            if arg > HIGHEST_PROTOCOL:
                raise PickleError(f"unsupported pickle protocol {arg}", at)
            if info.protocol is None:
                info.protocol = arg
        elif kind == K_STOP:
            self.pop(spec, at)
            info.streams += 1
            self.in_pickle = False
        elif kind in (K_GLOBAL, K_INST):
            assert isinstance(arg, tuple)
            self.add_global(arg[0], arg[1], spec, at)
            if kind == K_INST:
                self.pop_mark(spec, at)
            stack.append(UNKNOWN)
        elif kind == K_STACK_GLOBAL:
            name_v = self.pop(spec, at)
            module_v = self.pop(spec, at)
            if isinstance(module_v, _Str) and isinstance(name_v, _Str):
                self.add_global(module_v.value, name_v.value, spec, at)
            else:
                self.add_global(_describe(module_v), _describe(name_v), spec, at, resolved=False)
            stack.append(UNKNOWN)
        elif kind == K_EXT:
            # the copyreg extension registry maps the code to an importable (module, name)
            self.add_global("copyreg.extension", str(arg), spec, at, resolved=False)
            stack.append(UNKNOWN)


def _describe(value: object) -> str:
    if isinstance(value, _Str):
        return value.value
    if value is MARK:
        return "<mark>"
    return "<computed>"


def walk_pickle(fh: BinaryIO, size: int, info: PickleInfo, ctx: ReadContext) -> None:
    """Walk ``size`` bytes of ``fh`` into ``info``. Raises PickleError or WalkLimit after recording."""
    _Walker(info, ctx).run(_Stream(fh, size, ctx.limits.max_pickle_bytes))


def read_pickle(blob: Blob, art: Artifact, ctx: ReadContext, role: str = "pickle") -> PickleInfo:
    """Record the imports and calls of a pickle blob; problems become ``art.problems``."""
    info = PickleInfo(location=blob.location, name=blob.name, role=role, size=blob.size)
    art.pickles.append(info)
    try:
        with blob.open() as fh:
            walk_pickle(fh, blob.size, info, ctx)
    except PickleError as exc:
        what = "pickle data" if role == "pickle" else "pickled object array"
        art.problem(blob.location, "corrupt", f"malformed {what}: {exc}")
    except WalkLimit as exc:
        art.problem(blob.location, "limit" if exc.kind == "limit" else "timeout", str(exc))
    except OSError as exc:
        art.problem(blob.location, "io", f"cannot read pickle: {exc.strerror or exc}")
    return info
