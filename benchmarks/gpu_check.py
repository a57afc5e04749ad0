"""GPU check for CUDAExecutor: one command, a few minutes, on a machine with a CUDA GPU.

    python benchmarks/gpu_check.py [--seconds 10] [--max-batch 32] [--clients 64]

Builds a ResNet-style CNN in code (no downloads) and measures, on the GPU:

1. throughput and p99 latency (submit to result, ``--clients`` closed-loop
   client threads) of: fastroute's CUDAExecutor; a per-request loop (one
   model call per request, a lock around the GPU); a simple batch-and-call
   baseline (one thread gathers up to max_batch requests from a queue, copies
   from pageable memory and calls the model; no overlap);
2. the copy/compute overlap's gain: CUDAExecutor with two slots per replica
   (threads=2) vs one (threads=1), and the copy share of a batch's time;
3. exactly-once under load: every request submitted from many threads ends
   with exactly one result, equal to the model's output on that input.

Prints one table and a JSON line; exits non-zero if the exactly-once check fails.
Not run yet (no GPU was available when it was written).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fastroute import ModelSpec
from fastroute.executors.cuda import CUDAExecutor

IMAGE = (3, 128, 128)


def cnn(width: int = 64) -> nn.Module:
    """A ResNet-style stack: large enough that compute dominates, inputs large enough that copies count."""

    def block(channels_in: int, channels_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
        )

    return nn.Sequential(
        block(3, width, 2), block(width, width, 1), block(width, 2 * width, 2), block(2 * width, 2 * width, 1),
        block(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 10),
    ).eval()


def closed_loop(call: Callable[[np.ndarray], Any], seconds: float, clients: int) -> dict[str, float]:
    """``clients`` threads each calling ``call`` back to back for ``seconds``: throughput and latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    x = np.random.default_rng(0).standard_normal(IMAGE, dtype=np.float32)

    def client() -> None:
        mine = []
        while time.perf_counter() < stop:
            started = time.perf_counter()
            call(x)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests_per_s": len(latencies) / elapsed, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3)}


def per_request_loop(model: nn.Module) -> Callable[[np.ndarray], Any]:
    lock = threading.Lock()

    def call(x: np.ndarray) -> Any:
        with lock, torch.inference_mode():
            return model(torch.from_numpy(x[None]).cuda())[0].cpu().numpy()

    return call


class BatchAndCall:
    """The simple baseline: one thread, a queue, up to max_batch per call, pageable copies, no overlap."""

    def __init__(self, model: nn.Module, max_batch: int) -> None:
        self._model, self._max_batch = model, max_batch
        self._requests: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __call__(self, x: np.ndarray) -> Any:
        future: Future = Future()
        self._requests.put((x, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            batch = [self._requests.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            with torch.inference_mode():
                out = self._model(torch.from_numpy(np.stack([x for x, _ in batch])).cuda()).cpu().numpy()
            for (_, future), row in zip(batch, out):
                future.set_result(row)


def through_fastroute(model: nn.Module, max_batch: int, threads: int) -> tuple[CUDAExecutor, ModelSpec]:
    executor = CUDAExecutor(threads=threads, max_batch=max_batch, max_delay_us=500)
    spec = ModelSpec("cnn", "1", model, "image", batched=True, device="cuda:0")
    executor.start(spec)
    return executor, spec


def copy_share(model: nn.Module, max_batch: int) -> float:
    """Host-to-device copy time over compute time for one full batch."""
    host = torch.randn((max_batch, *IMAGE)).pin_memory()
    with torch.inference_mode():
        device_batch = host.cuda()
        model(device_batch)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(10):
            host.cuda(non_blocking=True)
        torch.cuda.synchronize()
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(10):
            model(device_batch)
        torch.cuda.synchronize()
    return copy_s / (time.perf_counter() - started)


def exactly_once(model: nn.Module, max_batch: int, requests: int, submitters: int) -> dict[str, Any]:
    executor = CUDAExecutor(threads=2, max_batch=max_batch, max_delay_us=500, queue_capacity=1 << 16)
    spec = ModelSpec("cnn", "1", model, "image", batched=True, device="cuda:0")
    inputs = np.random.default_rng(1).standard_normal((requests, *IMAGE), dtype=np.float32)
    futures: list[Future | None] = [None] * requests

    def submit(part: int) -> None:
        for i in range(part, requests, submitters):
            futures[i] = executor.submit(spec, inputs[i])

    threads = [threading.Thread(target=submit, args=(p,)) for p in range(submitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = np.stack([future.result(timeout=120) for future in futures])
    executor.close()
    with torch.inference_mode():
        expected = np.concatenate([model(torch.from_numpy(inputs[i:i + 64]).cuda()).cpu().numpy()
                                   for i in range(0, requests, 64)])
    worst = float(np.abs(results - expected).max())
    return {"requests": requests, "answered": len(results), "max_abs_diff": worst, "ok": worst < 1e-2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    model = cnn().cuda()
    rows: dict[str, dict[str, float]] = {}
    rows["per-request loop"] = closed_loop(per_request_loop(model), args.seconds, args.clients)
    baseline = BatchAndCall(model, args.max_batch)
    rows["batch-and-call (baseline)"] = closed_loop(baseline, args.seconds, args.clients)
    for threads, name in ((1, "fastroute, no overlap (1 slot)"), (2, "fastroute CUDAExecutor")):
        executor, spec = through_fastroute(model, args.max_batch, threads)
        rows[name] = closed_loop(lambda x: executor.submit(spec, x).result(), args.seconds, args.clients)
        health = executor.device_stats(spec)
        executor.close()
    base = rows["batch-and-call (baseline)"]["requests_per_s"]
    print(f"device: {torch.cuda.get_device_name(0)}; CNN on {IMAGE}, max_batch {args.max_batch}, "
          f"{args.clients} clients, {args.seconds}s each")
    print(f"{'row':34} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x baseline':>10}")
    for name, row in rows.items():
        print(f"{name:34} {row['requests_per_s']:10.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['requests_per_s'] / base:10.2f}")
    overlap_gain = rows["fastroute CUDAExecutor"]["requests_per_s"] / rows["fastroute, no overlap (1 slot)"]["requests_per_s"]
    share = copy_share(model, args.max_batch)
    once = exactly_once(model, args.max_batch, 4096, 16)
    print(f"overlap gain (2 slots vs 1): {overlap_gain:.2f}x; copy time / compute time per batch: {share:.2f}")
    print(f"exactly-once: {once}; device health at the end: {health}")
    print(json.dumps({"device": torch.cuda.get_device_name(0), "rows": rows, "overlap_gain": overlap_gain,
                      "copy_over_compute": share, "exactly_once": once}))
    return 0 if once["ok"] and once["answered"] == once["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
