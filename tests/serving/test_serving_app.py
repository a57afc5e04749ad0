"""The ASGI application in process (Starlette's test client): breakers and live state in /metrics
and on the status page's data."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra")
pytest.importorskip("httpx", reason="needs the 'serve' extra")
pytest.importorskip("prometheus_client", reason="needs the 'serve' extra")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import fastroute  # noqa: E402
from fastroute import BreakerSettings, ConfigError, Resilience  # noqa: E402
from fastroute.serving import Service, create_app  # noqa: E402

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}


def failing(x):
    raise RuntimeError("down")


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_breaker_state_and_live_model_state_reach_metrics_and_status() -> None:
    resilience = Resilience(breaker=BreakerSettings(failure_rate=0.5, min_calls=4, window_s=10.0, cooldown_s=60.0))
    router = fastroute.Router(resilience=resilience, executor=fastroute.CPUExecutor(threads=1))
    router.register("flaky", failing, modality="tabular")
    with TestClient(create_app(Service(router))) as client:
        codes = [client.post("/v2/models/router/infer", json=BODY).status_code for _ in range(8)]
        assert set(codes) <= {500, 503} and 500 in codes
        metrics = samples(client.get("/metrics").text)
        labels = (("model", "flaky"), ("state", "open"), ("version", "1"))
        assert metrics[("fastroute_breaker_state", labels)] == 1
        assert metrics[("fastroute_model_failed_requests_total", (("model", "flaky"), ("version", "1")))] >= 4
        breakers = [e for e in client.get("/status.json").json()["experiments"] if e["kind"] == "breaker"]
        assert breakers == [{"model": "flaky/1", "kind": "breaker", "state": "open",
                             "detail": breakers[0]["detail"]}] and "opened 1 times" in breakers[0]["detail"]
    with pytest.raises(fastroute.RouterClosed):
        router.route(np.ones(2))  # the app's shutdown closed the router


def test_a_model_named_like_the_router_endpoint_is_refused() -> None:
    with fastroute.Router() as router:
        router.register("router", lambda x: x, modality="tabular")
        with pytest.raises(ConfigError, match="the name under which the server serves the router"):
            Service(router)


def test_unknown_paths_and_methods_answer_protocol_error_bodies() -> None:
    with TestClient(create_app(Service(fastroute.Router()))) as client:
        missing = client.get("/v2/nothing/here")
        assert missing.status_code == 404 and missing.json() == {"error": "GET /v2/nothing/here: Not Found"}
        wrong = client.get("/v2/models/m/infer")
        assert wrong.status_code == 405 and "Method Not Allowed" in wrong.json()["error"]
        assert "POST" in wrong.headers["allow"]


def test_status_shows_each_versions_batch_sizes() -> None:
    """The batch sizes the dispatcher counts per version reach /status.json: a first batch of
    one holds the only worker while five more requests queue; max_batch 4 splits them 4 + 1."""
    started, release = threading.Event(), threading.Event()

    def gated_sums(rows):
        started.set()
        assert release.wait(30)
        return [float(np.sum(row)) for row in rows]

    router = fastroute.Router(executor=fastroute.CPUExecutor(threads=1, max_batch=4))
    router.register("sums", gated_sums, modality="tabular", batched=True)
    router.register("idle", lambda rows: rows, modality="text", batched=True)  # never runs: not listed
    with TestClient(create_app(Service(router))) as client:
        assert client.get("/status.json").json()["batch_sizes"] == []  # no batch has run yet
        first = router.submit(np.ones(2))
        assert started.wait(30)
        queued = [router.submit(np.ones(2)) for _ in range(5)]
        release.set()
        assert [handle.result(30) for handle in (first, *queued)] == [2.0] * 6
        sizes = client.get("/status.json").json()["batch_sizes"]
    assert [(s["model"], s["version"], s["count"], s["sum"]) for s in sizes] == [("sums", "1", 3, 6.0)]
    assert len(sizes[0]["buckets"]) == len(fastroute._core.BATCH_SIZE_BOUNDS) + 1
    assert [bucket for bucket in sizes[0]["buckets"] if bucket[1]] == [["1.0", 2], ["4.0", 1]]  # 1 and 1; 4
