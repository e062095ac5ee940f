"""The only code that calls pyexiv2, and the exiv2 process that runs it.

exiv2 keeps global error state (not thread-safe) and has crashed on hostile files, so
``metadata.py`` never calls it directly. It talks to a backend:

- ``Exiv2Process`` (the default): a long-lived ``python -m iqs_daemon.exiv2_process``
  child speaking JSON lines on stdin/stdout. A segfault or abort in exiv2 kills only the
  child; the request raises ``Exiv2CrashError`` and the next request starts a fresh child.
- ``InProcess``: the same ``handle()`` in this process, behind one process-wide lock
  (tests, benchmarks, and the kill-during-write test).

Requests are plain dicts: ``{"op": "read", "path", "keys", "prefixes"}`` returns
``{"xmp": {...}, "exif": {...}}`` holding only the wanted tags; ``{"op": "modify",
"path", "xmp", "exif"}`` sets every key of each dict in one ``modify_*`` call (``None``
deletes a key); ``{"op": "modify_bytes", "data", "xmp", "exif"}`` does the same to a
small file sent as base64 ``data`` (a JPEG's head, see ``metadata.py``) and returns it as
``{"data": ...}``. Failures come back as ``Exiv2Error`` with exiv2's message; the caller
turns them into ``MetadataError`` for the photo.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IQS_NS_URI = "https://iqs-daemon.org/ns/1.0/"
IQS_PREFIX = "iqs"
REQUEST_TIMEOUT_SECONDS = 60.0
START_TIMEOUT_SECONDS = 60.0


class Exiv2Error(Exception):
    """exiv2 refused a request; ``str()`` is its message."""


class Exiv2CrashError(Exiv2Error):
    """The exiv2 process died (or hung) while handling the request."""


class Exiv2StartError(Exiv2Error):
    """The exiv2 process could not be started at all: not the file's fault."""


# --- what runs next to exiv2 (in the exiv2 process, or in-process) -----------------

_registered = False


def _pyexiv2() -> Any:
    global _registered
    import pyexiv2

    if not _registered:
        pyexiv2.registerNs(IQS_NS_URI, IQS_PREFIX)
        pyexiv2.set_log_level(3)  # errors raise; warnings about odd files stay quiet
        _registered = True
    return pyexiv2


def _open(path: str) -> Any:
    """Open by bytes path: pyexiv2 encodes str paths and cannot take undecodable names."""
    pyexiv2 = _pyexiv2()
    image = pyexiv2.Image.__new__(pyexiv2.Image)
    image._exiv2api_image = pyexiv2.exiv2api.Image(os.fsencode(path))
    return image


def _wanted(data: dict[str, Any], keys: list[str], prefixes: list[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in keys or k.startswith(tuple(prefixes))}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Run one request against exiv2; raises whatever pyexiv2 raises."""
    op = request["op"]
    if op == "ping":
        return {"pyexiv2": _pyexiv2().__version__}
    if op == "modify_bytes":
        image = _pyexiv2().ImageData(base64.b64decode(request["data"]))
        try:
            _modify(image, request)
            return {"data": base64.b64encode(image.get_bytes()).decode("ascii")}
        finally:
            image.close()
    with _open(request["path"]) as image:
        if op == "read":
            keys, prefixes = request.get("keys", []), request.get("prefixes", [])
            return {
                "xmp": _wanted(image.read_xmp(), keys, prefixes),
                "exif": _wanted(image.read_exif(), keys, prefixes),
            }
        if op == "modify":
            _modify(image, request)
            return {}
    raise ValueError(f"unknown request {op!r}")


def _modify(image: Any, request: dict[str, Any]) -> None:
    if request.get("xmp"):
        image.modify_xmp(request["xmp"])
    if request.get("exif"):
        image.modify_exif(request["exif"])


def serve(requests: Any, responses: Any) -> None:
    """The exiv2 process's loop: one JSON request per line in, one JSON response per line out."""
    for line in requests:
        request = json.loads(line)
        try:
            response = {"ok": True, **handle(request)}
        except Exception as exc:
            response = {"ok": False, "error": str(exc) or type(exc).__name__}
        try:
            responses.write(json.dumps(response) + "\n")
            responses.flush()
        except BrokenPipeError:  # the caller is gone (killed): nothing left to do
            os._exit(0)


def main() -> None:
    # Keep the protocol on a private copy of stdout: anything exiv2 or Python prints
    # goes to stderr instead of corrupting a response.
    responses = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        _pyexiv2()
        responses.write(json.dumps({"ready": True}) + "\n")
    except Exception as exc:
        responses.write(json.dumps({"ready": False, "error": str(exc)}) + "\n")
        responses.flush()
        sys.exit(1)
    responses.flush()
    serve(sys.stdin, responses)


# --- the caller's side ---------------------------------------------------------------

_IN_PROCESS_LOCK = threading.Lock()


class InProcess:
    """Call exiv2 in this process; all instances share one lock."""

    def call(self, request: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        with _IN_PROCESS_LOCK:
            try:
                return handle(request)
            except Exception as exc:
                raise Exiv2Error(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        pass


class Exiv2Process:
    """A long-lived exiv2 child process, started on first use and restarted after it dies."""

    def __init__(self, timeout_seconds: float = REQUEST_TIMEOUT_SECONDS):
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._owner_pid = os.getpid()
        self.starts = 0  # how many children were started (tests, logs)

    def call(self, request: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        with self._lock:
            proc = self._ensure_started()
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                response = self._read_response(timeout_seconds or self.timeout_seconds)
            except (BrokenPipeError, Exiv2CrashError) as exc:
                self._reap(exc)
                raise Exiv2CrashError("exiv2 crashed on this file") from exc
        if not response.get("ok"):
            raise Exiv2Error(response.get("error", "unknown exiv2 error"))
        return response

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            assert proc.stdin is not None
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        if self._owner_pid != os.getpid():  # we were forked: that child is the parent's
            self._proc, self._buffer, self._owner_pid = None, b"", os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._reap(None)
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "iqs_daemon.exiv2_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the child
        )
        self._buffer = b""
        self.starts += 1
        try:
            hello = self._read_response(START_TIMEOUT_SECONDS)
        except Exiv2CrashError as exc:
            self._reap(exc)
            raise Exiv2StartError(f"the exiv2 process did not start: {exc}") from exc
        if not hello.get("ready"):
            self._reap(None)
            raise Exiv2StartError(f"the exiv2 process did not start: {hello.get('error')}")
        log.debug("exiv2 process started (pid %d)", self._proc.pid)
        return self._proc

    def _read_response(self, timeout_seconds: float) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_seconds
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Exiv2CrashError(f"no answer within {timeout_seconds:.0f} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise Exiv2CrashError("the exiv2 process exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return dict(json.loads(line))

    def _reap(self, cause: BaseException | None) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        log.warning("exiv2 process (pid %d) ended with %s (%s)", proc.pid, how, cause)


if __name__ == "__main__":
    main()
