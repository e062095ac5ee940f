"""Reproduce the shipped model from scratch:  ``python -m training --biq PATH/TO/BIQ2021``

1. extract: frozen EfficientNet-Lite0 features and measured pixel signals of the 12,000
   rated photos, of the 10,000 train photos mirrored, of ``--distorted`` training photos
   with their synthetic distortions, and of ``--soft`` well-rated photos with their
   background defocused around the subject (cached);
2. train: the head ensemble (training/train.py), on our fit split only;
3. export: ``models/iqs-quality.onnx`` + ``.sha256``, with a torch-vs-ONNX parity check;
4. report: the official test split and the distortion protocol (with its soft-background
   counter-check), through the product (``iqs-daemon eval``), i.e. the figures in
   models/README.md.

About 55 minutes on a quiet 2-core CPU, most of it feature extraction (12,000 rated,
10,000 mirrored, 9,000 distorted and 2,400 soft-background copies); with the features
cached, about 25.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from . import extract, train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--biq", type=Path, required=True, help="local copy of the BIQ2021 repository"
    )
    parser.add_argument("--distorted", type=int, default=600, help="training photos to distort")
    parser.add_argument("--heads", type=int, default=train.TrainConfig.heads)
    parser.add_argument(
        "--soft", type=int, nargs=2, default=(600, 200), metavar=("FIT", "VAL"),
        help="also train on soft-background copies of FIT photos (VAL more, measured only); "
             "0 0 for none",
    )
    parser.add_argument(
        "--signals", action="store_true",
        help="also feed the heads the 37 measured pixel signals (1.1's recipe; 1.2 leaves "
             "them out: they cost 0.02 SROCC on a BIQ2021 subset left out of training)",
    )
    parser.add_argument("--version", default="1.2")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "iqs-quality.onnx")
    parser.add_argument(
        "--samples",
        type=Path,
        default=REPO.parent / "shared" / "samples" / "photos",
        help="photos for the distortion protocol (never used in training)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    extract.extract_rated(args.biq, "lite0")
    extract.extract_mirrored(args.biq, "lite0")
    distorted = extract.extract_distorted(args.biq, "lite0", args.distorted)
    soft = []
    if args.soft and args.soft[0] > 0:  # --soft 0 0: none (1.1's recipe)
        soft = ["--soft", str(extract.extract_soft(args.biq, "lite0", *args.soft))]
    head = train.RUNS / "head.pt"
    run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--distorted",
            str(distorted),
            "--heads",
            str(args.heads),
            *soft,
            *([] if args.signals else ["--no-signals"]),
            "--out",
            str(head),
        ]
    )
    test_photos = sorted((args.biq / "Images").glob("ss0*"))[:3]
    run(
        [
            sys.executable,
            "-m",
            "training.export",
            "--head",
            str(head),
            "--out",
            str(args.out),
            "--version",
            args.version,
            "--int8",
            "--samples",
            *map(str, test_photos),
        ]
    )
    model = ["--set", f"model.model_path={args.out}"]
    product = [sys.executable, "-m", "iqs_daemon"]  # the venv's, activated or not
    run(
        [
            *product,
            "eval",
            str(args.biq / "Images"),
            "--labels",
            str(args.biq / "Test (Images and MOS).csv"),
            *model,
        ]
    )
    run([*product, "eval", "--distortions", str(args.samples), *model])


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
