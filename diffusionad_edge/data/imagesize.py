"""An image's width and height from its header, before anything is decoded.

A PNG of a few hundred kilobytes can decode to gigabytes (a 10000x10000 image of zeros compresses
about 1000:1): on an edge device a few such requests in flight exhaust the memory. ``dae serve``,
``dae predict`` and ``dae run`` therefore read the size from the header first and refuse an image
over the limit without decoding it (:func:`check_image_size`). OpenCV cannot read a header alone
and PIL is not a dependency, so the few formats OpenCV decodes are parsed here: PNG, JPEG, BMP,
TIFF (and BigTIFF), WebP, GIF, PNM/PAM/PFM, Sun raster, Radiance HDR, OpenEXR and JPEG 2000.
A file whose size cannot be read this way is refused where a limit applies: an unchecked decode
is exactly what the limit is there to prevent.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from typing import BinaryIO

from ..errors import DataError

#: the default limit is this many times the model's input area ...
DEFAULT_INPUT_MULTIPLE = 256
#: ... and at least this many pixels (4096 x 4096, 16.8 megapixels: a 4K frame or a 12 MP camera fits)
DEFAULT_MIN_PIXELS = 4096 * 4096


class ImageTooLarge(DataError):
    """An image whose header announces more pixels than the limit (never decoded)."""


def default_max_pixels(input_hw: tuple[int, int]) -> int:
    """The default limit for a model with input ``(h, w)``: a generous multiple of its input area."""
    return max(DEFAULT_INPUT_MULTIPLE * int(input_hw[0]) * int(input_hw[1]), DEFAULT_MIN_PIXELS)


def max_pixels_from_mp(megapixels: float | None, input_hw: tuple[int, int]) -> int:
    """``--max-image-mp`` (None: the default for ``input_hw``) as a pixel count."""
    return default_max_pixels(input_hw) if megapixels is None else int(megapixels * 1_000_000)


def _u16(b: bytes, off: int, order: str = ">") -> int:
    return struct.unpack_from(order + "H", b, off)[0]


def _u32(b: bytes, off: int, order: str = ">") -> int:
    return struct.unpack_from(order + "I", b, off)[0]


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _png(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if len(head) >= 24 and head[12:16] == b"IHDR":
        return _u32(head, 16), _u32(head, 20)
    return None


def _jpeg(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    # Walk the marker segments (APPn/EXIF blocks can come first) up to a start-of-frame marker.
    sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    pos = 2
    for _ in range(10_000):
        f.seek(pos)
        b = f.read(1)
        while b == b"\xff":  # fill bytes
            b = f.read(1)
            pos += 1
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, *range(0xD0, 0xD9)):  # no length
            pos += 1
            continue
        seg = f.read(7)
        if len(seg) < 2:
            return None
        length = _u16(seg, 0)
        if marker in sof and len(seg) >= 7:
            return _u16(seg, 5), _u16(seg, 3)
        if marker == 0xDA:  # start of scan before any frame header: corrupt
            return None
        pos += 1 + length
    return None


def _bmp(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if len(head) < 26:
        return None
    dib = _u32(head, 14, "<")
    if dib == 12:
        return _u16(head, 18, "<"), _u16(head, 20, "<")
    w, h = struct.unpack_from("<ii", head, 18)
    return abs(w), abs(h)


def _tiff(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    big = _u16(head, 2, order) == 43
    if big:
        offset = struct.unpack_from(order + "Q", head, 8)[0]
        count_fmt, entry_size, count_size = "Q", 20, 8
    else:
        offset = _u32(head, 4, order)
        count_fmt, entry_size, count_size = "H", 12, 2
    raw = _read_at(f, offset, count_size)
    if len(raw) < count_size:
        return None
    count = struct.unpack(order + count_fmt, raw)[0]
    entries = _read_at(f, offset + count_size, min(count, 4096) * entry_size)
    size: dict[int, int] = {}
    for i in range(len(entries) // entry_size):
        e = entries[i * entry_size:(i + 1) * entry_size]
        tag, typ = struct.unpack_from(order + "HH", e, 0)
        if tag not in (256, 257):
            continue
        value_off = 12 if big else 8
        if typ == 3:  # SHORT
            size[tag] = _u16(e, value_off, order)
        elif typ == 4:  # LONG
            size[tag] = _u32(e, value_off, order)
        elif typ == 16 and big:  # LONG8
            size[tag] = struct.unpack_from(order + "Q", e, value_off)[0]
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def _webp(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        return _u16(head, 26, "<") & 0x3FFF, _u16(head, 28, "<") & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = _u32(head, 21, "<")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _gif(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    return (_u16(head, 6, "<"), _u16(head, 8, "<")) if len(head) >= 10 else None


def _pnm(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    text = head.decode("latin-1")
    if text.startswith("P7"):  # PAM: WIDTH / HEIGHT lines
        w = re.search(r"^WIDTH\s+(\d+)", text, re.M)
        h = re.search(r"^HEIGHT\s+(\d+)", text, re.M)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    tokens = re.sub(r"#[^\n]*", " ", text[2:]).split()
    if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit():
        return int(tokens[0]), int(tokens[1])
    return None


def _sun(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    return (_u32(head, 4), _u32(head, 8)) if len(head) >= 12 else None


def _hdr(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    m = re.search(rb"\n\s*([-+])([YX])\s+(\d+)\s+([-+])([YX])\s+(\d+)", head)
    if not m:
        return None
    first, second = int(m.group(3)), int(m.group(6))
    return (second, first) if m.group(2) == b"Y" else (first, second)


def _exr(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    pos = 8
    while pos < len(head):
        end = head.find(b"\0", pos)
        if end <= pos:  # an empty name ends the header
            return None
        name = head[pos:end]
        tend = head.find(b"\0", end + 1)
        if tend < 0 or tend + 5 > len(head):
            return None
        size = _u32(head, tend + 1, "<")
        value = tend + 5
        if name == b"dataWindow" and size == 16 and value + 16 <= len(head):
            x0, y0, x1, y1 = struct.unpack_from("<iiii", head, value)
            return x1 - x0 + 1, y1 - y0 + 1
        pos = value + size
    return None


def _j2k(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    at = head.find(b"\xff\x51")  # SIZ marker of the codestream
    if at < 0 or at + 22 > len(head):
        return None
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", head, at + 6)
    return xsiz - xo, ysiz - yo


def _jp2(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    at = head.find(b"ihdr")  # image header box inside the jp2h box
    if at < 0 or at + 12 > len(head):
        return None
    h, w = struct.unpack_from(">II", head, at + 4)
    return w, h


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8", _jpeg),
    (b"BM", _bmp),
    (b"II*\x00", _tiff), (b"MM\x00*", _tiff), (b"II+\x00", _tiff), (b"MM\x00+", _tiff),
    (b"GIF87a", _gif), (b"GIF89a", _gif),
    (b"\x59\xa6\x6a\x95", _sun),
    (b"#?RADIANCE", _hdr), (b"#?RGBE", _hdr),
    (b"\x76\x2f\x31\x01", _exr),
    (b"\xff\x4f\xff\x51", _j2k),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2),
)


def image_size(source: bytes | BinaryIO | str | Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header of an image (bytes, a binary file object, or a path), or
    None when the format is not one of those listed in the module docstring or the header is cut
    short. Nothing is decoded: at most a few kilobytes are read (TIFF: its first directory)."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return image_size(f)
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    head = _read_at(f, 0, 65536)
    try:
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(head, f)
        if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"1234567fF":
            return _pnm(head, f)
        for signature, parse in _SIGNATURES:
            if head.startswith(signature):
                return parse(head, f)
    except (struct.error, ValueError, OSError):
        return None
    return None


def check_image_size(source: bytes | BinaryIO | str | Path, max_pixels: int, name: str,
                     option: str = "--max-image-mp") -> tuple[int, int]:
    """The header's ``(width, height)``; :class:`ImageTooLarge` when it has more than ``max_pixels``
    pixels, :class:`~diffusionad_edge.errors.DataError` when the size cannot be read before decoding.
    ``name`` (a path, or a description of a request body) is named in the message."""
    try:
        size = image_size(source)
    except OSError as exc:
        raise DataError(f"cannot read image: {name} ({exc.strerror or exc})") from None
    if size is None:
        raise DataError(f"cannot read image: {name} (not a supported image format, or its header is corrupt; "
                        "the size must be readable before decoding)")
    w, h = size
    if w * h > max_pixels:
        raise ImageTooLarge(f"image {name} is {w}x{h} pixels ({w * h / 1e6:.1f} MP), over the limit of "
                            f"{max_pixels / 1e6:.1f} MP ({option}); not decoded")
    return size
