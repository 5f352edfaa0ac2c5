"""Zip archives: the central directory and local headers (layout), bounded decompression (inflate), and the
reader that routes each member (archive)."""
