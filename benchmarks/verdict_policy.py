"""How the default verdict cut-offs were chosen: failures caught against good photos kept.

    python benchmarks/verdict_policy.py --biq PATH/TO/BIQ2021 [--photos ../shared/samples/photos]

Scores, through the product (``Scorer``, dry run), three kinds of photo:

* failures: BIQ2021 photos rated below 0.30, and the strongest level of every
  distortion-protocol family applied to the sample photos;
* keepers: BIQ2021 photos rated above 0.70, and the sample photographs;
* everything else, to show what lands in Accepted.

The BIQ2021 photos are the model's validation tenth of the train split
(``training/split.py``): rated like the rest, but never trained on. Cut-offs chosen on
photos the model was fitted to come out optimistic (a first attempt on a random train
sample rejected 89 % of the photos rated below 0.30 there and 65 % on the test split).

Then it prints, for a grid of ``reject_below`` / ``accept_from`` / ``defect_threshold``,
how many failures are Rejected and how many keepers are wrongly Rejected, and the
cut-offs it would choose: the most failures caught while at most 2 % of the well-rated
photos and at most one sample photograph are Rejected. The official test split is not
read here (``--report-test`` reads it once, for the final figures). Scores are cached
in ``--cache`` so the grid can be re-run without scoring again.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from iqs_daemon.config import Settings
from iqs_daemon.decoding import decode
from iqs_daemon.discovery import iter_candidates
from iqs_daemon.distortion_check import candidate_for, write_copies
from iqs_daemon.distortions import PROTOCOL
from iqs_daemon.exposure import ExposureFacts
from iqs_daemon.pipeline import Scorer
from iqs_daemon.records import PickLabel, Scores
from iqs_daemon.verdict import DEFAULT_POLICY, Policy, decide, labels_for_many, true_defects

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # training/split.py: the model's own validation split
from training.split import train_val_indices  # noqa: E402

FAIL_MOS, GOOD_MOS = 0.30, 0.70


def read_biq(csv_path: Path, images: Path) -> list[tuple[Path, float]]:
    rows = []
    with csv_path.open(newline="") as fh:
        for row in csv.reader(fh):
            if not row or not row[0] or row[0] == "Image Name":
                continue
            path = images / row[0]
            if not path.exists():  # one file's extension differs in case on disk
                path = path.with_suffix(path.suffix.upper())
            rows.append((path, float(row[1])))
    return rows


def score_files(scorer: Scorer, paths: list[Path]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for outcome in scorer.process([candidate_for(p) for p in paths]):
        v = outcome.verdict
        if v is None or v.exposure is None:
            out.append(None)
            continue
        out.append(
            {"score": v.score, "diagnostics": v.diagnostics, "exposure": v.exposure.as_dict()}
        )
    return out


def collect(
    settings: Settings, biq: Path, photos: Path, test: bool
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    split = "Test (Images and MOS).csv" if test else "Train (Images and MOS).csv"
    rated = read_biq(biq / split, biq / "Images")
    if not test:
        _, validation = train_val_indices(len(rated))
        rated = [rated[i] for i in validation]
    sample_photos = [c.path for c in iter_candidates([photos])]
    with Scorer(settings, dry_run=True, rescore=True) as scorer:
        kind = "test" if test else "validation"
        print(f"scoring {len(rated)} BIQ2021 {kind} photos ...", flush=True)
        for (path, mos), rec in zip(
            rated, score_files(scorer, [p for p, _ in rated]), strict=False
        ):
            if rec:
                records.append({"set": "biq", "name": path.name, "mos": mos, **rec})
        if test:
            return records
        print(
            f"scoring {len(sample_photos)} sample photos and their protocol copies ...", flush=True
        )
        for path, rec in zip(sample_photos, score_files(scorer, sample_photos), strict=False):
            if rec:
                records.append({"set": "sample", "name": path.name, **rec})
        for n, path in enumerate(sample_photos):
            rgb = decode(path, min_short_side=10**9, max_pixels=Settings().max_pixels).rgb
            if rgb.shape[0] * rgb.shape[1] < 2e6:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                for family in PROTOCOL:
                    folder = Path(tmp) / family
                    folder.mkdir()
                    copies = write_copies(rgb, family, folder, seed=n)
                    for level, rec in enumerate(score_files(scorer, copies), 1):
                        if rec:
                            records.append(
                                {
                                    "set": f"protocol-{level}",
                                    "family": family,
                                    "name": path.name,
                                    **rec,
                                }
                            )
    return records


class _Info:  # decide() only needs the model's name and version
    name, version = "cached", "0"


def strongest_confirmed(rec: dict[str, Any]) -> float:
    """The strongest diagnostic the pixels confirm: a clear defect at any threshold below it."""
    found = true_defects(rec["diagnostics"], ExposureFacts(**rec["exposure"]), 0.0)
    return found[0][0] if found else 0.0


def labels_of(records: list[dict[str, Any]], policy: Policy) -> np.ndarray:
    """``verdict.label_for`` over all records at once (checked against it in ``main``)."""
    score = np.array([r["score"] for r in records])
    clear = np.array([strongest_confirmed(r) for r in records]) >= policy.defect_threshold
    return labels_for_many(score, clear, policy.reject_below, policy.accept_from)


def evaluate(records: list[dict[str, Any]], policy: Policy) -> dict[str, float]:
    labels = labels_of(records, policy)
    sets = np.array([r["set"] for r in records])
    mos = np.array([r.get("mos", np.nan) for r in records])
    rejected, accepted = PickLabel.REJECTED.value, PickLabel.ACCEPTED.value

    def share(select: np.ndarray, want: int) -> float:
        return float(np.mean(labels[select] == want)) if select.any() else 0.0

    biq = sets == "biq"
    return {
        "biq_fail_rejected": share(biq & (mos < FAIL_MOS), rejected),
        "biq_good_rejected": share(biq & (mos > GOOD_MOS), rejected),
        "biq_good_accepted": share(biq & (mos > GOOD_MOS), accepted),
        "biq_below_0.6_accepted": share(biq & (mos < 0.6), accepted),
        "protocol_strongest_rejected": share(sets == "protocol-3", rejected),
        "protocol_mild_rejected": share(sets == "protocol-1", rejected),
        "samples_rejected": int(np.sum(labels[sets == "sample"] == rejected)),
        "samples_accepted": int(np.sum(labels[sets == "sample"] == accepted)),
    }


def grid(
    records: list[dict[str, Any]], stars: tuple[float, ...]
) -> list[tuple[Policy, dict[str, float]]]:
    base = Policy(stars=stars, **DEFAULT_POLICY)
    rows = []
    for reject_below, accept_from, defect in itertools.product(
        np.arange(20, 52.5, 2.5), np.arange(50, 77.5, 2.5), (0.4, 0.5, 0.6, 0.7, 2.0)
    ):
        if reject_below >= accept_from:
            continue
        p = replace(
            base,
            reject_below=float(reject_below),
            accept_from=float(accept_from),
            defect_threshold=defect,
        )
        rows.append((p, evaluate(records, p)))
    return rows


def choose(rows: list[tuple[Policy, dict[str, float]]]) -> tuple[Policy, dict[str, float]]:
    """The rule behind the defaults, in order:

    1. safe: at most 1 % of the well-rated photos and at most one sample photograph
       Rejected;
    2. among those, the most failures caught (within 1 point of the best), then the
       fewest well-rated photos and mildly damaged copies Rejected (a higher defect
       threshold where it costs nothing), then the lowest ``reject_below``;
    3. ``accept_from``: the highest cut that still accepts a third of the sample
       photographs and 90 % of the photos rated above 0.70.
    """
    safe = [
        (p, m) for p, m in rows if m["biq_good_rejected"] <= 0.01 and m["samples_rejected"] <= 1
    ]
    if not safe:
        raise SystemExit("no cut-offs keep the good photos")

    def catch(m: dict[str, float]) -> float:
        return (m["biq_fail_rejected"] + m["protocol_strongest_rejected"]) / 2

    best_catch = max(catch(m) for _, m in safe)
    near = [(p, m) for p, m in safe if catch(m) >= best_catch - 0.01]
    reject_rule, _ = min(
        near,
        key=lambda pm: (
            pm[1]["biq_good_rejected"],
            pm[1]["protocol_mild_rejected"],
            pm[0].reject_below,
            -pm[0].defect_threshold,
        ),
    )
    same = [
        (p, m)
        for p, m in rows
        if (p.reject_below, p.defect_threshold)
        == (reject_rule.reject_below, reject_rule.defect_threshold)
    ]
    enough = [
        (p, m) for p, m in same if m["samples_accepted"] >= 4 and m["biq_good_accepted"] >= 0.90
    ] or same
    return max(enough, key=lambda pm: pm[0].accept_from)


def plot(rows: list[tuple[Policy, dict[str, float]]], chosen: Policy, target: Path) -> None:
    """Two panels: what ``reject_below`` catches and costs; what ``accept_from`` admits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    by_reject = sorted(
        (p.reject_below, m)
        for p, m in rows
        if p.accept_from == chosen.accept_from and p.defect_threshold == chosen.defect_threshold
    )
    x = [r for r, _ in by_reject]
    left.plot(
        x,
        [100 * m["biq_fail_rejected"] for _, m in by_reject],
        "o-",
        label="BIQ2021 rated < 0.30: Rejected",
    )
    left.plot(
        x,
        [100 * m["protocol_strongest_rejected"] for _, m in by_reject],
        "s-",
        label="strongest protocol damage: Rejected",
    )
    left.plot(
        x,
        [100 * m["biq_good_rejected"] for _, m in by_reject],
        "^-",
        label="BIQ2021 rated > 0.70: Rejected",
    )
    left.plot(
        x,
        [100 * m["samples_rejected"] / 12 for _, m in by_reject],
        "v-",
        label="sample photographs: Rejected",
    )
    left.axvline(chosen.reject_below, color="grey", linestyle=":")
    left.set(xlabel="verdict.reject_below", ylabel="% of photos", title="Rejected: failures only")
    left.legend(fontsize=8)
    by_accept = sorted(
        (p.accept_from, m)
        for p, m in rows
        if p.reject_below == chosen.reject_below and p.defect_threshold == chosen.defect_threshold
    )
    x = [a for a, _ in by_accept]
    right.plot(
        x,
        [100 * m["biq_good_accepted"] for _, m in by_accept],
        "o-",
        label="BIQ2021 rated > 0.70: Accepted",
    )
    right.plot(
        x,
        [100 * m["biq_below_0.6_accepted"] for _, m in by_accept],
        "^-",
        label="BIQ2021 rated < 0.60: Accepted",
    )
    right.plot(
        x,
        [100 * m["samples_accepted"] / 12 for _, m in by_accept],
        "v-",
        label="sample photographs: Accepted",
    )
    right.axvline(chosen.accept_from, color="grey", linestyle=":")
    right.set(xlabel="verdict.accept_from", ylabel="% of photos", title="Accepted: good photos")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--biq", type=Path, required=True)
    parser.add_argument(
        "--photos",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos",
    )
    parser.add_argument("--cache", type=Path, default=Path("verdict-policy-scores.json"))
    parser.add_argument("--model", type=Path, help="an ONNX model (default: the shipped one)")
    parser.add_argument(
        "--plot", type=Path, help="draw the trade-off (needs matplotlib) into this PNG"
    )
    parser.add_argument(
        "--report-test",
        action="store_true",
        help="score the official test split once and report the default policy on it",
    )
    args = parser.parse_args()

    settings = Settings(model_path=str(args.model)) if args.model else Settings()
    cache = args.cache.with_suffix(".test.json") if args.report_test else args.cache
    if cache.exists():
        records = json.loads(cache.read_text())
    else:
        records = collect(settings, args.biq, args.photos, args.report_test)
        cache.write_text(json.dumps(records))
    with Scorer(settings, dry_run=True) as scorer:
        current = scorer.policy
    print(
        f"{len(records)} scored photos; default policy {current.identity}: "
        f"reject < {current.reject_below:g}, accept >= {current.accept_from:g}, "
        f"defect >= {current.defect_threshold:g}"
    )
    for rec, fast in zip(records, labels_of(records, current), strict=False):
        scores = Scores(rec["score"], rec["diagnostics"])
        slow = decide(
            Path(rec["name"]), scores, _Info, current, ExposureFacts(**rec["exposure"])
        ).label
        assert slow.value == fast, (rec, slow, fast)
    print(json.dumps(evaluate(records, current), indent=1))
    if args.report_test:
        return
    rows = grid(records, current.stars)
    with args.cache.with_suffix(".grid.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["reject_below", "accept_from", "defect_threshold", *rows[0][1]])
        for p, m in rows:
            writer.writerow([p.reject_below, p.accept_from, p.defect_threshold, *m.values()])
    chosen, figures = choose(rows)
    if args.plot:
        plot(rows, chosen, args.plot)
    print(
        f"chosen: reject_below {chosen.reject_below:g}, accept_from {chosen.accept_from:g}, "
        f"defect_threshold {chosen.defect_threshold:g}"
    )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
