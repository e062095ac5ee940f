"""What the CLI tells a new user: missing paths, --help, summaries, show and status.

Every test runs the real entry point (``python -m iqs_daemon``) in an isolated home.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from daemonkit import all_scored, cli, daemon_env, idle, jpeg, running, settings_for, wait_for

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def test_missing_paths_are_named_before_the_model_loads(tmp_path):
    env = daemon_env(tmp_path)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "a.jpg").write_bytes(jpeg(120))
    # A model that does not exist: loading it would fail with exit code 1.
    result = cli(["score", "--set", 'model.model_path="/nonexistent/model.onnx"',
                  str(tmp_path / "typo1"), str(tmp_path / "here"), str(tmp_path / "typo2.jpg")],
                 env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [f"iqs-daemon: error: no such file or folder: {tmp_path / 'typo1'}",
                     f"iqs-daemon: error: no such file or folder: {tmp_path / 'typo2.jpg'}"]
    assert "model" not in result.stderr
    assert result.stdout == ""


COMMANDS = ["score", "show", "config", "eval", "start", "status", "install-service"]
INTERNAL_TYPE = re.compile(r"<(bool|int|float|str|file|path|list\[\w+\])>|\{\w+\}", re.IGNORECASE)


@pytest.mark.parametrize("columns", ["80", "200"])
def test_help_reads_like_a_usual_cli_within_80_columns(tmp_path, columns):
    env = daemon_env(tmp_path, COLUMNS=columns)
    pages = {name: cli([name, "--help"] if name else ["--help"], env) for name in ["", *COMMANDS]}
    for name, page in pages.items():
        assert page.returncode == 0, (name, page.stderr)
        assert not INTERNAL_TYPE.search(page.stdout), (name, INTERNAL_TYPE.search(page.stdout))
        assert max(map(len, page.stdout.splitlines())) <= 80, name
        assert page.stdout.startswith(f"Usage: iqs-daemon {name}".rstrip()), name
    score = pages["score"].stdout
    assert "Usage: iqs-daemon score [OPTIONS] PATHS..." in score
    assert "-j, --jobs JOBS" in score
    assert "-c, --config FILE" in score
    assert re.search(r"^  --dry-run +Score, but", score, re.MULTILINE)  # a flag takes no value
    # The docstring's paragraphs are re-wrapped, not broken where the source lines end.
    assert "a star\n  rating, its score" in score or "a star rating," in score


# --- score: --json stars and the summary --------------------------------------------------


def model_set(model: Path) -> list[str]:
    return ["--set", f"model.model_path={json.dumps(str(model))}"]


def exiftool(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-n", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
@pytest.mark.parametrize("rejected_rating", [-1, 0])
def test_json_stars_are_the_rating_the_file_holds(tmp_path, tiny_model, rejected_rating):
    env = daemon_env(tmp_path)
    photo = tmp_path / "dark.jpg"
    photo.write_bytes(jpeg(15))
    result = cli(["score", "--json", *model_set(tiny_model), "--set",
                  f"metadata.rejected_rating={rejected_rating}", str(photo)], env)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["label"] == "Rejected"
    assert record["stars"] == rejected_rating
    assert exiftool(photo)["XMP-xmp:Rating"] == rejected_rating


def summary_folder(root: Path) -> dict[str, Path]:
    root.mkdir()
    photos = {"dark": root / "dark.jpg", "mid": root / "mid.jpg", "bright": root / "bright.jpg",
              "hand": root / "hand.jpg", "locked": root / "locked.jpg"}
    for name, brightness in (("dark", 15), ("mid", 120), ("bright", 240), ("hand", 15),
                             ("locked", 240)):
        photos[name].write_bytes(jpeg(brightness, seed=brightness))
    # Set in digiKam before we ever saw it: Accepted, 4 stars.
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-digiKam:PickLabel=3",
                    "-XMP-xmp:Rating=4", str(photos["hand"])], check=True)
    photos["locked"].chmod(0o444)
    return photos


def label_rows(text: str) -> dict[str, tuple[str, ...]]:
    """The summary's label table: label -> (ours, set by hand)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3 and cells[0] in ("Rejected", "Pending", "Accepted"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_summary_shows_the_folders_labels_hand_labels_and_read_only_photos(tmp_path, tiny_model):
    env = daemon_env(tmp_path, COLUMNS="80")
    photos = summary_folder(tmp_path / "photos")
    first = cli(["score", *model_set(tiny_model), str(tmp_path / "photos")], env)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert max(len(line) for line in out.splitlines() if str(tmp_path) not in line) <= 80
    assert out.splitlines()[0] == "5 photos, model iqs-tiny-test test-1"
    # hand.jpg is ours Rejected but shows Accepted, set by hand: listed as that.
    assert label_rows(out) == {"Rejected": ("1", "0"), "Pending": ("1", "0"),
                               "Accepted": ("2", "1")}
    assert "Throughput:" in out
    assert f"1 read-only, so written to a sidecar beside them:\n  {photos['locked']}\n" in out
    assert Path(f"{photos['locked']}.xmp").is_file()

    again = cli(["score", *model_set(tiny_model), str(tmp_path / "photos")], env)
    assert again.returncode == 0, again.stderr
    assert label_rows(again.stdout) == label_rows(out)  # what the folder holds, not zeros
    assert "(already scored, not changed)" in again.stdout
    assert "photos/s" not in again.stdout  # nothing was scored


# --- show ------------------------------------------------------------------------------


def show_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_show_marks_a_kept_hand_label(tmp_path, tiny_model):
    env = daemon_env(tmp_path, COLUMNS="200")
    photos = summary_folder(tmp_path / "photos")
    assert cli(["score", *model_set(tiny_model), str(photos["hand"]), str(photos["dark"])],
               env).returncode == 0
    shown = cli(["show", str(photos["hand"]), str(photos["dark"])], env)
    assert shown.returncode == 0, shown.stderr
    hand_part, dark_part = shown.stdout.split(str(photos["dark"]) + "\n", 1)
    assert show_rows(hand_part)["Hand label (kept)"] == "Accepted, set by hand; ours is Rejected"
    assert "Hand label (kept)" not in dark_part
    record = json.loads(cli(["show", "--json", str(photos["hand"])], env).stdout)
    assert (record["hand_label"], record["label"]) == ("Accepted", "Rejected")


CR3 = SAMPLES / "raw" / "canon_eos_r6_truncated.cr3"


@pytest.mark.skipif(not CR3.is_file(), reason="camera sample canon_eos_r6_truncated.cr3 absent")
def test_show_says_a_raw_was_judged_from_its_embedded_preview(tmp_path, tiny_model):
    env = daemon_env(tmp_path, COLUMNS="200")
    raw = tmp_path / CR3.name
    shutil.copyfile(CR3, raw)
    assert cli(["score", *model_set(tiny_model), str(raw)], env).returncode == 0
    shown = cli(["show", str(raw)], env)
    assert shown.returncode == 0, shown.stderr
    assert show_rows(shown.stdout)["Judged from"] == "embedded preview 1620x1080"
    record = json.loads(cli(["show", "--json", str(raw)], env).stdout)
    assert record["judged_from"] == "embedded preview 1620x1080"


def test_show_on_an_empty_file_says_empty_file(tmp_path):
    env = daemon_env(tmp_path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    shown = cli(["show", str(empty)], env)
    assert shown.returncode == 3
    assert shown.stderr.strip() == f"iqs-daemon: error: {empty}: empty file"


# --- status ------------------------------------------------------------------------------


def test_status_when_stopped_shows_no_speed_and_totals_per_watched_folder(
        tmp_path, tiny_model, env_paths):
    settings = settings_for(env_paths, tiny_model)
    old, new = tmp_path / "old-card", tmp_path / "Pictures"
    for root, count in ((old, 3), (new, 2)):
        root.mkdir()
        photos = [root / f"p{i}.jpg" for i in range(count)]
        for i, photo in enumerate(photos):
            photo.write_bytes(jpeg(15 if i == 0 else 240, seed=i))
        with running(settings, env_paths, [root]) as daemon:
            wait_for(lambda d=daemon, p=photos: all_scored(d, p) and idle(d))
    report = json.loads(cli(["status", "--json"], daemon_env(tmp_path)).stdout)
    assert report["running"] is False
    assert "photos_per_second" not in report
    assert report["totals_by_folder"] == {str(new): {"Rejected": 1, "Accepted": 1}}
    assert report["totals"] == {"Rejected": 1, "Accepted": 1}
    assert report["elsewhere"] == 3
    lines = cli(["status"], daemon_env(tmp_path)).stdout.splitlines()
    assert not any(line.startswith("Speed") for line in lines)
    assert f"Photos in {new}: 1 Accepted, 1 Rejected." in lines
    assert "Elsewhere (folders not watched now): 3 photos." in lines


# --- 10-bit HDR HEIF ------------------------------------------------------------------------


def pq_heif(path: Path, code_value: int) -> Path:
    """A real 10-bit HEIF tagged PQ / BT.2020 (x265 through pillow-heif), flat with detail."""
    import numpy as np
    import pillow_heif

    pixels = np.full((96, 128, 3), code_value, np.uint16)
    pixels[::5] = min(code_value * 2, 65535)
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(128, 96), data=pixels.tobytes())
    heif.save(path, quality=-1, nclx_profile={"color_primaries": 9, "transfer_characteristics": 16,
                                              "matrix_coefficients": 9, "full_range_flag": 1})
    return path


R5 = SAMPLES / "raw" / "canon_eos_r5.hif"


@pytest.mark.skipif(not R5.is_file(), reason="camera sample canon_eos_r5.hif absent")
def test_hdr_heif_that_decodes_black_is_not_judged(tmp_path, tiny_model):
    env = daemon_env(tmp_path)
    hif = tmp_path / R5.name
    shutil.copyfile(R5, hif)
    try:
        good = pq_heif(tmp_path / "hdr.heic", 32768)  # PQ 0.5: about 92 cd/m2
    except (OSError, ValueError, KeyError) as exc:  # pillow-heif built without an encoder
        pytest.skip(f"cannot write a 10-bit HEIF here: {exc}")
    result = cli(["score", "--json", *model_set(tiny_model), str(hif), str(good)], env)
    assert result.returncode == 3, result.stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records[hif.name]["status"] == "failed"
    assert "label" not in records[hif.name]
    assert "all-black frame" in records[hif.name]["error"]
    assert "not judged" in records[hif.name]["error"]
    assert not Path(f"{hif}.xmp").exists()  # no verdict anywhere
    assert records["hdr.heic"]["status"] == "scored"  # a real PQ photo is judged
    assert Path(f"{good}.xmp").is_file()
    said = " ".join(result.stderr.split())  # the console wraps long lines
    assert f"failed {hif}: 10-bit HDR (PQ) HEIF decodes to an all-black frame" in said
