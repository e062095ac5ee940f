"""Does ``iqs-daemon calibrate`` learn a user's taste? Measured on rated photos.

    python benchmarks/calibration.py --biq PATH/TO/BIQ2021 [--photos 1000]

Copies BIQ2021 photos the model never trained on (its validation tenth of the train split,
``training/split.py``; ``--photos`` of them) into a temporary folder and writes each
one's opinion tertile (on the whole train split) as a digiKam pick label:
the lowest third Rejected, the middle Pending, the top Accepted, as a photographer who
culls by those opinions would. Then runs the real CLI, ``iqs-daemon calibrate --json``,
in an isolated home, and prints the macro-F1 on the held-out half with the default policy
and with the fitted cut-offs. The target is the default's + 0.10.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from verdict_policy import read_biq, train_val_indices


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--biq", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=1000)
    args = parser.parse_args()
    rated = read_biq(args.biq / "Train (Images and MOS).csv", args.biq / "Images")
    low, high = np.quantile([mos for _, mos in rated], [1 / 3, 2 / 3])
    _, validation = train_val_indices(len(rated))
    chosen = [rated[i] for i in validation[: args.photos]]
    with tempfile.TemporaryDirectory(prefix="iqs-calibration-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        argfile = Path(tmp) / "args.txt"
        lines = []
        for path, mos in chosen:
            copy = folder / path.name.replace(" ", "_")
            shutil.copyfile(path, copy)
            label = 1 if mos < low else 3 if mos >= high else 2
            lines += [
                f"-XMP-digiKam:PickLabel={label}",
                "-overwrite_original",
                str(copy),
                "-execute",
            ]
        argfile.write_text("\n".join(lines) + "\n")
        subprocess.run(["exiftool", "-q", "-q", "-@", str(argfile)], check=True,
                       stdout=subprocess.DEVNULL)
        env = {**os.environ, "IQS_CONFIG_DIR": f"{tmp}/config", "IQS_STATE_DIR": f"{tmp}/state"}
        result = subprocess.run(
            [sys.executable, "-m", "iqs_daemon", "calibrate", "--json", str(folder)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(result.stdout)
    before, after = report["before"], report["after"]
    print(
        f"{report['photos']} photos labelled by their BIQ2021 opinion tertile "
        f"(< {low:.3f} Rejected, >= {high:.3f} Accepted); held out: {report['held_out']}"
    )
    for name, r in (("default", before), ("calibrated", after)):
        print(
            f"  {name:10s} Rejected < {r['reject_below']:5.1f}, "
            f"Accepted >= {r['accept_from']:5.1f}: macro-F1 {r['macro_f1']:.3f}, "
            f"accuracy {r['accuracy']:.3f}, confusion {r['confusion']}"
        )
    gain = after["macro_f1"] - before["macro_f1"]
    print(f"gain: {gain:+.3f} (target: +0.10)")


if __name__ == "__main__":
    main()
