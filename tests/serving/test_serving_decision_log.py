"""The decision log: bounded, non-blocking, rotated by size; JSON lines or Parquet; read back joined."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fastroute import FEATURE_NAMES
from fastroute.errors import ConfigError, InvalidInput
from fastroute.serving.decision_log import DecisionLog, read_log, rotated_path
from helpers import settled_native_thread_count


def decision(i: int) -> dict:
    features = np.full(len(FEATURE_NAMES), np.nan, dtype=np.float32)
    features[0] = i
    return {"kind": "decision", "id": f"d{i}", "time": 1.0 * i, "model": "m", "version": "1", "modality": "tabular",
            "reason": "r", "score": None, "propensity": 1.0, "candidates": ["m", "n"], "features": features,
            "latency_s": 0.001, "outcome": "ok"}


def test_records_are_written_and_read_back_with_feedback_joined(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    for i in range(5):
        assert log.record(decision(i))
    log.record({"kind": "feedback", "id": "d3", "time": 9.0, "reward": 0.5, "quality": 1.0})
    log.record({"kind": "feedback", "id": "elsewhere", "time": 9.0, "reward": 1.0})
    log.close()
    assert (log.written, log.dropped) == (7, 0)
    first = json.loads((tmp_path / "decisions.jsonl").read_text().splitlines()[0])
    assert first["features"][0] == 0 and first["features"][1] is None  # NaN is null
    read = read_log([tmp_path / "decisions.jsonl"])
    assert [d["id"] for d in read.decisions] == ["d0", "d1", "d2", "d3", "d4"]
    assert read.decisions[3]["feedback"]["reward"] == 0.5 and read.decisions[0]["feedback"] is None
    assert read.feedback_unmatched == 1


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl", capacity=1)
    results = [log.record(decision(i)) for i in range(2000)]
    log.close()
    assert not all(results)
    assert log.dropped == results.count(False) and log.written == results.count(True)
    assert len((tmp_path / "decisions.jsonl").read_text().splitlines()) == log.written


def test_files_rotate_by_size_keeping_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, max_bytes=20_000, backups=2)  # checked after each write of up to 256 records
    for i in range(2000):
        log.record(decision(i))
    log.close()
    kept = [path, rotated_path(path, 1), rotated_path(path, 2)]
    assert all(p.exists() for p in kept) and not rotated_path(path, 3).exists()
    ids = [d["id"] for d in read_log([kept[2], kept[1], kept[0]]).decisions]
    assert ids[-1] == "d1999" and ids == sorted(ids, key=lambda s: int(s[1:]))  # the newest, in order


@pytest.fixture
def parquet() -> Iterator[None]:
    """pyarrow, imported before counting (its import starts jemalloc's background thread once
    per process); at teardown, writing and reading a log must have left no native thread:
    pyarrow's process-wide CPU and I/O pools would keep theirs for the rest of the process."""
    pytest.importorskip("pyarrow", reason="Parquet decision logs need pyarrow")
    threads_before = settled_native_thread_count()
    yield
    assert settled_native_thread_count(threads_before, timeout=1.0) == threads_before, "pyarrow left native threads"


def test_parquet(tmp_path: Path, parquet: None) -> None:
    path = tmp_path / "decisions.parquet"
    log = DecisionLog(path)
    for i in range(3):
        log.record(decision(i))
    log.record({"kind": "feedback", "id": "d1", "time": 9.0, "reward": 1.0, "quality": 0.25})
    log.close()
    read = read_log([path])
    assert [d["id"] for d in read.decisions] == ["d0", "d1", "d2"]
    assert read.decisions[1]["feedback"]["quality"] == 0.25
    assert read.decisions[2]["features"][0] == 2 and read.decisions[2]["features"][1] is None
    DecisionLog(path).close()  # an existing Parquet file is rotated, not overwritten
    assert [d["id"] for d in read_log([rotated_path(path, 1)]).decisions] == ["d0", "d1", "d2"]


def test_bad_settings_and_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="capacity must be an int >= 1"):
        DecisionLog(tmp_path / "x.jsonl", capacity=0)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"kind": "decision", "id": "a"}\nnot json\n')
    with pytest.raises(InvalidInput, match="broken.jsonl:2: not a JSON record"):
        read_log([broken])


def test_the_server_logs_every_routed_request_and_flushes_on_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason="needs the 'serve' extra")
    pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
    pytest.importorskip("yaml", reason="needs the 'serve' extra (config files)")
    from _server import CLEAN_EXIT, ServerProcess

    config = tmp_path / "router.yaml"
    config.write_text("""
models:
  sum: {modality: tabular, versions: {"1": {model: "serving_models:total"}}}
  words: {modality: text, versions: {"1": {model: "serving_models:failing"}}}
""")
    path = tmp_path / "decisions.jsonl"
    server = ServerProcess(config, "--decision-log", str(path))
    ids = []
    try:
        for data, datatype in (([1.0, 2.0], "FP32"), ([3.0], "FP32"), (["text"], "BYTES")):
            body = {"inputs": [{"name": "x", "datatype": datatype, "shape": [len(data)], "data": data}]}
            response = server.client.post("/v2/models/router/infer", json=body)
            if response.status_code == 200:
                ids.append(response.json()["parameters"]["decision_id"])
        records = server.metrics()
        assert records[("fastroute_decision_log_records_total", (("fate", "dropped"),))] == 0
    finally:
        assert server.stop() == CLEAN_EXIT, server.output()
    logged = read_log([path]).decisions
    assert [d["id"] for d in logged[:2]] == ids
    assert [(d["model"], d["outcome"]) for d in logged] == [("sum", "ok"), ("sum", "ok"), ("words", "ModelError")]
    features = dict(zip(FEATURE_NAMES, logged[0]["features"]))
    assert features["length"] == 2 and logged[0]["candidates"] == ["sum"]


def test_user_features_given_over_http_route_and_are_logged_with_their_names(tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason="needs the 'serve' extra")
    pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
    pytest.importorskip("yaml", reason="needs the 'serve' extra (config files)")
    from _server import CLEAN_EXIT, ServerProcess, total

    names = [*FEATURE_NAMES, "tier"]
    config = tmp_path / "router.yaml"
    config.write_text(f"""
models:
  big: {{modality: tabular, versions: {{"1": {{model: "serving_models:total"}}}}}}
  small: {{modality: tabular, versions: {{"1": {{model: "serving_models:noop"}}}}}}
policy:
  use: Rules
  args:
    rules: [{{when: "tier >= 1", model: big}}]
    default: small
    feature_names: {json.dumps(names)}
""")
    path = tmp_path / "decisions.jsonl"
    server = ServerProcess(config, "--decision-log", str(path))
    try:
        chosen = []
        for tier in (2, 0, None):
            parameters = {} if tier is None else {"parameters": {"features": {"tier": tier}}}
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1.0, 2.0, 3.0]}], **parameters}
            response = server.client.post("/v2/models/router/infer", json=body)
            assert response.status_code == 200, response.text
            chosen.append(response.json()["parameters"]["model"])
        assert chosen == ["big", "small", "small"]  # no tier given: missing, the rule fails
        bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
               "parameters": {"features": {"nope": 1}}}
        assert "unknown user feature 'nope'" in server.client.post("/v2/models/router/infer", json=bad).json()["error"]
        metrics = server.metrics()
        for stage in ("analyze", "decide"):  # timed by the router for each decision, the refused one included
            assert total(metrics, "fastroute_stage_duration_seconds_count", stage=stage) >= 3
    finally:
        assert server.stop() == CLEAN_EXIT, server.output()
    logged = read_log([path]).decisions
    assert [d["model"] for d in logged] == chosen
    for record, tier in zip(logged, (2, 0, None)):
        assert record["feature_names"] == names  # the policy's full row, named
        assert len(record["features"]) == len(names) and record["features"][-1] == tier  # NaN -> null
        assert dict(zip(names, record["features"]))["length"] == 3
