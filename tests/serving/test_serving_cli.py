"""The `fastroute` command line: version, help, argument errors, check and route.

The commands run in process through ``main`` (what ``python -m fastroute`` calls, tested
once as a real process): the exit status, stdout and stderr are the command's, and an
exception escaping ``main`` (a traceback for a user) fails the test."""

from __future__ import annotations

import io
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


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Runs ``fastroute ARGUMENTS`` in process: (exit status, stdout, stderr); ``--app-dir``'s
    change to the import path is undone after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))

    def run_command(*arguments: str, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        status = main(list(arguments))
        out, err = capsys.readouterr()
        return status, out, err

    return run_command


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


def test_check_reports_a_valid_config_and_names_the_problem_in_a_bad_one(tmp_path: Path, command) -> None:
    pytest.importorskip("yaml", reason="needs the 'config' extra")
    good = tmp_path / "router.yaml"
    good.write_text(CONFIG)
    status, out, err = command("check", str(good), "--app-dir", str(HERE))
    assert status == 0, err
    assert "valid" in out and "words/2  text  aliases: stable" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("serving_models:shout", "serving_models:no_such_model"))
    status, out, err = command("check", str(bad), "--app-dir", str(HERE))
    assert status == 1 and "no_such_model" in err and str(bad) in err


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path, command, monkeypatch: pytest.MonkeyPatch) -> None:
    uvicorn = pytest.importorskip("uvicorn", reason="needs the 'serve' extra")

    def listen(server: object) -> None:  # fails the test instead of serving (in process, that would block)
        raise AssertionError("serve started listening on a bad config")

    monkeypatch.setattr(uvicorn.Server, "run", listen)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {m: {modality: tabular, versions: {}}}")
    status, out, err = command("serve", str(bad), "--port", "0")
    assert status == 1 and str(bad) in err and "models.m.versions" in err


def test_route_prints_one_decision_per_file_and_for_stdin(tmp_path: Path, command) -> None:
    pytest.importorskip("yaml", reason="needs the 'config' extra")
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG)
    note = tmp_path / "note.txt"
    note.write_text("a short note")
    archive = tmp_path / "data.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    status, out, err = command("route", "-c", str(config), "--app-dir", str(HERE), str(note), str(archive), "-",
                               stdin=b"from stdin")
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1  # the archive has no model
    assert lines[0]["input"] == str(note) and (lines[0]["model"], lines[0]["version"]) == ("words", "2")
    assert lines[1]["input"] == str(archive) and lines[1]["error"].startswith("NoRoute")
    assert lines[2]["input"] == "<stdin>" and lines[2]["model"] == "words"
    status, out, err = command("route", "-c", str(config), "--app-dir", str(HERE), str(tmp_path / "absent"))
    assert status == 1 and "cannot read" in err
