"""Text that came from a model file, a child process, a policy path or a user argument, made safe to print.

Two things can go wrong when such text reaches a terminal: control characters (ESC starts a terminal
escape sequence that can recolour, move the cursor, rewrite earlier lines or set the window title; CR
overwrites a line; C1 ``\\x9b`` is a one-byte CSI) and rich markup (``[/]`` or ``[link=...]`` in a layer
name is read as a tag, or crashes rich with ``MarkupError``). Every CLI command and text renderer sends
outside text through :func:`printable` (plain printing) or :func:`markup_safe` (inside rich markup).
"""

from __future__ import annotations

from rich.markup import escape as _escape_markup


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


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every non-printable character (ESC, CR, C1, bidi controls...) shown as ``\\x1b``.

    ``keep_newlines`` keeps line feeds (for multi-line messages this program wrote); tabs and carriage
    returns are always escaped.
    """
    text = str(value)
    if text.isprintable():
        return text
    if keep_newlines:
        return "\n".join(_line(part) for part in text.split("\n"))
    return _line(text)


def markup_safe(value: object, *, keep_newlines: bool = False) -> str:
    """:func:`printable`, then escaped so rich markup shows it literally (``[/]`` stays ``[/]``)."""
    return _escape_markup(printable(value, keep_newlines=keep_newlines))


__all__ = ["markup_safe", "printable"]
