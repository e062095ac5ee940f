"""Independent readers for the tests: the exiftool and exiv2 commands, and JPEG scan data."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

needs_readers = pytest.mark.skipif(
    shutil.which("exiftool") is None or shutil.which("exiv2") is None,
    reason="needs the exiftool and exiv2 commands (libimage-exiftool-perl, exiv2)",
)


def exiftool_many(paths: list[Path]) -> dict[Path, dict]:
    """``exiftool -j -G1 -n -struct`` for many files in one run, by path."""
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-n", "-struct", *map(str, paths)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = {item["SourceFile"]: item for item in json.loads(out.stdout or "[]")}
    return {path: found[str(path)] for path in paths}


def exiftool_warnings(path: Path) -> set[str]:
    """Every warning exiftool gives while reading the file (minor ones included)."""
    out = subprocess.run(
        ["exiftool", "-j", "-a", "-G1", "-warning", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    item = json.loads(out.stdout)[0]
    values = [v for k, v in item.items() if k.endswith("Warning")]
    return {str(w) for v in values for w in (v if isinstance(v, list) else [v])}


def exiv2_tags(path: Path, flags: str = "-pa") -> dict[str, str]:
    """``exiv2 -pa`` (or ``-px``) as {key: value}: the exiv2 0.27 CLI, not pyexiv2's 0.28."""
    out = subprocess.run(["exiv2", "-q", flags, str(path)], capture_output=True, check=False)
    tags = {}
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[0].count(".") >= 2:
            tags[parts[0]] = parts[3] if len(parts) == 4 else ""
    return tags


def exiv2_types(path: Path) -> dict[str, str]:
    """``exiv2 -px`` as {key: type name}, e.g. ``XmpSeq`` for an ordered array."""
    out = subprocess.run(["exiv2", "-q", "-px", str(path)], capture_output=True, check=False)
    return {
        parts[0]: parts[1]
        for parts in (line.split() for line in out.stdout.decode("utf-8", "replace").splitlines())
        if len(parts) >= 2
    }


def jpeg_scan(data: bytes) -> bytes:
    """Everything from the first SOS marker on: the entropy-coded image data."""
    assert data[:2] == b"\xff\xd8"
    i = 2
    while True:
        assert data[i] == 0xFF, f"bad marker at {i}"
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xDA:
            return data[i:]
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
