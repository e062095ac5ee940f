"""metadata.py against real files, read back with independent tools (exiftool, exiv2)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from exiv2_faults import crash_exiv2_on
from PIL import Image
from readback import exiv2_tags, jpeg_scan

from iqs_daemon import metadata
from iqs_daemon.config import Settings
from iqs_daemon.discovery import SUPPORTED_EXTENSIONS
from iqs_daemon.errors import FileChanged, MetadataError
from iqs_daemon.metadata import (
    EMBEDDED_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    MetadataWriter,
    target_for,
)
from iqs_daemon.records import PickLabel, Verdict

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # TIFF rating tags
SAMPLES = Path(__file__).parents[1].parent / "shared" / "samples"
RAW_SAMPLES = sorted(p.name for p in (SAMPLES / "raw").glob("*") if p.suffix.lower() != ".md")
needs_exiftool = pytest.mark.skipif(
    shutil.which("exiftool") is None, reason="exiftool not installed"
)
needs_exiv2 = pytest.mark.skipif(shutil.which("exiv2") is None, reason="exiv2 CLI not installed")

REJECTED = Verdict(
    path=Path("x"),
    score=12.345,
    label=PickLabel.REJECTED,
    stars=1,
    reasons=("blur", "noise"),
    diagnostics={
        "blur": 0.91234,
        "noise": 0.5,
        "compression": 0.1,
        "underexposure": 0.0,
        "overexposure": 0.0004,
    },
    model_name="iqs-test",
    model_version="1.2",
    scored_at="2026-01-02T03:04:05Z",
)
ACCEPTED = replace(
    REJECTED,
    score=88.0,
    label=PickLabel.ACCEPTED,
    stars=4,
    reasons=(),
    diagnostics={"blur": 0.02, "noise": 0.01, "compression": 0.0, "underexposure": 0.0},
    scored_at="2026-01-03T00:00:00Z",
)
PENDING = replace(ACCEPTED, score=45.0, label=PickLabel.PENDING, stars=3)


# --- helpers --------------------------------------------------------------------------


def sample(name: str, tmp_path: Path, sub: str = "raw") -> Path:
    source = SAMPLES / sub / name
    if not source.is_file():
        pytest.skip(f"sample {source} is not available (../shared/samples missing)")
    copy = tmp_path / name
    shutil.copyfile(source, copy)
    copy.chmod(0o644)
    return copy


def pixels(seed: int = 0, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, shape[1], dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 20, (*shape, 3))
    return np.clip(gradient + noise, 0, 255).astype(np.uint8)


def make_photo(path: Path, seed: int = 0) -> Path:
    """A real file of the format its suffix names, written by OpenCV, Pillow or pillow-heif."""
    bgr = pixels(seed)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg", ".png", ".tif", ".tiff"):
        assert cv2.imwrite(str(path), bgr)
    elif suffix == ".webp":
        Image.fromarray(bgr[:, :, ::-1]).save(path, format="WEBP", lossless=True)
    elif suffix in (".heic", ".heif", ".hif", ".avif"):
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
        fmt = "AVIF" if suffix == ".avif" else "HEIF"
        Image.fromarray(bgr[:, :, ::-1]).save(path, format=fmt, quality=90)
    else:
        raise AssertionError(suffix)
    return path


def decode(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".webp":
        return np.asarray(Image.open(path).convert("RGB"))
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def exiftool(path: Path) -> dict:
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-n", "-struct", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    return {
        p.name: (digest(p), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".iqs-tmp")]


@pytest.fixture(scope="module")
def writer():
    with MetadataWriter() as w:  # the product default: exiv2 in its own process
        yield w


@pytest.fixture
def settings() -> Settings:
    return Settings()


def assert_rejected_xmp(tags: dict, *, windows: bool = True) -> None:
    """Our Rejected verdict, as exiftool names the tags."""
    assert tags["XMP-digiKam:PickLabel"] == 1
    assert tags["XMP-xmp:Rating"] == -1
    assert tags["XMP-iqs:Score"] == 12.3
    assert tags["XMP-iqs:Label"] == "Rejected"
    assert tags["XMP-iqs:Reasons"] == ["blur", "noise"]
    assert tags["XMP-iqs:Blur"] == 0.912
    assert tags["XMP-iqs:Noise"] == 0.5
    assert tags["XMP-iqs:Overexposure"] == 0.0
    assert tags["XMP-iqs:PickLabel"] == 1
    assert tags["XMP-iqs:Rating"] == -1
    assert tags["XMP-iqs:ModelName"] == "iqs-test"
    assert str(tags["XMP-iqs:ModelVersion"]) == "1.2"
    assert tags["XMP-iqs:Fingerprint"] == "fp-1"
    if windows:  # exiftool calls MicrosoftPhoto:Rating "RatingPercent"
        assert tags["XMP-microsoft:RatingPercent"] == 0
    else:
        assert "XMP-microsoft:RatingPercent" not in tags


# --- formats ---------------------------------------------------------------------------


@needs_exiftool
@pytest.mark.parametrize(
    "name", ["photo.jpg", "photo.JPEG", "photo.png", "photo.tif", "photo.webp"]
)
def test_embedded_formats_get_every_tag_and_keep_their_pixels(writer, settings, tmp_path, name):
    photo = make_photo(tmp_path / name)
    before_pixels, before_bytes = decode(photo), photo.read_bytes()

    result = writer.write_verdict(photo, REJECTED, "fp-1", settings)

    assert result.written
    assert result.target == photo
    assert not result.kept_user_label
    assert not (tmp_path / f"{name}.xmp").exists()
    tags = exiftool(photo)
    assert_rejected_xmp(tags)
    if photo.suffix.lower() in (".jpg", ".jpeg", ".tif"):
        assert tags["IFD0:Rating"] == 0
        assert tags["IFD0:RatingPercent"] == 0
    else:  # PNG and WebP: XMP only
        assert "IFD0:Rating" not in tags
    assert np.array_equal(decode(photo), before_pixels)
    if photo.suffix.lower() in (".jpg", ".jpeg"):
        assert jpeg_scan(photo.read_bytes()) == jpeg_scan(before_bytes)
    assert temp_files(tmp_path) == []


@needs_exiftool
@needs_exiv2
def test_real_jpeg_photo_keeps_its_scan_data_and_exif(writer, settings, tmp_path):
    photo = sample("LadyBird.jpg", tmp_path, sub="photos")
    before = photo.read_bytes()
    exif_before = {k: v for k, v in exiv2_tags(photo).items() if k.startswith("Exif.")}

    writer.write_verdict(photo, ACCEPTED, "fp-2", settings)

    assert jpeg_scan(photo.read_bytes()) == jpeg_scan(before)
    assert np.array_equal(decode(photo), cv2.imdecode(np.frombuffer(before, np.uint8), -1))
    after = exiv2_tags(photo)
    for key, value in exif_before.items():
        if key not in ("Exif.Image.Rating", "Exif.Image.RatingPercent"):
            assert after.get(key) == value, key
    px = exiv2_tags(photo, "-px")
    assert px["Xmp.digiKam.PickLabel"] == "3"
    assert px["Xmp.xmp.Rating"] == "4"
    assert px["Xmp.MicrosoftPhoto.Rating"] == "75"
    assert px["Xmp.iqs.ScoredAt"] == "2026-01-03T00:00:00Z"
    assert after["Exif.Image.Rating"] == "4"
    assert after["Exif.Image.RatingPercent"] == "75"


@needs_exiftool
@pytest.mark.parametrize("name", ["generated.heic", "generated.avif"])
def test_generated_heif_and_avif_get_a_sidecar(writer, settings, tmp_path, name):
    photo = make_photo(tmp_path / name)
    before = digest(photo)

    result = writer.write_verdict(photo, REJECTED, "fp-1", settings)

    assert result.target == tmp_path / f"{name}.xmp"
    assert digest(photo) == before
    tags = exiftool(result.target)
    assert_rejected_xmp(tags)
    assert "IFD0:Rating" not in tags


@needs_exiftool
@needs_exiv2
@pytest.mark.parametrize("name", RAW_SAMPLES or ["(none)"])
def test_camera_files_get_a_sidecar_and_stay_byte_identical(writer, settings, tmp_path, name):
    photo = sample(name, tmp_path)
    before = digest(photo)
    assert photo.suffix.lower() in SIDECAR_EXTENSIONS

    result = writer.write_verdict(photo, REJECTED, "fp-1", settings)

    assert result.written
    assert result.target == Path(f"{photo}.xmp")
    assert digest(photo) == before, "the camera file itself must never change"
    tags = exiftool(result.target)
    assert_rejected_xmp(tags)
    assert not any(k.startswith(("IFD0:", "ExifIFD:")) for k in tags)
    px = exiv2_tags(result.target, "-px")
    assert px["Xmp.digiKam.PickLabel"] == "1"
    assert px["Xmp.iqs.Label"] == "Rejected"
    stored = writer.read_stored(photo, settings)
    assert stored.label == PickLabel.REJECTED
    assert stored.sources["score"] == result.target
    assert [f.kind for f in stored.files] == ["sidecar", "embedded"]
    assert temp_files(tmp_path) == []


def test_extension_sets_and_targets(settings, tmp_path):
    assert {".jpg", ".jpeg", ".tif", ".tiff", ".png", ".webp"} <= EMBEDDED_EXTENSIONS
    assert {".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw"} <= (
        SIDECAR_EXTENSIONS
    )
    assert {".dng", ".heic", ".heif", ".hif", ".avif"} <= SIDECAR_EXTENSIONS
    assert not EMBEDDED_EXTENSIONS & SIDECAR_EXTENSIONS
    # Every photo discovery finds can take a verdict: none is scored and then refused.
    assert SUPPORTED_EXTENSIONS == EMBEDDED_EXTENSIONS | SIDECAR_EXTENSIONS
    assert {".jfif", ".jpe"} <= EMBEDDED_EXTENSIONS
    assert {".bmp", ".crw", ".nrw", ".sr2", ".x3f"} <= SIDECAR_EXTENSIONS
    jpg = make_photo(tmp_path / "a.JPG")
    assert target_for(jpg, settings) == jpg
    assert target_for(jpg, replace(settings, sidecar_only=True)) == tmp_path / "a.JPG.xmp"
    raw = tmp_path / "b.CR2"
    assert target_for(raw, settings) == tmp_path / "b.CR2.xmp"
    assert target_for(raw, replace(settings, sidecar_naming="stem")) == tmp_path / "b.xmp"
    with pytest.raises(MetadataError, match=r"\.gif"):
        target_for(tmp_path / "c.gif", settings)


# --- settings --------------------------------------------------------------------------


@needs_exiftool
def test_rejected_rating_zero_and_no_windows_ratings(writer, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    settings = Settings(rejected_rating=0, windows_ratings=False)

    writer.write_verdict(photo, REJECTED, "fp-1", settings)

    tags = exiftool(photo)
    assert tags["XMP-xmp:Rating"] == 0
    assert tags["XMP-iqs:Rating"] == 0
    assert "XMP-microsoft:RatingPercent" not in tags
    assert "IFD0:Rating" not in tags
    assert "IFD0:RatingPercent" not in tags


@needs_exiftool
@pytest.mark.parametrize(
    ("verdict", "number", "name", "stars", "percent"),
    [(REJECTED, 1, "Red", -1, 0), (PENDING, 3, "Yellow", 3, 50), (ACCEPTED, 4, "Green", 4, 75)],
)
def test_color_labels(writer, tmp_path, verdict, number, name, stars, percent):
    photo = make_photo(tmp_path / "p.tif")
    writer.write_verdict(photo, verdict, "fp", Settings(color_label=True))
    tags = exiftool(photo)
    assert tags["XMP-digiKam:ColorLabel"] == number
    assert tags["XMP-xmp:Label"] == name
    assert tags["XMP-digiKam:PickLabel"] == verdict.label.value
    assert tags["XMP-xmp:Rating"] == stars
    assert tags["XMP-microsoft:RatingPercent"] == percent
    assert tags["IFD0:RatingPercent"] == percent


@needs_exiftool
def test_sidecar_only_never_touches_the_original(writer, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    before = digest(photo)
    result = writer.write_verdict(photo, REJECTED, "fp-1", Settings(sidecar_only=True))
    assert result.target == tmp_path / "p.jpg.xmp"
    assert digest(photo) == before
    tags = exiftool(result.target)
    assert_rejected_xmp(tags)
    assert "IFD0:Rating" not in tags


def test_stem_sidecar_warns_about_a_raw_jpeg_pair(writer, tmp_path, caplog):
    raw = sample("canon_eos350d_stripped.cr2", tmp_path)
    raw = raw.rename(tmp_path / "IMG_0001.CR2")
    make_photo(tmp_path / "IMG_0001.JPG")
    settings = Settings(sidecar_naming="stem")

    with caplog.at_level(logging.WARNING, logger="iqs_daemon.metadata"):
        result = writer.write_verdict(raw, REJECTED, "fp-1", settings)

    assert result.target == tmp_path / "IMG_0001.xmp"
    assert "IMG_0001.JPG" in caplog.text
    assert any("IMG_0001.JPG" in note for note in result.notes)


# --- merging and respecting the user --------------------------------------------------

DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2005:10:29 16:23:34.00"
   xmp:Rating="{rating}"
   xmpMM:DerivedFrom="IMG_0002.CR2"
   darktable:import_timestamp="63842954400000000"
   darktable:change_timestamp="63842954500000000"
   darktable:export_timestamp="-1"
   darktable:print_timestamp="-1"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="3"
   darktable:iop_order_version="4">
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="rawprepare"
      darktable:enabled="1"
      darktable:modversion="2"
      darktable:params="ffffffff00000000"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="14"
      darktable:blendop_params="gz08eJxjYGBgYAFiCQYYOOHEgAYY0QWAgBGLGANDgz0Ej1Q+dcF/IADRAGsiFg4="/>
     <rdf:li
      darktable:num="1"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000e17a843fcdcc4c3e"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="14"
      darktable:blendop_params="gz08eJxjYGBgYAFiCQYYOOHEgAYY0QWAgBGLGANDgz0Ej1Q+dcF/IADRAGsiFg4="/>
     <rdf:li
      darktable:num="2"
      darktable:operation="filmicrgb"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000803f"
      darktable:multi_name="filmic 1"
      darktable:multi_priority="0"
      darktable:blendop_version="14"
      darktable:blendop_params="gz08eJxjYGBgYAFiCQYYOOHEgAYY0QWAgBGLGANDgz0Ej1Q+dcF/IADRAGsiFg4="/>
    </rdf:Seq>
   </darktable:history>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
     <rdf:li>family|kids</rdf:li>
    </rdf:Bag>
   </dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


@needs_exiv2
@needs_exiftool
@pytest.mark.parametrize("force", [False, True])
def test_darktable_sidecar_is_merged_not_replaced(writer, settings, tmp_path, force):
    raw = sample("canon_eos350d_stripped.cr2", tmp_path).rename(tmp_path / "IMG_0002.CR2")
    sidecar = tmp_path / "IMG_0002.CR2.xmp"
    sidecar.write_text(DARKTABLE_SIDECAR.format(rating=2), encoding="utf-8")
    before = exiv2_tags(sidecar, "-px")
    assert before["Xmp.darktable.history[3]/darktable:operation"] == "filmicrgb"
    history_before = exiftool(sidecar)["XMP-darktable:History"]

    result = writer.write_verdict(raw, REJECTED, "fp-1", settings, force=force)

    assert result.target == sidecar
    after = exiv2_tags(sidecar, "-px")
    ours = {k for k in after if k.startswith("Xmp.iqs.")} | {
        "Xmp.digiKam.PickLabel",
        "Xmp.xmp.Rating",
        "Xmp.MicrosoftPhoto.Rating",
    }
    for key, value in before.items():
        if key not in ours:
            assert after.get(key) == value, f"{key} lost or changed"
    tags = exiftool(sidecar)
    history = tags["XMP-darktable:History"]
    assert history == history_before
    assert [h["Operation"] for h in history] == ["rawprepare", "exposure", "filmicrgb"]
    assert history[2]["Multi_name"] == "filmic 1"
    assert tags["XMP-darktable:History_end"] == 3
    assert tags["XMP-dc:Subject"] == ["holiday", "family|kids"]
    assert tags["XMP-iqs:Label"] == "Rejected"
    # darktable's 2 stars are the user's: kept unless forced
    assert result.kept_user_label is not force
    assert tags["XMP-xmp:Rating"] == (-1 if force else 2)
    assert ("XMP-digiKam:PickLabel" in tags) is force


@needs_exiftool
def test_user_labels_are_kept_and_our_own_replaced(writer, settings, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    # A label the user set in digiKam, written by an independent tool.
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-digiKam:PickLabel=3", str(photo)],
        check=True,
    )
    result = writer.write_verdict(photo, REJECTED, "fp-1", settings)
    assert result.kept_user_label
    assert "kept user label" in result.notes
    tags = exiftool(photo)
    assert tags["XMP-digiKam:PickLabel"] == 3
    assert "XMP-xmp:Rating" not in tags
    assert tags["XMP-iqs:Label"] == "Rejected"

    forced = writer.write_verdict(photo, REJECTED, "fp-1", settings, force=True)
    assert not forced.kept_user_label
    assert exiftool(photo)["XMP-digiKam:PickLabel"] == 1

    # Re-scoring replaces what we wrote, and removes reasons that no longer apply.
    rescored = writer.write_verdict(photo, ACCEPTED, "fp-2", settings)
    assert rescored.written
    assert not rescored.kept_user_label
    tags = exiftool(photo)
    assert (tags["XMP-digiKam:PickLabel"], tags["XMP-xmp:Rating"]) == (3, 4)
    assert "XMP-iqs:Reasons" not in tags
    assert "XMP-iqs:Overexposure" not in tags
    assert tags["XMP-iqs:Fingerprint"] == "fp-2"

    # The user changes the rating in another program: from now on it is theirs.
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-xmp:Rating=5", str(photo)], check=True
    )
    kept = writer.write_verdict(photo, REJECTED, "fp-3", settings)
    assert kept.kept_user_label
    tags = exiftool(photo)
    assert (tags["XMP-digiKam:PickLabel"], tags["XMP-xmp:Rating"]) == (3, 5)
    assert tags["XMP-iqs:Label"] == "Rejected"
    assert tags["XMP-iqs:Fingerprint"] == "fp-3"


def test_unrated_camera_rating_is_not_a_user_label(writer, settings, tmp_path):
    photo = sample("canon_eos_r6_truncated.cr3", tmp_path)  # carries xmp:Rating=0
    assert writer.read_stored(photo, settings).rating == 0
    result = writer.write_verdict(photo, ACCEPTED, "fp", settings)
    assert not result.kept_user_label
    stored = writer.read_stored(photo, settings)
    assert (stored.pick_label, stored.rating) == (PickLabel.ACCEPTED, 4)
    assert stored.sources["rating"] == result.target


@needs_exiftool
def test_in_camera_rating_in_a_raw_is_kept(writer, settings, tmp_path):
    raw = sample("nikon_d70_stripped.nef", tmp_path)
    subprocess.run(
        ["exiftool", "-q", "-m", "-overwrite_original", "-IFD0:Rating=3", str(raw)], check=True
    )
    result = writer.write_verdict(raw, REJECTED, "fp", settings)
    assert result.kept_user_label
    tags = exiftool(result.target)
    assert "XMP-xmp:Rating" not in tags
    assert tags["XMP-iqs:Label"] == "Rejected"


# --- safety ----------------------------------------------------------------------------


def test_dry_run_changes_no_byte(writer, settings, tmp_path):
    jpg = make_photo(tmp_path / "p.jpg")
    raw = sample("canon_eos350d_stripped.cr2", tmp_path)
    before = snapshot(tmp_path)
    for photo in (jpg, raw):
        result = writer.write_verdict(photo, REJECTED, "fp", settings, dry_run=True)
        assert not result.written
        assert "Xmp.digiKam.PickLabel='1'" in result.notes
    assert snapshot(tmp_path) == before


def test_atomic_replace_keeps_mode_and_mtime(writer, tmp_path):
    photo = make_photo(tmp_path / "p.png")
    photo.chmod(0o640)
    os.utime(photo, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    inode = photo.stat().st_ino

    writer.write_verdict(photo, REJECTED, "fp", Settings())

    st = photo.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    assert st.st_ino != inode, "written to a copy and renamed over the original"
    assert temp_files(tmp_path) == []

    writer.write_verdict(photo, ACCEPTED, "fp", Settings(keep_mtime=False))
    assert photo.stat().st_mtime_ns > 1_600_000_000_123_456_789


class ReplacedDuringWrite(MetadataWriter):
    """exiv2 edits our copy; meanwhile another program puts a new version in place."""

    def __init__(self, replacement: bytes):
        super().__init__()
        self.replacement = replacement

    def _call(self, photo, file, request, **kwargs):
        result = super()._call(photo, file, request, **kwargs)
        if request.get("op", "").startswith("modify"):  # the whole copy, or its head
            fresh = photo.with_name(".incoming")
            fresh.write_bytes(self.replacement)
            os.replace(fresh, photo)
        return result


def test_a_photo_replaced_during_the_write_is_not_overwritten(settings, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    replacement = make_photo(tmp_path / "new.jpg").read_bytes()
    with (ReplacedDuringWrite(replacement) as writer,
          pytest.raises(FileChanged, match="changed while")):
        writer.write_verdict(photo, REJECTED, "fp", settings)
    assert photo.read_bytes() == replacement
    assert temp_files(tmp_path) == []


def test_same_verdict_twice_is_not_rewritten(writer, settings, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    assert writer.write_verdict(photo, REJECTED, "fp", settings).written
    before = snapshot(tmp_path)
    again = writer.write_verdict(photo, REJECTED, "fp", settings)
    assert not again.written
    assert "up to date" in again.notes
    assert snapshot(tmp_path) == before


def test_read_only_photo_falls_back_to_a_sidecar(writer, settings, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    photo.chmod(0o444)
    before = digest(photo)
    result = writer.write_verdict(photo, REJECTED, "fp", settings)
    assert result.target == tmp_path / "p.jpg.xmp"
    assert digest(photo) == before
    assert stat.S_IMODE(result.target.stat().st_mode) == 0o644
    assert writer.read_stored(photo, settings).label == PickLabel.REJECTED


def test_read_only_folder_is_a_clear_error(writer, settings, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    photo = make_photo(folder / "p.jpg")
    raw = sample("canon_eos350d_stripped.cr2", tmp_path).rename(folder / "r.cr2")
    folder.chmod(0o555)
    try:
        before = snapshot(folder)
        for item in (photo, raw):
            with pytest.raises(MetadataError, match=r"folder .* is read-only") as info:
                writer.write_verdict(item, REJECTED, "fp", settings)
            assert info.value.path == item
        assert snapshot(folder) == before
    finally:
        folder.chmod(0o755)


def test_bad_input_raises_metadata_error(writer, settings, tmp_path):
    with pytest.raises(MetadataError, match="no such file"):
        writer.write_verdict(tmp_path / "missing.jpg", REJECTED, "fp", settings)
    gif = tmp_path / "a.gif"
    gif.write_bytes(b"GIF89a")
    with pytest.raises(MetadataError, match="does not write metadata"):
        writer.write_verdict(gif, REJECTED, "fp", settings)
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(make_photo(tmp_path / "whole.jpg").read_bytes()[:300])
    before = digest(truncated)
    with pytest.raises(MetadataError, match="exiv2") as info:
        writer.write_verdict(truncated, REJECTED, "fp", settings)
    assert info.value.path == truncated
    assert isinstance(info.value.__cause__, Exception)
    assert digest(truncated) == before
    assert temp_files(tmp_path) == []
    broken_sidecar = sample("nikon_d70_stripped.nef", tmp_path)
    Path(f"{broken_sidecar}.xmp").write_text("<x:xmpmeta this is not xml")
    with pytest.raises(MetadataError):
        writer.write_verdict(broken_sidecar, REJECTED, "fp", settings)
    assert Path(f"{broken_sidecar}.xmp").read_text() == "<x:xmpmeta this is not xml"


def test_non_ascii_file_names(writer, settings, tmp_path):
    photo = make_photo(tmp_path / "Fötö été 写真.jpg")
    writer.write_verdict(photo, ACCEPTED, "fp", settings)
    assert writer.read_stored(photo, settings).label == PickLabel.ACCEPTED


def test_undecodable_file_names(writer, settings, tmp_path):
    photo = tmp_path / os.fsdecode(b"caf\xe9-latin1.jpg")  # not valid UTF-8
    photo.write_bytes(cv2.imencode(".jpg", pixels())[1].tobytes())
    writer.write_verdict(photo, REJECTED, "fp", settings)
    assert writer.read_stored(photo, settings).label == PickLabel.REJECTED


def test_symlinked_photo_is_written_through_the_link(writer, settings, tmp_path):
    real = make_photo(tmp_path / "real.jpg")
    link = tmp_path / "link.jpg"
    link.symlink_to(real)
    writer.write_verdict(link, ACCEPTED, "fp", settings)
    assert link.is_symlink()
    assert writer.read_stored(real, settings).label == PickLabel.ACCEPTED


# --- isolation -------------------------------------------------------------------------


def test_a_crashing_exiv2_costs_one_file(settings, tmp_path, monkeypatch):
    crash_exiv2_on(monkeypatch, "crashme")
    crash = make_photo(tmp_path / "crashme.jpg")
    crash_on_write = make_photo(tmp_path / "crashme-later.jpg")
    fine = make_photo(tmp_path / "fine.jpg")
    before = snapshot(tmp_path)
    with MetadataWriter() as writer:
        with pytest.raises(MetadataError, match="exiv2 crashed on this file"):
            writer.write_verdict(crash, REJECTED, "fp", settings)
        assert writer.write_verdict(fine, REJECTED, "fp", settings).written
        # Not retried in a loop: the same unchanged file is refused without exiv2.
        with pytest.raises(MetadataError, match="not retried"):
            writer.write_verdict(crash, REJECTED, "fp", settings)
        assert writer.backend.starts == 2
        # A crash while the temporary copy is modified leaves the original alone.
        crash_exiv2_on(monkeypatch, ".crashme-later.jpg.")
        writer.close()  # the next exiv2 process takes the new mark
        with pytest.raises(MetadataError, match="exiv2 crashed on this file"):
            writer.write_verdict(crash_on_write, REJECTED, "fp", settings)
        assert writer.read_stored(fine, settings).label == PickLabel.REJECTED
    after = snapshot(tmp_path)
    assert after["crashme.jpg"] == before["crashme.jpg"]
    assert after["crashme-later.jpg"] == before["crashme-later.jpg"]
    assert temp_files(tmp_path) == []


def test_threads_share_one_writer(writer, settings, tmp_path):
    photos = [make_photo(tmp_path / f"t{i}.jpg", seed=i) for i in range(8)]

    def write(photo: Path):
        return writer.write_verdict(photo, PENDING, photo.name, settings)

    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda p: writer.write_verdict(p, PENDING, p.name, settings), photos)
        )
    assert all(r.written for r in results)
    for photo in photos:
        stored = writer.read_stored(photo, settings)
        assert (stored.label, stored.fingerprint) == (PickLabel.PENDING, photo.name)


def test_in_process_mode_writes_the_same(settings, tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")
    with MetadataWriter(isolated=False) as inproc, MetadataWriter() as isolated:
        inproc.write_verdict(a, REJECTED, "fp", settings)
        isolated.write_verdict(b, REJECTED, "fp", settings)
        assert inproc.read_stored(b, settings).files[0].xmp == (
            isolated.read_stored(a, settings).files[0].xmp
        )


def test_writer_accepts_settings_positionally(settings, tmp_path):
    photo = make_photo(tmp_path / "p.png")
    with MetadataWriter(settings, isolated=False) as writer:
        assert writer.write_verdict(photo, PENDING, "fp", settings).written


def test_module_level_functions_use_a_default_writer(settings, tmp_path):
    photo = make_photo(tmp_path / "p.webp")
    result = metadata.write_verdict(photo, PENDING, "fp-9", settings)
    assert result.target == metadata.target_for(photo, settings) == photo
    stored = metadata.read_stored(photo, settings)
    assert stored.label == PickLabel.PENDING
    assert stored.fingerprint == "fp-9"
    assert stored.score == 45.0
    assert stored.diagnostics["blur"] == 0.02
    assert stored.to_json()["label"] == "Pending"


@needs_exiv2
@pytest.mark.parametrize("in_kernel", [True, False])
def test_the_copy_before_a_write_keeps_every_byte_either_way(writer, settings, tmp_path,
                                                            monkeypatch, in_kernel):
    """The photo is copied by copy_file_range where the kernel has it, else read and
    written: both give the photo back with its pixels and other metadata untouched."""
    if not in_kernel:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    photo = sample("LadyBird.jpg", tmp_path, sub="photos")
    before = photo.read_bytes()
    source, copy = tmp_path / "source.bin", tmp_path / "copy.bin"
    source.write_bytes(before + bytes(range(256)) * 4099)  # larger than one call may copy
    with source.open("rb") as src, copy.open("wb") as out:
        assert metadata._copy_in_kernel(src.fileno(), out.fileno()) is in_kernel
    if in_kernel:
        assert copy.read_bytes() == source.read_bytes()
    writer.write_verdict(photo, ACCEPTED, "fp-copy", settings)
    assert jpeg_scan(photo.read_bytes()) == jpeg_scan(before)
    assert metadata.read_stored(photo, settings).fingerprint == "fp-copy"
    assert temp_files(photo.parent) == []


def jpeg_variants(tmp_path: Path) -> dict[str, bytes]:
    """JPEGs whose scan data or trailer a metadata write must leave as it is."""
    bgr = pixels(3, (240, 320))
    out = {}
    for name, params in (("baseline", []), ("progressive", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                         ("restarts", [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])):
        ok, data = cv2.imencode(".jpg", bgr, params)
        assert ok
        out[name] = data.tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "Camera Maker"
    buffer = tmp_path / "exif.jpg"
    Image.fromarray(bgr[:, :, ::-1]).save(buffer, format="JPEG", exif=exif.tobytes(),
                                           xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    out["exif and xmp"] = buffer.read_bytes()
    out["trailer"] = out["baseline"] + b"TRAILER" + out["progressive"]  # e.g. an MPF image
    real = SAMPLES / "photos" / "LadyBird.jpg"
    if real.is_file():
        out["sample"] = real.read_bytes()
    return out


@needs_exiv2
def test_a_jpeg_write_edits_only_its_head_and_gives_the_same_bytes(writer, settings, tmp_path,
                                                                  monkeypatch):
    """exiv2 edits only a JPEG's marker segments, in memory; the photo written is, byte
    for byte, what exiv2 editing the whole photo gives, over two writes (a new XMP packet,
    then one changed)."""
    edited: list[str] = []
    call = writer.backend.call

    def spy(request, *args, **kwargs):
        if request["op"].startswith("modify"):
            edited.append(request["op"])
        return call(request, *args, **kwargs)

    monkeypatch.setattr(writer.backend, "call", spy)
    for name, data in jpeg_variants(tmp_path).items():
        spliced, whole = tmp_path / "spliced" / f"{name}.jpg", tmp_path / "whole" / f"{name}.jpg"
        for path in (spliced, whole):
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
        for verdict in (ACCEPTED, REJECTED):
            edited.clear()
            writer.write_verdict(spliced, verdict, "fp-s", settings, force=True)
            assert edited == ["modify_bytes"], name
            with monkeypatch.context() as whole_photo:
                whole_photo.setattr(MetadataWriter, "_spliced_head", lambda *a, **k: None)
                writer.write_verdict(whole, verdict, "fp-s", settings, force=True)
            assert spliced.read_bytes() == whole.read_bytes(), name
        assert jpeg_scan(spliced.read_bytes()) == jpeg_scan(data), name
        assert spliced.read_bytes().endswith(data[-2000:]), name
        assert metadata.read_stored(spliced, settings).label == PickLabel.REJECTED
        assert temp_files(spliced.parent) == []


@needs_exiv2
def test_a_jpeg_without_a_scan_is_edited_whole(writer, settings, tmp_path):
    """A .jpg whose markers do not lead to a scan (here a PNG under that name) is copied
    and edited whole, as before."""
    photo = tmp_path / "png.jpg"
    assert cv2.imwrite(str(tmp_path / "p.png"), pixels(4))
    (tmp_path / "p.png").rename(photo)
    assert metadata.jpeg_scan_start(photo.open("rb")) is None
    assert writer.write_verdict(photo, ACCEPTED, "fp-p", settings).written
    assert metadata.read_stored(photo, settings).fingerprint == "fp-p"
    assert temp_files(tmp_path) == []
