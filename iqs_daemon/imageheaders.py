"""Cheap facts from an image file's bytes, without decoding any pixels.

What the format is (magic bytes), how big the picture is (JPEG SOF, PNG IHDR, WebP, BMP,
TIFF IFD0), its EXIF orientation, the JPEG streams embedded in a RAW file, and whether an
ISO-BMFF file (HEIF, AVIF) ends before its boxes do. ``decoding`` uses these before it
lets any decoder near the data, for the decompression-bomb check among others.

Every parser takes ``bytes`` and returns None (or {}) for what it cannot read; none raises.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .discovery import RAW_EXTENSIONS

ORIENTATION_TAG = 0x0112
DNG_VERSION_TAG = 0xC612
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Baseline, extended and progressive: previews. Lossless (SOF3...) is CR2/DNG raw data.
_PREVIEW_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"miaf", b"MA1A", b"MA1B"})


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    components: int
    sof_marker: int
    orientation: int | None  # EXIF Orientation 1..8; None when the JPEG has none


def sniff(data: bytes, suffix: str) -> str:
    """The decoder for this content: jpeg, png, webp, tiff, bmp, raw, heif, avif or unknown.

    The content decides; ``suffix`` (lower case, with the dot) only tells a TIFF-structured
    RAW (.nef, .cr2, ...) from a plain TIFF, and lets unknown content try the RAW path.
    """
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\0") or head.startswith(b"FUJIFILMCCD-RAW"):
        return "raw"  # ORF, RW2, RAF
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        is_dng = DNG_VERSION_TAG in tiff_tags(data, 0, (DNG_VERSION_TAG,))
        return "raw" if suffix in RAW_EXTENSIONS or is_dng else "tiff"
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    if head.startswith(b"BM") and len(data) > 26:
        return "bmp"
    return "raw" if suffix in RAW_EXTENSIONS else "unknown"


def _sniff_isobmff(data: bytes) -> str:
    box_end = min(struct.unpack_from(">I", data, 0)[0], len(data), 4096)
    major = data[8:12]
    brands = {major} | {data[i : i + 4] for i in range(16, box_end - 3, 4)}
    if b"crx " in brands:
        return "raw"  # Canon CR3
    heif_specific = brands & (_HEIF_BRANDS - _GENERIC_BRANDS)
    if major in _AVIF_BRANDS or (brands & _AVIF_BRANDS and not heif_specific):
        return "avif"
    return "heif" if brands & _HEIF_BRANDS else "unknown"


def jpeg_segments(data: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(marker, offset, end) of each marker segment of the JPEG at ``data[start:]``, from
    the first after SOI up to and including the first SOS (its end is its header's).
    Stops early, yielding no more, at EOI, at bytes that are no marker and where ``data``
    ends before the segment does."""
    pos, end = start + 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            return
        seg_end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if seg_end < pos + 4 or seg_end > end:
            return
        yield marker, pos, seg_end
        if marker == JPEG_SOS:
            return
        pos = seg_end


JPEG_SOS = 0xDA


def parse_jpeg_header(data: bytes, start: int = 0) -> JpegHeader | None:
    """Size, components and EXIF orientation of the JPEG at ``data[start:]``, or None.

    Walks the marker segments up to the first SOF (APP1/Exif comes before it).
    """
    orientation = None
    for marker, pos, seg_end in jpeg_segments(data, start):
        seg = pos + 4
        if marker in _SOF_MARKERS:
            if seg_end - pos < 10:
                return None
            height, width = struct.unpack_from(">HH", data, seg + 1)
            return JpegHeader(width, height, data[seg + 5], marker, orientation)
        if marker == 0xE1 and orientation is None and data[seg : seg + 6] == b"Exif\0\0":
            orientation = exif_orientation(data[seg + 6 : seg_end])
    return None


def find_jpeg_streams(data: bytes) -> list[tuple[int, JpegHeader]]:
    """Offsets and headers of the baseline/progressive JPEGs embedded anywhere in ``data``."""
    found = []
    pos = data.find(b"\xff\xd8\xff")
    while pos != -1:
        header = parse_jpeg_header(data, pos)
        if (
            header is not None
            and header.sof_marker in _PREVIEW_SOF_MARKERS
            and header.components in (1, 3)
            and header.width > 0
            and header.height > 0
        ):
            found.append((pos, header))
        pos = data.find(b"\xff\xd8\xff", pos + 3)
    return found


def tiff_tags(data: bytes, base: int, wanted: tuple[int, ...]) -> dict[int, int]:
    """First value of each ``wanted`` tag in IFD0 of the TIFF structure at ``data[base:]``."""
    try:
        order = {b"II": "<", b"MM": ">"}[data[base : base + 2]]
        magic, ifd = struct.unpack_from(order + "HI", data, base + 2)
        if magic != 42:
            return {}
        (count,) = struct.unpack_from(order + "H", data, base + ifd)
        found: dict[int, int] = {}
        for i in range(min(count, 1000)):
            entry = base + ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(order + "HHI", data, entry)
            if tag in wanted and n >= 1:
                value_format = {3: "H", 4: "I"}.get(typ, "B")  # SHORT, LONG; else first byte
                found[tag] = struct.unpack_from(order + value_format, data, entry + 8)[0]
        return found
    except (KeyError, struct.error):
        return {}


def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation (1..8) in an EXIF TIFF block, or None if absent or out of range."""
    value = tiff_tags(tiff, 0, (ORIENTATION_TAG,)).get(ORIENTATION_TAG)
    return value if value is not None and 1 <= value <= 8 else None


def raw_orientation(data: bytes) -> int | None:
    """EXIF orientation of a TIFF-based RAW (IFD0) or of a CR3 (its CMT1 box)."""
    if data[:2] in (b"II", b"MM"):
        return exif_orientation(data)
    cmt1 = data.find(b"CMT1", 0, 65536)
    return exif_orientation(data[cmt1 + 4 : cmt1 + 65536]) if cmt1 != -1 else None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from a PNG, WebP, BMP or TIFF header, or None if it is unreadable."""
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)
        if kind == "bmp":
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)  # a negative height means top-down rows
        if kind == "webp":
            return _webp_size(data)
        if kind == "tiff":
            tags = tiff_tags(data, 0, (256, 257))
            return (tags[256], tags[257]) if 256 in tags and 257 in tags else None
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L":  # lossless: two 14-bit fields minus one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: key frame header
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


def isobmff_complete(data: bytes) -> bool:
    """False when the file ends inside one of its top-level boxes (a cut-off copy)."""
    pos = 0
    while pos + 8 <= len(data):
        size = struct.unpack_from(">I", data, pos)[0]
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        if size == 0:  # the last box runs to the end of the file
            return True
        if size < 8 or pos + size > len(data):
            return False
        pos += size
    return True


EXIF_IFD_TAG = 0x8769
DATETIME_ORIGINAL_TAG = 0x9003
SUBSEC_ORIGINAL_TAG = 0x9291


def _ifd_ascii(data: bytes, base: int, order: str, ifd: int, wanted: tuple[int, ...]
               ) -> dict[int, str | int]:
    """ASCII values (and LONG pointers) of ``wanted`` tags in the IFD at ``base + ifd``."""
    found: dict[int, str | int] = {}
    (count,) = struct.unpack_from(order + "H", data, base + ifd)
    for i in range(min(count, 1000)):
        entry = base + ifd + 2 + 12 * i
        tag, typ, n = struct.unpack_from(order + "HHI", data, entry)
        if tag not in wanted:
            continue
        if typ == 4:  # LONG: a pointer to a sub-IFD
            found[tag] = struct.unpack_from(order + "I", data, entry + 8)[0]
        elif typ == 2 and 0 < n <= 64:  # ASCII: inline up to 4 bytes, else at an offset
            start = entry + 8
            if n > 4:
                start = base + struct.unpack_from(order + "I", data, entry + 8)[0]
            raw = data[start : start + n]
            found[tag] = raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return found


def _tiff_starts(data: bytes) -> list[int]:
    """Where an EXIF TIFF structure may start: the file itself (TIFF-based RAW), after
    each ``Exif\0\0`` (JPEG APP1, HEIF's Exif item; the same bytes also name the item
    type in HEIF's item table, so every hit is tried), after a CR3's ``CMT2`` box tag."""
    starts = [0] if data[:4] in (b"II*\0", b"MM\0*") else []
    for marker, skip in ((b"Exif\0\0", 6), (b"CMT2", 4)):
        at = data.find(marker)
        while at != -1 and len(starts) < 16:
            starts.append(at + skip)
            at = data.find(marker, at + 1)
    return starts


def _capture_tags(data: bytes, base: int) -> dict[int, str | int]:
    order = {b"II": "<", b"MM": ">"}[data[base : base + 2]]
    magic, ifd0 = struct.unpack_from(order + "HI", data, base + 2)
    if magic != 42:
        return {}
    wanted = (EXIF_IFD_TAG, DATETIME_ORIGINAL_TAG, SUBSEC_ORIGINAL_TAG)
    tags = _ifd_ascii(data, base, order, ifd0, wanted)
    pointer = tags.get(EXIF_IFD_TAG)
    if DATETIME_ORIGINAL_TAG not in tags and isinstance(pointer, int):
        tags = _ifd_ascii(data, base, order, pointer, wanted)  # CR3's CMT2 is that IFD itself
    return tags


def exif_capture_time(data: bytes) -> tuple[str, str] | None:
    """EXIF ``DateTimeOriginal`` ("YYYY:MM:DD HH:MM:SS") and ``SubSecTimeOriginal`` ("" when
    absent) from the first EXIF block in ``data`` that has them, or None."""
    for base in _tiff_starts(data):
        try:
            tags = _capture_tags(data, base)
        except (KeyError, struct.error):
            continue
        when = tags.get(DATETIME_ORIGINAL_TAG)
        if isinstance(when, str) and when:
            subsec = tags.get(SUBSEC_ORIGINAL_TAG)
            return when, subsec if isinstance(subsec, str) else ""
    return None
