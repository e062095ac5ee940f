"""Every format through the real ``iqs-daemon score`` and ``iqs-daemon show`` (issue #4).

One folder holds photos generated here (JPEG, JFIF, PNG, TIFF, WebP, BMP, HEIC, AVIF) and
copies of every camera file in ``../shared/samples/raw`` (see its SOURCES.md). It is
scored once by the entry point with the tiny test model (score = mean brightness), shown
once, and every file is then checked: the right target, every tag read back by exiftool
and by the exiv2 command under digiKam's key names, ``show`` agreeing with both, and the
photo itself unchanged (sidecar formats byte for byte; embedded formats pixel for pixel,
JPEG scan data byte for byte), with its permission bits and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelfactory import build_tiny_model
from PIL import Image
from readback import (
    exiftool_many,
    exiftool_warnings,
    exiv2_tags,
    exiv2_types,
    jpeg_scan,
    needs_readers,
)

pytestmark = needs_readers

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
RAW = SAMPLES / "raw"
CAMERA_FILES = sorted(p.name for p in RAW.glob("*") if p.suffix.lower() != ".md")
# ExifTool's stripped test files carry no preview to score: exiftool puts one into the copy.
NEEDS_PREVIEW = {
    "canon_eos350d_stripped.cr2",
    "nikon_d70_stripped.nef",
    "fujifilm_s5pro_stripped.raf",
    "panasonic_dmc-lx3_stripped.rw2",
}
NO_PREVIEW = {"apple_iphone12pro_pruned.dng"}  # pruned to nothing: a clear failure
# 10-bit HEIF that libheif decodes to black (the R5's HDR, Sony's pruned data): not judged.
BLACK_FRAME = {"canon_eos_r5.hif", "sony_ilce-1_pruned.hif"}
# No real ARW/ORF/PEF/SRW exists in the samples (SOURCES.md, "Gaps"): a DNG under those
# names checks the extension rule (sidecar, original untouched), not those containers.
RENAMED = {f"dng_as.{ext}": "canon_eos6d_linear.dng" for ext in ("ARW", "orf", "pef", "SRW")}
GENERATED = {  # name -> mean brightness: <76 Rejected, >=153 Accepted (the tiny model)
    "dark.jpg": 40,
    "mid.jfif": 120,
    "mid.png": 110,
    "bright.tif": 200,
    "dark.webp": 30,
    "bright.bmp": 210,
    "bright.heic": 220,
    "mid.avif": 100,
}
EMBEDDED = {".jpg", ".jfif", ".png", ".tif", ".webp"}
EXIF_RATINGS = {".jpg", ".jfif", ".tif"}  # EXIF Rating/RatingPercent: JPEG and TIFF only
PICK = {"Rejected": 1, "Pending": 2, "Accepted": 3}
PERCENT = (0, 1, 25, 50, 75, 99)
OLD_MTIME_NS = 1_600_000_000_123_456_789
# exiv2 (so digiKam) and Windows declare MicrosoftPhoto with a trailing slash;
# exiftool's table lacks it, so exiftool notes a minor fix-up. Nothing else may appear.
EXPECTED_WARNINGS = {"[minor] Fixed incorrect URI for xmlns:MicrosoftPhoto"}


# --- building the folder ------------------------------------------------------------------


def photo_pixels(brightness: int, seed: int) -> np.ndarray:
    """Smooth random detail around a mean brightness (BGR)."""
    rng = np.random.default_rng(seed)
    small = rng.normal(brightness, 25, (12, 16, 3))
    return np.clip(cv2.resize(small, (256, 192), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
        np.uint8
    )


def generate(path: Path, brightness: int, seed: int) -> None:
    bgr = photo_pixels(brightness, seed)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jfif"):
        path.write_bytes(cv2.imencode(".jpg", bgr)[1].tobytes())
    elif suffix in (".png", ".tif", ".bmp"):
        assert cv2.imwrite(str(path), bgr)
    elif suffix == ".webp":
        Image.fromarray(bgr[:, :, ::-1]).save(path, format="WEBP", lossless=True)
    else:  # HEIC, AVIF: the decoder's own encoder
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
        fmt = "AVIF" if suffix == ".avif" else "HEIF"
        Image.fromarray(bgr[:, :, ::-1]).save(path, format=fmt, quality=90)


def decode_pixels(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".webp":
        return np.asarray(Image.open(path).convert("RGB"))
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def add_preview(path: Path, work: Path) -> None:
    """Put a 640x480 preview JPEG where LibRaw looks for one in each container."""
    preview = work / "preview.jpg"
    if not preview.exists():
        bgr = cv2.resize(photo_pixels(90, 7), (640, 480), interpolation=cv2.INTER_CUBIC)
        preview.write_bytes(cv2.imencode(".jpg", bgr)[1].tobytes())
    tag = {".raf": "ThumbnailImage", ".rw2": "JpgFromRaw"}.get(path.suffix.lower(), "PreviewImage")
    subprocess.run(
        ["exiftool", "-q", "-q", "-m", "-overwrite_original", f"-{tag}<={preview}", str(path)],
        check=True,
    )


def build_folder(folder: Path, work: Path) -> list[str]:
    folder.mkdir()
    for seed, (name, brightness) in enumerate(GENERATED.items()):
        generate(folder / name, brightness, seed)
    if RAW.is_dir():
        for name in CAMERA_FILES:
            shutil.copyfile(RAW / name, folder / name)  # never the sample itself
            if name in NEEDS_PREVIEW:
                add_preview(folder / name, work)
        for name, source in RENAMED.items():
            if (RAW / source).is_file():
                shutil.copyfile(RAW / source, folder / name)
    names = sorted(p.name for p in folder.iterdir())
    for i, name in enumerate(names):
        path = folder / name
        path.chmod(0o640 if i % 2 else 0o604)  # odd modes, so a reset would show
        os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS + i))
    return names


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iqs_daemon", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IQS_")}
    for name in ("IQS_CONFIG_DIR", "IQS_STATE_DIR", "IQS_RUNTIME_DIR"):
        env[name] = str(home / name.lower())
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p
    )
    return env


def model_set(model: Path) -> list[str]:
    return ["--set", f"model.model_path={json.dumps(str(model))}"]


@dataclass(frozen=True)
class Before:
    digest: str
    mtime_ns: int
    mode: int
    pixels: np.ndarray | None
    scan: bytes | None


def before_state(path: Path) -> Before:
    data = path.read_bytes()
    st = path.stat()
    embedded = path.suffix.lower() in EMBEDDED
    return Before(
        digest=hashlib.sha256(data).hexdigest(),
        mtime_ns=st.st_mtime_ns,
        mode=stat.S_IMODE(st.st_mode),
        pixels=decode_pixels(path) if embedded else None,
        scan=jpeg_scan(data) if path.suffix.lower() in (".jpg", ".jfif") else None,
    )


@dataclass(frozen=True)
class Run:
    folder: Path
    names: list[str]
    before: dict[str, Before]
    score: subprocess.CompletedProcess[str]
    records: dict[str, dict]
    shown: dict[str, dict]
    exiftool: dict[Path, dict]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    work = tmp_path_factory.mktemp("roundtrip")
    model = build_tiny_model(work / "tiny.onnx")
    folder = work / "photos"
    names = build_folder(folder, work)
    before = {name: before_state(folder / name) for name in names}
    env = isolated_env(work)
    score = cli("score", "--json", *model_set(model), str(folder), env=env)
    records = {Path(r["path"]).name: r for r in map(json.loads, score.stdout.splitlines())}
    show = cli("show", "--json", *(str(folder / n) for n in names), env=env)
    assert show.returncode == 0, show.stderr
    shown = {Path(r["path"]).name: r for r in map(json.loads, show.stdout.splitlines())}
    targets = [Path(r["written_to"]) for r in records.values() if r.get("written_to")]
    return Run(folder, names, before, score, records, shown, exiftool_many(targets))


def expected_target(folder: Path, name: str) -> Path:
    photo = folder / name
    return photo if photo.suffix.lower() in EMBEDDED else Path(f"{photo}.xmp")


def scored_names() -> list[str]:
    names = list(GENERATED) + [n for n in CAMERA_FILES if n not in NO_PREVIEW | BLACK_FRAME]
    return names + [n for n, source in RENAMED.items() if source in CAMERA_FILES]


def record_for(run: Run, name: str) -> dict:
    if name not in run.records and not (run.folder / name).exists():
        pytest.skip(f"{name}: the camera samples in {RAW} are not available")
    record = run.records[name]
    assert record["status"] == "scored", record
    return record


def stars(record: dict) -> int:
    return 0 if record["label"] == "Rejected" else record["stars"]


# --- the run as a whole ---------------------------------------------------------------------


def test_every_photo_is_reported_and_only_the_undecodable_ones_fail(run):
    assert set(run.records) == set(run.names), "one JSON record per photo"
    failed = {n for n, r in run.records.items() if r["status"] != "scored"}
    expected = (NO_PREVIEW | BLACK_FRAME) & set(run.names)
    assert failed == expected, run.score.stderr
    assert run.score.returncode == (3 if expected else 0)
    assert "Traceback" not in run.score.stderr
    for name in expected:
        reason = "no usable preview" if name in NO_PREVIEW else "all-black frame"
        assert reason in run.records[name]["error"]
        assert not Path(f"{run.folder / name}.xmp").exists()
        assert hashlib.sha256((run.folder / name).read_bytes()).hexdigest() == (
            run.before[name].digest
        )
    labels = {r["label"] for r in run.records.values() if r["status"] == "scored"}
    assert labels == {"Rejected", "Pending", "Accepted"}, "every label went through"


def test_no_temporary_files_are_left(run):
    assert not [p.name for p in run.folder.iterdir() if p.name.endswith(".iqs-tmp")]
    sidecars = {p.name for p in run.folder.iterdir() if p.suffix == ".xmp"}
    assert sidecars == {
        f"{n}.xmp" for n in scored_names() if n in run.names and Path(n).suffix not in EMBEDDED
    }


# --- per photo ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", scored_names())
def test_target_is_embedded_or_a_sidecar_named_photo_ext_xmp(run, name):
    record = record_for(run, name)
    assert Path(record["written_to"]) == expected_target(run.folder, name)
    assert not record["kept_user_label"]


@pytest.mark.parametrize("name", scored_names())
def test_exiftool_reads_every_tag(run, name):
    record = record_for(run, name)
    target = expected_target(run.folder, name)
    tags = run.exiftool[target]
    label = record["label"]
    assert tags["XMP-digiKam:PickLabel"] == PICK[label]
    assert tags["XMP-xmp:Rating"] == (-1 if label == "Rejected" else record["stars"])
    assert tags["XMP-microsoft:RatingPercent"] == PERCENT[stars(record)]
    assert tags["XMP-iqs:Score"] == round(record["score"], 1)
    assert tags["XMP-iqs:Label"] == label
    assert tags.get("XMP-iqs:Reasons", []) == record["reasons"]
    for diagnostic, value in record["diagnostics"].items():
        assert tags[f"XMP-iqs:{diagnostic.capitalize()}"] == pytest.approx(value, abs=5e-4)
    assert (tags["XMP-iqs:ModelName"], tags["XMP-iqs:ModelVersion"]) == ("iqs-tiny-test", "test-1")
    assert tags["XMP-iqs:PickLabel"] == PICK[label]
    assert tags["XMP-iqs:Rating"] == tags["XMP-xmp:Rating"]
    assert "XMP-digiKam:ColorLabel" not in tags  # off by default
    if Path(name).suffix.lower() in EXIF_RATINGS:
        assert tags["IFD0:Rating"] == stars(record)
        assert tags["IFD0:RatingPercent"] == PERCENT[stars(record)]
    else:  # PNG, WebP and every sidecar: XMP only
        assert not any(k.startswith(("IFD0:", "ExifIFD:")) for k in tags)


@pytest.mark.parametrize("name", scored_names())
def test_exiv2_reads_digikams_keys(run, name):
    record = record_for(run, name)
    target = expected_target(run.folder, name)
    px = exiv2_tags(target, "-px")
    label = record["label"]
    rating = "-1" if label == "Rejected" else str(record["stars"])
    assert px["Xmp.digiKam.PickLabel"] == str(PICK[label])
    assert px["Xmp.xmp.Rating"] == rating
    assert px["Xmp.MicrosoftPhoto.Rating"] == str(PERCENT[stars(record)])
    assert px["Xmp.iqs.Label"] == label
    assert px["Xmp.iqs.Score"] == f"{record['score']:.1f}"
    assert px["Xmp.iqs.ModelName"] == "iqs-tiny-test"
    if record["reasons"]:  # ordered, strongest first
        assert exiv2_types(target)["Xmp.iqs.Reasons"] == "XmpSeq"
        assert px["Xmp.iqs.Reasons"] == ", ".join(record["reasons"])
    if Path(name).suffix.lower() in EXIF_RATINGS:
        pa = exiv2_tags(target)
        assert pa["Exif.Image.Rating"] == str(stars(record))
        assert pa["Exif.Image.RatingPercent"] == str(PERCENT[stars(record)])


@pytest.mark.parametrize("name", scored_names())
def test_show_agrees_with_the_independent_readers(run, name):
    record = record_for(run, name)
    shown = run.shown[name]
    tags = run.exiftool[expected_target(run.folder, name)]
    assert shown["label"] == record["label"]
    assert shown["pick_label"] == record["label"]
    assert shown["rating"] == tags["XMP-xmp:Rating"]
    assert shown["microsoft_rating"] == tags["XMP-microsoft:RatingPercent"]
    assert shown["score"] == tags["XMP-iqs:Score"]
    assert shown["reasons"] == record["reasons"]
    scored_at = exiv2_tags(expected_target(run.folder, name), "-px")["Xmp.iqs.ScoredAt"]
    assert shown["scored_at"] == scored_at  # exiftool reformats dates: exiv2 gives it as is
    assert shown["model_version"] == "test-1"
    target = str(expected_target(run.folder, name))
    assert shown["sources"]["label"] == shown["sources"]["rating"] == target
    assert shown["files"][0]["path"] == target
    kind = "embedded" if Path(name).suffix.lower() in EMBEDDED else "sidecar"
    assert shown["files"][0]["kind"] == kind
    if kind == "sidecar":  # the photo's own metadata is listed after the sidecar
        assert (shown["files"][1]["path"], shown["files"][1]["kind"]) == (
            str(run.folder / name),
            "embedded",
        )
    assert shown["problems"] == []


@pytest.mark.parametrize("name", scored_names())
def test_photo_is_unchanged_apart_from_its_xmp(run, name):
    record_for(run, name)
    photo = run.folder / name
    before = run.before[name]
    st = photo.stat()
    assert stat.S_IMODE(st.st_mode) == before.mode, "permission bits kept"
    assert st.st_mtime_ns == before.mtime_ns, "modification time kept"
    data = photo.read_bytes()
    if before.pixels is None:
        assert hashlib.sha256(data).hexdigest() == before.digest, "never written into"
        return
    assert hashlib.sha256(data).hexdigest() != before.digest, "the XMP went inside"
    assert np.array_equal(decode_pixels(photo), before.pixels), "pixels unchanged"
    if before.scan is not None:
        assert jpeg_scan(data) == before.scan, "JPEG entropy-coded data unchanged"


@pytest.mark.parametrize("name", scored_names())
def test_exiftool_gives_no_new_warning(run, name):
    record_for(run, name)
    target = expected_target(run.folder, name)
    if target == run.folder / name:
        # Warnings about the generated file itself would be there without us too.
        copy = run.folder.parent / f"plain-{name}"
        if not copy.exists():
            generate(copy, GENERATED[name], list(GENERATED).index(name))
        new = exiftool_warnings(target) - exiftool_warnings(copy)
    else:
        new = exiftool_warnings(target)
    assert new <= EXPECTED_WARNINGS


def test_microsoft_namespace_is_the_one_exiv2_and_windows_write(run):
    """``http://ns.microsoft.com/photo/1.0/``: exiv2 (digiKam) and Windows use the slash."""
    target = expected_target(run.folder, "dark.jpg")
    if run.records.get("dark.jpg", {}).get("status") != "scored":
        pytest.fail("dark.jpg was not scored")
    packet = subprocess.run(
        ["exiftool", "-b", "-XMP", str(target)], capture_output=True, check=True
    ).stdout
    assert b'xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"' in packet
    assert b'xmlns:digiKam="http://www.digikam.org/ns/1.0/"' in packet
    assert b'xmlns:iqs="https://iqs-daemon.org/ns/1.0/"' in packet


# --- behaviour through the CLI: re-scoring, the user's labels, settings ---------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {v: build_tiny_model(folder / f"{v}.onnx", version=v) for v in ("test-1", "test-2")}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return isolated_env(tmp_path / "home")


def camera_copy(name: str, folder: Path, new_name: str | None = None) -> Path:
    source = RAW / name
    if not source.is_file():
        pytest.skip(f"camera sample {source} is not available")
    copy = folder / (new_name or name)
    shutil.copyfile(source, copy)
    copy.chmod(0o644)
    return copy


def score_json(env: dict[str, str], model: Path, *args: str) -> dict[str, dict]:
    result = cli("score", "--json", *model_set(model), *args, env=env)
    assert result.returncode == 0, result.stderr
    return {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}


def exiftool_write(path: Path, *assignments: str) -> None:
    subprocess.run(
        ["exiftool", "-q", "-m", "-overwrite_original", *assignments, str(path)], check=True
    )


def others(tags: dict) -> dict:
    """Every tag iqs-daemon does not own (file system and computed values left out)."""
    ours = ("XMP-iqs:", "XMP-digiKam:PickLabel", "XMP-xmp:Rating", "XMP-microsoft:Rating")
    ours += ("IFD0:Rating", "System:", "File:", "ExifTool:", "XMP-x:XMPToolkit")
    return {k: v for k, v in tags.items() if not k.startswith(ours) and k != "SourceFile"}


def test_rescore_replaces_only_our_own_tags(models, env, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    jpg = folder / "dark.jpg"
    generate(jpg, 40, 1)
    raw = camera_copy("canon_eos_r6_truncated.cr3", folder)
    first = score_json(env, models["test-1"], str(folder))
    assert {first["dark.jpg"]["label"], first[raw.name]["label"]} == {"Rejected", "Pending"}
    sidecar = Path(f"{raw}.xmp")
    # Another program adds its own metadata after our first verdict.
    exiftool_write(jpg, "-XMP-dc:Subject=holiday", "-XMP-dc:Title=Beach", "-IPTC:Keywords=sea",
                   "-EXIF:Artist=Me", "-XMP-xmp:Label=Blue")  # fmt: skip
    exiftool_write(sidecar, "-XMP-dc:Subject+=holiday", "-XMP-dc:Subject+=kids",
                   "-XMP-dc:Description=dusk")  # fmt: skip
    before = exiftool_many([jpg, sidecar])
    scan, pixels = jpeg_scan(jpg.read_bytes()), decode_pixels(jpg)

    # A new model version: our labels change (they match our record: not the user's).
    second = score_json(
        env, models["test-2"], "--set", "verdict.reject_below=1", "--set",
        "verdict.accept_from=2", str(folder),
    )  # fmt: skip

    after = exiftool_many([jpg, sidecar])
    for path in (jpg, sidecar):
        record = second[path.name.removesuffix(".xmp")]
        assert (record["label"], record["kept_user_label"]) == ("Accepted", False)
        tags = after[path]
        assert tags["XMP-digiKam:PickLabel"] == 3
        assert tags["XMP-xmp:Rating"] == record["stars"]
        assert tags["XMP-iqs:ModelVersion"] == "test-2"
        assert "XMP-iqs:Reasons" not in tags, "reasons that no longer apply are removed"
        assert others(tags) == others(before[path]), "every other tag is as it was"
    assert (after[jpg]["XMP-dc:Subject"], after[jpg]["IPTC:Keywords"]) == (["holiday"], "sea")
    assert (after[jpg]["IFD0:Artist"], after[jpg]["XMP-xmp:Label"]) == ("Me", "Blue")
    assert after[sidecar]["XMP-dc:Subject"] == ["holiday", "kids"]
    assert jpeg_scan(jpg.read_bytes()) == scan
    assert np.array_equal(decode_pixels(jpg), pixels)


USER_SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmp:Rating="5" digiKam:PickLabel="3"/>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_the_users_labels_are_kept_unless_replace_hand_labels(models, env, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    jpg = folder / "dark.jpg"
    generate(jpg, 30, 2)
    exiftool_write(jpg, "-XMP-digiKam:PickLabel=3", "-XMP-xmp:Rating=5")  # set in digiKam
    heic = folder / "dark.heic"
    generate(heic, 30, 3)
    sidecar = Path(f"{heic}.xmp")
    sidecar.write_text(USER_SIDECAR, encoding="utf-8")  # digiKam's own sidecar
    heic_digest = hashlib.sha256(heic.read_bytes()).hexdigest()

    text = cli("score", *model_set(models["test-1"]), str(folder), env=env)
    assert text.returncode == 0, text.stderr
    kept = "Kept 2 labels or ratings set by hand (use --replace-hand-labels to replace)."
    assert kept in text.stdout
    for path in (jpg, sidecar):
        tags = exiftool_many([path])[path]
        assert (tags["XMP-digiKam:PickLabel"], tags["XMP-xmp:Rating"]) == (3, 5)
        assert tags["XMP-iqs:Label"] == "Rejected", "our verdict is recorded anyway"
        assert "XMP-iqs:PickLabel" not in tags, "and we do not claim the label"
    shown = json.loads(cli("show", "--json", str(heic), env=env).stdout)
    assert (shown["pick_label"], shown["rating"], shown["label"]) == ("Accepted", 5, "Rejected")

    # Re-scoring alone keeps them too: the two meanings of the old --force are apart.
    rescored = score_json(env, models["test-1"], "--rescore", str(folder))
    assert all(r.get("kept_user_label") for r in rescored.values()), rescored
    assert all(r["status"] == "scored" for r in rescored.values())

    forced = score_json(env, models["test-1"], "--replace-hand-labels", str(folder))
    assert not any(r["kept_user_label"] for r in forced.values())
    for path in (jpg, sidecar):
        tags = exiftool_many([path])[path]
        assert (tags["XMP-digiKam:PickLabel"], tags["XMP-xmp:Rating"]) == (1, -1)
    assert hashlib.sha256(heic.read_bytes()).hexdigest() == heic_digest


def test_sidecar_only_never_modifies_an_original(models, env, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, name in enumerate(("a.jpg", "b.jfif", "c.png", "d.tif", "e.webp")):
        generate(folder / name, 200, seed)
    camera_copy("canon_eos6d_linear.dng", folder)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
              for p in folder.iterdir()}  # fmt: skip
    sidecar_only = ("--set", "metadata.sidecar_only=true")

    records = score_json(env, models["test-1"], *sidecar_only, str(folder))

    assert set(records) == set(before)
    for name, (data, mtime_ns, inode) in before.items():
        photo = folder / name
        assert (photo.read_bytes(), photo.stat().st_mtime_ns, photo.stat().st_ino) == (
            data, mtime_ns, inode,
        ), f"{name} was modified"  # fmt: skip
        assert records[name]["written_to"] == f"{photo}.xmp"
        tags = exiftool_many([Path(f"{photo}.xmp")])[Path(f"{photo}.xmp")]
        assert tags["XMP-digiKam:PickLabel"] == PICK[records[name]["label"]]
        assert not any(k.startswith("IFD0:") for k in tags), "no EXIF ratings in a sidecar"
        shown = json.loads(cli("show", "--json", *sidecar_only, str(photo), env=env).stdout)
        assert shown["sources"]["label"] == f"{photo}.xmp"


def test_stem_sidecar_names_warn_about_a_raw_jpeg_pair(models, env, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = camera_copy("canon_eos_r6_truncated.cr3", folder, "IMG_0001.CR3")
    generate(folder / "IMG_0001.JPG", 200, 4)
    stem = ("--set", "metadata.sidecar_naming=stem")

    result = cli("score", "--json", *model_set(models["test-1"]), *stem, str(raw), env=env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["written_to"] == str(folder / "IMG_0001.xmp")
    assert "IMG_0001.CR3 and IMG_0001.JPG share the sidecar IMG_0001.xmp" in result.stderr
    assert not Path(f"{raw}.xmp").exists()
    shown = json.loads(cli("show", "--json", *stem, str(raw), env=env).stdout)
    assert shown["sources"]["label"] == str(folder / "IMG_0001.xmp")
