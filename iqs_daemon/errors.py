"""The one exception tree of iqs-daemon.

    IqsError                     every error we raise; str(exc) is the user's message
    ├── ConfigError              a bad config file or flag (names the key and the file)
    ├── InputError               one photo cannot be used; carries the path
    │   ├── UnreadableFile       the OS refused to read it (permissions, I/O): transient
    │   ├── UnsupportedFormat    not a format we decode
    │   ├── DecodeError          a supported format that does not decode (truncated, corrupt,
    │   │                        or still being copied): transient
    │   ├── ImageTooLarge        more pixels than the decompression-bomb limit
    │   └── FileChanged          the file changed while it was being scored (looked at again)
    ├── MetadataError            reading or writing XMP failed (a busy or read-only file or
    │   │                        folder, a full disk); carries the path: transient
    │   └── MetadataRefused      exiv2 refused this content or crashed on it: the same next time
    ├── DatasetError             ``eval``: a labels file or photo folder it cannot use; carries
    │                            the path
    ├── ModelError               the model file is missing, corrupt or unusable
    └── StateError               the SQLite state cannot be opened or written
        └── DaemonRunning        another daemon holds this state directory; carries its pid

Third-party failures (cv2 returning None, pyexiv2's RuntimeError, sqlite3 errors) are
translated where they happen, with the cause kept (``raise ... from exc``).

``transient`` is a property of the class: the daemon retries a transient error later
(with back-off) and waits for the file to change after a permanent one.
"""

from __future__ import annotations

from pathlib import Path


class IqsError(Exception):
    """Base class: every error iqs-daemon raises on purpose."""

    #: True: the same photo may well succeed later (retry); False: not until it changes.
    transient: bool = False


class ConfigError(IqsError):
    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.message = message
        self.key = key
        self.source = source
        where = f" ({key} in {source})" if key and source else f" ({source})" if source else ""
        super().__init__(f"{message}{where}")


class FileError(IqsError):
    """An error about one file: ``str()`` is "path: reason"."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    # Picklable across process boundaries (the exiv2 process, decode pools).
    def __reduce__(self) -> tuple[type[FileError], tuple[Path, str]]:
        return (self.__class__, (self.path, self.reason))


class InputError(FileError):
    """This photo cannot be scored; the pipeline records the reason and goes on."""


class UnreadableFile(InputError):
    transient = True


class UnsupportedFormat(InputError):
    pass


class DecodeError(InputError):
    transient = True


class ImageTooLarge(InputError):
    pass


class FileChanged(InputError):
    """Replaced or rewritten between its decode and the XMP write: nothing was written."""


class MetadataError(FileError):
    transient = True


class MetadataRefused(MetadataError):
    """exiv2 refused the file's metadata (a corrupt EXIF or XMP block) or crashed on it."""

    transient = False


class DatasetError(FileError):
    """``iqs-daemon eval`` cannot use this labels CSV or folder (nothing is scored)."""


class ModelError(IqsError):
    pass


class StateError(IqsError):
    pass


class DaemonRunning(StateError):
    """A second daemon for one state directory; ``str()`` names the running one's pid."""

    def __init__(self, pid: int | None, state_dir: Path | str):
        self.pid = pid
        self.state_dir = Path(state_dir)
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"already running ({who}) for the state directory {self.state_dir}")

    def __reduce__(self) -> tuple[type[DaemonRunning], tuple[int | None, Path]]:
        return (self.__class__, (self.pid, self.state_dir))
