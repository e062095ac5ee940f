"""What the CLI tells a new user: missing paths, --help, summaries, show and status.

Every test runs the real entry point (``python -m iqs_daemon``) in an isolated home.
"""

from __future__ import annotations

from pathlib import Path

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
