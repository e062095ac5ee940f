"""decoding.decode on generated images and on the real sample photos and camera files."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from images import (
    QUADRANT_COLOURS,
    encode,
    jpeg_declaring,
    jpeg_with_orientation,
    noise_photo,
    png_declaring,
    quadrants,
)
from PIL import Image, ImageOps

from iqs_daemon import errors
from iqs_daemon.decoding import (
    FINGERPRINT_PREFIX,
    FINGERPRINT_PREFIXES,
    JPEG_FINGERPRINT_PREFIX,
    apply_orientation,
    decode,
    fingerprint,
    reduction_factor,
    same_pixels,
)
from iqs_daemon.imageheaders import find_jpeg_streams, parse_jpeg_header

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
PHOTOS = SAMPLES / "photos"
RAW = SAMPLES / "raw"
MAX_PIXELS = 250_000_000


def needs(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"sample folder {folder} is absent (it lives in shared/ beside the repo)")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def decode_full(path: Path, **kwargs: int):
    return decode(path, min_short_side=kwargs.get("min_short_side", 100_000), max_pixels=MAX_PIXELS)


def assert_record(decoded, path: Path) -> None:
    rgb = decoded.rgb
    assert decoded.path == path
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.c_contiguous and not rgb.flags.writeable
    assert decoded.fingerprint.startswith(FINGERPRINT_PREFIXES)
    digest = decoded.fingerprint[3:]
    assert len(digest) == 32
    int(digest, 16)


def colour_at(rgb: np.ndarray, where: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    y = h // 4 if where.startswith("top") else 3 * h // 4
    x = w // 4 if where.endswith("left") else 3 * w // 4
    return rgb[y, x].astype(int)


# --- JPEG: reduced decoding ---------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "wanted", "factor"),
    [(4000, 1000, 4), (4000, 500, 8), (4000, 501, 4), (4000, 2000, 2), (4000, 2001, 1),
     (300, 512, 1), (1081, 540, 2), (1080, 0, 8)],
)  # fmt: skip
def test_reduction_factor_keeps_short_side(short: int, wanted: int, factor: int) -> None:
    assert reduction_factor(short, wanted) == factor


def test_24mp_jpeg_is_decoded_at_quarter_size(tmp_path: Path) -> None:
    path = write(tmp_path, "big.jpg", encode(noise_photo(6000, 4000), ".jpg"))
    decoded = decode(path, min_short_side=1000, max_pixels=MAX_PIXELS)
    assert_record(decoded, path)
    assert decoded.rgb.shape == (1000, 1500, 3)
    assert decoded.source == "jpeg 1/4"
    assert decoded.original_size == (6000, 4000)


@pytest.mark.parametrize(
    ("min_short_side", "shape", "source"),
    [(100, (125, 200, 3), "jpeg 1/8"), (300, (500, 800, 3), "jpeg 1/2"),
     (1000, (1000, 1600, 3), "jpeg"), (5000, (1000, 1600, 3), "jpeg")],
)  # fmt: skip
def test_reduction_never_goes_below_min_short_side_nor_upscales(
    tmp_path: Path, min_short_side: int, shape: tuple[int, ...], source: str
) -> None:
    path = write(tmp_path, "photo.jpg", encode(noise_photo(1600, 1000), ".jpg"))
    decoded = decode(path, min_short_side=min_short_side, max_pixels=MAX_PIXELS)
    assert decoded.rgb.shape == shape
    assert decoded.source == source


def test_reduced_pixels_match_a_downscaled_full_decode(tmp_path: Path) -> None:
    path = write(tmp_path, "photo.jpg", encode(noise_photo(1600, 1200), ".jpg"))
    reduced = decode(path, min_short_side=300, max_pixels=MAX_PIXELS).rgb
    full = decode_full(path).rgb
    shrunk = cv2.resize(full, (reduced.shape[1], reduced.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - shrunk).mean() < 2


def test_jpeg_colours_come_out_rgb(tmp_path: Path) -> None:
    path = write(tmp_path, "q.jpg", encode(quadrants(), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95))
    rgb = decode_full(path).rgb
    for where, colour in QUADRANT_COLOURS.items():
        assert np.abs(colour_at(rgb, where) - colour).max() < 16, where


def test_grayscale_jpeg_becomes_rgb(tmp_path: Path) -> None:
    grey = cv2.cvtColor(noise_photo(320, 240), cv2.COLOR_RGB2GRAY)
    path = write(tmp_path, "grey.jpg", encode(grey, ".jpg"))
    rgb = decode_full(path).rgb
    assert rgb.shape == (240, 320, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_cmyk_jpeg_decodes_to_the_right_colours(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(quadrants()).convert("CMYK").save(buffer, "JPEG", quality=95)
    path = write(tmp_path, "cmyk.jpg", buffer.getvalue())
    rgb = decode_full(path).rgb
    for where, colour in QUADRANT_COLOURS.items():
        assert np.abs(colour_at(rgb, where) - colour).max() < 24, where


def test_progressive_jpeg_is_reduced_too(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(noise_photo(1600, 1200)).save(buffer, "JPEG", progressive=True)
    path = write(tmp_path, "progressive.jpg", buffer.getvalue())
    decoded = decode(path, min_short_side=300, max_pixels=MAX_PIXELS)
    assert decoded.rgb.shape == (300, 400, 3) and decoded.source == "jpeg 1/4"


# --- orientation ----------------------------------------------------------------------


@pytest.mark.parametrize("byte_order", ["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(
    tmp_path: Path, orientation: int, byte_order: str
) -> None:
    # Store the upright picture turned the way a camera held like `orientation` stores it,
    # using Pillow's own transpose as the independent oracle for the stored -> upright map.
    upright = quadrants(128, 64)
    inverse = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}.get(orientation, 1)
    stored = np.asarray(ImageOps.exif_transpose(_tagged(upright, inverse)))
    path = write(tmp_path, "o.jpg", jpeg_with_orientation(stored, orientation, byte_order))
    oracle = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    decoded = decode_full(path)
    assert decoded.rgb.shape == (64, 128, 3)
    assert decoded.original_size == (128, 64)
    assert np.abs(decoded.rgb.astype(int) - oracle).mean() < 3
    for where, colour in QUADRANT_COLOURS.items():
        assert np.abs(colour_at(decoded.rgb, where) - colour).max() < 16, where


def _tagged(rgb: np.ndarray, orientation: int) -> Image.Image:
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    image.getexif()[0x0112] = orientation
    return image


@pytest.mark.parametrize("orientation", [6, 8])
def test_orientation_is_applied_once_with_reduced_decoding(
    tmp_path: Path, orientation: int
) -> None:
    stored = cv2.resize(quadrants(), (1600, 800), interpolation=cv2.INTER_NEAREST)
    path = write(tmp_path, "r.jpg", jpeg_with_orientation(stored, orientation))
    decoded = decode(path, min_short_side=200, max_pixels=MAX_PIXELS)
    assert decoded.source == "jpeg 1/4"
    assert decoded.rgb.shape == (400, 200, 3)  # portrait: turned exactly once
    assert decoded.original_size == (800, 1600)
    expected = apply_orientation(cv2.resize(stored, (400, 200)), orientation)
    assert np.abs(decoded.rgb.astype(int) - expected).mean() < 3


def test_header_parser_reads_size_and_orientation() -> None:
    data = jpeg_with_orientation(quadrants(200, 100), 6, "MM")
    header = parse_jpeg_header(data)
    assert header is not None
    assert (header.width, header.height, header.components) == (200, 100, 3)
    assert header.orientation == 6
    assert parse_jpeg_header(data[:20]) is None


# --- PNG, TIFF, WebP, BMP -----------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp", ".bmp"])
def test_8bit_formats_decode_full_size_rgb(tmp_path: Path, ext: str) -> None:
    rgb = quadrants(120, 80)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    path = write(tmp_path, f"q{ext}", encode(rgb, ext, *params))
    decoded = decode(path, min_short_side=10, max_pixels=MAX_PIXELS)
    assert_record(decoded, path)
    assert decoded.source == ext.lstrip(".").replace("tif", "tiff")
    assert decoded.original_size == (120, 80)
    np.testing.assert_array_equal(decoded.rgb, rgb)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_is_scaled_not_truncated(tmp_path: Path, ext: str) -> None:
    levels = np.arange(256, dtype=np.uint16)
    values = np.minimum(levels.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)
    ramp = np.tile(values, (4, 1))  # round(v / 257) == level; neither v >> 8 nor v & 0xFF is
    path = write(tmp_path, f"ramp{ext}", encode(ramp, ext))
    rgb = decode_full(path).rgb
    np.testing.assert_array_equal(rgb[0, :, 0], levels)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_16bit_colour_png_keeps_channel_order(tmp_path: Path) -> None:
    rgb16 = quadrants().astype(np.uint16) * 257
    rgb = decode_full(write(tmp_path, "c16.png", encode(rgb16, ".png"))).rgb
    np.testing.assert_array_equal(rgb, quadrants())


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_grayscale_becomes_rgb(tmp_path: Path, ext: str) -> None:
    grey = cv2.cvtColor(noise_photo(64, 48), cv2.COLOR_RGB2GRAY)
    rgb = decode_full(write(tmp_path, f"g{ext}", encode(grey, ext))).rgb
    np.testing.assert_array_equal(rgb, np.dstack([grey, grey, grey]))


@pytest.mark.parametrize("ext", [".png", ".webp", ".tif"])
def test_alpha_is_composited_on_white(tmp_path: Path, ext: str) -> None:
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[:, :20, 3] = 255  # opaque red
    rgba[:, 20:40, 3] = 0  # transparent: white
    rgba[:, 40:, 3] = 128  # half: pink
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    rgb = decode_full(write(tmp_path, f"a{ext}", encode(rgba, ext, *params))).rgb
    assert tuple(rgb[5, 5]) == (200, 0, 0)
    assert tuple(rgb[5, 30]) == (255, 255, 255)
    assert np.abs(rgb[5, 50].astype(int) - (227, 127, 127)).max() <= 1


def test_palette_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(quadrants()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(
        buffer, "PNG"
    )
    rgb = decode_full(write(tmp_path, "p.png", buffer.getvalue())).rgb
    for where, colour in QUADRANT_COLOURS.items():
        assert tuple(colour_at(rgb, where)) == colour, where


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 10, 20, 30])
    image.paste(1, (0, 0, 5, 10))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    rgb = decode_full(write(tmp_path, "pt.png", buffer.getvalue())).rgb
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[0, 9]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_exif_orientation_is_applied(tmp_path: Path, fmt: str) -> None:
    stored = np.asarray(ImageOps.exif_transpose(_tagged(quadrants(), 8)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, fmt, exif=exif, lossless=True)
    rgb = decode_full(write(tmp_path, f"o.{fmt.lower()}", buffer.getvalue())).rgb
    np.testing.assert_array_equal(rgb, quadrants())


def test_tiff_orientation_is_applied_once(tmp_path: Path) -> None:
    stored = np.asarray(ImageOps.exif_transpose(_tagged(quadrants(), 8)))
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "TIFF", tiffinfo={0x0112: 6})
    rgb = decode_full(write(tmp_path, "o.tif", buffer.getvalue())).rgb
    np.testing.assert_array_equal(rgb, quadrants())


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [("bomb.png", png_declaring(60000, 60000)), ("bomb.jpg", jpeg_declaring(60000, 60000))],
)
def test_decompression_bomb_is_refused_from_the_header(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(errors.ImageTooLarge) as info:
        decode(path, min_short_side=512, max_pixels=MAX_PIXELS)
    assert info.value.reason == "60000x60000 pixels is over the 250 MP limit (decoding.max_pixels)"
    assert info.value.path == path


def test_max_pixels_is_the_callers(tmp_path: Path) -> None:
    path = write(tmp_path, "small.png", encode(quadrants(100, 50), ".png"))
    with pytest.raises(errors.ImageTooLarge, match=r"100x50 pixels is over the 0\.001 MP limit"):
        decode(path, min_short_side=10, max_pixels=1000)
    assert decode(path, min_short_side=10, max_pixels=5000).rgb.shape == (50, 100, 3)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(errors.DecodeError) as info:
        decode_full(write(tmp_path, "empty.jpg", b""))
    assert info.value.reason == "empty file"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.InputError) as info:
        decode_full(tmp_path / "gone.jpg")
    assert info.value.reason == "no such file or directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.jpg", encode(quadrants(), ".jpg"))
    path.chmod(0)
    try:
        with pytest.raises(errors.InputError) as info:
            decode_full(path)
        assert info.value.reason == "permission denied"
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".webp", ".bmp"])
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_files(tmp_path: Path, ext: str, fraction: float) -> None:
    data = encode(noise_photo(300, 200), ext)
    path = write(tmp_path, f"cut{ext}", data[: int(len(data) * fraction)])
    with pytest.raises(errors.DecodeError) as info:
        decode_full(path)
    name = {".jpg": "JPEG", ".tif": "TIFF"}.get(ext, ext[1:].upper())
    assert info.value.reason == f"truncated or corrupt {name}"
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, cv2.error)


def test_random_bytes_named_jpg(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path = write(tmp_path, "noise.jpg", b"\x00" + data)
    with pytest.raises(errors.UnsupportedFormat) as info:
        decode_full(path)
    assert info.value.reason == "not an image (content does not match .jpg)"
    assert str(info.value) == f"{path}: not an image (content does not match .jpg)"


def test_text_file_named_png(tmp_path: Path) -> None:
    with pytest.raises(errors.UnsupportedFormat, match=r"content does not match \.png"):
        decode_full(write(tmp_path, "notes.png", b"shopping list\n"))


def test_png_named_jpg_is_decoded_by_content(tmp_path: Path) -> None:
    path = write(tmp_path, "really-a-png.jpg", encode(quadrants(), ".png"))
    decoded = decode_full(path)
    assert decoded.source == "png"
    np.testing.assert_array_equal(decoded.rgb, quadrants())


# --- fingerprint ----------------------------------------------------------------------


def test_fingerprint_survives_metadata_only_edits(tmp_path: Path) -> None:
    pyexiv2 = pytest.importorskip("pyexiv2")
    original = write(tmp_path, "a.jpg", encode(noise_photo(800, 600), ".jpg"))
    edited = tmp_path / "b.jpg"
    shutil.copyfile(original, edited)
    with pyexiv2.Image(str(edited)) as image:
        image.modify_xmp({"Xmp.xmp.Rating": "3", "Xmp.digiKam.PickLabel": "1"})
    assert original.read_bytes() != edited.read_bytes()
    assert decode_full(original).fingerprint == decode_full(edited).fingerprint
    reduced = decode(edited, min_short_side=100, max_pixels=MAX_PIXELS)
    again = decode(original, min_short_side=100, max_pixels=MAX_PIXELS)
    assert again.fingerprint == reduced.fingerprint


def test_fingerprint_changes_with_the_picture(tmp_path: Path) -> None:
    pixels = noise_photo(800, 600)
    first = decode_full(write(tmp_path, "a.png", encode(pixels, ".png")))
    pixels[300, 400] ^= 1
    second = decode_full(write(tmp_path, "b.png", encode(pixels, ".png")))
    assert first.fingerprint != second.fingerprint


def test_fingerprint_changes_with_one_pixel_of_a_reduced_jpeg(tmp_path: Path) -> None:
    pixels = noise_photo(1600, 1200)
    first = decode(write(tmp_path, "a.jpg", encode(pixels, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)),
                   min_short_side=600, max_pixels=MAX_PIXELS)
    pixels[700, 900] = 255 - pixels[700, 900]
    second = decode(write(tmp_path, "b.jpg", encode(pixels, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)),
                    min_short_side=600, max_pixels=MAX_PIXELS)
    assert first.source == second.source == "jpeg 1/2"
    assert first.fingerprint != second.fingerprint
    assert not same_pixels(first.fingerprint, second)
    assert same_pixels(first.fingerprint, first)


def blake2b_fingerprint(rgb: np.ndarray) -> str:
    """The first fingerprint format, written out here as it shipped (not imported), so a
    change to the product's copy cannot make old fingerprints silently stop matching."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def test_fingerprints_of_earlier_versions_still_match(tmp_path: Path) -> None:
    pyexiv2 = pytest.importorskip("pyexiv2")
    pixels = noise_photo(800, 600)
    photo = write(tmp_path, "a.jpg", encode(pixels, ".jpg"))
    old = blake2b_fingerprint(decode_full(photo).rgb)  # what an earlier version stored
    before = photo.read_bytes()
    with pyexiv2.Image(str(photo)) as image:  # then the metadata is edited
        image.modify_xmp({"Xmp.xmp.Rating": "2", "Xmp.dc.title": {"lang=\"x-default\"": old}})
    assert photo.read_bytes() != before
    edited = decode_full(photo)
    assert edited.fingerprint != old  # a new format ...
    assert same_pixels(old, edited)  # ... that still recognises the old one
    pixels[10, 10] ^= 4
    changed = decode_full(write(tmp_path, "b.jpg", encode(pixels, ".jpg")))
    assert not same_pixels(old, changed)
    for unknown in ("", "fp1", old.upper(), "p9:" + old, FINGERPRINT_PREFIX + old[:-1]):
        assert not same_pixels(unknown, edited)


def test_fingerprint_depends_on_shape(tmp_path: Path) -> None:
    pixels = noise_photo(40, 30)
    a = decode_full(write(tmp_path, "a.png", encode(pixels, ".png")))
    b = decode_full(write(tmp_path, "b.png", encode(pixels.reshape(40, 30, 3), ".png")))
    assert a.rgb.tobytes() == b.rgb.tobytes() and a.fingerprint != b.fingerprint


# --- real photos ----------------------------------------------------------------------


def sample_photos() -> list[Path]:
    return sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []


@pytest.mark.parametrize("path", sample_photos(), ids=lambda p: p.name)
def test_sample_photos_decode_reduced(path: Path) -> None:
    with Image.open(path) as image:
        width, height = ImageOps.exif_transpose(image).size
    decoded = decode(path, min_short_side=512, max_pixels=MAX_PIXELS)
    assert_record(decoded, path)
    assert decoded.original_size == (width, height)
    factor = reduction_factor(min(width, height), 512)
    assert decoded.source == ("jpeg" if factor == 1 else f"jpeg 1/{factor}")
    assert min(decoded.rgb.shape[:2]) >= 512
    assert decoded.rgb.shape[:2] == (-(-height // factor), -(-width // factor))
    assert 5 < decoded.rgb.mean() < 250


def test_sample_photo_folder_is_present() -> None:
    needs(PHOTOS)
    assert len(sample_photos()) == 12


# --- real camera files ----------------------------------------------------------------

DECODED = {
    # name: (min_short_side, rgb shape, original_size, source)
    "canon_eos6d_linear.dng": (512, (683, 1024, 3), (1224, 816), "raw preview 1024x683"),
    "canon_eos_r6_truncated.cr3": (512, (540, 810, 3), (3584, 2386), "raw preview 1620x1080 1/2"),
    "nikon_d70s_jpeg_named.nef": (512, (1504, 1000, 3), (2000, 3008), "jpeg 1/2"),
    "apple_iphone11pro.heic": (512, (4032, 3024, 3), (3024, 4032), "heif"),
    "apple_iphone15pro.heic": (512, (4032, 3024, 3), (3024, 4032), "heif"),
    "samsung_sm-g975f.heic": (512, (4032, 3024, 3), (3024, 4032), "heif"),
    "canon_eos70d_converted.avif": (512, (3648, 5472, 3), (5472, 3648), "avif"),
}
REFUSED = {
    "apple_iphone12pro_pruned.dng": "RAW has no usable preview (no embedded preview found)",
    "canon_eos350d_stripped.cr2": "RAW has no usable preview (no embedded preview found)",
    "nikon_d70_stripped.nef": "RAW has no usable preview (no embedded preview found)",
    "fujifilm_s5pro_stripped.raf": (
        "RAW has no usable preview (largest embedded preview is 160x120)"
    ),
    "panasonic_dmc-lx3_stripped.rw2": "RAW has no usable preview (largest embedded preview is 8x8)",
    # libheif's HEVC decoder gives black pixels for the R5's 10-bit HDR image; the Sony
    # file's image data was cut out. Either would be Rejected as under-exposed.
    "canon_eos_r5.hif": "10-bit HDR (PQ) HEIF decodes to an all-black frame here (libheif "
                        "cannot decode its pixels): not judged",
    "sony_ilce-1_pruned.hif": "10-bit HEIF decodes to an all-black frame here (libheif "
                              "cannot decode its pixels): not judged",
}


def test_every_camera_sample_has_an_expected_outcome() -> None:
    needs(RAW)
    names = {p.name for p in RAW.iterdir() if p.suffix != ".md"}
    assert names == set(DECODED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(DECODED))
def test_camera_files_that_decode(name: str) -> None:
    needs(RAW)
    min_short_side, shape, original_size, source = DECODED[name]
    path = RAW / name
    decoded = decode(path, min_short_side=min_short_side, max_pixels=MAX_PIXELS)
    assert_record(decoded, path)
    assert decoded.rgb.shape == shape
    assert decoded.original_size == original_size
    assert decoded.source == source


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_camera_files_without_a_usable_preview(name: str) -> None:
    needs(RAW)
    with pytest.raises(errors.UnsupportedFormat) as info:
        decode(RAW / name, min_short_side=512, max_pixels=MAX_PIXELS)
    assert info.value.reason == REFUSED[name]


def test_cr3_preview_is_found_by_scanning_and_looks_like_a_photo() -> None:
    needs(RAW)
    data = (RAW / "canon_eos_r6_truncated.cr3").read_bytes()
    sizes = sorted((h.width, h.height) for _, h in find_jpeg_streams(data))
    assert (1620, 1080) in sizes and (160, 120) in sizes
    rgb = decode(RAW / "canon_eos_r6_truncated.cr3", min_short_side=1080, max_pixels=MAX_PIXELS).rgb
    assert rgb.shape == (1080, 1620, 3) and rgb.std() > 10


def test_heif_thumbnail_is_used_when_it_is_big_enough() -> None:
    needs(RAW)
    path = RAW / "samsung_sm-g975f.heic"
    thumb = decode(path, min_short_side=300, max_pixels=MAX_PIXELS)
    assert thumb.source == "heif thumbnail 384x512"
    assert thumb.rgb.shape == (512, 384, 3) and thumb.original_size == (3024, 4032)
    full = decode(path, min_short_side=512, max_pixels=MAX_PIXELS).rgb
    shrunk = cv2.resize(full, (384, 512), interpolation=cv2.INTER_AREA)
    assert np.abs(thumb.rgb.astype(int) - shrunk).mean() < 12  # same picture, same way up


def test_broken_heif_thumbnails_fall_back_to_the_primary_image() -> None:
    needs(RAW)
    # The thumbnail fails to decode; the primary image is decoded (and found black).
    with pytest.raises(errors.UnsupportedFormat, match="all-black frame"):
        decode(RAW / "canon_eos_r5.hif", min_short_side=100, max_pixels=MAX_PIXELS)


def test_heif_bomb_guard_uses_the_container_size() -> None:
    needs(RAW)
    with pytest.raises(errors.ImageTooLarge, match="3024x4032 pixels is over the 10 MP limit"):
        decode(RAW / "apple_iphone11pro.heic", min_short_side=512, max_pixels=10_000_000)


def test_truncated_heic(tmp_path: Path) -> None:
    needs(RAW)
    data = (RAW / "apple_iphone11pro.heic").read_bytes()
    with pytest.raises(errors.DecodeError, match="truncated or corrupt HEIF"):
        decode_full(write(tmp_path, "cut.heic", data[: len(data) // 2]))


def test_truncated_avif(tmp_path: Path) -> None:
    needs(RAW)
    data = (RAW / "canon_eos70d_converted.avif").read_bytes()
    with pytest.raises(errors.DecodeError, match="truncated or corrupt AVIF"):
        decode_full(write(tmp_path, "cut.avif", data[: len(data) * 9 // 10]))


def test_a_jpeg_fingerprint_survives_metadata_edits_and_follows_the_picture(tmp_path: Path
                                                                           ) -> None:
    """A JPEG's fingerprint hashes what its pixels are decoded from: XMP, EXIF and
    comments may change, the scan, tables, orientation and decoded size may not."""
    pyexiv2 = pytest.importorskip("pyexiv2")
    pixels = noise_photo(1600, 1200)
    data = encode(pixels, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    photo = write(tmp_path, "a.jpg", data)
    first = decode(photo, min_short_side=600, max_pixels=MAX_PIXELS)
    assert first.fingerprint.startswith(JPEG_FINGERPRINT_PREFIX)
    with pyexiv2.Image(str(photo)) as image:
        image.modify_xmp({"Xmp.xmp.Rating": "2", "Xmp.dc.title": {'lang="x-default"': "t"}})
        image.modify_exif({"Exif.Image.Artist": "someone", "Exif.Image.Rating": "2"})
        image.modify_comment("a comment")
    assert photo.read_bytes() != data
    edited = decode(photo, min_short_side=600, max_pixels=MAX_PIXELS)
    assert edited.fingerprint == first.fingerprint
    assert same_pixels(first.fingerprint, edited)
    with pyexiv2.Image(str(photo)) as image:
        image.modify_exif({"Exif.Image.Orientation": "3"})  # shown turned: other pixels
    turned = decode(photo, min_short_side=600, max_pixels=MAX_PIXELS)
    assert not np.array_equal(turned.rgb, first.rgb)
    assert not same_pixels(first.fingerprint, turned)
    larger = decode(write(tmp_path, "b.jpg", data), min_short_side=1200, max_pixels=MAX_PIXELS)
    assert larger.rgb.shape != first.rgb.shape
    assert larger.fingerprint != first.fingerprint
    requantised = decode(write(tmp_path, "c.jpg", encode(pixels, ".jpg", cv2.IMWRITE_JPEG_QUALITY,
                                                         94)), min_short_side=600,
                         max_pixels=MAX_PIXELS)
    assert requantised.fingerprint != first.fingerprint


def test_a_pixel_fingerprint_of_a_jpeg_still_matches(tmp_path: Path) -> None:
    """A JPEG scored when its fingerprint hashed the pixels (``p2:``, in photos and states)
    is still recognised after a metadata edit, and not after a pixel edit."""
    pyexiv2 = pytest.importorskip("pyexiv2")
    pixels = noise_photo(800, 600)
    photo = write(tmp_path, "a.jpg", encode(pixels, ".jpg"))
    old = fingerprint(decode_full(photo).rgb)
    assert old.startswith(FINGERPRINT_PREFIX)
    with pyexiv2.Image(str(photo)) as image:
        image.modify_xmp({"Xmp.xmp.Rating": "4"})
    edited = decode_full(photo)
    assert edited.fingerprint != old and same_pixels(old, edited)
    pixels[10, 10] ^= 4
    assert not same_pixels(old, decode_full(write(tmp_path, "b.jpg", encode(pixels, ".jpg"))))
    assert not same_pixels(old[:-1] + ("1" if old[-1] == "0" else "0"), edited)
