"""Outcomes -> what the user is told: one JSON object per photo and a run summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import IqsError
from .metadata import hand_label
from .pipeline import Outcome, Status
from .records import PickLabel

if TYPE_CHECKING:
    from collections.abc import Callable

    from .xmp_tags import StoredMetadata

    Reader = Callable[[Path], StoredMetadata]


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """The ``--json`` record for one photo (documented in README.md, "JSON output")."""
    record: dict[str, Any] = {"path": str(outcome.candidate.path),
                              "status": str(outcome.status)}
    if outcome.verdict:
        v = outcome.verdict
        record.update(
            score=v.score, label=v.label.title, reasons=list(v.reasons),
            diagnostics=v.diagnostics, model=f"{v.model_name} {v.model_version}",
        )
        # The rating the file holds (Rejected: rejected_rating, -1 by default; a rating
        # set by hand where it was kept), not the verdict's 0..5 stars.
        held = outcome.write.rating if outcome.write else None
        record["stars"] = v.stars if held is None else held
        if v.burst is not None:  # grouping ran: the photo's burst, or null for none
            b = v.burst
            record["burst"] = ({"id": b.id, "size": b.size, "pick": b.pick,
                                "pick_name": b.pick_name} if b.id else None)
    if outcome.write:
        record.update(
            written_to=str(outcome.write.target) if outcome.write.written else None,
            kept_user_label=outcome.write.kept_user_label,
        )
    if outcome.error:
        record["error"] = getattr(outcome.error, "reason", str(outcome.error))
    return record


@dataclass
class RunSummary:
    """Counts and the worst photos of one run, accumulated as outcomes arrive.

    ``labels`` counts the label each photo shows when ours is what it shows, scored now
    or before (a re-run shows the folder, not zeros); ``hand_labels`` the labels set by
    hand that were kept, by the label the photo shows.
    """

    worst_count: int = 10
    labels: Counter[str] = field(default_factory=Counter)
    hand_labels: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)  # embedded | sidecar | not written
    kept_user_labels: int = 0
    scored: list[Outcome] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    read_only: list[Path] = field(default_factory=list)  # sidecar: the photo is read-only
    folders: set[Path] = field(default_factory=set)
    bursts: Counter[str] = field(default_factory=Counter)  # burst id -> frames in this run

    def add(self, outcome: Outcome, read: Reader | None = None) -> None:
        """Count ``outcome``; ``read`` looks up what a photo carries where the outcome
        does not say (a photo scored before, a hand label kept)."""
        self.statuses[str(outcome.status)] += 1
        if outcome.status == Status.FAILED:
            self.failures.append(outcome)
        if outcome.verdict is None:
            if outcome.status != Status.FAILED:
                self._count_stored(outcome.candidate.path, read, outcome.stored)
            return
        if outcome.write and outcome.write.kept_user_label:
            self._count_stored(outcome.candidate.path, read)
        else:
            self.labels[outcome.verdict.label.title] += 1
        if outcome.verdict.burst is not None and outcome.verdict.burst.id:
            self.bursts[outcome.verdict.burst.id] += 1
        if outcome.status == Status.SCORED:
            self.scored.append(outcome)
            # Keep only the worst few, so a 100,000-photo run stays small.
            if len(self.scored) > 4 * self.worst_count:
                self.scored = self.worst()
        if outcome.write:
            w = outcome.write
            kind = "not written" if not w.written else (
                "embedded" if w.target == w.path else "sidecar")
            self.targets[kind] += 1
            self.kept_user_labels += w.kept_user_label
            self.folders.add(outcome.candidate.path.parent)
            if w.read_only_fallback:
                self.read_only.append(w.path)

    def _count_stored(self, path: Path, read: Reader | None,
                      stored: StoredMetadata | None = None) -> None:
        """Count what the photo shows: ``stored`` when the pass read it and wrote nothing,
        else what ``read`` finds now."""
        if stored is None:
            if read is None:
                return
            try:
                stored = read(path)
            except IqsError:
                return  # it was scored; only the count of what it shows is lost
        by_hand = hand_label(stored)
        if by_hand is not None:
            self.hand_labels[by_hand] += 1
        elif stored.label is not None:
            self.labels[stored.label.title] += 1

    def worst(self) -> list[Outcome]:
        return sorted(self.scored, key=lambda o: o.verdict.score if o.verdict else 0.0)[
            : self.worst_count]

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def label_order(self) -> list[str]:
        order = [label.title for label in (PickLabel.REJECTED, PickLabel.PENDING,
                                           PickLabel.ACCEPTED)]
        return order + sorted(set(self.hand_labels) - set(order))
