"""``iqs-daemon start``, ``status`` and ``install-service``: the long-running daemon."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from ..config import Paths
from ..errors import DaemonRunning
from ..service import (
    StatusFile,
    read_lock,
    remembered_roots,
    render_unit,
    unit_problems,
    user_unit_path,
    verify_unit,
)
from ..state import StateDB
from .app import ExitCode, app
from .common import CONFIG_OPTION, SET_OPTION, settings_from

ROOTS_ARGUMENT = typer.Argument(
    ..., help="Folders to watch (recursively).", exists=True, file_okay=False, resolve_path=True)
# A root may be absent at start (a card, a share not mounted yet): it is watched for.
START_ROOTS_ARGUMENT = typer.Argument(
    ..., help="Folders to watch (recursively).", file_okay=False, resolve_path=True)
SYSTEMCTL_COMMANDS = (
    ["systemctl", "--user", "daemon-reload"],
    ["systemctl", "--user", "enable", "--now", "iqs-daemon"],
)


@app.command("start")
def start_command(
    roots: list[Path] = START_ROOTS_ARGUMENT,
    no_backlog: bool = typer.Option(
        False, "--no-backlog", help="Do not score photos that were there before the start."),
    poll: bool = typer.Option(
        False, "--poll", help="Poll instead of inotify (network shares); same as daemon.polling."),
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
) -> None:
    """Watch folders and score every photo that arrives, in the foreground.

    First scores the photos already there without a verdict from the current model
    (unless --no-backlog), then every new, moved-in or replaced photo once it is
    complete. Stop with Ctrl-C or SIGTERM; SIGHUP reloads the configuration. The systemd
    service runs this same command (see `iqs-daemon install-service`).

    Example:

      iqs-daemon start ~/Pictures /mnt/card-imports
    """
    from ..daemon import Daemon  # loads the pipeline: keep --help fast

    flags: dict[str, Any] = {"backlog": False if no_backlog else None,
                             "polling": True if poll else None}
    settings = settings_from(config, sets, **flags)
    daemon = Daemon(settings, Paths.from_environment(), roots,
                    reload_settings=lambda: settings_from(config, sets, **flags))
    try:
        code = daemon.run()
    except DaemonRunning as exc:
        typer.echo(f"iqs-daemon: {exc}", err=True)
        raise typer.Exit(ExitCode.ALREADY_RUNNING) from None
    raise typer.Exit(code)


def collect_status(paths: Paths, *, errors: int = 5) -> dict[str, Any]:
    """Everything ``status`` shows, as data (the ``--json`` document)."""
    lock = read_lock(paths.state_dir)
    report: dict[str, Any] = {"running": lock is not None, "pid": lock.pid if lock else None,
                              "state_dir": str(paths.state_dir),
                              "database": str(paths.database)}
    live = StatusFile(lock.status_file).read() if lock and lock.status_file else None
    if live:
        report.update(
            uptime_seconds=round(time.time() - live["started_epoch"], 1),
            status_age_seconds=round(time.time() - live["updated_epoch"], 1),
            **{k: live.get(k) for k in ("phase", "roots", "backends", "model", "queue_depth",
                                        "settling", "in_flight", "photos_per_second", "session")})
    # Totals per watched folder (the running daemon's, else the last one's), not mixed
    # with folders watched once and no longer.
    roots = [Path(r) for r in (live or {}).get("roots") or []] or remembered_roots(
        paths.state_dir)
    report["totals"], report["totals_by_folder"], report["last_errors"] = {}, {}, []
    if paths.database.is_file():
        with StateDB(paths.database) as db:
            everything = db.totals()
            by_folder = {str(root): db.totals(below=root) for root in roots}
            report["totals"] = dict(sum((Counter(t) for t in by_folder.values()), Counter())
                                    ) if roots else everything
            report["totals_by_folder"] = by_folder
            report["elsewhere"] = sum(everything.values()) - sum(report["totals"].values())
            report["last_errors"] = [
                {"path": str(r.path), "status": r.status, "error": r.error,
                 "attempts": r.attempts,
                 "retry_at": r.next_attempt_at, "updated": r.updated}
                for r in db.recent_errors(errors)]
    return report


@app.command("status")
def status_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Is the daemon running, what it watches, how far it got, and the last errors."""
    report = collect_status(Paths.from_environment())
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    for line in render_status(report):
        typer.echo(line)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _counts(totals: dict[str, int]) -> str:
    order = ["Accepted", "Pending", "Rejected", "failed", "skipped"]
    parts = [f"{totals[k]} {k}" for k in order if k in totals]
    parts += [f"{n} {k}" for k, n in sorted(totals.items()) if k not in order]
    return ", ".join(parts)


def render_status(report: dict[str, Any]) -> list[str]:
    lines = []
    if not report["running"]:
        lines.append("iqs-daemon is not running.")
    else:
        up = f", up {_duration(report['uptime_seconds'])}" if "uptime_seconds" in report else ""
        lines.append(
            f"iqs-daemon is running (pid {report['pid']}{up}), model {report.get('model')}.")
        for root in report.get("roots") or []:
            lines.append(f"  watching {root} ({(report.get('backends') or {}).get(root, '?')})")
        if "queue_depth" in report:
            lines.append(f"Queue: {report['queue_depth']} waiting, {report['settling']} settling, "
                         f"{report['in_flight']} in progress ({report['phase']}).")
    if report["running"] and report.get("photos_per_second") is not None:
        lines.append(f"Speed: {report['photos_per_second']:.2f} photos/s over the last minute.")
    folders = report.get("totals_by_folder") or {}
    if not report["totals"] and not report.get("elsewhere"):
        lines.append(f"Photos: none recorded yet ({report['database']}).")
    elif not folders:
        lines.append(f"Photos: {_counts(report['totals'])}.")
    for folder, totals in folders.items():
        lines.append(f"Photos in {folder}: {_counts(totals) if totals else 'none recorded yet'}.")
    if folders and report.get("elsewhere"):
        lines.append(f"Elsewhere (folders not watched now): {report['elsewhere']} photos.")
    if report["last_errors"]:
        lines.append("Last errors:")
        for e in report["last_errors"]:
            retry = (f"retry at {time.strftime('%H:%M', time.localtime(e['retry_at']))}"
                     if e["retry_at"] else "skipped" if e.get("status") == "skipped"
                     else "waits for the file to change")
            lines.append(f"  {e['path']}: {e['error']} ({retry})")
    return lines


@app.command("install-service")
def install_service_command(
    roots: list[Path] = ROOTS_ARGUMENT,
    enable: bool = typer.Option(
        False, "--enable", help="Also run systemctl --user daemon-reload and enable --now."),
    no_sandbox: bool = typer.Option(
        False, "--no-sandbox", help="Leave out the options that need user namespaces "
        "(when the service fails with status 226/NAMESPACE)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Pass this config file to the service.", dir_okay=False,
        exists=True, resolve_path=True),
) -> None:
    """Write a systemd user service that runs `iqs-daemon start` on these folders.

    Example:

      iqs-daemon install-service --enable ~/Pictures
    """
    unit = user_unit_path()
    extra = ["--config", str(config)] if config else []
    text = render_unit(roots, extra_args=extra, sandbox=not no_sandbox)
    try:
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"iqs-daemon: error: cannot write {unit}: {exc.strerror}", err=True)
        raise typer.Exit(ExitCode.ERROR) from None
    typer.echo(f"Wrote {unit}")
    problems = unit_problems(text) + (verify_unit(unit) or [])
    if problems:
        typer.echo("The service would not work as written; change this first:", err=True)
        for problem in problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(ExitCode.ERROR)
    if not enable:
        typer.echo("Start it now and at every login with:")
        for command in SYSTEMCTL_COMMANDS:
            typer.echo("  " + " ".join(command))
        return
    for command in SYSTEMCTL_COMMANDS:
        typer.echo("$ " + " ".join(command))
        try:
            result = subprocess.run(command, check=False, capture_output=True, text=True)
        except OSError as exc:
            typer.echo(f"iqs-daemon: error: cannot run {command[0]}: {exc.strerror}; run "
                       f"`iqs-daemon start {' '.join(map(str, roots))}` directly", err=True)
            raise typer.Exit(ExitCode.ERROR) from None
        typer.echo(result.stdout, nl=False)
        if result.returncode != 0:
            typer.echo(_systemctl_failure(result.stderr, roots), err=True)
            raise typer.Exit(ExitCode.ERROR)
    typer.echo("Running. Follow it with: journalctl --user -u iqs-daemon -f")


NO_USER_BUS = ("Failed to connect to bus", "No medium found", "DBUS_SESSION_BUS_ADDRESS",
               "XDG_RUNTIME_DIR")


def _systemctl_failure(stderr: str, roots: list[Path]) -> str:
    """One line: what a failed systemctl --user means and what to do instead."""
    start = f"iqs-daemon start {' '.join(str(r) for r in roots)}"
    if any(sign in stderr for sign in NO_USER_BUS):
        return ("iqs-daemon: error: no systemd user session to enable the service in "
                "(systemctl --user cannot reach a user bus): log in to a session, or run "
                "`loginctl enable-linger` so your user manager runs without one, then "
                f"`iqs-daemon install-service --enable` again; or run `{start}` directly")
    detail = " ".join(stderr.split()) or "no message"
    return f"iqs-daemon: error: systemctl failed ({detail}); or run `{start}` directly"
