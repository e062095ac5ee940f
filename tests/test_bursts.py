"""Bursts: grouping, the relative-sharpness pick, the verdicts, and the tags in real files.

The pure parts run on real sample photos (damaged here); the end-to-end tests run the
real ``iqs-daemon score`` with the shipped model and read every tag back with exiftool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from iqs_daemon import bursts
from iqs_daemon.config import Paths, load_settings
from iqs_daemon.errors import ConfigError
from iqs_daemon.exposure import ExposureFacts
from iqs_daemon.records import Burst, PickLabel, Verdict
from iqs_daemon.sharpness import Signature, relative_sharpness, signature_of
from iqs_daemon.verdict import DEFAULT_POLICY, Policy
from iqs_daemon.xmp_tags import FileTags, burst_tags

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos"
needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="needs exiftool")
POLICY = Policy(**DEFAULT_POLICY, stars=(10.0, 30.0, 50.0, 70.0, 90.0))
CONFIG = bursts.BurstSettings(30.0, 0.96, PickLabel.PENDING)


def sample(name: str) -> np.ndarray:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"sample photo {path} not available")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def shifted(rgb: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = rgb.shape[:2]
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)


def brighter(rgb: np.ndarray, ev: float) -> np.ndarray:
    linear = (rgb.astype(np.float32) / 255) ** 2.2 * 2.0**ev
    return np.clip(linear ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8)


def motion(rgb: np.ndarray, length: int) -> np.ndarray:
    kernel = np.full((1, length), 1 / length, np.float32)
    return cv2.filter2D(rgb, -1, kernel)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def frame(name: str, at: float, embedding: np.ndarray, signature: Signature | None = None,
          median: float = 120.0, score: float = 60.0, hand: PickLabel | None = None
          ) -> bursts.Frame:
    return bursts.Frame(Path(f"/photos/{name}"), at, embedding, signature,
                        ExposureFacts(median, 0.0, 0.0), score, hand)


def verdict(name: str, label: PickLabel = PickLabel.ACCEPTED, score: float = 60.0) -> Verdict:
    return Verdict(Path(f"/photos/{name}"), score, label, 3, (), {}, "m", "1", "2026-01-01")


# --- sharpness ------------------------------------------------------------------------


def test_blur_is_less_sharp_and_exposure_changes_nothing():
    rgb = sample("LadyBird.jpg")
    original = signature_of(rgb)
    moved = shifted(rgb, 31, -17)
    assert relative_sharpness(original, signature_of(motion(moved, 3))) > bursts.SHARPNESS_TIE
    assert relative_sharpness(original, signature_of(cv2.GaussianBlur(moved, (0, 0), 1.0))) > 0.1
    assert relative_sharpness(signature_of(motion(moved, 3)), original) < -bursts.SHARPNESS_TIE
    for ev in (-0.3, 0.3):
        assert abs(relative_sharpness(original, signature_of(brighter(rgb, ev)))) < 0.02, ev


def test_signature_is_small_and_survives_bytes():
    s = signature_of(sample("Storm.jpg"))
    assert s.nbytes < 24_000
    back = Signature.from_bytes(s.to_bytes())
    assert np.array_equal(back.fine, s.fine)
    assert np.array_equal(back.contrast, s.contrast)
    assert np.array_equal(back.thumb, s.thumb)


# --- grouping -------------------------------------------------------------------------


def test_frames_close_in_time_and_alike_group_and_a_different_scene_a_second_later_does_not():
    rng = np.random.default_rng(0)
    scene_a, scene_b = rng.normal(size=320), rng.normal(size=320)
    near = [unit(scene_a + 0.05 * rng.normal(size=320)) for _ in range(4)]
    frames = [frame(f"a{i}.jpg", 100 + 0.3 * i, e) for i, e in enumerate(near)]
    frames.append(frame("b.jpg", 102.0, unit(scene_b)))  # another scene, a second later
    frames.append(frame("a_later.jpg", 103.0, unit(scene_a + 0.05 * rng.normal(size=320))))
    frames.append(frame("a_next_day.jpg", 100 + 86400, unit(scene_a)))  # alike, too late
    groups = bursts.group_frames(frames, 30.0, 0.96)
    names = sorted(sorted(frames[i].path.name for i in g) for g in groups)
    assert names == [["a0.jpg", "a1.jpg", "a2.jpg", "a3.jpg", "a_later.jpg"], ["a_next_day.jpg"],
                     ["b.jpg"]]


def test_a_series_spread_over_a_minute_is_one_group_with_a_chained_gap():
    rng = np.random.default_rng(1)
    scene = rng.normal(size=320)
    frames = [frame(f"f{i}.jpg", 15.0 * i, unit(scene + 0.05 * rng.normal(size=320)))
              for i in range(5)]
    assert len(bursts.group_frames(frames, 30.0, 0.96)) == 1
    assert len(bursts.group_frames(frames, 10.0, 0.96)) == 5


def test_a_short_embedding_never_groups():
    frames = [frame(f"f{i}.jpg", i, unit(np.ones(3))) for i in range(3)]
    assert len(bursts.group_frames(frames, 30.0, 0.5)) == 3


# --- choosing and deciding ------------------------------------------------------------


def burst_of_damaged_frames() -> tuple[list[bursts.Frame], list[Verdict]]:
    rgb = sample("Dune.jpg")
    e = unit(np.arange(320, dtype=np.float32) + 1)
    moved = shifted(rgb, -25, 12)
    pixels = {"blur.jpg": motion(moved, 3), "original.jpg": rgb, "bright.jpg": brighter(moved, 0.3),
              "defocus.jpg": cv2.GaussianBlur(moved, (0, 0), 1.2)}
    medians = {"blur.jpg": 120.0, "original.jpg": 121.0, "bright.jpg": 131.0, "defocus.jpg": 120.5}
    frames = [frame(n, i * 0.2, e, signature_of(p), medians[n], score=60.0 + i)
              for i, (n, p) in enumerate(pixels.items())]
    return frames, [verdict(n) for n in pixels]


def test_the_untouched_frame_is_picked_over_blur_defocus_and_exposure():
    frames, verdicts = burst_of_damaged_frames()
    decided = bursts.decide_bursts(frames, verdicts, POLICY, CONFIG)
    by_name = {v.path.name: v for v in decided}
    pick = by_name["original.jpg"]
    assert pick.label is PickLabel.ACCEPTED
    assert pick.burst is not None
    assert pick.burst.pick
    assert pick.burst.size == 4
    for name in ("blur.jpg", "bright.jpg", "defocus.jpg"):
        other = by_name[name]
        assert other.label is PickLabel.PENDING
        assert other.reasons[0] == "weaker duplicate of original.jpg"
        assert other.burst is not None
        assert not other.burst.pick
        assert other.burst.id == pick.burst.id
        assert other.stars <= 3


def test_a_frame_the_user_accepted_is_the_pick_and_one_they_rejected_never_is():
    frames, verdicts = burst_of_damaged_frames()
    frames[0] = replace(frames[0], hand_label=PickLabel.ACCEPTED)  # the blurred one
    decided = bursts.decide_bursts(frames, verdicts, POLICY, CONFIG)
    assert [v.path.name for v in decided if v.burst and v.burst.pick] == ["blur.jpg"]
    frames, verdicts = burst_of_damaged_frames()
    frames[1] = replace(frames[1], hand_label=PickLabel.REJECTED)  # the original
    decided = bursts.decide_bursts(frames, verdicts, POLICY, CONFIG)
    picks = [v.path.name for v in decided if v.burst and v.burst.pick]
    assert picks
    assert picks != ["original.jpg"]


def test_a_failure_is_not_picked_and_stays_rejected_and_others_can_be_rejected():
    frames, verdicts = burst_of_damaged_frames()
    verdicts[1] = verdict("original.jpg", PickLabel.REJECTED, 20.0)
    config = replace(CONFIG, others_label=PickLabel.REJECTED)
    decided = {v.path.name: v for v in bursts.decide_bursts(frames, verdicts, POLICY, config)}
    assert decided["original.jpg"].label is PickLabel.REJECTED
    assert decided["original.jpg"].burst is not None
    assert not decided["original.jpg"].burst.pick
    picks = [n for n, v in decided.items() if v.burst and v.burst.pick]
    assert len(picks) == 1
    assert decided[picks[0]].label is PickLabel.ACCEPTED
    others = [v for n, v in decided.items() if n != picks[0]]
    assert all(v.label is PickLabel.REJECTED for v in others)
    assert all(v.reasons[0] == f"weaker duplicate of {picks[0]}" for v in others)


def test_a_lone_photo_is_marked_ungrouped():
    e = unit(np.ones(320))
    decided = bursts.decide_bursts([frame("a.jpg", 0, e)], [verdict("a.jpg")], POLICY, CONFIG)
    assert decided[0].burst == Burst("")
    assert decided[0].label is PickLabel.ACCEPTED


# --- capture time ---------------------------------------------------------------------


@needs_exiftool
def test_capture_time_reads_exif_with_subseconds_and_falls_back_to_mtime(tmp_path):
    photo = tmp_path / "a.jpg"
    ok, data = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
    assert ok
    photo.write_bytes(data.tobytes())
    os.utime(photo, (1000.0, 1000.0))
    assert bursts.capture_time(photo, photo.stat().st_mtime_ns) == pytest.approx(1000.0)
    subprocess.run(["exiftool", "-q", "-overwrite_original",
                    "-DateTimeOriginal=2026:05:01 10:11:12", "-SubSecTimeOriginal=25", str(photo)],
                   check=True)
    expected = bursts.parse_exif_time("2026:05:01 10:11:12")
    assert expected is not None
    assert bursts.capture_time(photo, 0) == pytest.approx(expected + 0.25)


# --- tags ------------------------------------------------------------------------------


def test_burst_keywords_merge_with_the_users_and_replace_only_our_earlier_burst():
    current = FileTags(Path("/p.jpg"), "embedded", {
        "Xmp.digiKam.TagsList": ["family/holiday", "iqs/burst/old-1"],
        "Xmp.lr.hierarchicalSubject": ["family|holiday", "iqs|burst|old-1"],
        "Xmp.dc.subject": ["holiday", "old-1"],
        "Xmp.iqs.Group": "old-1",
    }, {})
    tags = burst_tags(Burst("new-2", 3, True, "p.jpg"), current)
    assert tags["Xmp.digiKam.TagsList"] == ["family/holiday", "iqs/burst/new-2"]
    assert tags["Xmp.lr.hierarchicalSubject"] == ["family|holiday", "iqs|burst|new-2"]
    assert tags["Xmp.dc.subject"] == ["holiday", "new-2"]
    assert (tags["Xmp.iqs.Group"], tags["Xmp.iqs.GroupSize"], tags["Xmp.iqs.GroupPick"]) == (
        "new-2", "3", "True")
    gone = burst_tags(Burst(""), current)
    assert gone["Xmp.digiKam.TagsList"] == ["family/holiday"]
    assert gone["Xmp.dc.subject"] == ["holiday"]
    assert gone["Xmp.iqs.Group"] is None
    assert "Xmp.digiKam.TagsList" not in burst_tags(Burst(""), None)  # nothing to remove


def test_burst_settings_are_checked_where_they_are_set(tmp_path):
    paths = Paths(tmp_path / "c", tmp_path / "s", tmp_path / "r")
    with pytest.raises(ConfigError, match="min_similarity"):
        load_settings(paths, overrides={"min_similarity": 1.5})
    with pytest.raises(ConfigError, match="others_label"):
        load_settings(paths, overrides={"others_label": "accepted"})
    assert load_settings(paths, overrides={"others_label": "rejected"}).others_label == "rejected"


# --- end to end: the real CLI and model, tags read back by exiftool ----------------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IQS_CONFIG_DIR": str(tmp_path / "config"),
           "IQS_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "iqs_daemon", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def save(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def make_burst_folder(folder: Path) -> dict[str, Path]:
    """Three frames of one burst (the original, a motion-blurred and a defocused copy,
    0.2 s apart) and another photo a second later; the blurred frame carries the user's
    own keywords."""
    rgb = sample("LadyBird.jpg")
    folder.mkdir()
    files = {n: folder / f"{n}.jpg" for n in ("frame0", "frame1", "frame2", "other")}
    shutil.copyfile(SAMPLES / "LadyBird.jpg", files["frame0"])
    files["frame0"].chmod(0o644)
    save(files["frame1"], motion(shifted(rgb, 20, 9), 4))
    save(files["frame2"], cv2.GaussianBlur(shifted(rgb, -14, 6), (0, 0), 1.5))
    save(files["other"], sample("Storm.jpg"))
    times = {"frame0": "10:00:00", "frame1": "10:00:00", "frame2": "10:00:00", "other": "10:00:01"}
    subsec = {"frame0": "100", "frame1": "300", "frame2": "500", "other": "500"}
    for name, path in files.items():
        args = [f"-DateTimeOriginal=2026:05:01 {times[name]}",
                f"-SubSecTimeOriginal={subsec[name]}"]
        if name == "frame1":
            args += ["-XMP-digiKam:TagsList=family/holiday",
                     "-XMP-lr:HierarchicalSubject=family|holiday",
                     "-XMP-dc:Subject=holiday", "-XMP-dc:Subject=beach"]
        subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)
    return files


def exiftool_all(paths: list[Path]) -> dict[str, dict]:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return {Path(item["SourceFile"]).stem: item for item in json.loads(out)}


def as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@needs_exiftool
def test_score_groups_a_burst_picks_the_sharp_frame_and_every_manager_sees_the_tag(tmp_path):
    files = make_burst_folder(tmp_path / "photos")
    result = run_cli(tmp_path, "score", "--json", str(tmp_path / "photos"))
    assert result.returncode == 0, result.stderr
    records = {Path(r["path"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["other"]["burst"] is None
    burst = records["frame0"]["burst"]
    assert burst["pick"] is True
    assert burst["size"] == 3
    for name in ("frame1", "frame2"):
        assert records[name]["burst"] == {**burst, "pick": False}
        assert records[name]["reasons"][0] == "weaker duplicate of frame0.jpg"
        assert records[name]["label"] == "Pending"
    tags = exiftool_all(list(files.values()))
    gid = burst["id"]
    for name in ("frame0", "frame1", "frame2"):
        t = tags[name]
        assert t["XMP-iqs:Group"] == gid
        assert str(t["XMP-iqs:GroupSize"]) == "3"
        assert str(t["XMP-iqs:GroupPick"]) == ("True" if name == "frame0" else "False")
        assert f"iqs/burst/{gid}" in as_list(t["XMP-digiKam:TagsList"])
        assert f"iqs|burst|{gid}" in as_list(t["XMP-lr:HierarchicalSubject"])
        assert gid in as_list(t["XMP-dc:Subject"])
    # The user's own keywords survive, next to ours.
    assert as_list(tags["frame1"]["XMP-digiKam:TagsList"]) == ["family/holiday", f"iqs/burst/{gid}"]
    assert as_list(tags["frame1"]["XMP-lr:HierarchicalSubject"]) == [
        "family|holiday", f"iqs|burst|{gid}"]
    assert as_list(tags["frame1"]["XMP-dc:Subject"]) == ["holiday", "beach", gid]
    assert str(tags["frame0"]["XMP-digiKam:PickLabel"]) in ("3", "Accepted")
    assert "XMP-iqs:Group" not in tags["other"]
    assert "XMP-digiKam:TagsList" not in tags["other"]
    shown = run_cli(tmp_path, "show", "--json", str(files["frame2"]))
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert (stored["group_id"], stored["group_size"], stored["group_pick"]) == (gid, 3, False)
    summary = run_cli(tmp_path, "score", "--rescore", str(tmp_path / "photos"))
    assert summary.returncode == 0, summary.stderr
    assert "Bursts: 1 group of near-duplicates (3 photos)" in summary.stdout
    again = exiftool_all([files["frame1"]])["frame1"]
    assert as_list(again["XMP-digiKam:TagsList"]) == ["family/holiday", f"iqs/burst/{gid}"]


@needs_exiftool
def test_a_policy_change_re_decides_a_burst_from_its_stored_tags_without_decoding(tmp_path):
    files = make_burst_folder(tmp_path / "photos")
    first = run_cli(tmp_path, "score", "--json", str(tmp_path / "photos"))
    assert first.returncode == 0, first.stderr
    # A lower accept_from: a plain frame would now be Accepted, but a weaker duplicate
    # stays Pending, and the pick stays the pick.
    again = run_cli(tmp_path, "score", "--json", "--set", "verdict.accept_from=35",
                    str(tmp_path / "photos"))
    assert again.returncode == 0, again.stderr
    records = {Path(r["path"]).stem: r for r in map(json.loads, again.stdout.splitlines())}
    assert {records[n]["status"] for n in ("frame0", "frame1", "frame2")} <= {"redecided"}
    assert records["frame0"]["label"] == "Accepted"
    for name in ("frame1", "frame2"):
        assert records[name]["label"] == "Pending"
        assert records[name]["reasons"][0] == "weaker duplicate of frame0.jpg"
        assert records[name]["burst"]["pick"] is False
    tags = exiftool_all([files["frame1"]])["frame1"]
    assert as_list(tags["XMP-digiKam:TagsList"])[0] == "family/holiday"
    assert str(tags["XMP-iqs:GroupPick"]) == "False"


@needs_exiftool
def test_a_frame_the_user_accepted_is_the_pick_and_keeps_its_label(tmp_path):
    files = make_burst_folder(tmp_path / "photos")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-digiKam:PickLabel=3",
                    str(files["frame2"])], check=True)
    result = run_cli(tmp_path, "score", "--json", str(tmp_path / "photos"))
    assert result.returncode == 0, result.stderr
    records = {Path(r["path"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["frame2"]["burst"]["pick"] is True
    assert records["frame2"]["kept_user_label"] is True
    assert records["frame0"]["reasons"][0] == "weaker duplicate of frame2.jpg"
    tags = exiftool_all([files["frame2"], files["frame0"]])
    assert str(tags["frame2"]["XMP-digiKam:PickLabel"]) in ("3", "Accepted")
    assert str(tags["frame2"]["XMP-iqs:GroupPick"]) == "True"
    assert str(tags["frame0"]["XMP-iqs:GroupPick"]) == "False"


@needs_exiftool
def test_grouping_off_writes_no_group(tmp_path):
    files = make_burst_folder(tmp_path / "photos")
    result = run_cli(tmp_path, "score", "--json", "--set", "bursts.group_bursts=false",
                     str(tmp_path / "photos"))
    assert result.returncode == 0, result.stderr
    assert all("burst" not in json.loads(line) for line in result.stdout.splitlines())
    tags = exiftool_all(list(files.values()))
    assert not any("XMP-iqs:Group" in t for t in tags.values())
    assert as_list(tags["frame1"]["XMP-digiKam:TagsList"]) == ["family/holiday"]


def test_a_folder_is_held_only_until_a_gap_no_frame_can_bridge(tmp_path, tiny_model):
    """Frames are taken in capture-time order (file times here: no EXIF), and the held
    records are released at each gap longer than max_gap_seconds, so memory is bounded
    by a burst, not by the folder."""
    from iqs_daemon.burst_stage import HoldBursts
    from iqs_daemon.discovery import iter_candidates
    from iqs_daemon.pipeline import Scorer
    from iqs_daemon.runner import Hold

    released: list[list[str]] = []
    signed: set[str] = set()

    class Recording(HoldBursts):
        def release(self):  # type: ignore[no-untyped-def]
            released.append([s.candidate.path.name for s in self.held])
            signed.update(s.frame.path.name for s in self.held if s.frame.signature is not None)
            return super().release()

    folder = tmp_path / "photos"
    folder.mkdir()
    times = {"a.jpg": 1000.0, "c.jpg": 1000.4, "b.jpg": 1000.2, "d.jpg": 1600.0, "e.jpg": 1600.3,
             "f.jpg": 2400.0}
    for i, (name, when) in enumerate(times.items()):
        save(folder / name, np.full((96, 128, 3), 40 + 30 * i, np.uint8))
        os.utime(folder / name, (when, when))
    settings = load_settings(Paths(tmp_path / "c", tmp_path / "s", tmp_path / "r"),
                             overrides={"model_path": str(tiny_model)})
    with Scorer(settings, dry_run=True, group_bursts=True) as scorer:
        stages = [Hold(Recording(scorer.pass_for()), s.takes) if isinstance(s, Hold) else s
                  for s in scorer.stages()]
        outcomes = list(scorer.run(stages, iter_candidates([folder])))
    assert released == [["a.jpg", "b.jpg", "c.jpg"], ["d.jpg", "e.jpg"], ["f.jpg"]]
    assert [o.status for o in outcomes] == ["scored"] * 6
    # f.jpg was taken alone: it cannot be in a burst, and costs no sharpness signature.
    assert signed == {"a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"}


@needs_exiftool
def test_raw_frames_get_the_burst_in_their_sidecars(tmp_path):
    raw = SAMPLES.parent / "raw" / "canon_eos6d_linear.dng"
    if not raw.is_file():
        pytest.skip(f"{raw} not available")
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in ("a.dng", "b.dng"):  # the same frame twice: alike, taken at the same time
        shutil.copyfile(raw, folder / name)
        (folder / name).chmod(0o644)
    before = (folder / "a.dng").read_bytes()
    result = run_cli(tmp_path, "score", "--json", str(folder))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["burst"]["pick"] for r in records) == [False, True]
    assert (folder / "a.dng").read_bytes() == before  # RAW files are never written
    sidecars = exiftool_all([folder / "a.dng.xmp", folder / "b.dng.xmp"])
    ids = {t["XMP-iqs:Group"] for t in sidecars.values()}
    assert len(ids) == 1
    for t in sidecars.values():
        assert as_list(t["XMP-digiKam:TagsList"]) == [f"iqs/burst/{t['XMP-iqs:Group']}"]
        assert as_list(t["XMP-lr:HierarchicalSubject"]) == [f"iqs|burst|{t['XMP-iqs:Group']}"]


def test_a_verdict_with_its_burst_survives_the_state_json():
    from iqs_daemon.restore import verdict_from_json, verdict_json

    v = replace(verdict("a.jpg", PickLabel.PENDING), reasons=("weaker duplicate of b.jpg",),
                burst=Burst("20260501-100000-8ecb", 3, False, "b.jpg"))
    back = verdict_from_json(v.path, verdict_json(v))
    assert back == v
    plain = verdict("c.jpg")
    assert verdict_from_json(plain.path, verdict_json(plain)) == plain


@needs_exiftool
def test_the_daemon_re_decides_a_burst_under_a_new_policy_and_keeps_it(tmp_path, env_paths):
    """The daemon does not group new frames yet, but a burst that ``score`` grouped keeps
    its pick and its weaker duplicates when the daemon re-labels it under a new policy,
    and its state keeps the burst with the verdict."""
    from daemonkit import all_scored, idle, rows, running, settings_for, wait_for

    from iqs_daemon.model import default_model_path
    from iqs_daemon.restore import verdict_from_json

    files = make_burst_folder(tmp_path / "photos")
    first = run_cli(tmp_path, "score", str(tmp_path / "photos"))
    assert first.returncode == 0, first.stderr
    settings = settings_for(env_paths, default_model_path(), accept_from=35.0)
    photos = list(files.values())
    with running(settings, env_paths, [tmp_path / "photos"]) as daemon:
        wait_for(lambda: all_scored(daemon, photos) and idle(daemon), timeout=120)
        assert daemon.counts["redecided"] == 4
        state = rows(daemon)
    kept = {p.stem: verdict_from_json(p, state[p].verdict) for p in photos}
    assert kept["frame0"] is not None
    assert kept["frame0"].label is PickLabel.ACCEPTED
    assert kept["frame0"].burst is not None
    assert kept["frame0"].burst.pick
    for name in ("frame1", "frame2"):
        v = kept[name]
        assert v is not None
        assert v.label is PickLabel.PENDING
        assert v.reasons[0] == "weaker duplicate of frame0.jpg"
    tags = exiftool_all([files["frame1"]])["frame1"]
    assert as_list(tags["XMP-digiKam:TagsList"])[0] == "family/holiday"
    assert str(tags["XMP-iqs:GroupPick"]) == "False"


@needs_exiftool
def test_the_daemon_groups_frames_as_they_arrive_and_after_a_restart(tmp_path, env_paths):
    """The best frame comes last: the earlier frames are re-decided as its weaker
    duplicates; after a restart, a frame imported later joins the same burst."""
    from daemonkit import all_scored, idle, running, settings_for, wait_for

    from iqs_daemon.model import default_model_path

    made = make_burst_folder(tmp_path / "made")
    watched = tmp_path / "watched"
    watched.mkdir()
    settings = settings_for(env_paths, default_model_path())
    arrived: list[Path] = []

    def arrive(daemon, name: str, as_name: str | None = None) -> None:  # type: ignore[no-untyped-def]
        target = watched / f"{as_name or name}.jpg"
        shutil.copy2(made[name], target)
        arrived.append(target)
        wait_for(lambda: all_scored(daemon, arrived) and idle(daemon), timeout=120)

    with running(settings, env_paths, [watched]) as daemon:
        for name in ("frame2", "frame1", "other", "frame0"):
            arrive(daemon, name)
        assert daemon.counts["redecided"] >= 2
    tags = exiftool_all(arrived)
    gid = tags["frame0"]["XMP-iqs:Group"]
    assert str(tags["frame0"]["XMP-iqs:GroupPick"]) == "True"
    assert str(tags["frame0"]["XMP-digiKam:PickLabel"]) in ("3", "Accepted")
    for name in ("frame1", "frame2"):
        t = tags[name]
        assert (t["XMP-iqs:Group"], str(t["XMP-iqs:GroupSize"]), str(t["XMP-iqs:GroupPick"])) == (
            gid, "3", "False")
        assert as_list(t["XMP-iqs:Reasons"])[0] == "weaker duplicate of frame0.jpg"
        assert f"iqs/burst/{gid}" in as_list(t["XMP-digiKam:TagsList"])
    assert as_list(tags["frame1"]["XMP-digiKam:TagsList"])[0] == "family/holiday"
    assert "XMP-iqs:Group" not in tags["other"]

    with running(settings, env_paths, [watched]) as daemon:
        arrive(daemon, "frame1", "frame3")  # another blurred frame, imported later
    tags = exiftool_all(arrived)
    assert tags["frame3"]["XMP-iqs:Group"] == gid
    assert str(tags["frame3"]["XMP-iqs:GroupPick"]) == "False"
    frames = ("frame0", "frame1", "frame2", "frame3")
    assert {str(tags[n]["XMP-iqs:GroupSize"]) for n in frames} == {"4"}


def test_the_state_keeps_burst_frames_by_folder_and_time(tmp_path):
    from iqs_daemon.state import StateDB

    with StateDB(tmp_path / "s.sqlite3") as db:
        db.put_frame(Path("/p/a.jpg"), 10.0, b"e1", b"s1")
        db.put_frame(Path("/p/b.jpg"), 12.5, b"e2", None)
        db.put_frame(Path("/q/c.jpg"), 11.0, b"e3", None)
        db.put_frame(Path("/p/a.jpg"), 10.5, b"e4", b"s4")  # scored again: replaced
    with StateDB(tmp_path / "s.sqlite3") as db:  # kept across a restart
        assert db.frames_between(Path("/p"), 0.0, 100.0) == [
            (Path("/p/a.jpg"), 10.5, b"e4", b"s4"), (Path("/p/b.jpg"), 12.5, b"e2", None)]
        assert db.frames_between(Path("/p"), 11.0, 13.0) == [(Path("/p/b.jpg"), 12.5, b"e2", None)]
