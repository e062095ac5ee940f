"""What the daemon shares with the outside: its lock, its status file, systemd.

- ``DaemonLock``: one daemon per state directory (``flock`` on ``daemon.lock``); the file
  holds the pid and where the status file is, so ``iqs-daemon status`` can find both.
- ``StatusFile``: a small JSON document rewritten atomically every couple of seconds
  (in the runtime directory, a tmpfs) and removed on a clean exit.
- ``sd_notify``: systemd's readiness and watchdog protocol, a datagram on
  ``$NOTIFY_SOCKET``; no dependency, and a no-op outside systemd.
- ``render_unit``: the user unit that ``iqs-daemon install-service`` writes.

There is no network listener: status goes through files only, each readable by the user
alone (0600, in folders made 0700).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DaemonRunning, StateError

log = logging.getLogger(__name__)

LOCK_NAME = "daemon.lock"
UNIT_NAME = "iqs-daemon.service"


# --- the lock -------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    pid: int | None
    status_file: Path | None


class DaemonLock:
    """An exclusive ``flock`` on ``STATE_DIR/daemon.lock``, held for the daemon's life.

    The kernel drops it when the process dies, kill -9 included, so a stale file never
    blocks a restart.
    """

    def __init__(self, state_dir: Path):
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, status_file: Path) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create {self.path}: {exc.strerror} "
                             "(set IQS_STATE_DIR to a writable folder)") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            info = read_lock(self.path.parent)
            raise DaemonRunning(info.pid if info else None, self.path.parent) from None
        record = json.dumps({"pid": os.getpid(), "status_file": str(status_file)}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the file stays: unlinking a lock file races
            os.close(self._fd)
            self._fd = None


def read_lock(state_dir: Path) -> LockInfo | None:
    """The running daemon's pid and status file, or None when no daemon holds the lock."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pass  # held: a daemon is running
        else:
            return None
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            data = {}  # the daemon is between ftruncate and pwrite
        status = data.get("status_file")
        return LockInfo(data.get("pid"), Path(status) if status else None)
    finally:
        os.close(fd)


# --- the folders last watched -------------------------------------------------------------

ROOTS_NAME = "roots.json"


def remember_roots(state_dir: Path, roots: list[Path]) -> None:
    """Note the folders this daemon watches, so ``status`` shows them after it stopped."""
    try:
        tmp = state_dir / f".{ROOTS_NAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps([os.fsdecode(r) for r in roots]))
        os.replace(tmp, state_dir / ROOTS_NAME)
    except OSError as exc:  # only status uses it: never stop the daemon for it
        log.debug("cannot write %s: %s", state_dir / ROOTS_NAME, exc)


def remembered_roots(state_dir: Path) -> list[Path]:
    """The folders the last daemon on this state directory watched (none if unknown)."""
    try:
        data = json.loads((state_dir / ROOTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(r) for r in data if isinstance(r, str)] if isinstance(data, list) else []


# --- the status file --------------------------------------------------------------------


class StatusFile:
    def __init__(self, path: Path):
        self.path = path

    def write(self, status: Mapping[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(status, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:  # status is a convenience: never stop scoring for it
            log.debug("cannot write the status file %s: %s", self.path, exc)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None


def status_file_for(state_dir: Path, runtime_dir: Path) -> Path:
    """The runtime dir is shared by every state dir; the name keeps daemons apart."""
    if runtime_dir == state_dir:
        return state_dir / "status.json"
    import hashlib

    tag = hashlib.sha256(os.fsencode(state_dir.resolve())).hexdigest()[:12]
    return runtime_dir / f"status-{tag}.json"


# --- systemd ------------------------------------------------------------------------------


def sd_notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (e.g. "READY=1") to systemd; False when not run by systemd."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False  # unset, or a vsock address we do not need
    if address[0] == "@":
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block: a receiver that stopped reading must not stall the daemon.
            sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
    except OSError as exc:
        log.debug("sd_notify(%s) failed: %s", message, exc)
        return False
    return True


def watchdog_interval_seconds(environ: Mapping[str, str] = os.environ) -> float | None:
    """How often systemd wants WATCHDOG=1 (half its WatchdogSec), or None."""
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


def daemon_command() -> list[str]:
    """How to run this installation: the console script, else ``python -m iqs_daemon``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "iqs-daemon" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    found = shutil.which("iqs-daemon")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "iqs_daemon"]


def systemd_quote(word: str) -> str:
    """One argument for ExecStart=/ReadWritePaths=: quoted, specifiers and $ escaped."""
    out = []
    for ch in word:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "$":
            out.append("$$")
        elif ord(ch) < 0x20 or 0xDC80 <= ord(ch) <= 0xDCFF:  # control, undecodable byte
            out.append(f"\\x{ord(ch) & 0xFF:02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# Options that need a user namespace in a user unit (systemd enables PrivateUsers= for them).
NAMESPACE_OPTIONS = """\
PrivateTmp=yes
ProtectSystem=strict
{read_write_paths}ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
ProtectClock=yes
"""

UNIT_TEMPLATE = """\
# Written by `iqs-daemon install-service`; see docs/daemon.md for each setting.
[Unit]
Description=iqs-daemon: score new photos and write the verdict into their XMP
Documentation=https://github.com/iqs-daemon/iqs-daemon/blob/main/docs/daemon.md

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=10
WatchdogSec=120
TimeoutStopSec=30
Environment=PYTHONUNBUFFERED=1
StateDirectory=iqs-daemon
RuntimeDirectory=iqs-daemon
Nice=10
IOSchedulingClass=idle
CPUSchedulingPolicy=batch
NoNewPrivileges=yes
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
{namespace_options}
[Install]
WantedBy=default.target
"""


def render_unit(roots: list[Path], *, command: list[str] | None = None,
                extra_args: list[str] | None = None, sandbox: bool = True) -> str:
    """The user unit running ``iqs-daemon start ROOT...`` with the given roots."""
    roots = [Path(os.path.abspath(r)) for r in roots]
    argv = [*(command or daemon_command()), *(extra_args or []), "start",
            *(str(r) for r in roots)]
    rw = "".join(f"ReadWritePaths=-{systemd_quote(str(r))}\n" for r in roots)
    namespace = NAMESPACE_OPTIONS.format(read_write_paths=rw) if sandbox else ""
    return UNIT_TEMPLATE.format(exec_start=" ".join(systemd_quote(a) for a in argv),
                                namespace_options=namespace)


def user_unit_path(environ: Mapping[str, str] = os.environ) -> Path:
    config = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


# --- checking a unit against the paths it names -------------------------------------------

HIDDEN_BY = {  # option value -> folders the service cannot see
    "PrivateTmp": ("/tmp", "/var/tmp"),
    "ProtectHome": ("/home", "/root", "/run/user"),
}


def _unit_options(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """ExecStart's argv and every [Service] option's values, systemd quoting undone."""
    import shlex

    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith(("#", ";", "[")):
            options.setdefault(key.strip(), []).append(value.strip())
    exec_start = (options.get("ExecStart") or [""])[-1].replace("%%", "%").replace("$$", "$")
    return shlex.split(exec_start), options


def _under(path: str, folders: tuple[str, ...] | list[str]) -> str | None:
    for folder in folders:
        if path == folder or path.startswith(folder.rstrip("/") + "/"):
            return folder
    return None


def unit_problems(text: str) -> list[str]:
    """What keeps a unit from working with the paths it names, each with what to change.

    Checks the program, the config file and the watched folders against PrivateTmp=,
    ProtectHome=, ProtectSystem=strict (folders not in ReadWritePaths=) and
    InaccessiblePaths=.
    """
    argv, options = _unit_options(text)
    if not argv:
        return ["the unit has no ExecStart= line"]
    named = [("the program", argv[0])]
    if "start" in argv:
        for arg in argv[argv.index("start") + 1:]:
            named.append(("the watched folder", arg))
    for flag in ("--config", "-c"):
        if flag in argv[:-1]:
            named.append(("the config file", argv[argv.index(flag) + 1]))
    writable = [p.lstrip("-+") for values in options.get("ReadWritePaths", [])
                for p in _split_paths(values)]
    problems = []
    for option, folders in HIDDEN_BY.items():
        value = (options.get(option) or ["no"])[-1].lower()
        if value in ("no", "false", "0", "off"):
            continue
        for what, path in named:
            folder = _under(path, folders)
            if folder is None:
                continue
            if value == "read-only" and not (what == "the watched folder"
                                              and not _under(path, writable)):
                continue  # readable; the watched folders must also be writable
            problems.append(
                f"{option}={value} hides {folder} from the service, so it cannot "
                f"{'write in' if value == 'read-only' else 'see'} {what} {path}: "
                + _advice(what, option))
    if (options.get("ProtectSystem") or [""])[-1] == "strict":
        for what, path in named:
            if what == "the watched folder" and not _under(path, writable):
                problems.append(f"ProtectSystem=strict makes {path} read-only: add "
                                f"ReadWritePaths=-{path} to the unit")
    hidden = [p.lstrip("-+") for values in options.get("InaccessiblePaths", [])
              for p in _split_paths(values)]
    for what, path in named:
        if _under(path, hidden):
            problems.append(f"InaccessiblePaths= hides {what} {path}: remove it from that line")
    return problems


def _split_paths(value: str) -> list[str]:
    import shlex

    return shlex.split(value.replace("%%", "%").replace("$$", "$"))


def _advice(what: str, option: str) -> str:
    if what == "the program":
        return ("install iqs-daemon outside that folder (a venv such as "
                "~/.local/share/iqs-daemon/venv, or pipx install .), then run "
                "install-service again")
    if option == "PrivateTmp":
        return "keep the photos outside /tmp, or write the unit with --no-sandbox"
    return f"remove {option}= from the unit, or write it with --no-sandbox"


def verify_unit(unit: Path, timeout_seconds: float = 60.0) -> list[str] | None:
    """``systemd-analyze verify`` on the written unit: its complaints (empty when it is
    happy), or None where systemd-analyze is not installed.

    It runs as for a user unit; without a user manager to ask (no session, a container)
    it checks the file as a system unit would be checked: syntax and programs.
    """
    import subprocess

    if shutil.which("systemd-analyze") is None:
        return None
    lines: list[str] = []
    for mode in (["--user"], []):
        try:
            result = subprocess.run(["systemd-analyze", *mode, "verify", str(unit)],
                                    capture_output=True, text=True, timeout=timeout_seconds,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [f"systemd-analyze verify did not finish: {exc}"]
        output = (result.stdout + result.stderr).splitlines()
        if any("Failed to initialize manager" in line for line in output) and mode:
            continue  # no user manager here: check it the system way
        lines = [line.strip() for line in output if line.strip()
                 and "Failed to initialize manager" not in line
                 and "Failed to lookup RuntimeDirectory" not in line]
        return lines if result.returncode != 0 or lines else []
    return lines
