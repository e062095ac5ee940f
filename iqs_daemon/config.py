"""Settings: shipped defaults < calibration < the user's TOML file < ``--config FILE`` < flags.

The calibration layer is written by ``iqs-daemon calibrate`` (``Paths.calibration_file``),
fitted to the labels the user set by hand; any value the user sets themselves wins.

Loaded once at the edge (the CLI) into one frozen ``Settings`` and passed down; nothing
reads a global. ``Settings.sources`` says where each value came from, for
``iqs-daemon config``.

The file is TOML with one table per concern, for example::

    [verdict]
    reject_below = 30      # scores below this are Rejected as failures
    accept_from = 60       # scores from this up are Accepted, unless a defect is clear

    [metadata]
    rejected_rating = -1   # xmp:Rating for Rejected photos: -1 (XMP spec) or 0
    sidecar_naming = "ext" # "ext": photo.CR2.xmp, "stem": photo.xmp
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP_NAME = "iqs-daemon"
CONFIG_FILE_NAME = "config.toml"
CALIBRATION_FILE_NAME = "calibration.toml"
CALIBRATION_SOURCE = "calibration"


@dataclass(frozen=True)
class Paths:
    """Every directory the program uses, from platformdirs with environment overrides."""

    config_dir: Path
    state_dir: Path
    runtime_dir: Path

    @classmethod
    def from_environment(cls) -> Paths:
        state = os.environ.get("IQS_STATE_DIR") or platformdirs.user_state_dir(APP_NAME)
        runtime = (
            os.environ.get("IQS_RUNTIME_DIR")
            or (os.environ.get("XDG_RUNTIME_DIR")
                and str(Path(os.environ["XDG_RUNTIME_DIR"]) / APP_NAME))
            or state
        )
        return cls(
            config_dir=Path(
                os.environ.get("IQS_CONFIG_DIR") or platformdirs.user_config_dir(APP_NAME)),
            state_dir=Path(state),
            runtime_dir=Path(runtime),
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_FILE_NAME

    @property
    def calibration_file(self) -> Path:
        return self.config_dir / CALIBRATION_FILE_NAME

    @property
    def database(self) -> Path:
        return self.state_dir / "state.sqlite3"


@dataclass(frozen=True)
class Settings:
    # [model]
    model_path: str = ""  # empty: the model shipped in the package
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 8  # photos per inference where set; unset: 1 on a CPU, 32 on a GPU
    jobs: int = 0  # decode threads; 0 = one per CPU core
    threads: int = 0  # ONNX Runtime threads per inference; 0 = chosen against `jobs`
    # [verdict] (None: the policy's defaults, verdict.DEFAULT_POLICY or the model's own)
    reject_below: float | None = None  # a score below this is a failure: Rejected
    accept_from: float | None = None  # from this up, with no clear defect: Accepted
    defect_threshold: float | None = None  # a diagnostic this strong is a clear defect
    reason_threshold: float | None = None  # a diagnostic this strong is named as a reason
    # [decoding]
    max_pixels: int = 250_000_000  # decompression-bomb guard
    # [metadata]
    rejected_rating: int = -1  # -1 per the XMP spec (darktable, Immich); 0 for digiKam
    sidecar_naming: str = "ext"  # "ext": photo.CR2.xmp, "stem": photo.xmp
    sidecar_only: bool = False  # never modify an original, always write sidecars
    remove_orphan_sidecars: bool = True  # photo deleted: remove its sidecar if only ours
    keep_mtime: bool = True  # restore the photo's modification time after writing
    windows_ratings: bool = True  # also MicrosoftPhoto:Rating and EXIF Rating/RatingPercent
    color_label: bool = False  # also set digiKam's colour label (red/yellow/green)
    # [bursts] (bursts.py; defaults chosen by benchmarks/bursts.py)
    group_bursts: bool = True  # group near-duplicates of a folder and pick the best frame
    max_gap_seconds: float = 30.0  # a frame joins a group taken at most this long before it
    min_similarity: float = 0.96  # ... and looking this alike (embedding cosine)
    others_label: str = "pending"  # the group's other frames: "pending" or "rejected"
    # [daemon]
    backlog: bool = True  # score existing photos without a current verdict on start
    settle_seconds: float = 0.5  # a file must be unchanged this long before scoring
    polling: bool = False  # poll instead of inotify (network shares)
    poll_interval_seconds: float = 5.0
    follow_symlinks: bool = False
    # Where each value came from: "default", a file path, or "flag".
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")


# TOML table for each setting; the file uses [table] key = value.
SECTIONS: dict[str, str] = {
    "model_path": "model",
    "device": "model",
    "batch_size": "model",
    "jobs": "model",
    "threads": "model",
    "reject_below": "verdict",
    "accept_from": "verdict",
    "defect_threshold": "verdict",
    "reason_threshold": "verdict",
    "max_pixels": "decoding",
    "rejected_rating": "metadata",
    "sidecar_naming": "metadata",
    "sidecar_only": "metadata",
    "remove_orphan_sidecars": "metadata",
    "keep_mtime": "metadata",
    "windows_ratings": "metadata",
    "color_label": "metadata",
    "group_bursts": "bursts",
    "max_gap_seconds": "bursts",
    "min_similarity": "bursts",
    "others_label": "bursts",
    "backlog": "daemon",
    "settle_seconds": "daemon",
    "polling": "daemon",
    "poll_interval_seconds": "daemon",
    "follow_symlinks": "daemon",
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "rejected_rating": (-1, 0),
    "sidecar_naming": ("ext", "stem"),
    "others_label": ("pending", "rejected"),
}


def _setting_fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in fields(Settings) if f.name != "sources"}


def _check_value(name: str, value: Any, source: str) -> Any:
    """Validate one value against the field's type; return it converted."""
    key = f"{SECTIONS[name]}.{name}"
    default = getattr(Settings(), name)
    annotation = str(_setting_fields()[name].type)
    if value is None and "None" in annotation:
        return None
    if isinstance(default, bool) or annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key=key, source=source)
    elif annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected a whole number, got {value!r}", key=key, source=source)
    elif annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key=key, source=source)
        value = float(value)
    elif annotation.startswith("str") and not isinstance(value, str):
        raise ConfigError(f"expected a string, got {value!r}", key=key, source=source)
    if name in CHOICES and value not in CHOICES[name]:
        allowed = ", ".join(repr(c) for c in CHOICES[name])
        raise ConfigError(f"must be one of {allowed}, got {value!r}", key=key, source=source)
    if name in ("batch_size",) and value < 1:
        raise ConfigError("must be at least 1", key=key, source=source)
    non_negative = ("jobs", "threads", "max_pixels", "settle_seconds", "poll_interval_seconds",
                    "max_gap_seconds")
    if name in non_negative and value < 0:
        raise ConfigError("must not be negative", key=key, source=source)
    if name == "min_similarity" and not -1.0 <= value <= 1.0:
        raise ConfigError("must be between -1 and 1 (a cosine)", key=key, source=source)
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read one TOML file into {setting name: value}, validating every key."""
    source = str(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from exc
    values: dict[str, Any] = {}
    known = _setting_fields()
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError("settings belong in a [table]", key=section, source=source)
        for key, value in table.items():
            if key not in known or SECTIONS[key] != section:
                raise ConfigError("unknown setting", key=f"{section}.{key}", source=source)
            values[key] = _check_value(key, value, source)
    return values


def load_settings(
    paths: Paths,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Layer defaults, the user's file, an explicit ``--config`` file and flags."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers: list[tuple[dict[str, Any], str]] = []
    if paths.calibration_file.is_file():
        layers.append((read_config_file(paths.calibration_file), CALIBRATION_SOURCE))
    if paths.config_file.is_file():
        layers.append((read_config_file(paths.config_file), str(paths.config_file)))
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError("config file not found", source=str(config_file))
        layers.append((read_config_file(config_file), str(config_file)))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers.append(({k: _check_value(k, v, "flag") for k, v in flags.items()}, "flag"))
    for layer, source in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = source
    settings = Settings(**values, sources=sources)
    check_verdict_settings(settings)
    return settings


def check_verdict_settings(settings: Settings) -> None:
    """Cut-offs that contradict each other are refused where they are set, not at use:
    the values given are checked against the policy's defaults for the ones not given."""
    from .verdict import DEFAULT_POLICY, check_cut_offs

    def value(name: str) -> float:
        given = getattr(settings, name)
        return float(DEFAULT_POLICY[name] if given is None else given)

    if all(getattr(settings, n) is None for n in DEFAULT_POLICY):
        return
    try:
        check_cut_offs(value("reject_below"), value("accept_from"), value("reason_threshold"),
                       value("defect_threshold"))
    except ConfigError as exc:
        given = [n for n in DEFAULT_POLICY if getattr(settings, n) is not None]
        where = ", ".join(sorted({settings.source_of(n) for n in given}))
        raise ConfigError(exc.message, source=where) from None


def describe(settings: Settings) -> list[tuple[str, Any, str]]:
    """(dotted key, value, source) for every setting, in file order."""
    return [
        (f"{SECTIONS[name]}.{name}", getattr(settings, name), settings.source_of(name))
        for name in _setting_fields()
    ]
