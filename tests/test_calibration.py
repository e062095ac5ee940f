"""The calibration fit: which hand labels count, the fit, the held-out check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iqs_daemon.calibration import (
    LabelledScore,
    calibrate,
    calibration_toml,
    fit_cut_offs,
    labels_under,
    split_halves,
    taught_label,
)
from iqs_daemon.config import Paths, load_settings
from iqs_daemon.errors import ConfigError
from iqs_daemon.records import PickLabel
from iqs_daemon.verdict import Policy
from iqs_daemon.xmp_tags import StoredMetadata

R, P, A = PickLabel.REJECTED, PickLabel.PENDING, PickLabel.ACCEPTED
POLICY = Policy(
    reject_below=32.5,
    accept_from=57.5,
    defect_threshold=0.5,
    reason_threshold=0.2,
    stars=(56.7, 65.3, 74.0, 78.3, 84.6),
)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (StoredMetadata(Path("p"), pick_label=A), A),
        (StoredMetadata(Path("p"), pick_label=R, rating=5), R),  # the pick label wins
        (StoredMetadata(Path("p"), pick_label=R, written_pick_label=1), None),  # ours
        (StoredMetadata(Path("p"), pick_label=PickLabel.NONE), None),
        (StoredMetadata(Path("p"), rating=-1), R),
        (StoredMetadata(Path("p"), rating=1), R),
        (StoredMetadata(Path("p"), rating=2), P),
        (StoredMetadata(Path("p"), rating=3), P),
        (StoredMetadata(Path("p"), rating=4), A),
        (StoredMetadata(Path("p"), rating=5), A),
        (StoredMetadata(Path("p"), rating=0), None),  # unrated
        (StoredMetadata(Path("p"), rating=-1, written_rating=-1), None),  # ours
        (
            StoredMetadata(
                Path("p"), pick_label=R, written_pick_label=1, rating=4, written_rating=-1
            ),
            A,
        ),
    ],
)
def test_which_labels_are_the_users(stored, expected):
    assert taught_label(stored) is expected


def item(score: float, truth: PickLabel, clear: bool = False, name: str = "") -> LabelledScore:
    return LabelledScore(Path(name or f"{truth.name}-{score}"), truth, score, clear)


def users_taste(n: int = 60, seed: int = 0) -> list[LabelledScore]:
    """A photographer who rejects below 45 and accepts from 70, with a little noise."""
    rng = np.random.default_rng(seed)
    items = []
    for i, s in enumerate(rng.uniform(10, 95, n)):
        seen = s + rng.normal(0, 2)
        truth = R if seen < 45 else A if seen >= 70 else P
        items.append(item(float(s), truth, name=f"p{i}"))
    return items


def test_the_fit_finds_the_users_cut_offs():
    reject, accept = fit_cut_offs(users_taste(200))
    assert reject == pytest.approx(45, abs=3)
    assert accept == pytest.approx(70, abs=3)


def test_labels_under_matches_the_policy_rules():
    items = [
        item(20, R),
        item(50, P),
        item(50, R, clear=True),
        item(80, A),
        item(80, P, clear=True),
    ]
    assert list(labels_under(items, 32.5, 57.5)) == [1, 2, 1, 3, 2]


def test_halves_are_stratified_and_reproducible():
    items = users_taste(61)
    fit, held = split_halves(items, seed=3)
    assert {i.path for i in fit} | {i.path for i in held} == {i.path for i in items}
    assert not {i.path for i in fit} & {i.path for i in held}
    for c in (R, P, A):
        n = sum(i.truth is c for i in items)
        assert sum(i.truth is c for i in fit) == n // 2
    assert split_halves(items, seed=3) == (fit, held)


def test_calibration_beats_the_default_on_held_out_labels():
    result = calibrate(users_taste(120), POLICY)
    assert result.held_out >= 58
    assert result.after.macro_f1 > result.before.macro_f1 + 0.2
    assert sum(map(sum, result.after.confusion)) == result.held_out


def test_too_few_hand_labels_is_a_clear_error():
    with pytest.raises(ConfigError, match="too few photos labelled by hand"):
        calibrate([item(20, R), item(80, A), item(50, P)], POLICY)


def test_the_saved_layer_sits_between_defaults_and_the_users_file(tmp_path):
    paths = Paths(tmp_path / "config", tmp_path / "state", tmp_path / "run")
    paths.config_dir.mkdir()
    result = calibrate(users_taste(120), POLICY)
    paths.calibration_file.write_text(calibration_toml(result, POLICY))
    settings = load_settings(paths)
    assert (settings.reject_below, settings.source_of("reject_below")) == (
        result.reject_below,
        "calibration",
    )
    paths.config_file.write_text("[verdict]\nreject_below = 20\n")
    settings = load_settings(paths)
    assert (settings.reject_below, settings.accept_from) == (20, result.accept_from)
    assert settings.source_of("reject_below") == str(paths.config_file)
    settings = load_settings(paths, overrides={"reject_below": 25.0})
    assert settings.source_of("reject_below") == "flag"
