"""Outcomes -> what the user is told: one JSON object per photo and a run summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pipeline import Outcome
from .records import PickLabel


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """The ``--json`` record for one photo (documented in README.md, "JSON output")."""
    record: dict[str, Any] = {"path": str(outcome.candidate.path), "status": outcome.status}
    if outcome.verdict:
        v = outcome.verdict
        record.update(
            score=v.score, label=v.label.title, stars=v.stars, reasons=list(v.reasons),
            diagnostics=v.diagnostics, model=f"{v.model_name} {v.model_version}",
        )
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
    """Counts and the worst photos of one run, accumulated as outcomes arrive."""

    worst_count: int = 10
    labels: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)  # embedded | sidecar | not written
    kept_user_labels: int = 0
    scored: list[Outcome] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    folders: set[Path] = field(default_factory=set)

    def add(self, outcome: Outcome) -> None:
        self.statuses[outcome.status] += 1
        if outcome.status == "failed":
            self.failures.append(outcome)
        if outcome.verdict is None:
            return
        self.labels[outcome.verdict.label.title] += 1
        if outcome.status == "scored":
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

    def worst(self) -> list[Outcome]:
        return sorted(self.scored, key=lambda o: o.verdict.score if o.verdict else 0.0)[: self.worst_count]

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def label_order(self) -> list[str]:
        return [label.title for label in (PickLabel.REJECTED, PickLabel.PENDING, PickLabel.ACCEPTED)]
