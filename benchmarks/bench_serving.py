"""`fastroute serve` over HTTP against what a user would otherwise run, with `hey` on localhost.

Each target serves the same model on 127.0.0.1 and answers Open Inference
Protocol JSON; `hey` posts a 16-float FP32 tensor at a fixed concurrency for a
fixed time. Rows: a bare Starlette app on uvicorn calling the model in its
thread pool (the baseline: what fastroute adds to it is the cost of routing,
queueing and batching), `fastroute serve` through the model endpoint and
through the router endpoint (analyse + decide + run), and Ray Serve (one
replica, same model). Figures: requests/s, p50 and p99 latency, and the p50
each adds over the bare app.

A micro-batching group serves a batched model that takes 1 ms per call
whatever the batch size, with `max_batch` 1 and 64, at 32 concurrent clients.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
pytest.importorskip("yaml", reason="needs the 'serve' extra")

HERE = Path(__file__).parent
HEY = shutil.which("hey")
pytestmark = pytest.mark.skipif(HEY is None, reason="needs the hey load generator (Debian package hey)")
CONCURRENCY = 8
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [16], "data": [0.5] * 16}]}
_START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _process(command: list[str], ready: str) -> Iterator[str]:
    """Start ``command``, wait for an output line containing ``ready``; yield that line; SIGTERM at exit."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    try:
        give_up = time.monotonic() + _START_TIMEOUT_S
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if ready in line:
                yield line
                break
            if time.monotonic() > give_up:
                break
        else:
            raise RuntimeError(f"{command[:4]} did not start:\n{''.join(seen)}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def fastroute_server(tmp_path: Path, model: str, *, batched: bool = False, max_batch: int = 32) -> Iterator[str]:
    replicas = 1 if batched or model == "noop" else CONCURRENCY  # a 1 ms model gets a replica per client
    config = tmp_path / f"{model}-{max_batch}.yaml"
    config.write_text(
        f"models:\n  m:\n    modality: tabular\n    versions:\n"
        f'      "1": {{model: "serving_targets:{model}", batched: {str(batched).lower()}, replicas: {replicas}}}\n'
        f"executor: {{threads: {max(2, replicas)}, max_batch: {max_batch}, max_delay_us: 200}}\n"
    )
    command = [sys.executable, "-m", "fastroute", "serve", str(config), "--port", "0", "--app-dir", str(HERE),
               "--log-level", "warning"]
    with _process(command, " models on http://") as line:
        yield re.search(r"http://127\.0\.0\.1:\d+", line).group(0)


@contextmanager
def other_server(kind: str, model: str) -> Iterator[str]:
    port = _free_port()
    with _process([sys.executable, str(HERE / "serving_targets.py"), kind, model, str(port)], "ready"):
        yield f"http://127.0.0.1:{port}"


def hey(url: str, seconds: float, concurrency: int, body: Path) -> dict[str, float]:
    """Requests/s, p50/p99 (ms) and non-200 answers of a timed `hey` run."""
    command = [HEY, "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json",
               "-D", str(body), url]
    subprocess.run([HEY, "-n", "200", "-c", str(concurrency), "-m", "POST", "-T", "application/json", "-D", str(body),
                    url], capture_output=True, check=True, timeout=120)  # warm-up
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", output).group(1)) * 1e3
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", output).group(1)) * 1e3
    answers = {int(code): int(count) for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_200": sum(n for code, n in answers.items() if code != 200)}


def _ray_unavailable() -> str | None:
    """None when Ray Serve can run here, else why not."""
    found = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.serve") is not None
    return None if found else "ray[serve] is not installed (the 'bench' extra)"  # it runs in its own process


@pytest.mark.parametrize("model", ["noop", "sleep_1ms"])
def test_serving_overhead_against_bare_starlette_and_ray_serve(
    benchmark: Any, record: Any, quick: bool, model: str, tmp_path: Path
) -> None:
    seconds, rounds = (1, 1) if quick else (4, 3)
    body = tmp_path / "body.json"
    body.write_text(json.dumps(BODY))
    runs: dict[str, list[dict[str, float]]] = {}
    why_not = "skipped in --quick (Ray takes tens of seconds to start)" if quick else _ray_unavailable()

    def run() -> None:
        # Every target runs at once and the rounds interleave them, so the machine's
        # background load falls on all of them alike.
        with ExitStack() as servers:
            bare = servers.enter_context(other_server("bare", model))
            ours = servers.enter_context(fastroute_server(tmp_path, model))
            urls = {
                "bare Starlette + uvicorn (baseline)": f"{bare}/infer",
                "fastroute serve, model endpoint": f"{ours}/v2/models/m/infer",
                "fastroute serve, router endpoint": f"{ours}/v2/models/router/infer",
            }
            if why_not is None:
                urls["Ray Serve"] = f"{servers.enter_context(other_server('ray', model))}/infer"
            for _ in range(rounds):
                for row, url in urls.items():
                    runs.setdefault(row, []).append(hey(url, seconds, CONCURRENCY, body))

    benchmark.pedantic(run, rounds=1, iterations=1)
    group = f"serving: {model} model, {CONCURRENCY} concurrent clients, hey"
    results = {row: _median_run(measured) for row, measured in runs.items()}
    bare_p50 = results["bare Starlette + uvicorn (baseline)"]["p50_ms"]
    ray_added = results["Ray Serve"]["p50_ms"] - bare_p50 if "Ray Serve" in results else None
    for row, figures in results.items():
        added = figures["p50_ms"] - bare_p50
        extra = {"added_p50_ms": added, "added_p50_share": added / bare_p50}
        if ray_added is not None and row.startswith("fastroute"):
            # hey reports 0.1 ms steps: ours may add nothing it can see, and then no ratio exists
            extra["ray_added_over_ours"] = ray_added / added if added > 0 else "ours adds none measurable"
        record(group, row, **figures, **extra)
    if why_not is not None:
        record(group, "Ray Serve", skipped=why_not)
    assert all(run["non_200"] == 0 for measured in runs.values() for run in measured)


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def test_micro_batching_across_http_requests(benchmark: Any, record: Any, quick: bool, tmp_path: Path) -> None:
    seconds, clients = (1 if quick else 5), 32
    body = tmp_path / "body.json"
    body.write_text(json.dumps(BODY))
    results: dict[str, dict[str, float]] = {}

    def run() -> None:
        for max_batch in (1, 64):
            with fastroute_server(tmp_path, "batched_sleep_1ms", batched=True, max_batch=max_batch) as url:
                results[f"max_batch={max_batch}"] = hey(f"{url}/v2/models/m/infer", seconds, clients, body)

    benchmark.pedantic(run, rounds=1, iterations=1)
    group = f"serving: micro-batching a 1 ms/call batched model, {clients} clients"
    base = results["max_batch=1"]["rps"]
    for row, figures in results.items():
        record(group, row, **figures, throughput_vs_unbatched=figures["rps"] / base)
    assert all(figures["non_200"] == 0 for figures in results.values())
