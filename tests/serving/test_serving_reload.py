"""Reloading a serving router's config (SIGHUP, or the admin endpoint) loses no request."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
pytest.importorskip("yaml", reason="needs the 'serve' extra (config files)")

import httpx  # noqa: E402

pytestmark = pytest.mark.slow  # each test runs server processes of its own
from _server import CLEAN_EXIT, ServerProcess  # noqa: E402

BEFORE = """
models:
  m:
    modality: tabular
    versions:
      "1": {model: "serving_models:total", warmup: [1.0]}
executor: {threads: 2, max_batch: 8, max_delay_us: 200}
"""
AFTER = """
models:
  m:
    modality: tabular
    versions:
      "1": {model: "serving_models:total", warmup: [1.0]}
      "2": {model: "serving_models:norms", batched: true, warmup: [3.0, 4.0]}
    aliases: {stable: "2"}
executor: {threads: 2, max_batch: 8, max_delay_us: 200}
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [3.0, 4.0]}]}


class Traffic:
    """A client sending requests back to back until stopped; records every answer."""

    def __init__(self, url: str) -> None:
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,))
        self._thread.start()

    def _run(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self._stop.is_set():
                response = client.post("/v2/models/router/infer", json=BODY)
                version = response.json().get("parameters", {}).get("version") if response.status_code == 200 else None
                self.answers.append((response.status_code, version))

    def wait_for(self, count: int) -> None:
        """Block until ``count`` answers have come back."""
        while len(self.answers) < count and self._thread.is_alive():
            time.sleep(0.01)

    def stop(self) -> list[tuple[int, str | None]]:
        self._stop.set()
        self._thread.join(30)
        return self.answers


def test_sighup_reloads_without_losing_a_request(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text(BEFORE)
    server = ServerProcess(config)
    try:
        traffic = Traffic(server.url)
        traffic.wait_for(20)
        config.write_text(AFTER)
        server.signal(signal.SIGHUP)
        server.wait_for_output("reloaded")
        traffic.wait_for(len(traffic.answers) + 20)
        answers = traffic.stop()
        assert {status for status, _ in answers} == {200}
        versions = [version for _, version in answers]
        assert versions[0] == "1" and versions[-1] == "2"
        assert versions == sorted(versions)  # the switch happens once, in one step

        config.write_text("models: {m: {modality: nonsense}}")  # an invalid file changes nothing
        server.signal(signal.SIGHUP)
        server.wait_for_output("reload refused")
        assert server.client.post("/v2/models/router/infer", json=BODY).json()["parameters"]["version"] == "2"
    finally:
        assert server.stop() == CLEAN_EXIT, server.output()


def test_admin_reload_is_off_by_default_and_reports_errors_when_on(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text(BEFORE)
    closed = ServerProcess(config)
    try:
        assert closed.client.post("/admin/reload").status_code == 404
    finally:
        assert closed.stop() == CLEAN_EXIT
    server = ServerProcess(config, "--admin")
    try:
        traffic = Traffic(server.url)
        traffic.wait_for(20)
        config.write_text(AFTER)
        assert server.client.post("/admin/reload").json() == {"reloaded": True}
        traffic.wait_for(len(traffic.answers) + 20)
        config.write_text(AFTER.replace("serving_models:norms", "serving_models:missing"))
        refused = server.client.post("/admin/reload")
        assert refused.status_code == 400 and "serving_models:missing" in refused.json()["error"]
        answers = traffic.stop()
        assert {status for status, _ in answers} == {200} and answers[-1][1] == "2"
        metrics = server.metrics()
        assert metrics[("fastroute_config_reloads_total", (("outcome", "ok"),))] == 1
        assert metrics[("fastroute_config_reloads_total", (("outcome", "failed"),))] == 1
    finally:
        assert server.stop() == CLEAN_EXIT, server.output()
