"""`fastroute serve` as a process on 127.0.0.1, called by real clients (httpx, tritonclient).

Open Inference Protocol endpoints, the router's own endpoint, protocol errors for bad
input, deadlines, back-pressure, and the exactly-once accounting of every request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
pytest.importorskip("httpx", reason="needs the 'serve' extra")
pytest.importorskip("prometheus_client", reason="needs the 'serve' extra")
pytest.importorskip("yaml", reason="needs the 'serve' extra (config files)")

import httpx  # noqa: E402
from _server import CLEAN_EXIT, ServerProcess, total  # noqa: E402
from helpers import settled_native_thread_count  # noqa: E402

CONFIG = """
models:
  sum:
    modality: tabular
    versions:
      "1": {model: "serving_models:total", warmup: [1.0, 2.0]}
      "2": {model: "serving_models:norms", batched: true}
    aliases: {stable: "1"}
  words:
    modality: text
    versions:
      "1": {model: "serving_models:words", warmup: "a b"}
  shape:
    modality: image
    versions:
      "1": {model: "serving_models:image_shape"}
  broken:
    modality: audio
    versions:
      "1": {model: "serving_models:failing"}
  slow:
    modality: audio
    versions:
      "1": {model: "serving_models:slow"}
  batch_size:
    modality: audio
    versions:
      "1": {model: "serving_models:batch_sizes", batched: true}
policy: {use: ByModality, args: {preferred: {audio: slow}}}
executor: {threads: 2, max_batch: 64, max_delay_us: 500}
"""


def tensor(data, datatype="FP32", shape=None, name="x", **parameters) -> dict:
    shape = list(np.shape(data)) if shape is None else shape
    entry = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if parameters:
        entry["parameters"] = parameters
    return {"inputs": [entry]}


def idle(metrics: dict) -> bool:
    """No request in a model's hands (queued, leased or running)."""
    return all(total(metrics, name) == 0 for name in (
        "fastroute_model_queued_requests", "fastroute_model_leased_requests", "fastroute_model_running_requests"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    config = tmp_path_factory.mktemp("serve") / "router.yaml"
    config.write_text(CONFIG)
    process = ServerProcess(config, "--max-body-bytes", "1000000", "--body-timeout", "1")
    yield process
    metrics = process.metrics()
    # Teardown invariants: nothing in flight, nothing queued, no lease held, clean exit.
    assert total(metrics, "fastroute_http_in_flight_requests") == 0
    assert total(metrics, "fastroute_model_queued_requests") == 0
    assert total(metrics, "fastroute_model_leased_requests") == 0
    assert total(metrics, "fastroute_model_running_requests") == 0
    assert process.stop() == CLEAN_EXIT, process.output()


# -- protocol endpoints ---------------------------------------------------------------------


def test_health_and_metadata(server: ServerProcess) -> None:
    client = server.client
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "fastroute"
    metadata = client.get("/v2/models/sum").json()
    assert metadata["name"] == "sum" and metadata["versions"] == ["1", "2"]
    assert metadata["inputs"][0]["name"] == "input"
    assert client.get("/v2/models/sum/versions/2").json()["versions"] == ["2"]
    assert client.get("/v2/models/sum/versions/2/ready").status_code == 200
    assert client.get("/v2/models/router/ready").status_code == 200
    missing = client.get("/v2/models/nope/ready")
    assert missing.status_code == 404 and "no model named 'nope'" in missing.json()["error"]
    assert client.get("/v2/models/sum/versions/9").status_code == 404


def test_router_infer_reports_its_decision(server: ServerProcess) -> None:
    response = server.client.post("/v2/models/router/infer", json=tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "router"
    assert body["outputs"][0] == {"name": "output", "datatype": "FP64", "shape": [1], "data": [10.0]}
    parameters = body["parameters"]
    assert (parameters["model"], parameters["version"]) == ("sum", "1")
    assert "tabular" in parameters["reason"] and "alias 'stable'" in parameters["reason"]
    assert isinstance(parameters["decision_id"], str) and parameters["propensity"] == 1.0

    request = {**tensor(["one two three"], "BYTES"), "id": "req-7"}
    text = server.client.post("/v2/models/router/infer", json=request)
    assert text.json()["outputs"][0]["data"] == [3]
    assert text.json()["id"] == "req-7" and text.json()["parameters"]["model"] == "words"

    image = np.zeros((16, 12, 3), dtype=np.uint8).tolist()
    shaped = server.client.post("/v2/models/router/infer", json=tensor(image, "UINT8"))
    assert shaped.json()["parameters"]["model"] == "shape"
    assert shaped.json()["outputs"][0]["data"] == [16, 12, 3]


def test_route_returns_the_decision_only(server: ServerProcess) -> None:
    decision = server.client.post("/route", json=tensor(["hello"], "BYTES")).json()
    assert (decision["model"], decision["version"], decision["modality"]) == ("words", "1", "text")
    assert "text" in decision["reason"]


def test_model_infer_by_version_and_alias(server: ServerProcess) -> None:
    x = tensor([3.0, 4.0])
    assert server.client.post("/v2/models/sum/infer", json=x).json()["outputs"][0]["data"] == [7.0]
    second = server.client.post("/v2/models/sum/versions/2/infer", json=x).json()
    assert (second["model_version"], second["outputs"][0]["data"]) == ("2", [5.0])
    alias = server.client.post("/v2/models/sum/versions/stable/infer", json=x).json()
    assert alias["model_version"] == "1"


def test_file_bytes_as_base64_and_binary(server: ServerProcess) -> None:
    import base64

    text_file = base64.b64encode(b"four words in here").decode()
    response = server.client.post("/v2/models/router/infer", json=tensor([text_file], "BYTES", content_type="base64"))
    assert response.json()["outputs"][0]["data"] == [4]
    # Triton's binary extension: JSON header, then raw bytes; the result comes back binary.
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 12}}],
                         "parameters": {"binary_data_output": True}}).encode()
    raw = np.array([1.0, 2.0, 3.0], dtype="<f4").tobytes()
    response = server.client.post("/v2/models/router/infer", content=header + raw,
                                  headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    head = json.loads(response.content[:length])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 8
    assert np.frombuffer(response.content[length:], dtype="<f8").tolist() == [6.0]


@pytest.fixture
def triton_http(server: ServerProcess):
    """tritonclient's HTTP module and a client of the server. Its transport, geventhttpclient,
    looks the host up on a native thread of gevent's hub threadpool, which would idle on for
    5 s (gevent's threadpool_idle_task_timeout) and end in the middle of a later test that
    counts native threads: at teardown the client is closed, the hub destroyed (its
    threadpool with it), and the thread must be gone."""
    http = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the 'serve-test' extra)")
    import gevent  # geventhttpclient's own dependency

    threads_before = settled_native_thread_count()
    client = http.InferenceServerClient(server.url.removeprefix("http://"))
    yield http, client
    client.close()
    gevent.get_hub().destroy()
    # gevent ends the thread at once; left alone it would go only after idling 5 s
    assert settled_native_thread_count(threads_before, timeout=1.0) == threads_before, "tritonclient left a native thread"


def test_tritonclient_speaks_to_the_server(triton_http) -> None:
    http, client = triton_http
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("words")
    assert client.get_server_metadata()["name"] == "fastroute"
    assert client.get_model_metadata("sum")["versions"] == ["1", "2"]
    numbers = http.InferInput("x", [4], "FP32")
    numbers.set_data_from_numpy(np.arange(4, dtype=np.float32))  # binary by default
    result = client.infer("router", [numbers])
    assert result.as_numpy("output").tolist() == [6.0]
    assert result.get_response()["parameters"]["model"] == "sum"
    text = http.InferInput("x", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"alpha beta"], dtype=object))
    assert client.infer("words", [text]).as_numpy("output").tolist() == [2]
    with pytest.raises(Exception, match="no model named 'nope'") as failure:
        client.infer("nope", [text])
    assert failure.value.status() == "404"


# -- batching across HTTP requests ---------------------------------------------------------


def test_concurrent_http_requests_are_batched_together(server: ServerProcess) -> None:
    # batch_sizes answers each row with the size of the batch it came in: a size above
    # one proves the executor merged separate HTTP requests into one model call.
    def call(i: int) -> int:
        body = tensor([float(i), 0.0, 1.0])
        return int(server.client.post("/v2/models/batch_size/infer", json=body).json()["outputs"][0]["data"][0])

    before = server.metrics()
    with ThreadPoolExecutor(16) as pool:
        sizes = list(pool.map(call, range(64)))
    assert max(sizes) > 1 and all(size >= 1 for size in sizes)
    batches = round(sum(1 / size for size in sizes))  # a batch of s answers s requests with s

    def delta(name: str, **labels: str) -> float:
        labels = {"model": "batch_size", "version": "1", **labels}
        return total(after, name, **labels) - total(before, name, **labels)

    # The dispatcher's histograms saw the same batches. A batch's execute time is recorded
    # just after its results went out, so the last one may show a moment after its answers.
    give_up = time.monotonic() + 30
    while True:
        after = server.metrics()
        if delta("fastroute_stage_duration_seconds_count", stage="execute") >= batches or time.monotonic() > give_up:
            break
        time.sleep(0.01)
    assert delta("fastroute_stage_duration_seconds_count", stage="queue_wait") == 64  # one per request
    assert delta("fastroute_model_batch_size_sum") == 64
    assert delta("fastroute_model_batch_size_count") == batches
    assert delta("fastroute_stage_duration_seconds_count", stage="execute") == batches
    assert delta("fastroute_stage_duration_seconds_count", stage="batch_wait") == batches
    for bound in ("1.0", "4.0", "16.0", "+Inf"):  # cumulative buckets count the batches of up to `bound`
        expected = sum(1 / size for size in sizes if bound == "+Inf" or size <= float(bound))
        assert delta("fastroute_model_batch_size_bucket", le=bound) == round(expected), bound
    assert delta("fastroute_stage_duration_seconds_sum", stage="execute") >= 0.01 * batches  # 10 ms a call


# -- bad input, deadlines, exactly-once accounting -------------------------------------------


BAD_REQUESTS = [
    (b'{"inputs": [{"name":', 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"inputs": []}).encode(), 400, "exactly one input"),
    (json.dumps(tensor([1.5], "INT32")).encode(), 400, "INT32 data must be integers"),
    (json.dumps(tensor([300], "UINT8")).encode(), 400, "out of range for UINT8"),
    (json.dumps(tensor([1.0, 2.0], shape=[3])).encode(), 400, "shape [3] needs 3"),
    (json.dumps(tensor([[1.0], [2.0, 3.0]], shape=[3])).encode(), 400, "ragged"),
    (json.dumps(tensor([1.0], "COMPLEX")).encode(), 400, "unknown datatype"),
    (json.dumps(tensor([1.0], shape=[-1])).encode(), 400, "non-negative integers"),
    (json.dumps(tensor([1.0], shape=[100000, 100000])).encode(), 413, "elements"),
    (json.dumps(tensor([1, 2], "BYTES")).encode(), 400, "JSON string"),
    (json.dumps(tensor(["a", "b"], "BYTES")).encode(), 400, "one text or file"),
    (json.dumps(tensor(["%%%"], "BYTES", content_type="base64")).encode(), 400, "not base64"),
]


def test_bad_requests_get_protocol_errors_and_every_request_is_counted_once(server: ServerProcess) -> None:
    before = server.metrics()
    for body, status, message in BAD_REQUESTS:
        response = server.client.post("/v2/models/router/infer", content=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"], (body, response.text)
    unknown = server.client.post("/v2/models/nope/infer", json=tensor([1.0]))
    assert unknown.status_code == 404
    failing = server.client.post("/v2/models/broken/infer", json=tensor([1.0]))
    assert failing.status_code == 500 and "this model always fails" in failing.json()["error"]
    wrong_result = server.client.post("/v2/models/sum/versions/2/infer", json=tensor("text", "BYTES", shape=[1]))
    assert wrong_result.status_code == 500  # a batched tabular model given text fails as a model error
    after = server.metrics()
    sent = len(BAD_REQUESTS) + 3
    responses = total(after, "fastroute_http_responses_total") - total(before, "fastroute_http_responses_total")
    errors = total(after, "fastroute_errors_total") - total(before, "fastroute_errors_total")
    assert responses == errors == sent
    assert total(after, "fastroute_errors_total", error="ModelError") - total(before, "fastroute_errors_total", error="ModelError") == 2


def test_body_size_limit(server: ServerProcess) -> None:
    huge = b'{"inputs": [' + b" " * 2_000_000 + b"]}"
    declared = server.client.post("/v2/models/router/infer", content=huge)
    assert declared.status_code == 413 and "exceeds the limit" in declared.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b" " * 100_000

    streamed = server.client.post("/v2/models/router/infer", content=chunks())
    assert streamed.status_code == 413
    assert server.client.get("/v2/health/live").status_code == 200


def test_deadlines_from_the_header_and_from_tritons_timeout(server: ServerProcess) -> None:
    late = server.client.post("/v2/models/slow/infer", json=tensor([0.5]), headers={"Fastroute-Deadline-Ms": "50"})
    assert late.status_code == 504 and "deadline" in late.json()["error"]
    body = tensor([0.5])
    body["parameters"] = {"timeout": 50_000}  # microseconds, as tritonclient sends it
    assert server.client.post("/v2/models/slow/infer", json=body).status_code == 504
    in_time = server.client.post("/v2/models/slow/infer", json=tensor([0.01]), headers={"Fastroute-Deadline-Ms": "5000"})
    assert in_time.status_code == 200
    bad = server.client.post("/v2/models/slow/infer", json=tensor([0.01]), headers={"Fastroute-Deadline-Ms": "soon"})
    assert bad.status_code == 400 and "milliseconds" in bad.json()["error"]
    server.wait_for_metrics(idle)  # the late requests' model calls finish; teardown checks nothing stays leased


def test_slow_clients_and_dropped_connections_leave_nothing_pending(server: ServerProcess) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    before = server.metrics()
    body = json.dumps(tensor([0.3])).encode()
    head = (f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()

    # A slow client: half the body, then silence; the server answers 408 after --body-timeout.
    with socket.create_connection((host, int(port))) as slow_client:
        slow_client.sendall(head + body[: len(body) // 2])
        slow_client.settimeout(10)
        assert b" 408 " in slow_client.recv(4096).split(b"\r\n", 1)[0] + b" "
    # A client that drops the connection mid-body, and one that drops while its model runs.
    with socket.create_connection((host, int(port))) as dropped:
        dropped.sendall(head + body[:10])
    with socket.create_connection((host, int(port))) as dropped:
        dropped.sendall(head + body)
        server.wait_for_metrics(lambda metrics: total(metrics, "fastroute_model_running_requests") == 1)  # its model runs

    def answered(metrics: dict) -> float:
        return total(metrics, "fastroute_http_responses_total") - total(before, "fastroute_http_responses_total")

    after = server.wait_for_metrics(lambda metrics: answered(metrics) >= 3 and idle(metrics))  # the abandoned call (0.3 s) too
    assert answered(after) == 3  # every request ended once: 408, client gone mid-body, served to a closed socket
    assert total(after, "fastroute_errors_total", error="ClientDisconnect") - total(before, "fastroute_errors_total", error="ClientDisconnect") == 1
    assert server.client.post("/v2/models/sum/infer", json=tensor([1.0])).status_code == 200


def test_metrics_parse_and_count_stages_and_decisions(server: ServerProcess) -> None:
    before = server.metrics()
    for _ in range(3):
        server.client.post("/v2/models/router/infer", json=tensor([1.0, 2.0]))
    after = server.metrics()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("fastroute_decisions_total", model="sum", version="1", rule="alias") == 3
    for stage in ("analyze", "decide", "total", "queue_wait"):  # per request
        assert delta("fastroute_stage_duration_seconds_count", stage=stage) == 3
        assert delta("fastroute_stage_duration_seconds_bucket", stage=stage, le="+Inf") == 3
    assert delta("fastroute_stage_duration_seconds_count", stage="queue_wait", model="sum", version="1") == 3
    assert delta("fastroute_model_batch_size_sum", model="sum", version="1") == 3
    assert delta("fastroute_http_responses_total", endpoint="router_infer", code="200") == 3
    assert ("fastroute_model_queued_requests", (("model", "sum"), ("version", "2"))) in after


# -- back-pressure ---------------------------------------------------------------------------

PRESSURE_CONFIG = """
models:
  slow:
    modality: tabular
    versions:
      "1": {model: "serving_models:slow"}
executor: {threads: 1, max_batch: 1, max_delay_us: 0, queue_capacity: 2}
"""


@pytest.mark.slow  # a server process of its own
def test_back_pressure_is_429_or_503_with_retry_after(tmp_path: Path) -> None:
    config = tmp_path / "pressure.yaml"
    config.write_text(PRESSURE_CONFIG)
    server = ServerProcess(config, "--max-in-flight", "6")
    try:
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(
                lambda _: httpx.post(f"{server.url}/v2/models/slow/infer", json=tensor([0.2]), timeout=30), range(10)
            ))
        codes = sorted(response.status_code for response in responses)
        refused = [response for response in responses if response.status_code in (429, 503)]
        assert 200 in codes and refused, codes
        assert set(codes) <= {200, 429, 503}
        for response in refused:
            assert response.headers["Retry-After"] == "1" and "error" in response.json()
        metrics = server.metrics()
        assert total(metrics, "fastroute_http_responses_total", endpoint="model_infer") == 10
    finally:
        assert server.stop() == CLEAN_EXIT, server.output()


# -- drain on SIGTERM ---------------------------------------------------------------------------


@pytest.mark.slow  # a server process of its own
def test_sigterm_finishes_requests_in_flight_then_exits(tmp_path: Path) -> None:
    import signal

    config = tmp_path / "drain.yaml"
    config.write_text(PRESSURE_CONFIG.replace("queue_capacity: 2", "queue_capacity: 64"))
    server = ServerProcess(config)
    results: list[int] = []

    def call() -> None:
        response = httpx.post(f"{server.url}/v2/models/slow/infer", json=tensor([0.3]), timeout=30)
        results.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while total(server.metrics(), "fastroute_http_in_flight_requests") < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert results == [200] * 4  # run one at a time: the last finished ~1.2 s after SIGTERM
    assert server.stop() == CLEAN_EXIT, server.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live")


# -- feedback ---------------------------------------------------------------------------------


def test_feedback_joins_an_outcome_to_a_decision(server: ServerProcess) -> None:
    before = server.metrics()
    served = server.client.post("/v2/models/router/infer", json=tensor([1.0, 1.0])).json()
    decision_id = served["parameters"]["decision_id"]
    joined = server.client.post("/feedback", json={"id": decision_id, "reward": 0.75, "quality": 1.0, "cost": 0.1})
    assert joined.json() == {"id": decision_id, "status": "joined"}
    assert server.client.post("/feedback", json={"id": decision_id, "reward": 1.0}).json()["status"] == "duplicate"
    assert server.client.post("/feedback", json={"id": "never-issued", "reward": 1.0}).json()["status"] == "foreign"
    open_id = server.client.post("/v2/models/router/infer", json=tensor([2.0])).json()["parameters"]["decision_id"]
    for body, message in [({"reward": 1.0}, "needs the decision's 'id'"),
                          ({"id": open_id, "reward": "good"}, "reward"),
                          ({"id": open_id, "mood": 1.0}, "unknown outcome fields"),
                          ({"id": open_id, "decision_id": "x"}, "unknown feedback field")]:
        refused = server.client.post("/feedback", json=body)
        assert refused.status_code == 400 and message in refused.json()["error"], refused.text
    nan = server.client.post("/feedback", content=b'{"id": "%s", "reward": NaN}' % open_id.encode())
    assert nan.status_code == 400
    after = server.metrics()
    assert total(after, "fastroute_feedback_total", status="joined") - total(before, "fastroute_feedback_total", status="joined") == 1
    assert total(after, "fastroute_feedback_reward_sum") - total(before, "fastroute_feedback_reward_sum") == 0.75
    assert total(after, "fastroute_feedback_quality_count") - total(before, "fastroute_feedback_quality_count") == 1
