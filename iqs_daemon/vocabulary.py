"""The words a verdict is made of, in one place: each diagnostic a model may report, the
reason the verdict gives for it and the XMP tag that stores it.

A model names its diagnostics in its metadata (``iqs.diagnostics``, see ``model.py``);
each must be one of these, or the model is refused at load: a diagnostic this table
does not know could be given as a reason but never written, read back or shown.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    name: str  # the model's output name, and the key in Scores.diagnostics
    reason: str  # what the verdict says when this defect is a true reason

    @property
    def tag_name(self) -> str:
        """The property in our XMP namespace: ``Xmp.iqs.Blur``."""
        return self.name.capitalize()

    @property
    def title(self) -> str:
        """How ``show`` heads its row."""
        return self.name.capitalize()


KNOWN: tuple[Diagnostic, ...] = (
    Diagnostic("blur", "blurred"),
    Diagnostic("noise", "noisy"),
    Diagnostic("compression", "compressed"),
    Diagnostic("underexposure", "underexposed"),
    Diagnostic("overexposure", "overexposed"),
)
BY_NAME: dict[str, Diagnostic] = {d.name: d for d in KNOWN}

#: The diagnostic names, in the order they are written and shown.
DIAGNOSTICS: tuple[str, ...] = tuple(d.name for d in KNOWN)
#: diagnostic name -> the reason shown to the user and written to XMP.
REASONS: dict[str, str] = {d.name: d.reason for d in KNOWN}
#: The reason for a failing score that no defect explains.
LOW_QUALITY = "low overall quality"


def unknown(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names among ``names`` that this table does not know."""
    return [name for name in names if name not in BY_NAME]
