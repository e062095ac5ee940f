"""Decode one photo into 8-bit RGB pixels, as small as the model allows: ``Decoded``.

    decode(path, min_short_side=512, max_pixels=250_000_000) -> Decoded

The file is read once into memory; that buffer serves the header parse, the decode and
nothing else. The format is taken from the content (magic bytes), not the extension, so a
PNG named ``.jpg`` or a JPEG named ``.nef`` decodes as what it is; the extension only says
whether a TIFF-structured file is a RAW (``.nef``, ``.dng``, ...).

- JPEG: libjpeg's DCT scaling (``IMREAD_REDUCED_COLOR_2/4/8``) with the largest factor that
  keeps the short side >= ``min_short_side``. Size and EXIF orientation come from our own
  header parse (``imageheaders``); OpenCV is told to ignore orientation, we apply it once.
- PNG, WebP, TIFF, BMP: full decode through OpenCV (they have no cheap reduced decode).
  16-bit is scaled (v / 257, rounded), grey becomes RGB, alpha is composited on white.
  OpenCV's libtiff applies TIFF orientation itself; PNG/WebP EXIF orientation is applied here.
- RAW: never demosaiced. The embedded preview JPEG (LibRaw's thumbnail, else the largest
  JPEG stream found in the bytes) is decoded like a JPEG, and turned by the RAW's own
  orientation when the preview carries none. Previews under 320 px are refused.
- HEIC/HEIF/HIF through pillow-heif (libheif applies irot/imir). 10/12-bit is scaled to 8
  bits; PQ (HDR10) is converted to SDR with the PQ curve, diffuse white at 203 cd/m2 and
  highlights clipped, leaving BT.2020 colours unconverted (slightly dull; documented, cheap).
  A stored thumbnail is used instead when it alone meets ``min_short_side``.
- AVIF through Pillow's AVIF plugin (pillow-heif's libheif here has no AV1 decoder).

Before any decoder sees the bytes, the size from the header is checked against
``max_pixels`` (decompression bombs). OpenCV keeps its own ceiling (2**30 pixels,
``OPENCV_IO_MAX_IMAGE_PIXELS``, read once by OpenCV): ours runs first, so it only matters
if ``max_pixels`` is set above it, and then its error is reported as ``ImageTooLarge`` too.

Failures are ``InputError``s with a one-line reason: ``UnsupportedFormat`` (not an image,
no usable RAW preview, a codec we lack), ``DecodeError`` (empty, truncated, corrupt),
``ImageTooLarge``; a file that cannot be read at all (permission denied) is a plain
``InputError``. ``rgb`` is returned read-only: ``Decoded`` is an immutable record. Nothing
here keeps state between calls, so ``decode`` may run in several threads at once.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .discovery import describe_os_error
from .errors import DecodeError, ImageTooLarge, InputError, UnreadableFile, UnsupportedFormat
from .imageheaders import (
    JPEG_SOS,
    JpegHeader,
    exif_orientation,
    find_jpeg_streams,
    header_size,
    isobmff_complete,
    jpeg_segments,
    parse_jpeg_header,
    raw_orientation,
    sniff,
)
from .records import Decoded

MIN_PREVIEW_SHORT_SIDE = 320  # smaller RAW previews are placeholders or index thumbnails
_REDUCED_FLAGS = {1: 0, 2: 16, 4: 32, 8: 64}  # IMREAD_REDUCED_*_2/4/8 less the colour bits
_JPEG_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}
_LIBRARY_ERRORS = (ValueError, EOFError, SyntaxError, RuntimeError, OSError)

Pixels = tuple[np.ndarray, tuple[int, int], str]  # rgb, original (width, height), source


def decode(path: Path, *, min_short_side: int, max_pixels: int) -> Decoded:
    """Decode ``path`` to upright 8-bit RGB, keeping a short side of ``min_short_side``
    where the photo has it (never upscaled). Bad input raises an ``InputError`` subclass.
    """
    path = Path(path)
    data = _read(path)
    kind = sniff(data, path.suffix.lower())
    if kind == "jpeg":
        rgb, size, source = _decode_jpeg(path, data, min_short_side, max_pixels)
        rgb.setflags(write=False)
        coded = jpeg_fingerprint(data, rgb.shape)
        return Decoded(path, rgb, size, coded or fingerprint(rgb), source)
    if kind == "raw":
        rgb, size, source = _decode_raw(path, data, min_short_side, max_pixels)
    elif kind == "heif":
        rgb, size, source = _decode_heif(path, data, min_short_side, max_pixels)
    elif kind == "avif":
        rgb, size, source = _decode_avif(path, data, max_pixels)
    elif kind == "unknown":
        suffix = path.suffix or "(no extension)"
        raise UnsupportedFormat(path, f"not an image (content does not match {suffix})")
    else:
        rgb, size, source = _decode_full(path, data, kind, max_pixels)
    rgb.setflags(write=False)
    return Decoded(path, rgb, size, fingerprint(rgb), source)


#: The fingerprint's format. ``p2:`` is sha256 (first 128 bits) of the shape and pixels;
#: with SHA-NI it hashes an 18 MB decode in half the time of blake2b, the first format.
FINGERPRINT_PREFIX = "p2:"
_LEGACY_FINGERPRINT = re.compile(r"[0-9a-f]{32}")  # blake2b-128 hex, no prefix (before p2)


def fingerprint(rgb: np.ndarray) -> str:
    """A digest of the pixels (shape and bytes): survives metadata-only edits, changes with
    any pixel. Versioned (``FINGERPRINT_PREFIX``); compare with ``same_pixels``."""
    digest = hashlib.sha256(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return FINGERPRINT_PREFIX + digest.hexdigest()[:32]


#: A JPEG's fingerprint: sha256 (first 128 bits) of what its decoded pixels follow from,
#: not of the pixels, which costs a third (7.5 MB hashed instead of 18 MB): the shape of
#: the decode (orientation applied), the EXIF orientation, every marker segment before the
#: scan but the APPn and COM segments metadata editors write (the Adobe APP14 segment, which
#: says how the colours are coded, is kept), then the scan data to the end of the file.
JPEG_FINGERPRINT_PREFIX = "p3:"
FINGERPRINT_PREFIXES = (FINGERPRINT_PREFIX, JPEG_FINGERPRINT_PREFIX)
_APP14 = 0xEE


def jpeg_fingerprint(data: bytes, shape: tuple[int, ...]) -> str | None:
    """``JPEG_FINGERPRINT_PREFIX`` and its digest of the JPEG ``data`` decoded to ``shape``;
    None where its markers do not lead to a scan (the pixels are hashed instead)."""
    digest = hashlib.sha256(repr(tuple(shape)).encode())
    view, orientation = memoryview(data), None
    for marker, pos, seg_end in jpeg_segments(data):
        if marker == JPEG_SOS:
            digest.update(f"orientation {orientation or 1}".encode())
            digest.update(view[pos:])
            return JPEG_FINGERPRINT_PREFIX + digest.hexdigest()[:32]
        if marker == 0xE1 and orientation is None and data[pos + 4:pos + 10] == b"Exif\0\0":
            orientation = exif_orientation(data[pos + 10:seg_end])
        if not (0xE0 <= marker <= 0xEF and marker != _APP14) and marker != 0xFE:
            digest.update(view[pos:seg_end])
    return None


def legacy_fingerprint(rgb: np.ndarray) -> str:
    """The first format (blake2b-128 of the shape and pixels, no prefix), which photos
    scored by earlier versions carry and states keep."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def same_pixels(stored: str, decoded: Decoded) -> bool:
    """Whether ``stored`` (a fingerprint in a state row or an XMP record) is that of
    ``decoded``'s pixels, whichever format wrote it: the one ``decoded`` has is compared as
    is; a pixel fingerprint (``p2:``) of a JPEG that now has a ``p3:`` one, or one of the
    first format, is recomputed from the pixels (only then: it costs a hash of them).
    Anything else (unknown, empty) is not a match, so the photo is scored again."""
    if stored[:3] == decoded.fingerprint[:3] and stored.startswith(FINGERPRINT_PREFIXES):
        return stored == decoded.fingerprint
    if stored.startswith(FINGERPRINT_PREFIX):
        return stored == fingerprint(decoded.rgb)
    if _LEGACY_FINGERPRINT.fullmatch(stored):
        return stored == legacy_fingerprint(decoded.rgb)
    return False


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(path, describe_os_error(exc)) from exc
    if not data:
        raise DecodeError(path, "empty file")
    return data


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            path,
            f"{width}x{height} pixels is over the {max_pixels / 1e6:g} MP limit"
            " (decoding.max_pixels)",
        )


def _library_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- JPEG (and RAW previews) ---------------------------------------------------------


def reduction_factor(short_side: int, min_short_side: int) -> int:
    """Largest DCT scale 1/8, 1/4, 1/2 (else 1) keeping the short side >= min_short_side."""
    for factor in (8, 4, 2):
        if math.ceil(short_side / factor) >= min_short_side:
            return factor
    return 1


def _decode_jpeg(path: Path, data: bytes, min_short_side: int, max_pixels: int) -> Pixels:
    header = parse_jpeg_header(data)
    if header is None or header.width == 0 or header.height == 0:
        raise DecodeError(path, "truncated or corrupt JPEG")
    _check_pixels(path, header.width, header.height, max_pixels)
    rgb, factor = _decode_jpeg_stream(path, data, 0, header, min_short_side)
    orientation = header.orientation or 1
    size = _oriented_size(header.width, header.height, orientation)
    return apply_orientation(rgb, orientation), size, "jpeg" if factor == 1 else f"jpeg 1/{factor}"


def _decode_jpeg_stream(
    path: Path, data: bytes, offset: int, header: JpegHeader, min_short_side: int
) -> tuple[np.ndarray, int]:
    """Decode the JPEG at ``data[offset:]`` (no copy) as small as allowed; stored orientation."""
    factor = reduction_factor(min(header.width, header.height), min_short_side)
    try:
        rgb = cv2.imdecode(
            np.frombuffer(data, np.uint8, offset=offset), _JPEG_FLAGS | _REDUCED_FLAGS[factor]
        )
    except cv2.error as exc:
        raise _translate_cv2_error(path, exc, "JPEG") from exc
    if rgb is None:
        raise DecodeError(path, "truncated or corrupt JPEG")
    return rgb, factor


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` (1..8) upright."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(image), -1)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)


def _translate_cv2_error(path: Path, exc: cv2.error, what: str) -> InputError:
    if "MAX_IMAGE" in str(exc) or "validateInputImageSize" in str(exc):
        return ImageTooLarge(path, "over OpenCV's size limit (OPENCV_IO_MAX_IMAGE_PIXELS)")
    return DecodeError(path, f"truncated or corrupt {what}")


# --- PNG, WebP, TIFF, BMP ------------------------------------------------------------


def _decode_full(path: Path, data: bytes, kind: str, max_pixels: int) -> Pixels:
    name = kind.upper()
    size = header_size(data, kind)
    if size is None:
        raise DecodeError(path, f"truncated or corrupt {name}")
    _check_pixels(path, *size, max_pixels)
    if kind == "png":
        data = drop_large_png_text(data)
    try:
        # UNCHANGED keeps 16-bit and alpha; it also skips EXIF orientation, applied below.
        image, types, blobs = cv2.imdecodeWithMetadata(
            np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED
        )
    except cv2.error as exc:
        raise _translate_cv2_error(path, exc, name) from exc
    if image is None or image.size == 0:
        raise DecodeError(path, f"truncated or corrupt {name}")
    rgb = to_rgb8(path, image)
    if kind in ("png", "webp"):  # libtiff turns TIFFs itself; BMP has no EXIF
        rgb = apply_orientation(rgb, _metadata_orientation(types, blobs))
    return rgb, (rgb.shape[1], rgb.shape[0]), kind


PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_PNG_TEXT_BYTES = 1 << 20


def drop_large_png_text(data: bytes) -> bytes:
    """The PNG without text chunks over 1 MiB (an XMP packet of tens of MB): OpenCV refuses
    such chunks as "too large", and the pixels do not depend on them."""
    chunks, pos, dropped = [data[:8]], 8, False
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4:pos + 8] in PNG_TEXT_CHUNKS and length > MAX_PNG_TEXT_BYTES:
            dropped = True
        else:
            chunks.append(data[pos:end])
        pos = end
    return b"".join(chunks) + data[pos:] if dropped else data


def _metadata_orientation(types: object, blobs: object) -> int:
    for typ, blob in zip(np.ravel(types), blobs, strict=False):  # type: ignore[call-overload]
        if int(typ) == cv2.IMAGE_METADATA_EXIF:
            exif = np.asarray(blob).tobytes()
            return exif_orientation(exif[6:] if exif.startswith(b"Exif\0\0") else exif) or 1
    return 1


def to_rgb8(path: Path, image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) or grey image, 8/16-bit or float, as 8-bit RGB with alpha on white."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1 / 257)  # rounds: 65535 -> 255
    elif image.dtype in (np.float32, np.float64):
        image = cv2.convertScaleAbs(np.clip(image, 0.0, 1.0), alpha=255)
    elif image.dtype != np.uint8:
        raise UnsupportedFormat(path, f"{image.dtype} samples are not supported")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return composite_on_white(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    raise UnsupportedFormat(path, f"{channels}-channel images are not supported")


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """8-bit RGBA over a white background: 255 - (255 - c) * a / 255, in integers."""
    rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    alpha = cv2.cvtColor(cv2.extractChannel(rgba, 3), cv2.COLOR_GRAY2RGB)
    return cv2.bitwise_not(cv2.multiply(cv2.bitwise_not(rgb), alpha, scale=1 / 255))


# --- RAW -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Preview:
    width: int
    height: int
    data: bytes = b""  # the JPEG is at data[offset:] ...
    offset: int = 0
    header: JpegHeader | None = None
    bitmap: np.ndarray | None = None  # ... or LibRaw gave decoded RGB


def _decode_raw(path: Path, data: bytes, min_short_side: int, max_pixels: int) -> Pixels:
    sensor_size, orientation, previews = _libraw_previews(data)
    orientation = orientation or raw_orientation(data)
    if not any(min(p.width, p.height) >= min_short_side for p in previews):
        previews += [_Preview(h.width, h.height, data, o, h) for o, h in find_jpeg_streams(data)]
    previews.sort(key=lambda p: p.width * p.height, reverse=True)
    for preview in previews:
        if min(preview.width, preview.height) < MIN_PREVIEW_SHORT_SIDE:
            break
        _check_pixels(path, preview.width, preview.height, max_pixels)
        try:
            rgb, factor = _preview_pixels(path, preview, min_short_side)
        except DecodeError:
            continue  # a false match in the scan or a damaged preview: try the next one
        # Previews are stored the way the sensor saw the scene; few carry their own tag.
        turn = (preview.header and preview.header.orientation) or orientation or 1
        size = _oriented_size(*(sensor_size or (preview.width, preview.height)), turn)
        source = f"raw preview {preview.width}x{preview.height}"
        return apply_orientation(rgb, turn), size, source + (f" 1/{factor}" if factor > 1 else "")
    detail = "no embedded preview found"
    if previews:
        detail = f"largest embedded preview is {previews[0].width}x{previews[0].height}"
    raise UnsupportedFormat(path, f"RAW has no usable preview ({detail})")


def _libraw_previews(data: bytes) -> tuple[tuple[int, int] | None, int | None, list[_Preview]]:
    """LibRaw's view: sensor (width, height), orientation and its thumbnail, where it has them."""
    import rawpy  # imported here: only RAW files need LibRaw

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:  # BytesIO.read() returns `data`: no copy
            size = (raw.sizes.width, raw.sizes.height)
            orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(raw.sizes.flip)
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawError, rawpy.NotSupportedError):
                return size, orientation, []
    except (rawpy.LibRawError, rawpy.NotSupportedError, *_LIBRARY_ERRORS):
        return None, None, []  # stripped, cut short or unknown to LibRaw: the scan may help
    if isinstance(thumb.data, np.ndarray):  # rawpy.ThumbFormat.BITMAP: pixels, not a JPEG
        bitmap = thumb.data
        return size, orientation, [_Preview(bitmap.shape[1], bitmap.shape[0], bitmap=bitmap)]
    jpeg = bytes(thumb.data)
    header = parse_jpeg_header(jpeg) if jpeg[:3] == b"\xff\xd8\xff" else None
    if header is None:
        return size, orientation, []
    return size, orientation, [_Preview(header.width, header.height, jpeg, 0, header)]


def _preview_pixels(path: Path, preview: _Preview, min_short_side: int) -> tuple[np.ndarray, int]:
    if preview.bitmap is not None:
        return np.ascontiguousarray(preview.bitmap, dtype=np.uint8), 1
    assert preview.header is not None
    return _decode_jpeg_stream(path, preview.data, preview.offset, preview.header, min_short_side)


# --- HEIF and AVIF -------------------------------------------------------------------


def _decode_heif(path: Path, data: bytes, min_short_side: int, max_pixels: int) -> Pixels:
    import pillow_heif  # imported here: only HEIF files need libheif

    if not isobmff_complete(data):  # libheif would paint the missing tiles black
        raise DecodeError(path, "truncated or corrupt HEIF")
    try:
        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
        image = heif[heif.primary_index]
        width, height = image.size
        _check_pixels(path, width, height, max_pixels)
        thumbnail = _heif_thumbnail(image, min_short_side)
        if thumbnail is not None:
            source = f"heif thumbnail {thumbnail.shape[1]}x{thumbnail.shape[0]}"
            return thumbnail, (width, height), source
        pixels = np.asarray(image)
    except _LIBRARY_ERRORS as exc:
        reason = _library_reason(exc)
        if "not been built in" in reason:
            raise UnsupportedFormat(path, f"HEIF codec not available ({reason})") from exc
        raise DecodeError(path, f"truncated or corrupt HEIF ({reason})") from exc
    source = "heif"
    if pixels.dtype == np.uint16:  # 10 or 12 bits, scaled by libheif to the 16-bit range
        nclx = image.info.get("nclx_profile")
        transfer = nclx.get("transfer_characteristics") if isinstance(nclx, dict) else None
        depth = image.info.get("bit_depth", 16)
        hdr = _HDR_TRANSFERS.get(transfer, "") if isinstance(transfer, int) else ""
        source = f"heif {depth!s}-bit{hdr}"
        _refuse_black_frame(path, pixels, source)
        if transfer == 16:  # PQ
            pixels = _pq_to_sdr_lut()[pixels]
    return _heif_rgb8(pixels), (width, height), source


_HDR_TRANSFERS = {16: " pq", 18: " hlg"}  # nclx transfer_characteristics (ITU-T H.273)
# The brightest code value of a frame that is black for any viewer: 1/16 of full scale is
# 64 of 1023 in 10 bits, under 0.4 cd/m2 in PQ. A photo has some pixel above that.
BLACK_FRAME_MAX_CODE = 65535 // 16


def _refuse_black_frame(path: Path, pixels: np.ndarray, source: str) -> None:
    """A 10/12-bit HEIF that decodes to black (a camera's HDR HIF that libheif's HEVC
    decoder gets wrong, or a file whose image data is gone) is not judged: it would only
    be Rejected as under-exposed."""
    if int(pixels.max()) <= BLACK_FRAME_MAX_CODE:
        kind = source.removeprefix("heif ")
        kind = kind.replace(" pq", " HDR (PQ)").replace(" hlg", " HDR (HLG)")
        raise UnsupportedFormat(path, f"{kind} HEIF decodes to an all-black frame here "
                                      "(libheif cannot decode its pixels): not judged")


def _heif_thumbnail(image: object, min_short_side: int) -> np.ndarray | None:
    """The smallest stored thumbnail that meets min_short_side, if one decodes and fits."""
    width, height = image.size  # type: ignore[attr-defined]
    boxes = image.info.get("thumbnails", [])  # type: ignore[attr-defined]
    for index, box in sorted(enumerate(boxes), key=lambda item: item[1]):
        short_side = box * min(width, height) // max(width, height)
        if box >= max(width, height) or short_side < min_short_side:
            continue
        try:
            pixels = np.asarray(image.get_thumbnail(index))  # type: ignore[attr-defined]
        except _LIBRARY_ERRORS:
            continue  # camera HIF thumbnails are often unreadable: use the primary image
        thumb_height, thumb_width = pixels.shape[:2]
        same_shape = abs(thumb_width / thumb_height - width / height) < 0.01
        if pixels.dtype == np.uint8 and same_shape and min(pixels.shape[:2]) >= min_short_side:
            return _heif_rgb8(pixels)
    return None


def _heif_rgb8(pixels: np.ndarray) -> np.ndarray:
    """pillow-heif's or Pillow's RGB(A)/grey array (8 or 16-bit) as 8-bit RGB."""
    if pixels.dtype == np.uint16:
        pixels = cv2.convertScaleAbs(pixels, alpha=1 / 257)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if pixels.shape[2] == 4:
        return composite_on_white(pixels)
    return np.ascontiguousarray(pixels)


_PQ_LUT: list[np.ndarray] = []


def _pq_to_sdr_lut() -> np.ndarray:
    """uint16 PQ code value -> uint8 sRGB, diffuse white at 203 cd/m2 (ITU-R BT.2408)."""
    if not _PQ_LUT:  # 64 K entries, computed once; the image itself is only indexed
        m1, m2 = 2610 / 16384, 2523 / 4096 * 128
        c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
        signal = np.linspace(0.0, 1.0, 65536) ** (1 / m2)
        nits = 10000 * (np.maximum(signal - c1, 0) / (c2 - c3 * signal)) ** (1 / m1)
        linear = np.clip(nits / 203, 0.0, 1.0)
        srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
        _PQ_LUT.append(np.round(srgb * 255).astype(np.uint8))
    return _PQ_LUT[0]


def _decode_avif(path: Path, data: bytes, max_pixels: int) -> Pixels:
    from PIL import Image, features  # imported here: only AVIF needs Pillow's libavif

    if not features.check("avif"):
        raise UnsupportedFormat(path, "AVIF decoding is not available (Pillow without libavif)")
    if not isobmff_complete(data):
        raise DecodeError(path, "truncated or corrupt AVIF")
    try:
        with Image.open(io.BytesIO(data), formats=["AVIF"]) as opened:
            width, height = opened.size
            _check_pixels(path, width, height, max_pixels)
            # Pillow reports irot/imir as an EXIF orientation rather than applying them.
            orientation = opened.getexif().get(0x0112, 1)
            image: Image.Image = opened
            if image.mode not in ("RGB", "RGBA", "L"):
                image = image.convert("RGBA" if "A" in image.mode else "RGB")
            pixels = np.asarray(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(path, f"over Pillow's size limit ({exc})") from exc
    except _LIBRARY_ERRORS as exc:
        raise DecodeError(path, f"truncated or corrupt AVIF ({_library_reason(exc)})") from exc
    rgb = apply_orientation(_heif_rgb8(pixels), orientation if 1 <= orientation <= 8 else 1)
    return rgb, (rgb.shape[1], rgb.shape[0]), "avif"
