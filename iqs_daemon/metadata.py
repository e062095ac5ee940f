"""Reading and writing the verdict in XMP: the only module that touches photo metadata.

What is written (see docs/interop.md for what each photo manager shows):

- digiKam's ``Xmp.digiKam.PickLabel`` (1 Rejected, 2 Pending, 3 Accepted) and
  ``Xmp.xmp.Rating`` (0..5, Rejected as ``settings.rejected_rating``);
- with ``windows_ratings``: ``Xmp.MicrosoftPhoto.Rating`` and, in JPEG and TIFF only,
  ``Exif.Image.Rating`` / ``Exif.Image.RatingPercent``;
- with ``color_label``: ``Xmp.digiKam.ColorLabel`` and ``Xmp.xmp.Label``;
- always our own ``Xmp.iqs.*`` record (namespace ``https://iqs-daemon.org/ns/1.0/``),
  ``Xmp.iqs.Reasons`` as an rdf:Seq of reasons, strongest first.

JPEG, TIFF, PNG and WebP carry the XMP inside; RAW, DNG, HEIF/AVIF and BMP get a sidecar.
Every write goes to a copy beside the target, is fsynced and renamed over it. exiv2 runs
in a separate process (``exiv2_process.py``) so a crash costs one photo, not the daemon.

    with MetadataWriter() as writer:
        result = writer.write_verdict(photo, verdict, fingerprint, settings)
"""

from __future__ import annotations

import atexit
import base64
import errno
import io
import logging
import os
import shutil
import stat
import tempfile
import threading
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .discovery import (
    AVIF_EXTENSIONS,
    BMP_EXTENSIONS,
    HEIF_EXTENSIONS,
    JPEG_EXTENSIONS,
    PNG_EXTENSIONS,
    RAW_EXTENSIONS,
    TIFF_EXTENSIONS,
    WEBP_EXTENSIONS,
)
from .errors import FileChanged, MetadataError, MetadataRefused
from .exiv2_process import (
    IQS_NS_URI,
    IQS_PREFIX,
    Exiv2CrashError,
    Exiv2Error,
    Exiv2Process,
    Exiv2StartError,
    InProcess,
)
from .imageheaders import JPEG_SOS, jpeg_segments
from .records import WriteResult
from .xmp_tags import (
    EXIF_EXTENSIONS,
    IQS,
    RATING,
    READ_KEYS,
    FileTags,
    Plan,
    StoredMetadata,
    merge_stored,
    plan_tags,
    up_to_date,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .config import Settings
    from .records import Verdict

__all__ = [
    "EMBEDDED_EXTENSIONS",
    "IQS_NS_URI",
    "IQS_PREFIX",
    "SIDECAR_EXTENSIONS",
    "MetadataWriter",
    "StoredMetadata",
    "hand_label",
    "read_stored",
    "target_for",
    "write_verdict",
]

log = logging.getLogger(__name__)

# Every suffix discovery hands to the scorer has a target here, so no photo is scored
# and then refused at the write. exiv2 writes XMP into these formats safely:
EMBEDDED_EXTENSIONS = JPEG_EXTENSIONS | TIFF_EXTENSIONS | PNG_EXTENSIONS | WEBP_EXTENSIONS
# ... and never into these: exiv2 cannot write HEIF/AVIF, CR3, RAF or RW2 (nor BMP), and
# digiKam calls RAW writing unsafe, so they get a sidecar and stay byte-identical.
SIDECAR_EXTENSIONS = RAW_EXTENSIONS | HEIF_EXTENSIONS | AVIF_EXTENSIONS | BMP_EXTENSIONS
TEMP_SUFFIX = ".iqs-tmp"
# A new sidecar: exiv2 cannot open an empty file, so it starts as this packet.
EMPTY_PACKET = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    b' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>\n'
    b"</x:xmpmeta>\n"
    b'<?xpacket end="w"?>\n'
)


# --- where the XMP goes -------------------------------------------------------------


def sidecar_path(photo: Path, naming: str) -> Path:
    """``photo.CR2.xmp`` ("ext", digiKam's and darktable's default) or ``photo.xmp``."""
    return photo.with_name(photo.stem + ".xmp") if naming == "stem" else Path(f"{photo}.xmp")


def _writable(path: Path) -> bool:
    # Mode bits too: running as root, os.access says yes to a file the user made read-only.
    try:
        return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def target_for(photo: Path, settings: Settings) -> Path:
    """The file that receives the XMP: the photo itself, or its sidecar.

    A read-only photo falls back to a sidecar; ``write_verdict`` fails if the folder is
    read-only too.
    """
    suffix = photo.suffix.lower()
    if suffix not in EMBEDDED_EXTENSIONS | SIDECAR_EXTENSIONS:
        what = f"{suffix} files" if suffix else "files without an extension"
        raise MetadataError(photo, f"iqs-daemon does not write metadata for {what}")
    if (
        suffix in EMBEDDED_EXTENSIONS
        and not settings.sidecar_only
        and _writable(photo)
        and _writable(photo.parent)
    ):
        return photo
    return sidecar_path(photo, settings.sidecar_naming)


def _stem_clash(photo: Path) -> Path | None:
    """Another photo whose ``photo.xmp`` sidecar would be the same file."""
    for suffix in sorted(EMBEDDED_EXTENSIONS | SIDECAR_EXTENSIONS):
        for variant in (suffix, suffix.upper()):
            other = photo.with_suffix(variant)
            if other.name != photo.name and other.exists():
                return other
    return None


# --- files --------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory
        pass
    finally:
        os.close(fd)


def _copy_in_kernel(src: int, out: int) -> bool:
    """Copy ``src`` from its position to its end into ``out`` with ``copy_file_range`` (no
    trip through a user-space buffer: 4 ms of CPU for an 8 MB photo instead of 8; a reflink
    where the filesystem has them). False, with nothing copied, where the kernel or
    filesystem cannot: the caller copies by reading and writing instead."""
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is None:
        return False
    remaining, first = os.fstat(src).st_size - os.lseek(src, 0, os.SEEK_CUR), True
    while remaining > 0:
        try:
            copied = copy_file_range(src, out, remaining)
        except OSError as exc:
            if first and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                       errno.EPERM, errno.EBADF):
                return False
            raise
        if copied == 0:
            if first:
                return False
            raise OSError(errno.EIO, "the photo got shorter while it was being copied")
        remaining -= copied
        first = False
    return True


def _copy_rest(src: BinaryIO, out: BinaryIO) -> None:
    """``src`` from its position to its end, appended to ``out``."""
    out.flush()
    if not _copy_in_kernel(src.fileno(), out.fileno()):
        shutil.copyfileobj(src, out, 1 << 20)


def _prepare_copy(target: Path, tmp_fd: int, tmp: Path, owner: os.stat_result,
                  spliced: tuple[bytes, BinaryIO, int] | None = None) -> None:
    """Fill the temp file: a copy of the target, or an empty packet for a new sidecar;
    ``spliced``: (new head, the open target, where its scan starts): the new head, then
    the target's bytes from its scan on."""
    with os.fdopen(tmp_fd, "wb") as out:
        if spliced is not None:
            head, src, scan_at = spliced
            out.write(head)
            src.seek(scan_at)
            _copy_rest(src, out)
        elif target.exists():
            with target.open("rb") as src_file:
                _copy_rest(src_file, out)
        else:
            out.write(EMPTY_PACKET)
    if target.exists():
        shutil.copystat(target, tmp)  # permission bits, extended attributes
    else:
        # Readable (and group-writable) like the photo, and always writable by its owner.
        os.chmod(tmp, (stat.S_IMODE(owner.st_mode) & 0o666) | stat.S_IWUSR)
    if owner.st_uid != os.geteuid() or owner.st_gid != os.getegid():
        try:
            os.chown(tmp, owner.st_uid, owner.st_gid)
        except OSError:
            pass


# --- the writer ---------------------------------------------------------------------


class MetadataWriter:
    """Owns the exiv2 backend; every call goes through it, one at a time.

    ``isolated=True`` (the default) runs exiv2 in a child process that is restarted
    after a crash; ``isolated=False`` runs it in this process (tests, benchmarks).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        isolated: bool = True,
        timeout_seconds: float = 60.0,
    ):
        # ``settings`` is accepted for callers' convenience; every method takes its own.
        self.settings = settings
        self.backend: InProcess | Exiv2Process = (
            Exiv2Process(timeout_seconds) if isolated else InProcess()
        )
        # Files that crashed exiv2, by (path, size, mtime): not retried until they change.
        self._crashed: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> MetadataWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    # exiv2 calls, translated to MetadataError for the photo
    def _call(
        self, photo: Path, file: Path, request: dict[str, Any], *, subject: Path | None = None
    ) -> dict[str, Any]:
        """Run one request on ``file``; a crash marks ``subject`` (default: ``file``)."""
        identity = _identity(subject or file)
        if identity in self._crashed:
            reason = "exiv2 crashed on this file before; not retried until the file changes"
            raise MetadataRefused(photo, reason)
        try:
            return self.backend.call({**request, "path": os.fsdecode(file)})
        except Exiv2CrashError as exc:
            with self._lock:
                self._crashed.add(identity)
            raise MetadataRefused(photo, str(exc)) from exc
        except Exiv2StartError as exc:  # not the file's fault: try again later
            raise MetadataError(photo, f"exiv2: {exc}") from exc
        except Exiv2Error as exc:
            raise MetadataRefused(photo, f"exiv2: {exc}") from exc

    def _read_file(self, photo: Path, file: Path, kind: str) -> FileTags:
        if kind == "embedded" and _is_empty(file):
            raise MetadataError(photo, "empty file")  # as decoding says; exiv2 would not
        read_as = _read_identity(file)
        found = self._call(photo, file, {"op": "read", "keys": READ_KEYS, "prefixes": [IQS]})
        # exiv2 derives EXIF from a sidecar's XMP (xmp:Rating -1 as Rating 65535): ignore it.
        exif = found["exif"] if kind == "embedded" else {}
        return FileTags(path=file, kind=kind, xmp=found["xmp"], exif=exif, read_as=read_as)

    def _tags_of(self, photo: Path, file: Path, kind: str,
                 stored: StoredMetadata | None) -> FileTags:
        """``file``'s tags: as ``stored`` read them if the file is unchanged since, else
        read now."""
        for tags in stored.files if stored is not None else ():
            if (tags.path == file and tags.kind == kind and tags.read_as is not None
                    and tags.read_as == _read_identity(file)):
                return tags
        return self._read_file(photo, file, kind)

    def read_identity(self, photo: Path, settings: Settings) -> tuple[object, ...]:
        """Changes whenever what ``read_stored`` would read changes: each file it reads,
        with its inode, size and mtime."""
        return tuple((file, _read_identity(file)) for file, _ in self._candidates(photo, settings))

    def _candidates(self, photo: Path, settings: Settings) -> Iterator[tuple[Path, str]]:
        """The files to read, the one we write to first."""
        target = target_for(photo, settings)
        sidecars = [sidecar_path(photo, settings.sidecar_naming)]
        sidecars.append(sidecar_path(photo, "stem" if settings.sidecar_naming == "ext" else "ext"))
        order = [(photo, "embedded")] + [(s, "sidecar") for s in sidecars]
        order.sort(key=lambda item: item[0] != target)
        seen: set[Path] = set()
        for file, kind in order:
            if file not in seen and file.is_file():
                seen.add(file)
                yield file, kind

    def read_stored(self, photo: Path, settings: Settings) -> StoredMetadata:
        """Our verdict and every label/rating found in the photo and its sidecars."""
        if not photo.is_file():
            raise MetadataError(photo, "no such file")
        files: list[FileTags] = []
        problems: list[str] = []
        for file, kind in self._candidates(photo, settings):
            try:
                files.append(self._read_file(photo, file, kind))
            except MetadataError as exc:
                if file == photo and not any(f.kind == "sidecar" for f in files):
                    raise
                problems.append(f"{file}: {exc.reason}")
        return merge_stored(photo, files, problems)

    def write_verdict(
        self,
        photo: Path,
        verdict: Verdict,
        fingerprint: str,
        settings: Settings,
        *,
        force: bool = False,
        dry_run: bool = False,
        expected: tuple[int, int] | None = None,
        stored: StoredMetadata | None = None,
    ) -> WriteResult:
        """Write the verdict into the photo's XMP (or its sidecar), atomically.

        A label or rating the user set is kept (``kept_user_label``) unless ``force``;
        ``dry_run`` reads but changes no file. ``expected``: the photo's (size, mtime_ns)
        when it was decoded; if another version is there by the time of the write, it
        raises ``FileChanged`` and writes nothing (the verdict describes other pixels).
        ``stored``: this photo's ``read_stored``, reused for every file not changed since.
        """
        if not photo.is_file():
            raise MetadataError(photo, "no such file")
        _check_unchanged(photo, expected)
        target = target_for(photo, settings)
        embedded = target == photo
        if not dry_run:  # a dry run over a read-only card or share still reports verdicts
            _check_writable(photo, target)
        notes: list[str] = []
        kind = "embedded" if embedded else "sidecar"
        on_disk = self._tags_of(photo, target, kind, stored) if target.exists() else None
        current = on_disk if embedded else self._sidecar_view(photo, on_disk, stored)
        if not embedded and settings.sidecar_naming == "stem":
            clash = _stem_clash(photo)
            if clash is not None:
                log.warning("%s and %s share the sidecar %s", photo.name, clash.name, target.name)
                notes.append(f"sidecar {target.name} is shared with {clash.name}")
        exif_capable = embedded and photo.suffix.lower() in EXIF_EXTENSIONS
        plan = plan_tags(
            verdict, fingerprint, settings, exif_capable=exif_capable, current=current, force=force
        )
        if plan.kept_user_label:
            notes.append("kept user label")
        read_only = (not embedded and photo.suffix.lower() in EMBEDDED_EXTENSIONS
                     and not settings.sidecar_only)
        if read_only:
            notes.append("read-only photo: written to a sidecar")
        held = plan.xmp.get(RATING) if RATING in plan.xmp else (current and current.get(RATING))
        result = WriteResult(photo, target, False, plan.kept_user_label, tuple(notes),
                             rating=_as_int(held), read_only_fallback=read_only)
        if dry_run:
            return replace(result, notes=(*notes, *plan.notes()))
        if up_to_date(on_disk, plan):
            return replace(result, notes=(*notes, "up to date"))
        self._replace(photo, target, plan, keep_mtime=embedded and settings.keep_mtime,
                      expected=expected if embedded else None)
        return replace(result, written=True)

    def _sidecar_view(self, photo: Path, sidecar: FileTags | None,
                      stored: StoredMetadata | None = None) -> FileTags | None:
        """Labels as a sidecar-reading tool sees them: the sidecar over the embedded XMP."""
        try:
            embedded = self._tags_of(photo, photo, "embedded", stored)
        except MetadataError as exc:
            if isinstance(exc.__cause__, Exiv2CrashError):
                raise
            log.debug("reading the embedded metadata failed, using the sidecar only: %s", exc)
            return sidecar
        if sidecar is None:
            return embedded
        xmp, exif = {**embedded.xmp, **sidecar.xmp}, {**embedded.exif, **sidecar.exif}
        return FileTags(sidecar.path, "sidecar", xmp, exif)

    def _replace(self, photo: Path, target: Path, plan: Plan, *, keep_mtime: bool,
                 expected: tuple[int, int] | None = None) -> None:
        real = Path(os.path.realpath(target)) if target.exists() else target
        folder = real.parent
        before = real.stat() if real.exists() else None
        if before is not None:
            _check_unchanged(photo, expected, before)
        request = {"op": "modify", "xmp": plan.xmp, "exif": plan.exif}
        with ExitStack() as open_files:
            spliced = None
            if before is not None and real.suffix.lower() in JPEG_EXTENSIONS:
                spliced = self._spliced_head(photo, real, before, request, open_files)
            self._write_copy(photo, real, before, request, spliced, keep_mtime=keep_mtime)
        _fsync_dir(folder)

    def _spliced_head(self, photo: Path, real: Path, before: os.stat_result,
                      request: dict[str, Any], open_files: ExitStack
                      ) -> tuple[bytes, BinaryIO, int] | None:
        """A JPEG's metadata lives in the marker segments before its first scan, and exiv2
        copies everything from the scan on unchanged. So exiv2 edits, in memory, those
        segments and an empty scan instead of the whole photo (1-2 ms of its CPU instead
        of ~40 for 8 MB), and the copy is that new head, then the photo from its scan on:
        the bytes exiv2 would have written. None (the whole photo is copied and edited
        instead) where the head cannot be found or exiv2 gave back something else."""
        try:
            src = open_files.enter_context(real.open("rb"))
            if os.fstat(src.fileno()).st_ino != before.st_ino:
                return None
            found = jpeg_scan_start(src)
        except OSError:
            return None
        if found is None:
            return None
        head, scan_at, sos = found
        skeleton = head + sos + JPEG_EOI
        try:
            answer = self._call(photo, real, {**request, "op": "modify_bytes",
                                              "data": base64.b64encode(skeleton).decode("ascii")})
        except MetadataRefused as exc:
            if isinstance(exc.__cause__, Exiv2CrashError):
                raise
            return None  # exiv2 may take the whole photo where it refused its head
        edited = base64.b64decode(answer["data"])
        at = jpeg_scan_start(io.BytesIO(edited))
        if at is None or edited[at[1]:] != sos + JPEG_EOI:
            return None
        return edited[:at[1]], src, scan_at

    def _write_copy(self, photo: Path, real: Path, before: os.stat_result | None,
                    request: dict[str, Any], spliced: tuple[bytes, BinaryIO, int] | None, *,
                    keep_mtime: bool) -> None:
        """The copy with the new metadata, fsynced and renamed over ``real``."""
        fd, tmp_name = _temp_beside(photo, real)
        tmp = Path(tmp_name)
        try:
            try:
                _prepare_copy(real, fd, tmp, before or photo.stat(), spliced)
            except OSError as exc:
                raise MetadataError(photo, f"cannot copy {real.name}: {exc.strerror}") from exc
            if spliced is None:
                self._call(photo, tmp, request, subject=real)
            try:
                with tmp.open("rb") as fh:
                    os.fsync(fh.fileno())
                if before is not None and keep_mtime:
                    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
                if before is not None and _replaced_since(real, before):
                    # Someone (an import tool, an editor) put a new version there while
                    # exiv2 worked on our copy of the old one: renaming now would lose it.
                    raise FileChanged(photo, f"{real.name} changed while its metadata was being "
                                             "written; nothing was written")
                os.replace(tmp, real)
            except OSError as exc:
                raise MetadataError(photo, f"cannot replace {real.name}: {exc.strerror}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _temp_beside(photo: Path, real: Path) -> tuple[int, str]:
    """A new temp file in ``real``'s folder, named so that discovery skips it."""
    try:
        return tempfile.mkstemp(prefix=f".{real.name}.", suffix=TEMP_SUFFIX, dir=real.parent)
    except OSError as exc:
        raise MetadataError(photo, f"cannot write in {real.parent}: {exc.strerror}") from exc


JPEG_EOI = b"\xff\xd9"
MAX_JPEG_HEAD = 4 << 20  # marker segments before the scan; more: the whole photo is edited


def jpeg_scan_start(src: BinaryIO) -> tuple[bytes, int, bytes] | None:
    """(the bytes before the first SOS marker, its offset, its segment) of the JPEG read
    from ``src``'s start, or None if the markers do not lead to a scan."""
    src.seek(0)
    data = src.read(1 << 16)
    if data[:2] != b"\xff\xd8":
        return None
    while True:
        for marker, pos, end in jpeg_segments(data):
            if marker == JPEG_SOS:
                return data[:pos], pos, data[pos:end]
        # The walk stopped short of a scan: where the bytes read ran out, read as many again.
        more = src.read(len(data))
        if not more or len(data) > MAX_JPEG_HEAD:
            return None
        data += more


def _check_unchanged(photo: Path, expected: tuple[int, int] | None,
                     now: os.stat_result | None = None) -> None:
    if expected is None:
        return
    now = now or photo.stat()
    if (now.st_size, now.st_mtime_ns) != expected:
        raise FileChanged(photo, "changed while it was being scored; nothing was written")


def _read_identity(file: Path) -> tuple[int, int, int] | None:
    try:
        st = file.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _replaced_since(path: Path, before: os.stat_result) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return True
    identity = (before.st_ino, before.st_size, before.st_mtime_ns)
    return (now.st_ino, now.st_size, now.st_mtime_ns) != identity


def _check_writable(photo: Path, target: Path) -> None:
    folder = Path(os.path.realpath(target)).parent
    if not _writable(folder):
        # Writes go to a new file that is renamed over the old one: the folder must allow it.
        raise MetadataError(photo, f"cannot write metadata: the folder {folder} is read-only")
    if target != photo and target.exists() and not _writable(target):
        raise MetadataError(photo, f"cannot write metadata: the sidecar {target.name} is read-only")


def hand_label(stored: StoredMetadata) -> str | None:
    """The pick label a person set and we kept ("Accepted", or "no pick label" for a
    rating alone), or None when what the photo shows is ours or nothing at all."""
    shown = (stored.pick_label.value if stored.pick_label else 0, stored.rating or 0)
    ours = (stored.written_pick_label, stored.written_rating)
    if ours == (None, None):  # no record of ours: any label or rating is someone else's
        by_hand = shown != (0, 0) or stored.microsoft_rating not in (None, 0)
    else:
        by_hand = shown != (ours[0] or 0, ours[1] or 0)
    if not by_hand:
        return None
    return stored.pick_label.title if stored.pick_label else "no pick label"


def _is_empty(file: Path) -> bool:
    try:
        return file.stat().st_size == 0
    except OSError:
        return False


def _as_int(value: object) -> int | None:
    try:
        return int(float(str(value)))
    except ValueError:
        return None


def _identity(file: Path) -> tuple[str, int, int]:
    try:
        st = file.stat()
    except OSError:
        return (str(file), -1, -1)
    return (str(file), st.st_size, st.st_mtime_ns)


# --- module-level API with a lazily started default writer --------------------------

_default: MetadataWriter | None = None
_default_lock = threading.Lock()


def default_writer() -> MetadataWriter:
    global _default
    with _default_lock:
        if _default is None:
            _default = MetadataWriter()
            atexit.register(_default.close)
        return _default


def write_verdict(
    photo: Path,
    verdict: Verdict,
    fingerprint: str,
    settings: Settings,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> WriteResult:
    return default_writer().write_verdict(
        photo, verdict, fingerprint, settings, force=force, dry_run=dry_run
    )


def read_stored(photo: Path, settings: Settings) -> StoredMetadata:
    return default_writer().read_stored(photo, settings)
