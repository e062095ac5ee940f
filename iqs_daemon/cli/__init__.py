"""The ``iqs-daemon`` command line: one module per command, registered here.

Commands stay thin: they load ``Settings`` once, call the library and render what it
returns. ``main`` is the only place that turns an ``IqsError`` into one line and an exit
code; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import importlib

from .app import ExitCode, app, main

# Each command module adds its commands to ``app`` when imported.
for _name in ("score", "show", "config_cmd", "calibrate_cmd", "eval_cmd", "daemon_cmds"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:  # a command still being written
        if _exc.name != f"{__name__}.{_name}":
            raise

__all__ = ["ExitCode", "app", "main"]
