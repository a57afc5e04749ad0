"""``fastroute serve``: build the router from a config file and serve it on uvicorn.

SIGTERM (and Ctrl-C) drains: the server stops accepting connections, answers
``/v2/health/ready`` with 503, finishes every request in flight, then closes
the router (which finishes every queued request) and, as uvicorn does,
re-raises the signal (exit status 128 + 15 for SIGTERM). SIGHUP reloads
the config file into the running router (``Router.reload``: no request is
lost; an invalid file is logged and changes nothing).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from ..errors import FastrouteError
from ..router import Router
from .app import Service, ServingSettings, create_app
from .decision_log import DecisionLog

__all__ = ["serve"]

_log = logging.getLogger("fastroute.serving")


def serve(
    config_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServingSettings | None = None,
    drain_timeout_s: float = 30.0,
    log_level: str = "info",
    decision_log: DecisionLog | None = None,
) -> None:
    """Serve the router built from ``config_path`` until SIGTERM/SIGINT; blocks.

    Raises ConfigError (before listening) when the file is invalid.
    """
    config_path = Path(config_path)
    try:
        router = Router.from_config(config_path)
    except BaseException:
        if decision_log is not None:
            decision_log.close()
        raise
    try:
        service = Service(router, settings, config_path=config_path, decision_log=decision_log)
    except BaseException:
        router.close()
        if decision_log is not None:
            decision_log.close()
        raise
    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=drain_timeout_s,
        lifespan="on",
    )
    _Server(config, service).run()


class _Server(uvicorn.Server):
    """uvicorn's server, telling the service when draining starts and reloading on SIGHUP."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._reloads: set[asyncio.Task] = set()  # held until done (the loop keeps only weak references)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit:  # could not bind: uvicorn logged why
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload_in_background)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        models = len(self.service.router.models)
        print(f"fastroute: serving {models} models on http://{host}:{port} (SIGTERM drains, SIGHUP reloads)", flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.draining = True
        super().handle_exit(sig, frame)

    def _reload_in_background(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self) -> None:
        try:
            await self.service.reload()
        except FastrouteError as error:
            print(f"fastroute: reload refused, still serving the previous config: {error}", file=sys.stderr, flush=True)
        else:
            print(f"fastroute: reloaded {self.service.config_path}", flush=True)
