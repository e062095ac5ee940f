"""The README's set-up works as written on a fresh Debian/Ubuntu, and CI's command is there.

``.ci/run`` runs the README's test command verbatim, so its text must not change; the run
command must not need an index that does not have the package, nor ``pip install``
outside a virtual environment (refused by current Debian and Ubuntu, PEP 668).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def commands() -> list[str]:
    """Every command shown as an indented block in the README."""
    return [line.strip() for line in README.splitlines() if re.match(r"^    \S", line)]


def set_up() -> list[str]:
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if re.match(r"^    \S", line)]


def test_ci_runs_the_readmes_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install '.[test]' && pytest" in set_up()
    assert ci.rstrip().endswith("pip install '.[test]' && pytest")


def test_set_up_works_on_a_fresh_debian_or_ubuntu():
    steps = set_up()
    apt = next(s for s in steps if s.startswith("sudo apt-get install"))
    assert {"pipx", "python3-venv", "libimage-exiftool-perl", "exiv2"} <= set(apt.split())
    test_at = steps.index("pip install '.[test]' && pytest")
    assert steps[test_at - 1] == "python3 -m venv .venv && . .venv/bin/activate"
    # Every pip install runs in that venv; the package is installed from this folder.
    for step in commands():
        assert "pipx install iqs-daemon" not in step, step
        assert "pip install --user" not in step, step
        if step.startswith("pip install") and step != "pip install '.[test]' && pytest":
            raise AssertionError(f"pip install outside a virtual environment: {step}")
    run = next(s for s in steps if s.startswith("pipx install ."))
    # pipx puts the command in ~/.local/bin, which a fresh shell may not have on PATH yet.
    assert run == "pipx install . && ~/.local/bin/iqs-daemon score ~/Pictures/trip"
