"""What the serving benchmark loads: the models, the bare Starlette app and the Ray Serve app.

Run as ``python serving_targets.py bare|ray MODEL PORT``: serves MODEL on
127.0.0.1:PORT at ``POST /infer`` (Open Inference Protocol JSON in and out) and
prints ``ready`` once listening. fastroute serves the same models from a config
file naming ``serving_targets:MODEL``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from typing import Any

import numpy as np


def noop(x: Any) -> float:
    return 0.0


def sleep_1ms(x: Any) -> float:
    """A model that takes 1 ms per call and releases the GIL meanwhile (like native inference)."""
    time.sleep(0.001)
    return 0.0


def batched_sleep_1ms(batch: Any) -> list[float]:
    """A batched model: 1 ms per call whatever the batch size (vectorised inference)."""
    time.sleep(0.001)
    return [0.0] * len(batch)


MODELS = {"noop": noop, "sleep_1ms": sleep_1ms}


def _answer(y: float) -> dict[str, Any]:
    return {"model_name": "m", "outputs": [{"name": "output", "datatype": "FP64", "shape": [1], "data": [y]}]}


def _input(body: dict[str, Any]) -> np.ndarray:
    tensor = body["inputs"][0]
    return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])


def bare_app(model: Any) -> Any:
    """What a user writes without a router: Starlette calling the model in its thread pool."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def infer(request: Request) -> JSONResponse:
        x = _input(await request.json())
        return JSONResponse(_answer(await run_in_threadpool(model, x)))

    return Starlette(routes=[Route("/infer", infer, methods=["POST"])])


def serve_bare(model: Any, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(bare_app(model), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=_announce_when_started, args=(server,), daemon=True).start()
    server.run()


def _announce_when_started(server: Any) -> None:
    while not server.started:
        time.sleep(0.01)
    print("ready", flush=True)


def serve_ray(model: Any, port: int) -> None:
    """The same model behind Ray Serve's HTTP proxy: one replica, the model in a thread."""
    import ray
    from ray import serve
    from starlette.requests import Request

    # Every Ray process on the loopback address: the benchmark stays on this machine.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")

    @serve.deployment(num_replicas=1, max_ongoing_requests=256)
    class Model:
        async def __call__(self, request: Request) -> dict[str, Any]:
            x = _input(await request.json())
            return _answer(await asyncio.get_running_loop().run_in_executor(None, model, x))

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Model.bind(), route_prefix="/infer")
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    ray.shutdown()  # stops the Serve controller, proxy and replica with the cluster


if __name__ == "__main__":
    kind, model_name, port_text = sys.argv[1:4]
    {"bare": serve_bare, "ray": serve_ray}[kind](MODELS[model_name], int(port_text))
