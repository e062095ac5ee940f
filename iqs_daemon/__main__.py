"""``python -m iqs_daemon``: the same as the ``iqs-daemon`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
