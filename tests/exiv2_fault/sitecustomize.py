"""Crashes the real exiv2 process on chosen files, for the fault tests.

Python imports this module at start-up when its folder is on ``PYTHONPATH``, which only
the tests (``tests/exiv2_faults.py``) and ``benchmarks/soak.py`` put it. In the exiv2
process (``python -m iqs_daemon.exiv2_process``) it makes every exiv2 open of a file whose
name contains ``$IQS_TEST_EXIV2_ABORT_ON`` abort the process, as a crash in exiv2 would.
"""

from __future__ import annotations

import os
import sys

MARK_ENV = "IQS_TEST_EXIV2_ABORT_ON"


def _install(mark: str) -> None:
    import pyexiv2

    real_image = pyexiv2.exiv2api.Image

    def aborting_image(path: bytes, *args: object) -> object:
        if mark in os.fsdecode(os.path.basename(path)):
            os.abort()
        return real_image(path, *args)

    pyexiv2.exiv2api.Image = aborting_image


if os.environ.get(MARK_ENV) and "iqs_daemon.exiv2_process" in sys.orig_argv:
    _install(os.environ[MARK_ENV])
