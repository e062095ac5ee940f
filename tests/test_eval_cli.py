"""`iqs-daemon eval`: the figures by hand, rated folders and the distortion protocol end to end.

Real ONNX inference with the tiny contract model (score = mean brightness, 0..100), so a
folder of grey photos has a known ranking: SROCC, the confusion matrix and the protocol's
exposure results are predicted from the pixels, not copied from a run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from images import noise_photo
from modelfactory import build_tiny_model
from typer.testing import CliRunner

from iqs_daemon.cli import app
from iqs_daemon.distortions import PROTOCOL, SOFT_BACKGROUND
from iqs_daemon.errors import DatasetError
from iqs_daemon.evaluation import (
    HeldScore,
    LabelRow,
    LevelScore,
    accuracy,
    average_ranks,
    choose_scale,
    confusion_matrix,
    macro_f1,
    match_photos,
    plcc,
    read_label_rows,
    rmse,
    srocc,
    summarise_family,
    summarise_soft_background,
    tertile_classes,
)

# Nine grey photos: the tiny model scores 100 * b / 255 -> 7.8 ... 94.1, so with its
# thresholds (Rejected < 30 <= Pending < 60 <= Accepted) three fall in each class.
BRIGHTNESS = (20, 40, 60, 100, 120, 140, 200, 220, 240)


# --- metrics by hand ------------------------------------------------------------------


def test_average_ranks_share_the_mean_rank_of_a_tie():
    assert average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([5, 1, 5, 2, 5]).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert average_ranks([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]


def test_correlations_and_rmse_match_hand_computed_values():
    # ranks [1, 2.5, 2.5, 4] vs [1, 3, 2, 4]: cov 4.5, variances 4.5 and 5
    assert srocc([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    # x deviations [-1, 0, 1], y deviations [-4/3, -1/3, 5/3]: cov 3, variances 2 and 42/9
    assert plcc([1, 2, 3], [1, 2, 4]) == pytest.approx(3 / np.sqrt(2 * 42 / 9))
    assert srocc([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert rmse([0, 10], [3, 6]) == pytest.approx(np.sqrt(12.5))


def test_undefined_correlations_are_none_not_nan():
    assert plcc([1.0], [2.0]) is None
    assert srocc([5, 5, 5], [1, 2, 3]) is None
    assert plcc([1, 2, 3], [7, 7, 7]) is None


def test_metrics_agree_with_scipy_on_tied_data():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, 200).astype(float)  # many ties
    b = a + rng.normal(0, 2, 200)
    assert srocc(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert plcc(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


def test_tertiles_split_evenly_and_keep_ties_together():
    assert tertile_classes([10, 20, 30, 40, 50, 60]).tolist() == [0, 0, 1, 1, 2, 2]
    assert tertile_classes([60, 10, 40, 30, 20, 50]).tolist() == [2, 0, 1, 1, 0, 2]
    # cuts at 1 and 1.33: the four tied 1s share the middle class
    assert tertile_classes([1, 1, 1, 1, 2, 3]).tolist() == [1, 1, 1, 1, 2, 2]


def test_confusion_accuracy_and_macro_f1_by_hand():
    matrix = confusion_matrix([0, 0, 0, 1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 0, 1, 2, 2, 2])
    assert matrix.tolist() == [[3, 0, 0], [2, 1, 0], [0, 0, 3]]
    assert accuracy(matrix) == pytest.approx(7 / 9)
    # F1: Rejected 6/8, Pending 2/4, Accepted 1
    assert macro_f1(matrix) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    # A class that is neither true nor predicted is left out, as scikit-learn does.
    sparse = confusion_matrix([0, 0], [0, 1])
    assert macro_f1(sparse) == pytest.approx((2 / 3 + 0.0) / 2)


def test_label_scales_auto_and_explicit():
    assert choose_scale([0.2, 0.9]).name == "0-1"
    assert choose_scale([1, 3, 5]).name == "1-5"
    assert choose_scale([0, 50, 100]).name == "0-100"
    assert choose_scale([1, 3, 5]).to_percent([1, 3, 5]).tolist() == [0.0, 50.0, 100.0]
    assert choose_scale([0.25]).to_percent([0.25]).tolist() == [25.0]
    assert choose_scale([3, 4], "0-100").name == "0-100"
    with pytest.raises(ValueError, match=r"-2\.\.150"):
        choose_scale([-2, 150])
    with pytest.raises(ValueError, match="outside --label-scale 1-5"):
        choose_scale([0.5, 3], "1-5")


def test_family_summary_counts_steps_and_strongest_levels():
    def run(*scores: float, rejected_last: bool) -> list[LevelScore]:
        return [
            LevelScore(s, i == len(scores) - 1 and rejected_last, 0.1 * i)
            for i, s in enumerate(scores)
        ]

    summary = summarise_family(
        "blur", [run(80, 70, 60, 20, rejected_last=True), run(80, 85, 60, 50, rejected_last=False)]
    )
    assert (summary.photos, summary.steps) == (2, 6)
    assert summary.score_fell == pytest.approx(5 / 6)
    assert summary.strongest_rejected == pytest.approx(0.5)
    assert summary.diagnostic_rose == pytest.approx(1.0)
    assert summary.mean_scores == (80.0, 77.5, 60.0, 35.0)


def test_soft_background_summary_counts_what_held_by_hand():
    photo_a = [HeldScore(70, 3, 0.05, False), HeldScore(66, 3, 0.1, False),
               HeldScore(60, 2, 0.3, True)]  # fell 10 points, to Pending, and "blurred"
    photo_b = [HeldScore(40, 2, 0.3, True), HeldScore(41, 2, 0.3, True),
               HeldScore(39, 2, 0.3, True)]  # "blurred" already: not a new reason
    summary = summarise_soft_background([photo_a, photo_b])
    assert (summary.photos, summary.copies) == (2, 4)
    assert summary.held == pytest.approx(3 / 4)
    assert summary.label_kept == pytest.approx(3 / 4)
    assert summary.new_blurred == pytest.approx(1 / 4)
    assert summary.mean_scores == (55.0, 53.5, 49.5)
    assert summarise_soft_background([]).held is None


# --- reading labels -------------------------------------------------------------------


def test_biq2021_csv_quirks_bom_empty_columns_and_header(tmp_path):
    labels = tmp_path / "Train (Images and MOS).csv"
    labels.write_bytes(
        "\ufeffImage Name,MOS,,\r\nss01 (1).jpg,0.2874,,\r\n\r\nss02 (1014).jpg,0.5,,\r\n".encode()
    )
    rows = read_label_rows(labels)
    assert [(r.name, r.value, r.line) for r in rows] == [
        ("ss01 (1).jpg", 0.2874, 2),
        ("ss02 (1014).jpg", 0.5, 4),
    ]


def test_semicolon_csv_without_header(tmp_path):
    labels = tmp_path / "ratings.csv"
    labels.write_text("a.jpg;4\nb.jpg;2\n")
    assert [(r.name, r.value) for r in read_label_rows(labels)] == [("a.jpg", 4.0), ("b.jpg", 2.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no labelled photos"),
        ("Image Name,MOS,,\n", "no labelled photos"),
        ("name,score\na.jpg,0.5\nb.jpg,good\n", "line 3: expected NAME,SCORE"),
    ],
)
def test_unusable_csvs_name_the_problem(tmp_path, text, message):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(DatasetError, match=message) as caught:
        read_label_rows(labels)
    assert caught.value.path == labels


def test_names_match_case_insensitively_relative_to_the_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "Sub").mkdir(parents=True)
    for name in ("ss02 (1014).JPG", "plain.png", "Sub/Deep.PNG", "../elsewhere.jpg"):
        (folder / name).write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere.jpg"
    rows = [
        LabelRow("ss02 (1014).jpg", 0.5, 2),
        LabelRow("plain.png", 0.1, 3),
        LabelRow("sub\\deep.png", 0.2, 4),
        LabelRow(str(elsewhere), 0.3, 5),
        LabelRow("ghost.jpg", 0.4, 6),
    ]
    found = match_photos(rows, folder, tmp_path / "labels.csv")
    assert [p.path for p in found.photos] == [
        folder / "ss02 (1014).JPG",
        folder / "plain.png",
        folder / "Sub" / "Deep.PNG",
        elsewhere,
    ]
    assert [r.name for r in found.missing] == ["ghost.jpg"]
    duplicate = [LabelRow("plain.png", 0.1, 2), LabelRow("PLAIN.PNG", 0.2, 7)]
    with pytest.raises(DatasetError, match=r"line 7: PLAIN\.PNG is the photo of line 2"):
        match_photos(duplicate, folder, tmp_path / "labels.csv")


# --- the command on rated folders -----------------------------------------------------


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("IQS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IQS_STATE_DIR", str(tmp_path / "state"))
    return build_tiny_model(tmp_path / "tiny.onnx")


def model_args(model: Path) -> list[str]:
    return ["--set", f"model.model_path={json.dumps(str(model))}", "--jobs", "2"]


def rated_folder(root: Path, labels_of: dict[int, str]) -> tuple[Path, Path]:
    """Grey photos of BRIGHTNESS and a BIQ2021-style CSV (BOM, empty columns, one name
    whose case differs from the file's). ``labels_of`` maps brightness -> label text.
    """
    folder = root / "photos"
    folder.mkdir()
    lines = ["Image Name,MOS,,"]
    for i, value in enumerate(BRIGHTNESS):
        name = f"ss0{i}.JPG" if i == 4 else f"ss0{i}.png"
        ok, buffer = cv2.imencode(
            Path(name).suffix.lower(), np.full((120, 160, 3), value, np.uint8)
        )
        assert ok
        (folder / name).write_bytes(buffer.tobytes())
        lines.append(f"{name.lower()},{labels_of[value]},,")
    labels = root / "labels.csv"
    labels.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    return folder, labels


def invoke(*args: str):
    return CliRunner().invoke(app, ["eval", *args], env={"COLUMNS": "120"})


def test_scores_agreeing_with_ratings_give_srocc_one_and_a_diagonal_matrix(tmp_path, model):
    folder, labels = rated_folder(tmp_path, {b: f"{b / 255:.4f}" for b in BRIGHTNESS})
    result = invoke(str(folder), "--labels", str(labels), "--json", *model_args(model))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["photos"] == 9
    assert report["missing"] == 0
    assert report["failed"] == 0
    assert report["label_scale"]["name"] == "0-1"
    assert report["srocc"] == pytest.approx(1.0)
    assert report["plcc"] > 0.9999
    assert report["rmse"] < 0.5  # labels x100 equal the brightness score up to rounding
    assert report["confusion"]["matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0
    assert report["model"] == {
        "name": "iqs-tiny-test test-1",
        "reject_below": 30.0,
        "accept_from": 60.0,
    }


def test_user_thresholds_move_the_pick_labels_and_the_matrix(tmp_path, model):
    folder, labels = rated_folder(tmp_path, {b: f"{b / 255:.4f}" for b in BRIGHTNESS})
    result = invoke(
        str(folder),
        "--labels",
        str(labels),
        "--json",
        *model_args(model),
        "--set",
        "verdict.reject_below=50",
    )
    report = json.loads(result.stdout)
    # 39.2 and 47.1 are now Rejected: two middle-tertile photos move left.
    assert report["confusion"]["matrix"] == [[3, 0, 0], [2, 1, 0], [0, 0, 3]]
    assert report["accuracy"] == pytest.approx(7 / 9)
    assert report["macro_f1"] == pytest.approx(0.75)
    assert report["srocc"] == pytest.approx(1.0)  # thresholds never change the ranking


def test_reversed_five_point_ratings_and_a_missing_photo(tmp_path, model):
    # Ratings 1..5 that fall as brightness rises: the ranking is reversed.
    ratings = dict(
        zip(BRIGHTNESS, ("5", "4.5", "4", "3.5", "3", "2.5", "2", "1.5", "1"), strict=False)
    )
    folder, labels = rated_folder(tmp_path, ratings)
    with labels.open("a", encoding="utf-8") as fh:
        fh.write("ghost.jpg,3,,\r\n")
    save = tmp_path / "scores.csv"
    result = invoke(
        str(folder),
        "--labels",
        str(labels),
        "--json",
        "--save-scores",
        str(save),
        *model_args(model),
    )
    assert result.exit_code == 3  # ran, but a photo was missing
    assert "missing ghost.jpg (line 11 of labels.csv)" in result.stderr
    report = json.loads(result.stdout)
    assert report["missing"] == 1
    assert report["photos"] == 9
    assert report["label_scale"]["name"] == "1-5"
    assert report["srocc"] == pytest.approx(-1.0)
    assert report["confusion"]["matrix"] == [[0, 0, 3], [0, 3, 0], [3, 0, 0]]
    rows = list(csv.DictReader(save.open(encoding="utf-8")))
    assert len(rows) == 9
    assert rows[0]["label_0_100"] == "100.00"
    assert rows[0]["pick_label"] == "Rejected"


def test_human_report_names_every_figure_and_the_mapping(tmp_path, model):
    folder, labels = rated_folder(tmp_path, {b: f"{b / 255 * 100:.1f}" for b in BRIGHTNESS})
    result = invoke(str(folder), "--labels", str(labels), *model_args(model))
    assert result.exit_code == 0, result.output
    for text in (
        "SROCC",
        "PLCC",
        "RMSE (0..100)",
        "3-class accuracy",
        "3-class macro-F1",
        "labels on 0..100, used as they are",
        "Rejected below 30, Accepted from 60",
    ):
        assert text in result.stdout
    assert "1.000" in result.stdout


def test_bad_input_is_one_clear_error(tmp_path, model):
    folder, labels = rated_folder(tmp_path, {b: "0.5" for b in BRIGHTNESS})
    empty = tmp_path / "empty.csv"
    empty.write_text("Image Name,MOS\n")
    result = invoke(str(folder), "--labels", str(empty), *model_args(model))
    assert result.exit_code == 1
    assert isinstance(result.exception, DatasetError)
    result = invoke(str(tmp_path / "nowhere"), "--labels", str(labels), *model_args(model))
    assert result.exit_code == 1
    assert "no such folder" in str(result.exception)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("a.png,7\nb.png,250\n")
    result = invoke(str(folder), "--labels", str(unknown), *model_args(model))
    assert "fits no known scale" in str(result.exception)
    result = invoke("--distortions", str(tmp_path / "nowhere"), *model_args(model))
    assert result.exit_code == 1
    assert "no such file or folder" in str(result.exception)
    assert invoke(str(folder), *model_args(model)).exit_code == 2  # neither mode
    assert invoke(str(folder), "--labels", str(labels), "--distortions").exit_code == 2


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iqs_daemon", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def test_real_process_prints_json_and_one_line_errors(tmp_path, model):
    folder, labels = rated_folder(tmp_path, {b: f"{b / 255:.4f}" for b in BRIGHTNESS})
    result = run_cli("eval", str(folder), "--labels", str(labels), "--json", *model_args(model))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["srocc"] == pytest.approx(1.0)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    bad = run_cli("eval", str(folder), "--labels", str(empty), *model_args(model))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        f"iqs-daemon: error: {empty}: no labelled photos (expected rows of NAME,SCORE)"
    )
    assert "Traceback" not in bad.stderr


# --- the distortion protocol ----------------------------------------------------------


def test_distortion_protocol_on_a_folder(tmp_path, model, monkeypatch):
    folder = tmp_path / "trip"
    folder.mkdir()
    for seed in range(2):  # 1600 x 1300 = 2.08 MP: just over the protocol's minimum
        cv2.imwrite(str(folder / f"big{seed}.jpg"), noise_photo(1600, 1300, seed)[:, :, ::-1])
    cv2.imwrite(str(folder / "small.jpg"), noise_photo(640, 480, 9))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the copies are written
    save = tmp_path / "protocol.csv"
    result = invoke(
        "--distortions", str(folder), "--json", "--save-scores", str(save), *model_args(model)
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["photos"] == 2
    assert [Path(s["path"]).name for s in report["skipped"]] == ["small.jpg"]
    assert "0.3 MP, under 2 MP" in report["skipped"][0]["reason"]
    assert report["failed"] == []
    assert list(report["families"]) == list(PROTOCOL)
    for family, figures in report["families"].items():
        assert figures["levels"] == list(PROTOCOL[family])
        assert (figures["photos"], figures["steps"]) == (2, 6)
        assert len(figures["mean_scores"]) == 4
    over, under = report["families"]["overexposure"], report["families"]["underexposure"]
    # The brightness model: more light always raises the score, less always lowers it.
    assert over["score_fell"] == 0.0
    assert under["score_fell"] == 1.0
    assert over["strongest_rejected"] == 0.0
    assert under["strongest_rejected"] == 1.0
    assert over["diagnostic_rose"] == 1.0
    assert under["diagnostic_rose"] == 1.0
    assert under["mean_scores"] == sorted(under["mean_scores"], reverse=True)
    soft = report["soft_background"]
    assert soft["levels"] == list(SOFT_BACKGROUND)
    assert (soft["photos"], soft["copies"]) == (2, 4)
    # Defocusing keeps the mean brightness, so the brightness model's score holds.
    assert soft["held"] == 1.0
    assert soft["label_kept"] == 1.0
    assert len(soft["mean_scores"]) == 3
    assert list(scratch.iterdir()) == []  # every copy deleted
    rows = list(csv.DictReader(save.open(encoding="utf-8")))
    assert len(rows) == 2 * 5 * 4 + 2 * 3
    assert [r["level"] for r in rows if r["family"] == "soft_background"][:3] == [
        "original", *(str(v) for v in SOFT_BACKGROUND)]
    assert {r["level"] for r in rows if r["family"] == "jpeg"} == {
        "original",
        "40.0",
        "15.0",
        "5.0",
    }
