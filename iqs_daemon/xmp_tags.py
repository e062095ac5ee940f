"""The tags iqs-daemon reads and writes, and the decisions about them (no file access).

``plan_tags`` turns a verdict into the tags to set, keeping a label or rating the user
set; ``merge_stored`` turns the tags found in a photo and its sidecars into one
``StoredMetadata``. ``metadata.py`` does the reading and writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .discovery import JPEG_EXTENSIONS, TIFF_EXTENSIONS
from .exiv2_process import IQS_PREFIX
from .exposure import ExposureFacts
from .records import PickLabel
from .vocabulary import BY_NAME, DIAGNOSTICS

if TYPE_CHECKING:
    from .config import Settings
    from .records import Burst, Verdict

EXIF_EXTENSIONS = JPEG_EXTENSIONS | TIFF_EXTENSIONS  # formats whose EXIF rating we keep in step
# ExposureFacts field -> tag suffix (Xmp.iqs.Luminance, ...): stored so that a verdict can
# be re-decided, reasons checked, without decoding the photo again.
EXPOSURE_TAGS = {"median": "Luminance", "highlights": "Highlights", "shadows": "Shadows"}
WINDOWS_PERCENT = (0, 1, 25, 50, 75, 99)  # stars 0..5 as MicrosoftPhoto/RatingPercent
COLOR_LABELS = {  # digiKam colour number and the Lightroom/Bridge label name
    PickLabel.REJECTED: ("1", "Red"),
    PickLabel.PENDING: ("3", "Yellow"),
    PickLabel.ACCEPTED: ("4", "Green"),
}

IQS = f"Xmp.{IQS_PREFIX}."
PICK, RATING = "Xmp.digiKam.PickLabel", "Xmp.xmp.Rating"
MS_RATING, COLOR, XMP_LABEL = "Xmp.MicrosoftPhoto.Rating", "Xmp.digiKam.ColorLabel", "Xmp.xmp.Label"
EXIF_RATING, EXIF_PERCENT = "Exif.Image.Rating", "Exif.Image.RatingPercent"
# Keyword lists a burst tag is merged into: digiKam's tag paths ("a/b"), Lightroom's
# hierarchy ("a|b", also read by darktable and Immich), and the flat Dublin Core list.
TAGS_LIST, HIERARCHICAL = "Xmp.digiKam.TagsList", "Xmp.lr.hierarchicalSubject"
SUBJECT = "Xmp.dc.subject"
KEYWORD_SEPARATORS = {TAGS_LIST: "/", HIERARCHICAL: "|"}
BURST_ROOT = ("iqs", "burst")  # the burst keyword: iqs|burst|<id> (digiKam: iqs/burst/<id>)
READ_KEYS = [PICK, RATING, MS_RATING, COLOR, XMP_LABEL, EXIF_RATING, EXIF_PERCENT,
             TAGS_LIST, HIERARCHICAL, SUBJECT]

# --- what is stored -----------------------------------------------------------------


@dataclass(frozen=True)
class FileTags:
    """The tags of interest found in one file."""

    path: Path
    kind: str  # "embedded" or "sidecar"
    xmp: dict[str, Any]
    exif: dict[str, Any]
    # (inode, size, mtime_ns) of the file just before it was read: while the file still
    # has them, the writer reuses this read instead of asking exiv2 again.
    read_as: tuple[int, int, int] | None = None

    def get(self, key: str) -> Any:
        return (self.exif if key.startswith("Exif.") else self.xmp).get(key)


@dataclass(frozen=True)
class StoredMetadata:
    """What a photo carries: our verdict, if any, and the labels any tool wrote.

    Each value comes from the first file that has it, in ``files`` order (the file we
    write to first); ``sources`` names that file per field.
    """

    path: Path
    score: float | None = None
    label: PickLabel | None = None
    reasons: tuple[str, ...] = ()
    diagnostics: dict[str, float] = field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None
    scored_at: str | None = None
    fingerprint: str | None = None
    policy: str | None = None  # Xmp.iqs.Policy: verdict.Policy.identity of the stored label
    exposure: ExposureFacts | None = None
    written_pick_label: int | None = None  # Xmp.iqs.PickLabel: what we last wrote
    written_rating: int | None = None  # Xmp.iqs.Rating
    pick_label: PickLabel | None = None  # Xmp.digiKam.PickLabel, whoever wrote it
    rating: int | None = None  # Xmp.xmp.Rating
    microsoft_rating: int | None = None  # Xmp.MicrosoftPhoto.Rating
    exif_rating: int | None = None  # Exif.Image.Rating
    exif_rating_percent: int | None = None  # Exif.Image.RatingPercent
    color_label: int | None = None  # Xmp.digiKam.ColorLabel
    xmp_label: str | None = None  # Xmp.xmp.Label
    group_id: str | None = None  # Xmp.iqs.Group: the burst this photo belongs to
    group_size: int | None = None  # Xmp.iqs.GroupSize
    group_pick: bool | None = None  # Xmp.iqs.GroupPick: this frame is the burst's pick
    sources: dict[str, Path] = field(default_factory=dict)
    files: tuple[FileTags, ...] = ()
    problems: tuple[str, ...] = ()  # files that exist but could not be read

    @property
    def has_verdict(self) -> bool:
        return self.label is not None or self.score is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``iqs-daemon show --json``)."""
        out: dict[str, Any] = {"path": str(self.path)}
        for name in StoredMetadata.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("path", "files", "sources"):
                continue
            out[name] = (
                value.title
                if isinstance(value, PickLabel)
                else (list(value) if isinstance(value, tuple)
                      else value.as_dict() if isinstance(value, ExposureFacts) else value)
            )
        out["sources"] = {k: str(v) for k, v in self.sources.items()}
        out["files"] = [
            {"path": str(f.path), "kind": f.kind, "tags": {**f.xmp, **f.exif}} for f in self.files
        ]
        return out


def _int(value: Any) -> int | None:
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def _pick(value: Any) -> PickLabel | None:
    number = _int(value)
    if number is None or number not in PickLabel._value2member_map_:
        return None
    return PickLabel(number)


def _reasons(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if str(v))
    return tuple(r.strip() for r in str(value or "").split(",") if r.strip())


def _bool(value: Any) -> bool | None:
    text = str(value).strip().lower()
    return True if text == "true" else False if text == "false" else None


def _label_by_title(value: Any) -> PickLabel | None:
    return next((p for p in PickLabel if p.title == str(value)), None)


# field name -> (tag, parser)
_FIELDS: dict[str, tuple[str, Any]] = {
    "score": (IQS + "Score", _float),
    "label": (IQS + "Label", _label_by_title),
    "reasons": (IQS + "Reasons", _reasons),
    "model_name": (IQS + "ModelName", str),
    "model_version": (IQS + "ModelVersion", str),
    "scored_at": (IQS + "ScoredAt", str),
    "fingerprint": (IQS + "Fingerprint", str),
    "policy": (IQS + "Policy", str),
    "written_pick_label": (IQS + "PickLabel", _int),
    "written_rating": (IQS + "Rating", _int),
    "pick_label": (PICK, _pick),
    "rating": (RATING, _int),
    "microsoft_rating": (MS_RATING, _int),
    "exif_rating": (EXIF_RATING, _int),
    "exif_rating_percent": (EXIF_PERCENT, _int),
    "color_label": (COLOR, _int),
    "xmp_label": (XMP_LABEL, str),
    "group_id": (IQS + "Group", str),
    "group_size": (IQS + "GroupSize", _int),
    "group_pick": (IQS + "GroupPick", _bool),
}


def merge_stored(photo: Path, files: list[FileTags], problems: list[str]) -> StoredMetadata:
    values: dict[str, Any] = {}
    sources: dict[str, Path] = {}
    for name, (key, parse) in _FIELDS.items():
        for tags in files:
            raw = tags.get(key)
            if raw is not None and parse(raw) not in (None, ()):
                values[name], sources[name] = parse(raw), tags.path
                break
    diagnostics: dict[str, float] = {}
    for name in DIAGNOSTICS:
        for tags in files:
            number = _float(tags.get(IQS + BY_NAME[name].tag_name))
            if number is not None:
                diagnostics[name], sources[name] = number, tags.path
                break
    facts: dict[str, float] = {}
    for name, suffix in EXPOSURE_TAGS.items():
        for tags in files:
            number = _float(tags.get(IQS + suffix))
            if number is not None:
                facts[name] = number
                break
    return StoredMetadata(
        path=photo,
        **values,
        exposure=ExposureFacts(**facts) if len(facts) == len(EXPOSURE_TAGS) else None,
        diagnostics=diagnostics,
        sources=sources,
        files=tuple(files),
        problems=tuple(problems),
    )


# --- what to write ------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    xmp: dict[str, Any]  # None deletes a key
    exif: dict[str, str]
    kept_user_label: bool

    def notes(self) -> tuple[str, ...]:
        items = {**self.xmp, **self.exif}
        return tuple(f"{k}={v!r}" for k, v in items.items() if v is not None)


def _user_labelled(current: FileTags | None) -> bool:
    """Whether the visible label or rating is the user's, not what we last wrote."""
    if current is None:
        return False
    pick, rating = _int(current.get(PICK)), _int(current.get(RATING))
    ours_pick, ours_rating = _int(current.get(IQS + "PickLabel")), _int(current.get(IQS + "Rating"))
    if ours_pick is not None or ours_rating is not None:
        return (pick or 0) != (ours_pick or 0) or (rating or 0) != (ours_rating or 0)
    # No record of ours: any real label or rating (0 means unrated) came from someone else,
    # including a Windows or in-camera rating.
    others = (current.get(MS_RATING), current.get(EXIF_RATING))
    return any(_int(v) not in (None, 0) for v in (pick, rating, *others))


def _keywords(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def burst_tags(burst: Burst, current: FileTags | None) -> dict[str, Any]:
    """The group tags, with the burst keyword merged into the photo's own keywords: every
    keyword stays but an earlier burst keyword of ours (``iqs|burst|...``)."""
    get = current.get if current is not None else (lambda key: None)
    old_id = str(get(IQS + "Group") or "")
    tags: dict[str, Any] = {
        IQS + "Group": burst.id or None,
        IQS + "GroupSize": str(burst.size) if burst.id else None,
        IQS + "GroupPick": str(burst.pick) if burst.id else None,
    }
    for key, sep in KEYWORD_SEPARATORS.items():
        before = _keywords(get(key))
        ours = sep.join(BURST_ROOT) + sep
        after = [k for k in before if not k.startswith(ours)]
        if burst.id:
            after.append(ours + burst.id)
        if after != before:
            tags[key] = after or None
    before = _keywords(get(SUBJECT))
    after = [k for k in before if not (old_id and k == old_id)]
    if burst.id and burst.id not in after:
        after.append(burst.id)
    if after != before:
        tags[SUBJECT] = after or None
    return tags


def plan_tags(
    verdict: Verdict,
    fingerprint: str,
    settings: Settings,
    *,
    exif_capable: bool,
    current: FileTags | None,
    force: bool,
) -> Plan:
    """The tags to set, given what the target holds now."""
    diagnostics = verdict.diagnostics or {}
    xmp: dict[str, Any] = {
        IQS + "Score": f"{verdict.score:.1f}",
        IQS + "Label": verdict.label.title,
        IQS + "Reasons": list(verdict.reasons) or None,
        IQS + "ModelName": verdict.model_name,
        IQS + "ModelVersion": verdict.model_version,
        IQS + "ScoredAt": verdict.scored_at,
        IQS + "Fingerprint": fingerprint,
        IQS + "Policy": verdict.policy or None,
    }
    if verdict.burst is not None:
        xmp.update(burst_tags(verdict.burst, current))
    facts = verdict.exposure.as_dict() if verdict.exposure is not None else {}
    for name, suffix in EXPOSURE_TAGS.items():
        value = facts.get(name)
        xmp[IQS + suffix] = None if value is None else f"{value:g}"
    for name in DIAGNOSTICS:
        value = diagnostics.get(name)
        xmp[IQS + BY_NAME[name].tag_name] = (None if value is None
                                             else f"{min(max(value, 0.0), 1.0):.3f}")
    kept = not force and _user_labelled(current)
    exif: dict[str, str] = {}
    if not kept:
        rejected = verdict.label == PickLabel.REJECTED
        stars = 0 if rejected else min(max(int(verdict.stars), 0), 5)
        rating = str(settings.rejected_rating if rejected else stars)
        xmp.update({PICK: str(verdict.label.value), RATING: rating})
        xmp.update({IQS + "PickLabel": str(verdict.label.value), IQS + "Rating": rating})
        if settings.windows_ratings:
            xmp[MS_RATING] = str(WINDOWS_PERCENT[stars])
            if exif_capable:
                exif = {EXIF_RATING: str(stars), EXIF_PERCENT: str(WINDOWS_PERCENT[stars])}
        if settings.color_label and verdict.label in COLOR_LABELS:
            xmp[COLOR], xmp[XMP_LABEL] = COLOR_LABELS[verdict.label]
    return Plan(xmp=xmp, exif=exif, kept_user_label=kept)


def up_to_date(current: FileTags | None, plan: Plan) -> bool:
    """Whether writing ``plan`` would change nothing that matters. A new policy that
    gives the same label, stars and reasons is not worth rewriting a photo for: the
    state DB records the policy, and ``Xmp.iqs.Policy`` stays that of the last write."""
    if current is None:
        return False
    wanted = {k: v for k, v in {**plan.xmp, **plan.exif}.items() if k != IQS + "Policy"}
    return all(current.get(k) == v for k, v in wanted.items())
