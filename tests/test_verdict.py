"""The verdict policy as a table: which label, stars and reasons each case gets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from iqs_daemon.config import Settings
from iqs_daemon.errors import ConfigError
from iqs_daemon.exposure import ExposureFacts, measure
from iqs_daemon.records import PickLabel, Scores
from iqs_daemon.verdict import DEFAULT_POLICY, Policy, decide
from iqs_daemon.vocabulary import LOW_QUALITY

STARS = (56.7, 65.3, 74.0, 78.3, 84.6)
POLICY = Policy(
    reject_below=30.0, accept_from=60.0, defect_threshold=0.5, reason_threshold=0.2, stars=STARS
)
CLEAN = {
    "blur": 0.05,
    "noise": 0.05,
    "compression": 0.01,
    "underexposure": 0.05,
    "overexposure": 0.05,
}
ORDINARY = ExposureFacts(median=118.0, highlights=0.001, shadows=0.002)
DARK = ExposureFacts(median=35.0, highlights=0.0, shadows=0.2)
BRIGHT = ExposureFacts(median=205.0, highlights=0.08, shadows=0.0)
BEACH = ExposureFacts(median=150.0, highlights=0.005, shadows=0.0)  # sunny, not clipped


class _Info:
    name, version = "m", "1"


def verdict(
    score: float,
    exposure: ExposureFacts | None = ORDINARY,
    policy: Policy = POLICY,
    **diagnostics: float,
):
    return decide(Path("p.jpg"), Scores(score, {**CLEAN, **diagnostics}), _Info, policy, exposure)


@pytest.mark.parametrize(
    ("score", "diagnostics", "exposure", "label", "reasons"),
    [
        # A failure by score alone: said so only because no diagnostic explains it.
        (12.0, {}, ORDINARY, PickLabel.REJECTED, (LOW_QUALITY,)),
        (12.0, {"blur": 0.7}, ORDINARY, PickLabel.REJECTED, ("blurred",)),
        # An ordinary photo is Pending, with no reason at all when nothing is wrong.
        (45.0, {}, ORDINARY, PickLabel.PENDING, ()),
        # A mild defect is named, not punished.
        (45.0, {"noise": 0.3}, ORDINARY, PickLabel.PENDING, ("noisy",)),
        # A clear defect on a photo the model does not rate good is a failure.
        (45.0, {"blur": 0.8}, ORDINARY, PickLabel.REJECTED, ("blurred",)),
        # ... but not on one it rates good: conflicting evidence leaves it Pending.
        (75.0, {"blur": 0.8}, ORDINARY, PickLabel.PENDING, ("blurred",)),
        (75.0, {"noise": 0.3}, ORDINARY, PickLabel.ACCEPTED, ()),
        (60.0, {}, ORDINARY, PickLabel.ACCEPTED, ()),
        # Exposure reasons only where the pixels agree.
        (45.0, {"underexposure": 0.9}, BEACH, PickLabel.PENDING, ()),
        (45.0, {"underexposure": 0.9}, DARK, PickLabel.REJECTED, ("underexposed",)),
        (45.0, {"overexposure": 0.9}, ORDINARY, PickLabel.PENDING, ()),
        (45.0, {"overexposure": 0.9}, BRIGHT, PickLabel.REJECTED, ("overexposed",)),
        (20.0, {"underexposure": 0.9}, BEACH, PickLabel.REJECTED, (LOW_QUALITY,)),
        # Without stored facts an exposure reason cannot be checked, so it is not given.
        (45.0, {"underexposure": 0.9}, None, PickLabel.PENDING, ()),
    ],
)
def test_policy_table(score, diagnostics, exposure, label, reasons):
    v = verdict(score, exposure, **diagnostics)
    assert (v.label, v.reasons) == (label, reasons)


def test_reasons_strongest_first():
    v = verdict(45.0, DARK, noise=0.3, underexposure=0.45)
    assert v.reasons == ("underexposed", "noisy")


@pytest.mark.parametrize(
    ("score", "label", "stars"),
    [
        (10.0, PickLabel.REJECTED, 0),
        (40.0, PickLabel.PENDING, 1),  # below every star cut, still not a reject
        (70.0, PickLabel.ACCEPTED, 3),  # Accepted means good: at least three stars
        (80.0, PickLabel.ACCEPTED, 4),
        (90.0, PickLabel.ACCEPTED, 5),
    ],
)
def test_stars(score, label, stars):
    v = verdict(score)
    assert (v.label, v.stars) == (label, stars)


def test_pending_never_gets_more_stars_than_an_accepted_photo():
    v = verdict(90.0, blur=0.9)
    assert (v.label, v.stars) == (PickLabel.PENDING, 3)


def test_identity_changes_with_any_cut_off_and_only_then():
    same = Policy(**{**POLICY.__dict__})
    assert same.identity == POLICY.identity
    assert POLICY.identity.startswith("p2-")
    moved = {
        replace(POLICY, reject_below=31.0).identity,
        replace(POLICY, accept_from=61.0).identity,
        replace(POLICY, defect_threshold=0.6).identity,
        replace(POLICY, reason_threshold=0.3).identity,
        replace(POLICY, stars=(1.0, 2.0, 3.0, 4.0, 5.0)).identity,
    }
    assert len(moved) == 5
    assert POLICY.identity not in moved


def test_resolve_layers_product_model_and_settings():
    model = {"stars": list(STARS)}
    assert Policy.resolve(model, Settings()).reject_below == DEFAULT_POLICY["reject_below"]
    own = {**model, "policy": {"reject_below": 22.0}}
    assert Policy.resolve(own, Settings()).reject_below == 22.0
    assert Policy.resolve(own, Settings(reject_below=18.0)).reject_below == 18.0


@pytest.mark.parametrize(
    "settings",
    [
        Settings(reject_below=70.0, accept_from=60.0),
        Settings(reject_below=-1.0),
        Settings(reason_threshold=0.6, defect_threshold=0.5),
    ],
)
def test_contradicting_cut_offs_are_refused(settings):
    with pytest.raises(ConfigError):
        Policy.resolve({"stars": list(STARS)}, settings)


def test_exposure_facts_measure_what_they_say():
    import numpy as np

    white = np.full((300, 400, 3), 255, np.uint8)
    black = np.zeros((300, 400, 3), np.uint8)
    grey = np.full((300, 400, 3), 118, np.uint8)
    assert measure(white) == ExposureFacts(255.0, 1.0, 0.0)
    assert measure(black) == ExposureFacts(0.0, 0.0, 1.0)
    assert measure(grey).median == pytest.approx(118.0, abs=0.5)
    half = np.concatenate([white[:150], black[150:]])
    facts = measure(half)
    assert facts.highlights == pytest.approx(0.5, abs=0.01)
    assert facts.shadows == pytest.approx(0.5, abs=0.01)


class _Model(_Info):
    diagnostics = tuple(CLEAN)


@pytest.mark.parametrize(
    ("score", "diagnostics"),
    [
        (59.98, {}),  # shown and stored as 60.0, the accept cut
        (29.96, {}),  # shown and stored as 30.0, the reject cut
        (45.0, {"blur": 0.4996}),  # stored as 0.5, the defect threshold
        (45.0, {"noise": 0.19996}),  # stored as 0.2, the reason threshold
        (78.26, {}),  # stored as 78.3, a star cut
    ],
)
def test_a_stored_verdict_re_decided_under_its_own_policy_is_the_same(score, diagnostics):
    """The label, stars and reasons follow the score and diagnostics as they are stored
    (rounded), so re-deciding a stored verdict under the same policy (the daemon does, for
    every earlier frame of a folder when a new one arrives) changes nothing and writes
    nothing again."""
    from iqs_daemon.restore import verdict_from_json, verdict_json
    from iqs_daemon.verdict import redecide

    first = verdict(score, **diagnostics)
    stored = verdict_from_json(first.path, verdict_json(first))
    assert stored == first
    again = redecide(first.path, stored, _Model, POLICY)
    assert again is not None
    assert (again.label, again.stars, again.reasons) == (first.label, first.stars, first.reasons)
