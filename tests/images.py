"""Generated test images: real encoders (OpenCV, Pillow) plus a few hand-built headers."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

# Upright reference: four coloured quadrants on a landscape (2:1) canvas.
QUADRANT_COLOURS = {
    "top_left": (255, 0, 0),
    "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 255, 255),
}


def quadrants(width: int = 128, height: int = 64) -> np.ndarray:
    """An RGB image whose four quadrants have the QUADRANT_COLOURS."""
    rgb = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    rgb[:h, :w] = QUADRANT_COLOURS["top_left"]
    rgb[:h, w:] = QUADRANT_COLOURS["top_right"]
    rgb[h:, :w] = QUADRANT_COLOURS["bottom_left"]
    rgb[h:, w:] = QUADRANT_COLOURS["bottom_right"]
    return rgb


def noise_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB content (compresses like a photo, unlike white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def encode(rgb: np.ndarray, ext: str, *params: int) -> bytes:
    """Encode an RGB (or grey, or RGBA) array with OpenCV."""
    image = rgb
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        image = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return buffer.tobytes()


def exif_app1(orientation: int, byte_order: str = "II") -> bytes:
    """A hand-built APP1 segment holding a TIFF IFD0 with one tag: Orientation."""
    order = "<" if byte_order == "II" else ">"
    tiff = byte_order.encode() + struct.pack(order + "HI", 42, 8)
    tiff += struct.pack(order + "H", 1)  # one entry
    tiff += struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(order + "I", 0)  # no next IFD
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_orientation(rgb: np.ndarray, orientation: int, byte_order: str = "II") -> bytes:
    """A JPEG of ``rgb`` as stored pixels, tagged with EXIF ``orientation``."""
    jpeg = encode(rgb, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    return jpeg[:2] + exif_app1(orientation, byte_order) + jpeg[2:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR declares width x height (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )  # fmt: skip


def jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG header whose SOF0 declares width x height, with no image data after it."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"
