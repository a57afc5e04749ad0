"""A `fastroute serve` process on 127.0.0.1 for the serving tests, and what they read from it."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
_LISTENING = re.compile(r"serving \d+ models on (http://127\.0\.0\.1:\d+)")
_START_TIMEOUT_S = 60.0


class ServerProcess:
    """`python -m fastroute serve CONFIG --port 0 ...` as a child process.

    Its output is collected by a thread (``output()``); ``stop()`` sends SIGTERM
    and returns the exit status.
    """

    def __init__(self, config: Path, *arguments: str) -> None:
        self.config = config
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fastroute", "serve", str(config), "--port", "0", "--app-dir", str(HERE), *arguments],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
        )
        self._lines: list[str] = []
        self._new_lines: queue.Queue[str] = queue.Queue()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()
        self.url = self._wait_listening()
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            self._new_lines.put(line)

    def _wait_listening(self) -> str:
        give_up = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < give_up:
            try:
                line = self._new_lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            found = _LISTENING.search(line)
            if found:
                return found.group(1)
        self.process.kill()
        self.process.wait()
        self._collector.join()
        self.process.stdout.close()
        raise RuntimeError(f"the server did not start:\n{self.output()}")

    def wait_for_output(self, pattern: str, timeout: float = 30.0) -> str:
        """The first output line (past or future) matching ``pattern``."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            for line in list(self._lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no output line matches {pattern!r}:\n{self.output()}")

    def output(self) -> str:
        return "".join(self._lines)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, parsed by prometheus_client's parser: (name, labels) -> value."""
        text = self.client.get("/metrics").text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def wait_for_metrics(self, done: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        """The metrics once ``done(metrics)`` holds (polled every 20 ms): a wait for what a test
        needs, not a guessed sleep."""
        give_up = time.monotonic() + timeout
        while not done(metrics := self.metrics()):
            if time.monotonic() > give_up:
                raise AssertionError(f"the server's metrics did not reach the expected state within {timeout}s")
            time.sleep(0.02)
        return metrics

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit; the exit status (``-SIGTERM`` after a clean drain:
        like uvicorn, the server re-raises the signal once it has stopped)."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not stop within {timeout}s of SIGTERM:\n{self.output()}") from None
        finally:
            self._collector.join(timeout)
            self.process.stdout.close()


CLEAN_EXIT = -signal.SIGTERM


def total(metrics: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in metrics.items() if sample == name and wanted <= set(sample_labels))
