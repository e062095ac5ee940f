"""BIQ2021: the official split, read from a local copy of its repository."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Rated:
    path: Path
    mos: float  # 0..1, mean of 30 observers on a 5-point scale


def _read_split(csv_path: Path, images: Path) -> list[Rated]:
    on_disk = {p.name.lower(): p for p in images.iterdir()}
    rows = []
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            if not row or not row[0] or row[0] == "Image Name":
                continue
            # One file is ".JPG" on disk while the CSV says ".jpg": match case-insensitively.
            rows.append(Rated(on_disk[row[0].strip().lower()], float(row[1])))
    return rows


def load_split(root: Path) -> tuple[list[Rated], list[Rated]]:
    """(official train 10,000, official test 2,000)."""
    images = root / "Images"
    train = _read_split(root / "Train (Images and MOS).csv", images)
    test = _read_split(root / "Test (Images and MOS).csv", images)
    return train, test


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])
