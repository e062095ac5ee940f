"""Find the photos under the paths we are given: ``Candidate`` records, in a stable order.

Walks with ``os.scandir`` (one ``stat`` per photo, none per other file) so libraries of
100,000+ photos are listed quickly. Entries of each folder are visited sorted by name, a
sub-folder's contents where its name falls, so two walks of the same tree agree.

Symbolic links found while walking are not followed unless asked (``follow_symlinks``);
paths given explicitly are followed like ``find -H`` does, so a library folder that is
itself a link still works. When links are followed, each folder is entered once
(tracked by ``(st_dev, st_ino)``), which also stops link loops and overlapping roots.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .records import Candidate

JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
PNG_EXTENSIONS = frozenset({".png"})
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
WEBP_EXTENSIONS = frozenset({".webp"})
BMP_EXTENSIONS = frozenset({".bmp", ".dib"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
AVIF_EXTENSIONS = frozenset({".avif"})
RAW_EXTENSIONS = frozenset(
    {
        ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".gpr",
        ".iiq", ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef",
        ".raf", ".raw", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f",
    }
)  # fmt: skip
SUPPORTED_EXTENSIONS = (
    JPEG_EXTENSIONS
    | PNG_EXTENSIONS
    | TIFF_EXTENSIONS
    | WEBP_EXTENSIONS
    | BMP_EXTENSIONS
    | HEIF_EXTENSIONS
    | AVIF_EXTENSIONS
    | RAW_EXTENSIONS
)

# Suffixes copy tools give a file while it is being written, and sidecars (never photos).
TEMPORARY_SUFFIXES = (
    ".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart", ".!sync",
    ".iqs-tmp", ".xmp",
)  # fmt: skip
# Folders that NAS boxes and operating systems fill with thumbnails or deleted files.
IGNORED_FOLDERS = frozenset({"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "lost+found"})

SYMLINK_SKIPPED = "symbolic link (not followed; set daemon.follow_symlinks)"

SkipCallback = Callable[[Path, str], None]


def is_temporary_name(name: str) -> bool:
    """True for names that are not (yet) a finished photo.

    Dotfiles (rsync writes ``.photo.jpg.Ab12Cd``), partial downloads and copies
    (``*.part``, ``*.crdownload``, ``*.!sync``, ...), our own ``*.iqs-tmp`` and ``*.xmp``
    sidecars.
    """
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def is_supported_name(name: str) -> bool:
    """True when the file name has an extension we decode and is not a temporary name."""
    return os.path.splitext(name)[1].lower() in SUPPORTED_EXTENSIONS and not is_temporary_name(
        name
    )


def describe_os_error(exc: OSError) -> str:
    """A one-line, lower-case reason for an OSError ("permission denied")."""
    if exc.errno == errno.ENOENT:
        return "no such file or directory"
    if exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def iter_candidates(
    paths: Iterable[Path],
    *,
    follow_symlinks: bool = False,
    on_skip: SkipCallback | None = None,
) -> Iterator[Candidate]:
    """Yield a ``Candidate`` for every supported photo in ``paths`` (files or folders).

    Folders are walked recursively. Files that are not photos are passed over quietly;
    what the user may want to know about (links not followed, folders that cannot be
    read, given paths that do not exist) goes to ``on_skip(path, reason)``.

        for candidate in iter_candidates([Path("~/Pictures").expanduser()]):
            ...
    """
    skip = on_skip or _ignore
    walker = _Walker(follow_symlinks, skip)
    for path in paths:
        yield from walker.walk_root(Path(path))


def _ignore(path: Path, reason: str) -> None:
    pass


class _Walker:
    """State of one ``iter_candidates`` call: the folders and files already seen."""

    def __init__(self, follow_symlinks: bool, skip: SkipCallback):
        self.follow = follow_symlinks
        self.skip = skip
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[tuple[int, int]] = set()

    def walk_root(self, path: Path) -> Iterator[Candidate]:
        try:
            st = path.stat()  # explicit paths follow links, as find -H does
        except OSError as exc:
            self.skip(path, _root_reason(path, exc))
            return
        if stat.S_ISDIR(st.st_mode):
            if self._first_visit(st):
                yield from self._walk_dir(path)
        elif stat.S_ISREG(st.st_mode):
            if not is_supported_name(path.name):
                self.skip(path, f"not a supported photo ({path.suffix or 'no extension'})")
            elif self._first_file(st):
                yield Candidate(path, st.st_size, st.st_mtime_ns)
        else:
            self.skip(path, "not a regular file or folder")

    def _walk_dir(self, root: Path) -> Iterator[Candidate]:
        # An explicit stack of sorted entry lists: deep trees cannot hit the recursion limit.
        stack = [iter(self._sorted_entries(root))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            if entry.name.startswith(".") or entry.name in IGNORED_FOLDERS:
                continue
            if entry.is_symlink():
                target_is_dir = _points_to_dir(entry)
                if not self.follow or not (target_is_dir or os.path.exists(entry.path)):
                    if target_is_dir or is_supported_name(entry.name):
                        reason = "broken symbolic link" if self.follow else SYMLINK_SKIPPED
                        self.skip(Path(entry.path), reason)
                    continue
            try:
                if entry.is_dir(follow_symlinks=self.follow):
                    if self._first_visit(entry.stat(follow_symlinks=self.follow)):
                        stack.append(iter(self._sorted_entries(Path(entry.path))))
                elif is_supported_name(entry.name) and entry.is_file(follow_symlinks=self.follow):
                    st = entry.stat(follow_symlinks=self.follow)
                    if not self.follow or self._first_file(st):
                        yield Candidate(Path(entry.path), st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                pass  # it vanished while we walked (renamed by a copy tool): nothing to do
            except OSError as exc:
                self.skip(Path(entry.path), describe_os_error(exc))

    def _sorted_entries(self, folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                return sorted(it, key=lambda entry: entry.name)
        except OSError as exc:
            self.skip(folder, describe_os_error(exc))
            return []

    def _first_visit(self, st: os.stat_result) -> bool:
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            return False
        self.seen_dirs.add(key)
        return True

    def _first_file(self, st: os.stat_result) -> bool:
        # Only consulted for explicit files and followed links: a plain walk cannot meet
        # the same file twice except through hard links, which are separate names.
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            return False
        self.seen_files.add(key)
        return True


def _points_to_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _root_reason(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return "broken symbolic link"
    return describe_os_error(exc)
