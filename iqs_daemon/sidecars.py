"""Keeping a photo's sidecar with the photo: file operations only, no exiv2.

When a photo we gave a ``photo.ext.xmp`` sidecar is renamed or moved and its sidecar did
not follow (a file manager, ``mv``), ``move_sidecar`` moves it too: atomically, and never
over a sidecar already at the new name. When the photo is deleted, ``remove_if_only_ours``
removes a sidecar that holds nothing but what iqs-daemon wrote (setting
``metadata.remove_orphan_sidecars``); one with any other tool's data (darktable's history,
keywords, a label changed by hand) stays.
"""

from __future__ import annotations

import errno
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from .exiv2_process import IQS_NS_URI
from .metadata import _stem_clash, sidecar_path

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
# The properties we write outside our own namespace (metadata.py, xmp_tags.plan_tags).
OURS = {
    ("http://www.digikam.org/ns/1.0/", "PickLabel"),
    ("http://www.digikam.org/ns/1.0/", "ColorLabel"),
    ("http://ns.adobe.com/xap/1.0/", "Rating"),
    ("http://ns.adobe.com/xap/1.0/", "Label"),
    ("http://ns.microsoft.com/photo/1.0/", "Rating"),
}
MAX_SIDECAR_BYTES = 16 << 20  # larger is not a sidecar we wrote


def our_sidecar(photo: Path, settings: Settings) -> Path | None:
    """The photo's sidecar (by ``sidecar_naming``) if it exists and holds our record."""
    sidecar = sidecar_path(photo, settings.sidecar_naming)
    return sidecar if carries_our_record(sidecar) else None


def carries_our_record(sidecar: Path) -> bool:
    try:
        with sidecar.open("rb") as fh:
            return IQS_NS_URI.encode() in fh.read(MAX_SIDECAR_BYTES)
    except OSError:
        return False


def move_sidecar(old_photo: Path, new_photo: Path, settings: Settings) -> Path | None:
    """Move ``old_photo``'s sidecar beside ``new_photo``; returns its new path, or None.

    Nothing happens when there is no sidecar of ours left at the old name, when it is
    shared with another photo (``sidecar_naming = "stem"``), or when a sidecar is already
    at the new name: that one is never replaced.
    """
    old = our_sidecar(old_photo, settings)
    if old is None or (settings.sidecar_naming == "stem" and _stem_clash(old_photo)):
        return None
    new = sidecar_path(new_photo, settings.sidecar_naming)
    if old == new:
        return None
    try:
        _rename_no_replace(old, new)
    except FileExistsError:
        log.warning("%s moved to %s, but %s is already there: its sidecar %s stays",
                    old_photo.name, new_photo, new.name, old)
        return None
    except OSError as exc:
        log.warning("cannot move the sidecar %s to %s: %s", old, new, exc.strerror)
        return None
    return new


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename atomically, failing with FileExistsError rather than replacing ``target``.

    A hard link then an unlink: the name appears at once, whole, or not at all. Where
    links are not allowed (FAT, exFAT, some shares), the new name is first claimed with
    ``O_EXCL``, which also never replaces anything, and the rename lands on our claim.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                             errno.EXDEV):
            raise
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.replace(source, target)
        return
    os.unlink(source)


def only_our_tags(sidecar: Path) -> bool:
    """True when every property in the sidecar is one we write, with the label and rating
    we last wrote; False for anything else, and for a file that does not parse."""
    try:
        if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            return False
        root = ET.parse(sidecar).getroot()
    except (OSError, ET.ParseError):
        return False
    values: dict[tuple[str, str], str] = {}
    for description in root.iter(f"{{{RDF}}}Description"):
        properties = [(name, value) for name, value in description.attrib.items()
                      if not name.startswith(f"{{{RDF}}}")]
        properties += [(child.tag, (child.text or "").strip()) for child in description]
        for name, value in properties:
            namespace, _, local = name[1:].partition("}")
            if namespace != IQS_NS_URI and (namespace, local) not in OURS:
                return False
            values[(namespace, local)] = value
    shown = values.get(("http://www.digikam.org/ns/1.0/", "PickLabel"), "0")
    rating = values.get(("http://ns.adobe.com/xap/1.0/", "Rating"), "0")
    ours = (values.get((IQS_NS_URI, "PickLabel"), "0"), values.get((IQS_NS_URI, "Rating"), "0"))
    return (shown, rating) == ours  # a label or rating set by hand is the user's data


def remove_if_only_ours(photo: Path, settings: Settings) -> Path | None:
    """The photo is gone: remove its sidecar if it holds only our tags; returns it, or None."""
    if not settings.remove_orphan_sidecars or os.path.lexists(photo):
        return None
    sidecar = our_sidecar(photo, settings)
    if sidecar is None or (settings.sidecar_naming == "stem" and _stem_clash(photo)):
        return None
    if not only_our_tags(sidecar):
        log.info("%s is gone; its sidecar %s holds other data and stays", photo, sidecar.name)
        return None
    try:
        sidecar.unlink()
    except OSError as exc:
        log.warning("cannot remove the sidecar %s: %s", sidecar, exc.strerror)
        return None
    return sidecar
