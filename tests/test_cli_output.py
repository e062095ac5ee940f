"""What the CLI tells a new user: missing paths, --help, summaries, show and status.

Every test runs the real entry point (``python -m iqs_daemon``) in an isolated home.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from daemonkit import cli, daemon_env, jpeg

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def test_missing_paths_are_named_before_the_model_loads(tmp_path):
    env = daemon_env(tmp_path)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "a.jpg").write_bytes(jpeg(120))
    # A model that does not exist: loading it would fail with exit code 1.
    result = cli(["score", "--set", 'model.model_path="/nonexistent/model.onnx"',
                  str(tmp_path / "typo1"), str(tmp_path / "here"), str(tmp_path / "typo2.jpg")],
                 env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [f"iqs-daemon: error: no such file or folder: {tmp_path / 'typo1'}",
                     f"iqs-daemon: error: no such file or folder: {tmp_path / 'typo2.jpg'}"]
    assert "model" not in result.stderr
    assert result.stdout == ""


COMMANDS = ["score", "show", "config", "eval", "start", "status", "install-service"]
INTERNAL_TYPE = re.compile(r"<(bool|int|float|str|file|path|list\[\w+\])>|\{\w+\}", re.IGNORECASE)


@pytest.mark.parametrize("columns", ["80", "200"])
def test_help_reads_like_a_usual_cli_within_80_columns(tmp_path, columns):
    env = daemon_env(tmp_path, COLUMNS=columns)
    pages = {name: cli([name, "--help"] if name else ["--help"], env) for name in ["", *COMMANDS]}
    for name, page in pages.items():
        assert page.returncode == 0, (name, page.stderr)
        assert not INTERNAL_TYPE.search(page.stdout), (name, INTERNAL_TYPE.search(page.stdout))
        assert max(map(len, page.stdout.splitlines())) <= 80, name
        assert page.stdout.startswith(f"Usage: iqs-daemon {name}".rstrip()), name
    score = pages["score"].stdout
    assert "Usage: iqs-daemon score [OPTIONS] PATHS..." in score
    assert "-j, --jobs JOBS" in score
    assert "-c, --config FILE" in score
    assert re.search(r"^  --dry-run +Score, but", score, re.MULTILINE)  # a flag takes no value
    # The docstring's paragraphs are re-wrapped, not broken where the source lines end.
    assert "a star\n  rating, its score" in score or "a star rating," in score
