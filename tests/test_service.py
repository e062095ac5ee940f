"""``install-service``: the unit is checked against the paths it names, ``--enable`` says
what a missing user session means, and (where the machine has one) a real user systemd
instance runs the written unit on a folder and labels a photo copied in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from daemonkit import REPO, cli, daemon_env, jpeg, wait_for

from iqs_daemon.service import render_unit, unit_problems, verify_unit


def env_for(tmp_path: Path) -> dict[str, str]:
    return daemon_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg-config"))


def test_a_sandboxed_unit_for_folders_in_tmp_says_what_to_change(tmp_path):
    root = tmp_path / "photos"  # pytest's tmp_path lies in /tmp
    root.mkdir()
    result = cli(["install-service", str(root)], env_for(tmp_path))
    assert result.returncode == 1
    unit = tmp_path / "xdg-config" / "systemd" / "user" / "iqs-daemon.service"
    assert "PrivateTmp=yes" in unit.read_text()  # written, so it can be edited
    assert "The service would not work as written; change this first:" in result.stderr
    assert (f"PrivateTmp=yes hides /tmp from the service, so it cannot see the watched folder "
            f"{root}: keep the photos outside /tmp, or write the unit with --no-sandbox"
            in result.stderr)
    assert "Traceback" not in result.stderr
    assert "systemctl --user enable" not in result.stdout  # not offered while it cannot work


def test_unit_checks_name_the_program_home_and_read_only_folders():
    unit = render_unit([Path("/tmp/card"), Path("/home/me/Pictures")],
                       command=["/tmp/venv/bin/iqs-daemon"])
    problems = unit_problems(unit)
    assert problems[0].startswith(
        "PrivateTmp=yes hides /tmp from the service, so it cannot see the program "
        "/tmp/venv/bin/iqs-daemon: install iqs-daemon outside that folder")
    assert "the watched folder /tmp/card" in problems[1]
    assert len(problems) == 2  # ProtectHome= is not set: ~/Pictures is fine
    home = unit.replace("PrivateTmp=yes", "PrivateTmp=no\nProtectHome=yes")
    assert unit_problems(home) == [
        "ProtectHome=yes hides /home from the service, so it cannot see the watched folder "
        "/home/me/Pictures: remove ProtectHome= from the unit, or write it with --no-sandbox"]
    strict = "\n".join(line for line in home.splitlines()
                       if not line.startswith(("ReadWritePaths=", "ProtectHome=")))
    assert unit_problems(strict) == [
        f"ProtectSystem=strict makes {p} read-only: add ReadWritePaths=-{p} to the unit"
        for p in ("/tmp/card", "/home/me/Pictures")]
    assert unit_problems(render_unit([Path("/srv/photos")], command=["/usr/bin/iqs-daemon"])) == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_reports_a_program_that_is_not_there(tmp_path):
    unit = tmp_path / "iqs-daemon.service"
    unit.write_text(render_unit([tmp_path], command=[str(tmp_path / "gone" / "iqs-daemon")],
                                sandbox=False))
    problems = verify_unit(unit)
    assert problems, "systemd-analyze accepted a unit whose program does not exist"
    assert any("gone/iqs-daemon" in line and "not executable" in line for line in problems)
    unit.write_text(render_unit([tmp_path], command=[sys.executable, "-m", "iqs_daemon"],
                                sandbox=False))
    assert verify_unit(unit) == []


def user_manager_missing() -> str | None:
    """Why there is no user systemd instance to talk to, or None when there is one."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed"
    probe = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True,
                           text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"no systemd user instance here ({' '.join(probe.stderr.split())})"
    return None


def test_enable_without_a_user_session_says_what_to_do_in_one_line(tmp_path):
    if user_manager_missing() is None:
        pytest.skip("this machine has a user systemd instance: --enable would really enable")
    root = tmp_path / "photos"
    root.mkdir()
    result = cli(["install-service", "--no-sandbox", "--enable", str(root)], env_for(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "iqs-daemon: error: no systemd user session to enable the service in (systemctl "
        "--user cannot reach a user bus): log in to a session, or run `loginctl enable-linger` "
        "so your user manager runs without one, then `iqs-daemon install-service --enable` "
        f"again; or run `iqs-daemon start {root}` directly"]
    assert "Failed to connect to bus" not in result.stdout


def test_a_user_systemd_instance_runs_the_written_unit(tmp_path):
    """The real service: the unit as written, started by the user manager, labels a photo."""
    missing = user_manager_missing()
    if missing:
        pytest.skip(missing)
    if Path.home().is_relative_to("/tmp"):
        pytest.skip("the home folder is in /tmp, which the unit's PrivateTmp= hides")
    base = Path.home() / ".cache" / f"iqs-service-test-{uuid.uuid4().hex[:8]}"
    root, state = base / "photos", base / "state"
    root.mkdir(parents=True)
    name = f"{base.name}.service"
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    unit_dir = config_home / "systemd" / "user"
    unit = unit_dir / name
    text = render_unit([root], command=[sys.executable, "-m", "iqs_daemon"])
    # Its own state folder (ProtectSystem=strict: writable only when listed), so a daemon
    # of the user's own is left alone; and this checkout's package.
    text = text.replace("[Service]\n", f"[Service]\nEnvironment=IQS_STATE_DIR={state}\n"
                        f"ReadWritePaths=-{state}\nEnvironment=PYTHONPATH={REPO}\n", 1)
    state.mkdir()
    assert unit_problems(text) == []
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit.write_text(text)
    systemctl = ["systemctl", "--user"]
    try:
        subprocess.run([*systemctl, "daemon-reload"], check=True, timeout=60)
        subprocess.run([*systemctl, "start", name], check=True, timeout=120)
        photo = root / "new.jpg"
        time.sleep(1.0)
        photo.write_bytes(jpeg(200, (640, 480)))
        wait_for(lambda: b"iqs-daemon.org" in photo.read_bytes(), timeout=120)
        shown = cli(["show", "--json", str(photo)], daemon_env(base))
        assert '"label": "' in shown.stdout
    finally:
        subprocess.run([*systemctl, "stop", name], check=False, timeout=60)
        unit.unlink(missing_ok=True)
        subprocess.run([*systemctl, "daemon-reload"], check=False, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
