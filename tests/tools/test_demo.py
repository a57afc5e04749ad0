"""The main job: `fastroute demo` trains, routes a mixed stream and reports.

Run in process through the command line's ``main`` (argument parsing included): a
subprocess would add only a second interpreter and scikit-learn import, and
``python -m fastroute`` itself is tested in tests/serving/test_serving_cli.py."""

from __future__ import annotations

import re

import pytest

from fastroute.cli import main

pytest.importorskip("sklearn", reason="the demo needs the 'demo' extra (scikit-learn)")
pytest.importorskip("PIL", reason="the demo needs the 'demo' extra (Pillow)")


KIND_MODALITY = {
    "digit array 8x8x1": "image",
    "digit array 8x8x1, noisy": "image",
    "digit PNG bytes": "image",
    "tone waveform": "audio",
    "tone WAV bytes": "audio",
    "tumour measurements": "tabular",
    "dataset doc sentence": "text",
}


def test_demo_makes_the_case_for_a_router(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    rows = [
        match.groupdict()
        for match in re.finditer(
            r"^(?P<kind>[a-zA-Z0-9 ,]+?)\s+(?P<count>\d+)\s+(?P<modality>\S+)\s+(?P<model>\S+)\s+(?P<accuracy>[\d.]+|-)$",
            out,
            re.MULTILINE,
        )
    ]
    # Two models per modality, and every input kind served only by models of its own modality.
    assert len(re.findall(r"\(cost \d+\)", out)) == 8
    routed = [row for row in rows if row["model"] != "NoRoute"]
    assert {row["kind"] for row in routed} == set(KIND_MODALITY)
    assert all(row["modality"] == KIND_MODALITY[row["kind"]] for row in routed), rows
    assert [row["kind"] for row in rows if row["model"] == "NoRoute"] == ["gzip archive bytes"]
    # The learned tree sends noisy scans to the strong model, and explains why.
    noisy = {row["model"]: int(row["count"]) for row in routed if row["kind"] == "digit array 8x8x1, noisy"}
    assert noisy.get("digits-full", 0) > noisy.get("digits-thumb", 0)
    assert re.search(r"why, for a noisy scan: tree leaf \d+ -> digits-full; path: \w+=", out)
    # Against always-cheap and always-strong routing on the same inputs.
    figures = {m["policy"]: (float(m["accuracy"]), float(m["cost"])) for m in re.finditer(
        r"^(?P<policy>learned tree|always cheapest|always strongest)\s+(?P<accuracy>[\d.]+)\s+(?P<cost>[\d.]+)$",
        out, re.MULTILINE)}
    assert figures["learned tree"][0] > figures["always cheapest"][0]
    assert figures["learned tree"][1] < figures["always strongest"][1]
    assert "chance 0.17" in out  # what the docs accuracy is measured against
    assert re.search(r"batching: infer_batch ran \d+ inputs .* infer one by one took \d+ ms: [\d.]+x", out)
