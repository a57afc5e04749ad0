"""The `fastroute` command line: version, help, argument errors, check and route."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastroute import __version__
from fastroute.cli import main

HERE = Path(__file__).parent
CONFIG = """
models:
  sum:
    modality: tabular
    versions:
      "1": {model: "serving_models:total", warmup: [1.0]}
  words:
    modality: text
    versions:
      "1": {model: "serving_models:words"}
      "2": {model: "serving_models:shout"}
    aliases: {stable: "2"}
"""


def run(*arguments: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastroute", *arguments], input=stdin.decode(),
                          capture_output=True, text=True, timeout=120)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"fastroute {__version__}"
    assert main([]) == 0
    help_text = capsys.readouterr().out
    assert "usage: fastroute" in help_text and "``" not in help_text
    assert all(f"    {command} " in help_text for command in ("serve", "check", "route", "fit", "evaluate", "demo"))


def test_python_dash_m_prints_help() -> None:
    completed = run()
    assert completed.returncode == 0 and "usage: fastroute" in completed.stdout and "``" not in completed.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["demo", "--repeat", "0"], "expected an integer >= 1, got '0'"),
     (["demo", "--seed", "-5"], "expected an integer >= 0, got '-5'"),
     (["demo", "--repeat", "many"], "expected an integer >= 1, got 'many'"),
     (["serve", "x.yaml", "--port", "70000"], "port number")],
)
def test_bad_arguments_are_usage_errors_not_tracebacks(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(arguments)
    error = capsys.readouterr().err
    assert done.value.code == 2 and message in error and "Traceback" not in error


def test_check_reports_a_valid_config_and_names_the_problem_in_a_bad_one(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="needs the 'config' extra")
    good = tmp_path / "router.yaml"
    good.write_text(CONFIG)
    completed = run("check", str(good), "--app-dir", str(HERE))
    assert completed.returncode == 0, completed.stderr
    assert "valid" in completed.stdout and "words/2  text  aliases: stable" in completed.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("serving_models:shout", "serving_models:no_such_model"))
    completed = run("check", str(bad), "--app-dir", str(HERE))
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert "no_such_model" in completed.stderr and str(bad) in completed.stderr


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {m: {modality: tabular, versions: {}}}")
    completed = run("serve", str(bad), "--port", "0")
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert str(bad) in completed.stderr and "models.m.versions" in completed.stderr


def test_route_prints_one_decision_per_file_and_for_stdin(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="needs the 'config' extra")
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG)
    note = tmp_path / "note.txt"
    note.write_text("a short note")
    archive = tmp_path / "data.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    completed = run("route", "-c", str(config), "--app-dir", str(HERE), str(note), str(archive), "-", stdin=b"from stdin")
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert completed.returncode == 1  # the archive has no model
    assert lines[0]["input"] == str(note) and (lines[0]["model"], lines[0]["version"]) == ("words", "2")
    assert lines[1]["input"] == str(archive) and lines[1]["error"].startswith("NoRoute")
    assert lines[2]["input"] == "<stdin>" and lines[2]["model"] == "words"
    missing = run("route", "-c", str(config), "--app-dir", str(HERE), str(tmp_path / "absent"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
