"""Decompression bombs for the image-size tests: tiny files announcing huge images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, width: int = 10_000, height: int = 10_000) -> Path:
    """An all-zero 8-bit RGB PNG of ``width`` x ``height`` written row by row with zlib: 300 MB when
    decoded (1.2 GB as the float copy a pipeline makes), about 300 KB on disk."""
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter byte + pixels
    parts = [comp.compress(row * 100) for _ in range(height // 100)]
    parts += [comp.compress(row * (height % 100)), comp.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))
    return path
