"""Helpers for the kerasguard data tests: the CLI runner and a PNG header (digits: support/digitsets.py)."""

from __future__ import annotations

import struct
import zlib

from typer.testing import CliRunner

from kerasguard.cli import app


def run_cli(*args: str, code: int | None = None) -> tuple[int, str]:
    """Run ``kerasguard ...``; never a traceback; optionally assert the exit code."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    if code is not None:
        assert result.exit_code == code, out
    return result.exit_code, out


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (grey, 8 bit) with a few bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + pixels + chunk(b"IEND", b"")
