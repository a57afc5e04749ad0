"""The ASGI application: Open Inference Protocol v2 over a Router, plus /route and /metrics.

Endpoints (``{version}`` parts are optional):

- ``GET /v2/health/live``, ``GET /v2/health/ready`` (200 once serving, 503 while draining)
- ``GET /v2`` (server metadata), ``GET /v2/models/{name}[/versions/{version}]`` (model
  metadata) and ``.../ready``
- ``POST /v2/models/{name}[/versions/{version}]/infer``: run that model (an alias works as
  a version); ``POST /v2/models/router/infer``: the router chooses the model, and the
  response's ``parameters`` carry ``model``, ``version``, ``reason`` and ``decision_id``;
  the request parameter ``features`` (``{"tier": 2}``) gives user feature values by name
- ``POST /route``: the decision only, for the same request body
- ``POST /feedback``: ``{"id": decision_id, "reward": ..., "quality": ..., "cost": ...,
  "latency": ...}`` joins an outcome to a decision (``Router.feedback``); answers
  ``{"status": "joined" | "unknown" | "foreign" | "expired" | "duplicate"}``
- ``GET /metrics``: Prometheus text; ``POST /admin/reload`` when enabled
- ``GET /``: the status page (models and traffic shares, latency histograms, batch
  sizes per model version, experiments, recent decisions), drawn from ``GET /status.json``

Every request runs through the router's executor on the asyncio path, so concurrent
HTTP requests for one model are micro-batched together. Errors are the protocol's
``{"error": message}`` bodies: 400 bad request, 404 unknown model or version, 408
body not received in time, 413 body or tensor too large, 429 model queue full and
503 server full or draining (both with ``Retry-After``), 500 model failure, 504
deadline passed (``Fastroute-Deadline-Ms`` header, or Triton's ``timeout``
parameter in microseconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..analyzer.user_features import FeatureRow
from ..errors import (
    ConfigError,
    DeadlineExceeded,
    FastrouteError,
    InvalidInput,
    ModelError,
    NoRoute,
    Overloaded,
    RouterClosed,
)
from .decision_log import DecisionLog
from .metrics import ServingMetrics, decision_log_families, router_families, stage_families
from .status import RecentDecisions, status_page, status_snapshot
from .protocol import HEADER_LENGTH, InferRequest, ProtocolError, encode_infer_response, parse_infer_request

if TYPE_CHECKING:
    from ..library.leases import Lease
    from ..library.spec import ModelSpec
    from ..router import Decision, Router

__all__ = ["ROUTER_MODEL", "DEADLINE_HEADER", "ServingSettings", "Service", "create_app"]

_log = logging.getLogger("fastroute.serving")

#: The model name under which the router itself is served (it chooses the model).
ROUTER_MODEL = "router"
#: Request header giving the request's deadline in milliseconds from its arrival.
DEADLINE_HEADER = "fastroute-deadline-ms"
# A time limit on the running task (Python 3.11+; see _within).
_TIME_LIMIT = getattr(asyncio, "timeout", None)
# A nominal input datatype per modality for model metadata (any datatype is accepted).
_MODALITY_DATATYPE = {"tabular": "FP32", "image": "UINT8", "audio": "FP32"}


@dataclass(frozen=True)
class ServingSettings:
    """Limits and switches of one server, validated once.

    - ``max_body_bytes``: largest request body (413 beyond).
    - ``max_elements``: largest input tensor, in elements (413 beyond).
    - ``max_in_flight``: most requests served at once (503 with Retry-After beyond).
    - ``body_timeout_s``: longest wait for a request body (408 beyond: slow clients).
    - ``retry_after_s``: what 429/503 responses ask clients to wait.
    - ``admin``: enable ``POST /admin/reload`` (off by default: it runs the config's code).
    """

    max_body_bytes: int = 64 << 20
    max_elements: int = 1 << 24
    max_in_flight: int = 4096
    body_timeout_s: float = 30.0
    retry_after_s: int = 1
    admin: bool = False

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_elements", "max_in_flight", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serving setting {name} must be a positive int, got {value!r}")
        if not isinstance(self.body_timeout_s, (int, float)) or not self.body_timeout_s > 0:
            raise ConfigError(f"serving setting body_timeout_s must be positive seconds, got {self.body_timeout_s!r}")


class Service:
    """The server's state around one router: settings, metrics, readiness, reloads.

    Request handlers run on one event loop; the counters they update are
    read on it too (see :mod:`fastroute.serving.metrics`).
    """

    def __init__(
        self,
        router: Router,
        settings: ServingSettings | None = None,
        *,
        config_path: Path | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        if ROUTER_MODEL in router.models:
            raise ConfigError(f"a model is named {ROUTER_MODEL!r}, the name under which the server serves the router")
        self.router = router
        self.settings = settings if settings is not None else ServingSettings()
        self.config_path = config_path
        self.decision_log = decision_log
        self.metrics = ServingMetrics()
        router.route_stages = self.metrics.route_stages  # analyze and decide, timed by the router
        self.metrics.add_live(lambda: stage_families(router, self.metrics))
        self.metrics.add_live(lambda: router_families(router))
        if decision_log is not None:
            self.metrics.add_live(lambda: decision_log_families(decision_log))
        self.recent = RecentDecisions()
        self.draining = False
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> None:
        """Re-read the config file into the running router (in a thread: warm-ups and
        drains block); an invalid file changes nothing and raises ConfigError."""
        if self.config_path is None:
            raise ConfigError("this server was not started from a config file; nothing to reload")
        async with self._reload_lock:
            try:
                await asyncio.to_thread(self.router.reload, self.config_path)
            except BaseException:
                self.metrics.reloads["failed"] += 1
                raise
            self.metrics.reloads["ok"] += 1

    def close(self) -> None:
        """Finish every accepted request, stop the router's workers, flush the decision log."""
        self.draining = True
        self.router.close(drain=True)
        if self.decision_log is not None:
            self.decision_log.close()

    def log_feedback(self, decision_id: str, outcome: Mapping[str, Any]) -> None:
        """Queue one feedback record, joined to its decision when the log is read."""
        if self.decision_log is not None:
            self.decision_log.record({"kind": "feedback", "id": decision_id, "time": time.time(), **outcome})

    def note_decision(self, decision: Decision, latency_s: float, outcome: str) -> None:
        """Keep a served decision for the status page, and log it with the feature row its policy read."""
        now = time.time()
        self.recent.add(decision, now, latency_s, outcome)
        if self.decision_log is None:
            return
        seen = decision.features
        record = {
            "kind": "decision",
            "id": decision.id,
            "time": now,
            "model": decision.model,
            "version": decision.version,
            "modality": decision.modality,
            "reason": decision.reason,
            "score": decision.score,
            "propensity": decision.propensity,
            "candidates": self.router.models.for_modality(decision.modality),
            "features": seen.features,
            "latency_s": latency_s,
            "outcome": outcome,
        }
        if isinstance(seen, FeatureRow) and seen.names:  # user features follow the analyzer's
            record["feature_names"] = list(seen.names)
        self.decision_log.record(record)


def create_app(service: Service) -> Starlette:
    """The Starlette application serving ``service``'s router."""
    handlers = _Handlers(service)
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [  # the hot ones first: Starlette tries each route's pattern in order (the paths are disjoint)
        Route(model + "/infer", handlers.infer, methods=["POST"]),
        Route(versioned + "/infer", handlers.infer, methods=["POST"]),
        Route("/route", handlers.route, methods=["POST"]),
        Route("/v2/health/live", handlers.live),
        Route("/v2/health/ready", handlers.ready),
        Route("/v2", handlers.server_metadata),
        Route(model, handlers.model_metadata),
        Route(versioned, handlers.model_metadata),
        Route(model + "/ready", handlers.model_ready),
        Route(versioned + "/ready", handlers.model_ready),
        Route("/feedback", handlers.feedback, methods=["POST"]),
        Route("/metrics", handlers.scrape),
        Route("/", handlers.status_page),
        Route("/status.json", handlers.status),
    ]
    if service.settings.admin:
        routes.append(Route("/admin/reload", handlers.reload, methods=["POST"]))

    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202 - Starlette's lifespan protocol
        yield
        await asyncio.to_thread(service.close)

    async def not_routed(request: Request, error: HTTPException) -> Response:
        """Unknown paths and wrong methods answer the protocol's JSON error body too."""
        handlers.metrics.responses[("unrouted", error.status_code)] += 1
        return JSONResponse({"error": f"{request.method} {request.url.path}: {error.detail}"},
                            status_code=error.status_code, headers=error.headers)

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_routed, 405: not_routed})


class _Handlers:
    """The endpoint coroutines; each request ends with exactly one response, counted once."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.router = service.router
        self.settings = service.settings
        self.metrics = service.metrics
        self._page = status_page()

    # -- health and metadata ---------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = not self.service.draining
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "fastroute", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request: Request) -> Response:
        return await self._answer("metadata", lambda: self._metadata(request))

    async def model_ready(self, request: Request) -> Response:
        async def readiness() -> Response:
            name, version = request.path_params["name"], request.path_params.get("version")
            if name != ROUTER_MODEL:
                self._spec(name, version)  # 404 when unknown
            ready = not self.service.draining
            return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)

        return await self._answer("ready", readiness)

    async def _metadata(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        if name == ROUTER_MODEL:
            versions, datatype = ["1"], "BYTES"
        else:
            spec = self._spec(name, version)
            versions = [spec.version] if version is not None else self.router.models.versions(name)
            datatype = _MODALITY_DATATYPE.get(spec.modality, "BYTES")
        return JSONResponse({
            "name": name,
            "versions": versions,
            "platform": "fastroute",
            "inputs": [{"name": "input", "datatype": datatype, "shape": [-1]}],
            "outputs": [{"name": "output", "datatype": "BYTES", "shape": [-1]}],
        })

    def _spec(self, name: str, version: str | None) -> ModelSpec:
        try:
            return self.router.models.get(name, version)
        except NoRoute as error:
            raise ProtocolError(str(error), 404) from None

    # -- inference ---------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == ROUTER_MODEL:
            return await self._admitted("router_infer", request, self._infer_routed)
        return await self._admitted("model_infer", request, self._infer_model)

    async def route(self, request: Request) -> Response:
        async def decide(request: Request, infer: InferRequest, deadline: float | None) -> Response:
            decision = self.router.route(
                infer.input, key=infer.parameters.get("key"), features=_user_features(infer.parameters)
            )
            self.metrics.count_decision(decision.model, decision.version, decision.reason)
            return JSONResponse({
                "model": decision.model,
                "version": decision.version,
                "modality": decision.modality,
                "reason": decision.reason,
                "score": decision.score,
            })

        return await self._admitted("route", request, decide)

    async def _infer_model(self, request: Request, infer: InferRequest, deadline: float | None) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        remaining = _remaining(deadline)
        try:
            lease = self.router.models.lease(name, version, key=infer.parameters.get("key"))
        except NoRoute as error:
            raise ProtocolError(str(error), 404) from None
        try:
            future = self.router.executor.submit(
                lease.spec, infer.input, priority=_priority(infer.parameters), deadline=remaining
            )
        except BaseException:
            lease.discard()
            raise
        future.add_done_callback(_end_lease, lease)
        result = await self._result(future, remaining, lease.spec.name)
        body, headers = encode_infer_response(result, infer, lease.spec.name, lease.spec.version, {})
        return Response(body, headers=headers)

    async def _infer_routed(self, request: Request, infer: InferRequest, deadline: float | None) -> Response:
        remaining = _remaining(deadline)
        started = time.perf_counter()
        future = self.router.submit(
            infer.input, priority=_priority(infer.parameters), deadline=remaining, key=infer.parameters.get("key"),
            features=_user_features(infer.parameters),
        )
        decision = future.decision
        self.metrics.count_decision(decision.model, decision.version, decision.reason)
        outcome = "ok"
        try:
            result = await self._result(future, remaining, decision.model)
        except BaseException as error:
            outcome = type(error).__name__
            raise
        finally:
            self.service.note_decision(decision, time.perf_counter() - started, outcome)
        parameters = {
            "model": decision.model,
            "version": decision.version,
            "reason": decision.reason,
            "decision_id": decision.id,
            "propensity": decision.propensity,
        }
        body, headers = encode_infer_response(result, infer, ROUTER_MODEL, "1", parameters)
        return Response(body, headers=headers)

    async def _result(self, future: ResultHandle, remaining: float | None, model: str) -> Any:
        """The queued request's result, awaited until its deadline at most."""
        try:
            return await _within(remaining, future)
        except DeadlineExceeded:
            raise
        except asyncio.TimeoutError:  # wait_for's own: the model is still running
            raise DeadlineExceeded(f"model {model!r} had not answered by the request's deadline") from None

    async def feedback(self, request: Request) -> Response:
        """``{"id": decision id, "reward": r, ...outcome}`` -> ``router.feedback``; answers its status."""

        async def join() -> Response:
            document = _json_object(await self._body(request))
            decision_id = document.pop("id", None)
            if not isinstance(decision_id, str):
                raise ProtocolError("feedback needs the decision's 'id' (a string, from the infer response's decision_id)")
            if "decision_id" in document:
                raise ProtocolError("unknown feedback field 'decision_id': name the decision with 'id'")
            status = self.router.feedback(decision_id, **document)
            self.metrics.count_feedback(status, document.get("reward"), document.get("quality"))
            self.service.log_feedback(decision_id, document)
            return JSONResponse({"id": decision_id, "status": status})

        return await self._answer("feedback", join)

    # -- admin and metrics -------------------------------------------------------------

    async def status_page(self, request: Request) -> Response:
        return HTMLResponse(self._page)

    async def status(self, request: Request) -> Response:
        return JSONResponse(status_snapshot(self.router, self.metrics, self.service.recent, self.service.draining))

    async def scrape(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def reload(self, request: Request) -> Response:
        async def reload() -> Response:
            try:
                await self.service.reload()
            except ConfigError as error:
                raise ProtocolError(str(error), 400) from None
            return JSONResponse({"reloaded": True})

        return await self._answer("reload", reload)

    # -- the frame every request goes through ------------------------------------------

    async def _admitted(
        self,
        endpoint: str,
        request: Request,
        handle: Callable[[Request, InferRequest, float | None], Awaitable[Response]],
    ) -> Response:
        """Admission, body, parsing, deadline and error mapping around ``handle``."""
        arrived = time.monotonic()
        started = time.perf_counter_ns()
        if self.service.draining or self.metrics.in_flight >= self.settings.max_in_flight:
            why = "the server is draining" if self.service.draining else "the server is at its in-flight limit"
            return self._count(endpoint, self._error(503, f"{why}; retry later", retry=True), "Unavailable")
        self.metrics.in_flight += 1
        try:
            async def parse_and_handle() -> Response:
                body = await self._body(request)
                infer = parse_infer_request(body, request.headers.get(HEADER_LENGTH), self.settings.max_elements)
                return await handle(request, infer, _deadline(request, infer, arrived))

            response = await self._answer(endpoint, parse_and_handle)
            self.metrics.total.record(time.perf_counter_ns() - started)
            return response
        finally:
            self.metrics.in_flight -= 1

    async def _answer(self, endpoint: str, produce: Callable[[], Awaitable[Response]]) -> Response:
        """``produce()``'s response, or the protocol error body for what it raised; counted once."""
        try:
            return self._count(endpoint, await produce())
        except ClientDisconnect:
            return self._count(endpoint, Response(status_code=499), "ClientDisconnect")
        except ProtocolError as error:
            return self._count(endpoint, self._error(error.status, str(error)), type(error).__name__)
        except FastrouteError as error:
            status, retry = _status_of(error)
            return self._count(endpoint, self._error(status, str(error), retry), type(error).__name__)
        except Exception as error:  # noqa: BLE001 - a bug must still end the request with an answer
            _log.exception("internal error serving %s", endpoint)
            return self._count(endpoint, self._error(500, f"internal error: {error!r}"), type(error).__name__)

    def _count(self, endpoint: str, response: Response, error: str | None = None) -> Response:
        self.metrics.responses[(endpoint, response.status_code)] += 1
        if error is not None:
            self.metrics.errors[error] += 1
        return response

    def _error(self, status: int, message: str, retry: bool = False) -> Response:
        headers = {"retry-after": str(self.settings.retry_after_s)} if retry else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def _body(self, request: Request) -> bytes:
        """The request body, refused past the size limit or the time limit."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ProtocolError(f"request body of {declared} bytes exceeds the limit of {limit} bytes", 413)

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(f"request body exceeds the limit of {limit} bytes", 413)
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await _within(self.settings.body_timeout_s, read())
        except asyncio.TimeoutError:
            raise ProtocolError(f"request body not received within {self.settings.body_timeout_s}s", 408) from None


async def _within(seconds: float | None, awaitable: Awaitable[Any]) -> Any:
    """``await awaitable``, cancelled with TimeoutError after ``seconds`` (None: no limit).
    On Python 3.11+ the limit is set on the running task (asyncio.timeout), so no task is
    started per request as wait_for does."""
    if seconds is None:
        return await awaitable
    if _TIME_LIMIT is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with _TIME_LIMIT(seconds):
        return await awaitable


def _end_lease(lease: Lease, done: ResultHandle) -> None:
    """Ends a request's lease with its outcome (runs on the worker that resolved it)."""
    if done.cancelled():
        lease.discard()
    else:
        lease.release(done.exception())


def _status_of(error: FastrouteError) -> tuple[int, bool]:
    """HTTP status for a fastroute error, and whether to send Retry-After."""
    if isinstance(error, Overloaded):
        return 429, True
    if isinstance(error, RouterClosed):
        return 503, True
    if isinstance(error, DeadlineExceeded):
        return 504, False
    if isinstance(error, ModelError):
        return 500, False
    if isinstance(error, (InvalidInput, NoRoute, TypeError, ValueError)):
        return 400, False
    return 500, False


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ProtocolError("request body must be a JSON object")
    return document


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (time.monotonic), None for none; DeadlineExceeded when past."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded("the request's deadline passed before it was queued")
    return remaining


def _deadline(request: Request, infer: InferRequest, arrived: float) -> float | None:
    """The request's absolute deadline (time.monotonic) from the header or Triton's
    ``timeout`` parameter (microseconds), or None."""
    header = request.headers.get(DEADLINE_HEADER)
    if header is not None:
        try:
            milliseconds = float(header)
        except ValueError:
            milliseconds = float("nan")
        if not milliseconds > 0 or milliseconds == float("inf"):
            raise ProtocolError(f"{DEADLINE_HEADER} must be a positive number of milliseconds, got {header!r}")
        return arrived + milliseconds / 1e3
    timeout_us = infer.parameters.get("timeout")
    if timeout_us is None:
        return None
    if isinstance(timeout_us, bool) or not isinstance(timeout_us, int) or timeout_us <= 0:
        raise ProtocolError(f"parameter 'timeout' must be a positive integer of microseconds, got {timeout_us!r}")
    return arrived + timeout_us / 1e6


def _user_features(parameters: Any) -> dict[str, float] | None:
    """The request's user feature values (parameter ``features``: name -> number), or None."""
    features = parameters.get("features")
    if features is None:
        return None
    if not isinstance(features, dict) or not all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in features.values()
    ):
        raise ProtocolError("parameter 'features' must be a JSON object of user feature names to numbers")
    return features


def _priority(parameters: Any) -> str:
    """``"high"`` for ``priority: "high"`` (or Triton's highest level, 1), else ``"normal"``."""
    priority = parameters.get("priority")
    if priority in (None, "normal") or (isinstance(priority, int) and not isinstance(priority, bool) and priority > 1):
        return "normal"
    if priority in ("high", 1) and not isinstance(priority, bool):
        return "high"
    raise ProtocolError(f"parameter 'priority' must be 'high', 'normal' or a positive integer, got {json.dumps(priority)}")
