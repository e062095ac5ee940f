"""The typer app, shared options, exit codes and the top-level error handler."""

from __future__ import annotations

import logging
import sys
from enum import IntEnum

import typer

from .. import __version__
from ..errors import IqsError


class ExitCode(IntEnum):
    """Documented in README.md ("Exit codes")."""

    OK = 0
    ERROR = 1  # could not run at all: bad config, missing model, ...
    USAGE = 2  # bad command line (typer/click's own code)
    SOME_FAILED = 3  # ran, but some photos could not be scored or written
    ALREADY_RUNNING = 4  # a daemon already holds this state directory


app = typer.Typer(
    name="iqs-daemon",
    help=(
        "Score photos for technical quality (blur, noise, exposure, compression) and write "
        "a digiKam pick label, a star rating and the reasons into their XMP metadata."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iqs-daemon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
        stream=sys.stderr,
    )
    app.info.context_settings = {"obj": {"debug": debug}}
    global _debug
    _debug = debug


_debug = False


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except IqsError as exc:
        if _debug:
            raise
        typer.echo(f"iqs-daemon: error: {exc}", err=True)
        sys.exit(ExitCode.ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors from typer's bundled click
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):
            show()
            sys.exit(exc.exit_code)
        raise
    else:
        sys.exit(code if isinstance(code, int) else ExitCode.OK)
