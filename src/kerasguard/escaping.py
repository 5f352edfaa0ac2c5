"""Text from outside (a model file, the sandboxed child, a path, an argument) made safe to print.

The one place that decides how such text is shown. Every character Python does not call printable is
escaped: the C0 and C1 controls (ESC starts a terminal escape sequence that can recolour, move the
cursor, rewrite earlier lines or set the window title; CR overwrites a line; ``\\x9b`` is a one-byte
CSI), the format characters (category Cf: bidirectional overrides and isolates U+202A-U+202E and
U+2066-U+2069 that reorder what a reviewer reads, zero-width characters such as U+200B), line and
paragraph separators, unassigned and private-use code points, and every space but ``' '``. It sits
in the lowest layer so the readers, rules and the sandbox use it too; :mod:`kerasguard.render.safe_text`
adds rich markup escaping for the CLI.
"""

from __future__ import annotations


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def printable(value: object, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """``str(value)`` with every non-printable character shown as an escape (``\\x1b``, ``\\u202e``).

    ``keep_newlines`` keeps line feeds (for multi-line messages this program wrote); tabs and carriage
    returns are always escaped. ``limit`` cuts the escaped text to that many characters, ending in
    ``...``, so an escape can never make a name longer than the caller allowed.
    """
    text = str(value)
    if not text.isprintable():
        text = "\n".join(_line(part) for part in text.split("\n")) if keep_newlines else _line(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


__all__ = ["printable"]
