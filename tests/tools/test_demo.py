"""The main job: `fastroute demo` trains, routes a mixed stream and reports."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("sklearn", reason="the demo needs the 'demo' extra (scikit-learn)")
pytest.importorskip("PIL", reason="the demo needs the 'demo' extra (Pillow)")


def test_demo_routes_every_kind_of_input_to_a_fitting_model() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "fastroute", "demo", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    rows = {
        match["kind"].strip(): (match["model"], match["accuracy"])
        for match in re.finditer(
            r"^(?P<kind>[a-zA-Z0-9 ]+?)\s+\d+\s+\S+\s+(?P<model>\S+)\s+(?P<accuracy>[\d.]+|-)$",
            completed.stdout,
            re.MULTILINE,
        )
    }
    assert rows["digit array 8x8x1"][0] == rows["digit PNG bytes"][0] == "digits"
    assert rows["tone waveform"][0] == rows["tone WAV bytes"][0] == "pitch"
    assert rows["tumour measurements"][0] == "tumour"
    assert rows["dataset doc sentence"][0] == "docs"
    assert rows["gzip archive bytes"][0] == "NoRoute"
    # Routing decides the model; a wrong route would show as chance-level accuracy.
    assert float(rows["digit PNG bytes"][1]) > 0.9
    assert float(rows["tumour measurements"][1]) > 0.9
    assert "inputs/s" in completed.stdout
