"""Protobuf text format (``saved_model.pbtxt``) parsed into the same message view as the wire reader.

Only the grammar: fields, scalars, quoted strings with C escapes, nested ``{}``/``<>`` messages and
``[...]`` lists. No schema: the walk that reads it asks for fields by name. Nesting is bounded and the
parser is iterative, so hostile nesting cannot exhaust the Python stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kerasguard.formats.savedmodel.protowire import Msg, WireError

MAX_DEPTH = 100

_TOKEN = re.compile(
    rb"""
    (?P<space>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}<>\[\]:,;])
  | (?P<word>[A-Za-z0-9_.+\-]+)
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.DOTALL)
_SIMPLE = {
    b"n": b"\n",
    b"t": b"\t",
    b"r": b"\r",
    b"a": b"\a",
    b"b": b"\b",
    b"f": b"\f",
    b"v": b"\v",
    b"\\": b"\\",
    b"'": b"'",
    b'"': b'"',
    b"?": b"?",
}


class TextFormatError(WireError):
    """The text is not valid protobuf text format."""


def _unescape(body: bytes) -> bytes:
    def one(m: re.Match[bytes]) -> bytes:
        esc = m.group(1)
        head = esc[:1]
        if head == b"x":
            return bytes([int(esc[1:], 16)])
        if head in b"01234567":
            return bytes([int(esc, 8) & 0xFF])
        if head in (b"u", b"U"):
            try:
                return chr(int(esc[1:], 16)).encode("utf-8", errors="surrogatepass")
            except (ValueError, OverflowError):
                raise TextFormatError(f"bad unicode escape \\{esc.decode('ascii', 'replace')}") from None
        if head in _SIMPLE:
            return _SIMPLE[head]
        raise TextFormatError(f"unknown escape \\{esc.decode('latin-1')}")

    return _ESCAPE.sub(one, body)


def _tokens(text: bytes) -> Iterator[tuple[str, bytes, int]]:
    pos = 0
    end = len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TextFormatError(f"unexpected character {text[pos : pos + 1]!r} at byte {pos}")
        kind = m.lastgroup or ""
        if kind != "space":
            yield kind, m.group(), pos
        pos = m.end()


class TextMsg:
    """A text-format message: field name -> values (bytes scalars or nested messages)."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[str, list[bytes | TextMsg]] = {}

    def add(self, name: str, value: bytes | TextMsg) -> None:
        self.fields.setdefault(name, []).append(value)

    def messages(self, number: int, name: str) -> Iterator[Msg]:
        for value in self.fields.get(name, ()):
            if not isinstance(value, TextMsg):
                raise TextFormatError(f"field {name} is a scalar, expected a message")
            yield value

    def strings(self, number: int, name: str) -> list[bytes]:
        out: list[bytes] = []
        for value in self.fields.get(name, ()):
            if isinstance(value, TextMsg):
                raise TextFormatError(f"field {name} is a message, expected a string")
            out.append(value)
        return out

    def ints(self, number: int, name: str) -> list[int]:
        out: list[int] = []
        for value in self.strings(number, name):
            try:
                out.append(int(value, 0))
            except ValueError:
                raise TextFormatError(f"field {name} is not an integer") from None
        return out


class _Parser:
    """Iterative recursive-descent over tokens with one token of lookahead."""

    def __init__(self, text: bytes) -> None:
        self._it = _tokens(text)
        self._peek: tuple[str, bytes, int] | None = None

    def peek(self) -> tuple[str, bytes, int] | None:
        if self._peek is None:
            self._peek = next(self._it, None)
        return self._peek

    def take(self) -> tuple[str, bytes, int]:
        tok = self.peek()
        if tok is None:
            raise TextFormatError("unexpected end of text")
        self._peek = None
        return tok

    def field_name(self) -> str:
        kind, value, pos = self.take()
        if kind == "word":
            return value.decode("ascii")
        if value == b"[":  # extension or Any type URL: [pkg.ext] / [type.googleapis.com/pkg.T]
            parts: list[bytes] = []
            while True:
                kind, value, pos = self.take()
                if value == b"]":
                    return "[" + b"".join(parts).decode("ascii", "replace") + "]"
                parts.append(value)
        raise TextFormatError(f"expected a field name at byte {pos}, got {value[:20]!r}")

    def scalar(self) -> bytes:
        kind, value, pos = self.take()
        if kind == "string":
            out = _unescape(value[1:-1])
            while (nxt := self.peek()) is not None and nxt[0] == "string":
                out += _unescape(self.take()[1][1:-1])
            return out
        if kind == "word":
            return value
        raise TextFormatError(f"expected a value at byte {pos}, got {value[:20]!r}")

    def parse(self) -> TextMsg:
        root = TextMsg()
        stack: list[tuple[TextMsg, bytes]] = [(root, b"")]  # (message, closing token)
        while True:
            tok = self.peek()
            current, closer = stack[-1]
            if tok is None:
                if len(stack) > 1:
                    raise TextFormatError("unexpected end of text inside a message")
                return root
            if tok[1] in (b"}", b">"):
                self.take()
                if tok[1] != closer:
                    raise TextFormatError(f"unbalanced {tok[1].decode()} at byte {tok[2]}")
                stack.pop()
                self.separator()
                continue
            name = self.field_name()
            nxt = self.peek()
            if nxt is not None and nxt[1] == b":":
                self.take()
                nxt = self.peek()
            if nxt is None:
                raise TextFormatError(f"field {name} has no value")
            if nxt[1] in (b"{", b"<"):
                self.take()
                child = TextMsg()
                current.add(name, child)
                if len(stack) >= MAX_DEPTH:
                    raise TextFormatError(f"nesting deeper than {MAX_DEPTH}")
                stack.append((child, b"}" if nxt[1] == b"{" else b">"))
                continue
            if nxt[1] == b"[":
                self.take()
                self.list_values(current, name)
            else:
                current.add(name, self.scalar())
            self.separator()

    def list_values(self, current: TextMsg, name: str) -> None:
        """``[a, b]`` of scalars; lists of messages are flattened one level (rare in TF files)."""
        first = True
        while True:
            tok = self.peek()
            if tok is None:
                raise TextFormatError("unterminated list")
            if tok[1] == b"]":
                self.take()
                return
            if not first:
                if tok[1] != b",":
                    raise TextFormatError(f"expected ',' in list at byte {tok[2]}")
                self.take()
            first = False
            tok = self.peek()
            if tok is not None and tok[1] in (b"{", b"<"):
                raise TextFormatError("lists of messages are not supported")
            current.add(name, self.scalar())

    def separator(self) -> None:
        tok = self.peek()
        if tok is not None and tok[1] in (b",", b";"):
            self.take()


def parse_text(data: bytes) -> TextMsg:
    """Parse protobuf text format; raises TextFormatError (a WireError) on bad input."""
    return _Parser(data).parse()
