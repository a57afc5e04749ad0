"""Serving: the router over HTTP (Open Inference Protocol v2), with Prometheus metrics.

Needs the ``serve`` extra: ``pip install "fastroute[serve]"``.

>>> from fastroute.serving import Service, create_app
>>> app = create_app(Service(router))   # any ASGI server can run it
>>> fastroute.serving.serve("router.yaml", port=8000)   # or `fastroute serve router.yaml`
"""

from __future__ import annotations

from .app import DEADLINE_HEADER, ROUTER_MODEL, Service, ServingSettings, create_app
from .decision_log import DecisionLog, read_log
from .server import serve

__all__ = ["DEADLINE_HEADER", "ROUTER_MODEL", "DecisionLog", "Service", "ServingSettings", "create_app", "read_log", "serve"]
