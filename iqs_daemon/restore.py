"""A verdict kept in the state, to give it back to a photo whose metadata was deleted.

The state row keeps the verdict as written (``verdict_json``). When a photo the state says
was scored carries no verdict of ours any more (its sidecar deleted, its XMP stripped with
``exiftool -all=``) and its pixels are the ones scored, the daemon's ``Worker`` writes the
kept verdict back (``verdict_from_json``) instead of scoring the photo again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exposure import ExposureFacts
from .records import Burst, PickLabel, Verdict

if TYPE_CHECKING:
    from .xmp_tags import StoredMetadata


def verdict_json(verdict: Verdict) -> str:
    """The verdict without its path, as compact JSON."""
    data: dict[str, Any] = {f.name: getattr(verdict, f.name)
                            for f in dataclasses.fields(verdict) if f.name != "path"}
    data["label"] = verdict.label.title
    exposure = data.get("exposure")
    data["exposure"] = exposure.as_dict() if isinstance(exposure, ExposureFacts) else None
    data["reasons"] = list(verdict.reasons)
    data["burst"] = dataclasses.asdict(verdict.burst) if verdict.burst is not None else None
    return json.dumps(data, separators=(",", ":"))


def verdict_from_json(path: Path, text: str | None) -> Verdict | None:
    """The verdict kept for ``path``, or None if there is none or it cannot be read."""
    if not text:
        return None
    try:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(Verdict)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["label"] = next(p for p in PickLabel if p.title == data["label"])
        fields["reasons"] = tuple(data.get("reasons") or ())
        if isinstance(data.get("exposure"), dict):
            fields["exposure"] = ExposureFacts(**data["exposure"])
        fields["burst"] = Burst(**data["burst"]) if isinstance(data.get("burst"), dict) else None
        return Verdict(path=path, **fields)
    except (ValueError, TypeError, KeyError, StopIteration):
        return None


def stored_verdict_json(stored: StoredMetadata) -> str | None:
    """The verdict a photo carries (found, not scored by us now) as ``verdict_json``.

    Its stars are known only from the rating we wrote; without it (a rating set by hand
    was kept) nothing is kept, and a photo losing its metadata is scored again.
    """
    if stored.label is None or stored.score is None or stored.model_name is None:
        return None
    if stored.label == PickLabel.REJECTED:
        stars = 0
    elif stored.written_rating is not None and stored.written_rating >= 0:
        stars = stored.written_rating
    else:
        return None
    verdict = Verdict(
        path=stored.path, score=stored.score, label=stored.label, stars=stars,
        reasons=stored.reasons, diagnostics=dict(stored.diagnostics),
        model_name=stored.model_name, model_version=stored.model_version or "",
        scored_at=stored.scored_at or "", policy=stored.policy or "", exposure=stored.exposure)
    return verdict_json(verdict)
