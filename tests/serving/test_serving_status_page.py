"""The status page at `/`, rendered by a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
pytest.importorskip("yaml", reason="needs the 'serve' extra (config files)")

from _server import CLEAN_EXIT, ServerProcess  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CONFIG = """
models:
  sum:
    modality: tabular
    versions:
      "1": {model: "serving_models:total"}
      "2": {model: "serving_models:total"}
    canary: {stable: "1", candidate: "2", steps: [0.25, 0.5], min_samples: 1000, seed: 3}
  words:
    modality: text
    versions:
      "1": {model: "serving_models:words"}
"""


def chromium(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=5000", *arguments],
        capture_output=True, text=True, timeout=180,
    )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_status_page_shows_models_shares_histograms_experiments_and_decisions(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG)
    server = ServerProcess(config)
    try:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}
        text = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["one two"]}]}
        for _ in range(30):
            assert server.client.post("/v2/models/router/infer", json=body).status_code == 200
        for _ in range(10):
            assert server.client.post("/v2/models/router/infer", json=text).status_code == 200
        status = server.client.get("/status.json").json()
        shares = {(m["name"], m["version"]): m["share"] for m in status["models"]}

        dom = chromium("--dump-dom", f"{server.url}/").stdout
        rows = dict(re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td>\w+</td>", dom))
        assert rows.keys() >= {"sum", "words"}
        for (name, version), share in shares.items():
            assert re.search(rf"<tr><td>{name}</td><td>{version}</td>.*?{share * 100:.1f}%", dom), (name, version)
        assert shares[("words", "1")] == 0.25
        assert dom.count('class="plot" data-stage=') == 6 and dom.count("<rect") >= 6 * 23  # a bar per bucket per stage
        assert {(b["model"], b["version"]) for b in status["batch_sizes"]} == set(shares)  # every version ran batches
        for batches in status["batch_sizes"]:  # one plot per version: its title, a bar per bucket, counts in the tips
            name, version, count = batches["model"], batches["version"], batches["count"]
            plot = re.search(rf'data-model="{name}" data-version="{version}"><div>([^<]*)</div>(.*?)</svg>', dom)
            assert plot, (name, version)
            assert plot.group(1) == f"{name} {version}: {count} batches, mean {batches['sum'] / count:.1f} requests"
            assert plot.group(2).count("<rect") == len(batches["buckets"])
            for bound, n in batches["buckets"]:
                label = "\u221e" if bound == "+Inf" else str(int(float(bound)))
                assert f"<title>\u2264 {label}: {n}</title>" in plot.group(2), (name, version, bound)
        assert "canary" in dom and 'class="state-running"' in dom and "candidate share 0.25" in dom
        assert dom.count("registered for modality") >= 40  # recent decisions with their reasons
        header = re.search(r'id="server">([^<]*)<', dom).group(1)
        assert header.startswith("version ") and "2 models" in header and "ready" in header

        screenshot = tmp_path / "status-page.png"
        chromium(f"--screenshot={screenshot}", "--window-size=1100,1000", f"{server.url}/")
        record_property("screenshot", str(screenshot))
        print(f"status page screenshot: {screenshot}")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    finally:
        assert server.stop() == CLEAN_EXIT, server.output()
