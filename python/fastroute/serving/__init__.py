"""Serving: the router over HTTP (Open Inference Protocol v2), metrics, status page, decision logs.

The HTTP server needs the ``serve`` extra: ``pip install "fastroute[serve]"``;
the decision log (``fastroute.serving.decision_log``) needs nothing beyond fastroute
(Parquet: the ``parquet`` extra), so logs can be read and fitted without it.

>>> from fastroute.serving import Service, create_app
>>> app = create_app(Service(router))   # any ASGI server can run it
>>> fastroute.serving.serve("router.yaml", port=8000)   # or `fastroute serve router.yaml`
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["DEADLINE_HEADER", "ROUTER_MODEL", "DecisionLog", "Service", "ServingSettings", "create_app", "read_log", "serve"]

# Where each public name lives; imported on first use, so reading logs needs no web stack.
_HOMES = {
    "DEADLINE_HEADER": "app", "ROUTER_MODEL": "app", "Service": "app", "ServingSettings": "app", "create_app": "app",
    "DecisionLog": "decision_log", "read_log": "decision_log", "serve": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fastroute.serving' has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
