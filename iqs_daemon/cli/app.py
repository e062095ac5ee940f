"""The typer app, shared options, exit codes and the top-level error handler."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

from .. import __version__
from ..errors import IqsError


class ExitCode(IntEnum):
    """Documented in README.md ("Exit codes")."""

    OK = 0
    ERROR = 1  # could not run at all: bad config, missing model, ...
    USAGE = 2  # bad command line (typer/click's own code)
    SOME_FAILED = 3  # ran, but some photos could not be scored or written
    ALREADY_RUNNING = 4  # a daemon already holds this state directory


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: ``PATH...``, never ``{paths}... <list[Path]>``."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _metavar(param: TyperOption | TyperArgument) -> str:
    """``FILE`` for a file option, else the parameter's name: ``--jobs JOBS``, ``PATHS...``."""
    desc = param.type_descriptor
    name = "FILE" if desc.is_path and desc.path_type == "file" else (param.name or "value").upper()
    return f"{name}..." if isinstance(param, TyperArgument) and param.nargs != 1 else name


class PlainCommand(TyperCommand):
    """Help that reads like a usual CLI (``-j, --jobs JOBS``), wrapped at 80 columns.

    Typer's own help shows its internal type names (``--dry-run <bool>``, ``{paths}...``,
    ``<list[Path]>``); here every option that takes a value gets a metavar, flags get
    none, and arguments are named by their metavar only.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.__class__ = _Argument  # same fields; only the display differs
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = _metavar(param)  # type: ignore[arg-type]


class PlainTyper(typer.Typer):
    """``typer.Typer`` whose commands use ``PlainCommand`` unless given another class."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None,
                **kwargs: Any) -> Callable[[Any], Any]:
        return super().command(*args, cls=cls or PlainCommand, **kwargs)


app = PlainTyper(
    name="iqs-daemon",
    help=(
        "Score photos for technical quality (blur, noise, exposure, compression) and write "
        "a digiKam pick label, a star rating and the reasons into their XMP metadata."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain formatter: paragraphs re-wrapped, and never wider than 80 columns.
    rich_markup_mode=None,
    context_settings={"max_content_width": 80},
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
        code = app(standalone_mode=False, prog_name="iqs-daemon")
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
