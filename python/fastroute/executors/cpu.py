"""Executors: run routed requests on worker threads, in micro-batches.

A :class:`CPUExecutor` owns a C++ dispatcher (``fastroute._core.Dispatcher``):
one bounded lock-free queue pair (high/normal priority) per model replica,
a batcher that gathers up to ``max_batch`` requests or, for a batched model, waits
``max_delay_us`` after the first one (a model called per request takes what is
queued without waiting), and ``threads`` workers that take the GIL once per batch
to call the model and settle each request's :class:`~fastroute.ResultHandle` (the methods
of a :class:`concurrent.futures.Future` in C++, awaitable; see executors/handles.py).

Guarantees: every accepted request ends with exactly one result or one
exception; a model's exception fails only its own batch (each request gets a
:class:`~fastroute.ModelError` whose ``__cause__`` is the model's exception);
one replica runs its batches one at a time, in queue order, so requests of one
priority class start FIFO; a model that hangs holds only the worker serving it;
a request whose model has not started it by its deadline fails at its deadline
(wherever it waits: in its queue, behind a hung model, in a batch waiting its
turn) and never runs. ``close`` may be called from anywhere, a model or a
done-callback included, and never waits for a hung model unless asked to.

Caller runs (``caller_runs=1``, the default): a thread blocked in a handle's
``result()`` or ``exception()`` (no timeout) whose request is still queued, on a
replica no worker is serving, serves that replica's next batch itself, on its own
thread, exactly as a worker would (same callback, same batch, the guarantees above),
instead of waking a worker and being woken by it: a round trip then hands neither a
request nor the GIL between threads. Never on a worker thread or inside a model or
done-callback (a nested submit waits for a worker), never from asyncio (``await``
never runs a model on the event loop), never for a model that fills batches unless a
full ``max_batch`` is already queued (an early caller would cut micro-batches short),
and not for offloaded models (Ray actors, GPUs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import operator
import random
import threading
import time
import weakref
from concurrent.futures import InvalidStateError
from dataclasses import dataclass
from typing import Any

from .. import _core
from ..errors import DeadlineExceeded, InvalidInput, ModelError, Overloaded, RouterClosed
from ..library.spec import ModelSpec, group_by_spec
from .config import ExecutorConfig
from .handles import ResultHandle
from .waiting import WaitingRequests, fail_unstarted

__all__ = ["CPUExecutor", "QueueStats", "ReplicaStats", "PRIORITIES"]

PRIORITIES = ("high", "normal")
_PUSH_ACCEPTED, _PUSH_FULL = _core.PUSH_ACCEPTED, _core.PUSH_FULL  # else PUSH_CLOSED
_FIRST_BACKOFF_S, _MAX_BACKOFF_S = 50e-6, 5e-3  # asubmit's waits for room
_NO_DEADLINE = _core.NO_DEADLINE  # largest int64 nanoseconds
_FOREVER_S = _core.NO_DEADLINE_FROM_S  # seconds: deadlines this far (292 years) or further are none
_EXIT_JOIN_TIMEOUT_S = 2.0

#: One queued request: (handle, input, spec, deadline_ns, waiting), read by unpacking into
#: named locals. A plain tuple, not a NamedTuple: building one costs ~0.5 us more per
#: request (measured), about as much as creating the request's handle. Built natively by
#: ``_core.RequestQueue.push`` (csrc/bind_dispatch.cpp), in this order; the same tuple is
#: WaitingRequests' entry for the request (waiting.py reads its handle and spec).
Request = tuple[ResultHandle, Any, ModelSpec, int, WaitingRequests]


@dataclass(frozen=True)
class ReplicaStats:
    """One replica's live state (see :meth:`CPUExecutor.replica_stats`).

    ``request_ms``/``batch_ms``: moving averages (weight ``_core.EWMA_WEIGHT``
    per batch) of the time per request and per batch; ``error_rate``: the same
    average of each batch's share of failed calls; ``completed``/``failed``:
    counts since the replica started. Queues are approximate while requests flow.
    """

    queued: int
    queued_high: int
    in_flight: int
    request_ms: float
    batch_ms: float
    error_rate: float
    completed: int
    failed: int

    @classmethod
    def from_core(cls, stats: tuple) -> ReplicaStats:
        queued, in_flight, _, queued_high, request_ns, batch_ns, error_rate, completed, failed = stats
        return cls(queued, queued_high, in_flight, request_ns / 1e6, batch_ns / 1e6, error_rate, completed, failed)


@dataclass(frozen=True)
class QueueStats:
    """A model's load, summed over its replicas (approximate while requests flow)."""

    queued: int
    in_flight: int
    replicas: int


def _run_requests(lane: int, ready: list[Request], expired: list[Request], aborted: list[Request]) -> int:
    """The dispatcher's callback: resolves one batch of requests (see ``Request``) with
    the GIL held (taken once). Never raises: if resolving breaks off, every request not
    yet resolved fails. Returns how many model calls of the batch failed (the
    dispatcher keeps each replica's error rate from it).

    A plain function, so the C++ dispatcher holding it holds no reference to
    the executor (no uncollectable cycle) nor to any model.
    """
    try:
        if len(ready) == 1 and not expired and not aborted:  # the common batch (a caller's own request)
            return _run_one(ready[0])
        return _resolve(ready, expired, aborted)
    except BaseException as error:  # noqa: BLE001 - no accepted request may be left pending
        _fail_unfinished(ready + expired + aborted, error)
        return len(ready)


def _resolve(ready: list[Request], expired: list[Request], aborted: list[Request]) -> int:
    """Resolves each request of one batch: expired, aborted, then run (or cancelled).
    Returns how many of the requests run failed.

    Requests something else already ended (their deadline, ``close(drain=False)``)
    are skipped: each request is claimed once (see executors/waiting.py).
    """
    for future, _, spec, _, waiting in expired:
        if waiting.claim(future):
            fail_unstarted(future, _deadline_passed(spec.name))
    for future, _, spec, _, waiting in aborted:
        if waiting.claim(future):
            fail_unstarted(future, _closed_before_running(spec.name))
    failures = 0
    # One group, unless a request submitted for a retired spec raced into its lane's
    # reuse by another spec: each still runs on its own model.
    for spec, requests in group_by_spec(ready, _spec_of):
        failures += _run_batched(spec, requests) if spec.batched else _run_each(spec, requests)
    return failures


_spec_of = operator.itemgetter(2)  # a Request's spec


def _start(request: Request) -> bool:
    """Claims a request for its model call, right before it: True if it runs now.

    False if something else ended it, or if it is cancelled, or if its deadline
    passed (waiting for the GIL or for earlier work of the same batch may have
    taken it past it since the batcher checked): then it fails here.
    """
    future, _, spec, deadline_ns, waiting = request
    if not waiting.claim(future):
        return False
    if deadline_ns <= time.monotonic_ns():  # the dispatcher's clock
        fail_unstarted(future, _deadline_passed(spec.name))
        return False
    return future.set_running_or_notify_cancel()


def _fail_unfinished(requests: list[Request], error: BaseException) -> None:
    """Fails every request of a batch whose processing broke off: those not yet
    claimed, and those this worker started but did not finish."""
    for future, _, spec, _, waiting in requests:
        claimed = waiting.claim(future)
        if future.done():
            continue
        failure = ModelError.caused_by(spec.name, error, "its batch broke off: ")
        if claimed:
            fail_unstarted(future, failure)
        elif future.running():
            try:
                future.set_exception(failure)
            except InvalidStateError:  # ended meanwhile by whoever claimed it
                pass


def _deadline_passed(model: str) -> DeadlineExceeded:
    return DeadlineExceeded(f"request for model {model!r} passed its deadline before it ran")


def _closed_before_running(model: str) -> RouterClosed:
    return RouterClosed(f"executor closed before model {model!r} ran the request")


def _run_batched(spec: ModelSpec, requests: list[Request]) -> int:
    """One model call on the requests claimed in time; returns how many failed."""
    live = [request for request in requests if _start(request)]
    if not live:
        return 0
    try:
        outputs = spec.run_batch([x for _, x, _, _, _ in live])
    except BaseException as error:  # noqa: BLE001 - delivered to every request of the batch
        failure = _as_model_error(spec, error)
        for future, _, _, _, _ in live:
            future.set_exception(failure.copy())
        return len(live)
    for (future, _, _, _, _), output in zip(live, outputs):
        future.set_result(output)
    return 0


def _as_model_error(spec: ModelSpec, error: BaseException) -> ModelError:
    """What a request sees when its model call failed (ModelSpec already wraps an Exception)."""
    return error if isinstance(error, ModelError) else ModelError.caused_by(spec.name, error)


def _run_each(spec: ModelSpec, requests: list[Request]) -> int:
    """Calls the model once per request, each claimed right before its call (until
    then its deadline or a close without drain may still end it). Returns how many
    calls failed."""
    failures = 0
    for request in requests:
        failures += _run_one(request)
    return failures


def _run_one(request: Request) -> int:
    """One request claimed and run alone (a batched model gets a batch of one):
    1 if its model call failed, else 0."""
    if not _start(request):
        return 0
    future, x, spec, _, _ = request
    try:
        output = spec.run_one(x)
    except BaseException as error:  # noqa: BLE001 - delivered to this request
        future.set_exception(_as_model_error(spec, error))
        return 1
    future.set_result(output)
    return 0


def _close_at_exit(core: Any, waiting: WaitingRequests) -> None:
    _close_core(core, waiting, drain=False, timeout_s=_EXIT_JOIN_TIMEOUT_S)


def _close_core(core: Any, waiting: WaitingRequests, drain: bool, timeout_s: float) -> bool:
    """Closes the dispatcher; without drain, every request not started fails at once.
    True once the workers have finished (then no deadline is left to watch)."""
    if not drain:
        core.begin_close(False)  # nothing is accepted from here on
        waiting.fail_all(_closed_before_running)
    finished = core.close(drain, timeout_s)
    if finished:
        waiting.close()
    return finished


class CPUExecutor:
    """Runs models on a pool of C++ worker threads with dynamic micro-batching.

    >>> executor = CPUExecutor(threads=2, max_batch=32, max_delay_us=200)
    >>> executor.submit(spec, x).result()
    >>> executor.close()

    Each model spec (told apart by identity, not by name and version) gets
    one queue per replica, and each request goes to the less loaded of two
    replicas drawn at random (power of two choices). ``rng`` draws them.
    Thread-safe. Close it (or use ``with``); at interpreter exit an open
    executor fails its pending requests and stops its workers.
    """

    def __init__(
        self, config: ExecutorConfig | None = None, *, rng: random.Random | None = None, **settings: int
    ) -> None:
        """``config``, or the settings by name (``threads=4, max_batch=64``...; see
        :class:`ExecutorConfig` for each one, its default and its bounds)."""
        if config is not None and (settings or not isinstance(config, ExecutorConfig)):
            raise TypeError("CPUExecutor takes an ExecutorConfig or settings by name (threads=..., ...), not both")
        self.config = config if config is not None else ExecutorConfig(**settings)
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        # id(spec) -> (spec, its lanes). Keyed by identity: a new spec under an old
        # name and version gets its own lanes. Holding the spec keeps its id unique
        # until retire(). (Hashing a frozen dataclass would also be slow.)
        self._lanes: dict[int, tuple[ModelSpec, tuple[int, ...]]] = {}  # guarded by _lock for writes
        self._closed = False  # guarded by _lock
        self._core = _core.Dispatcher(**dataclasses.asdict(self.config), sink=_run_requests)
        self._waiting = WaitingRequests(_deadline_passed)
        # Each request's handle, waiting entry and push, natively. A waiting caller spins as long
        # as an idle worker; its result() may serve its request itself (see "Caller runs").
        # Why a push was refused, as submit raises it: _refusal(spec, status, priority, timeout).
        self._refusal = functools.partial(_refusal, self.config.queue_capacity)
        self._queue = _core.RequestQueue(
            self._core, self._lanes, self._waiting, self.config.spin_us * 1000, self._runs_in_callers(),
            _deadline_or_none, PRIORITIES, self._refusal,
        )
        #: The native enqueue a router's one-call submit and ainfer queue through when the
        #: request's spec has one started lane (``_core.RequestQueue``); None: every request
        #: goes through :meth:`submit`. Read-only.
        self.native_queue = self._queue if self._queues_natively() else None
        self._finalizer = weakref.finalize(self, _close_at_exit, self._core, self._waiting)

    def submit(
        self,
        spec: ModelSpec,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> ResultHandle:
        """Queue ``x`` for ``spec``'s model; the returned handle settles with its result.

        ``priority``: "high" requests are batched before "normal" ones.
        ``deadline``: seconds from now by which the model must start on the
        request, else the handle fails with :class:`~fastroute.DeadlineExceeded`
        at that moment, wherever the request waits (a model call already
        started is not interrupted), and the request never runs.
        ``timeout``: seconds to wait for room when the queue is full (blocking
        the calling thread); without it ``submit`` never blocks and a full
        queue raises :class:`~fastroute.Overloaded` at once.
        Raises :class:`~fastroute.RouterClosed` once closed. Cancel the handle
        to drop the request before it runs.
        """
        high, deadline_ns = _is_high(priority), _deadline_or_none(deadline)
        timeout_s = 0.0 if timeout is None else _positive_seconds("timeout", timeout)
        status, future = self._push(spec, x, high, deadline_ns, timeout_s)
        if status != _PUSH_ACCEPTED:
            raise self._refusal(spec, status, priority, timeout)
        return future

    async def asubmit(
        self,
        spec: ModelSpec,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> ResultHandle:
        """:meth:`submit` for asyncio: waits up to ``timeout`` for room without blocking the loop.

        Each try is a non-blocking push; while the queue is full it retries
        after ``await asyncio.sleep`` (backing off from 50 us to 5 ms), so the
        event loop keeps running. ``deadline`` counts from this call. Returns
        the request's handle: ``await`` it for the result (set on this loop, with every
        other request of its batch awaited here, in one hand-off).
        """
        high, deadline_ns = _is_high(priority), _deadline_or_none(deadline)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (0.0 if timeout is None else _positive_seconds("timeout", timeout))
        backoff = _FIRST_BACKOFF_S
        while True:
            status, future = self._push(spec, x, high, deadline_ns, 0.0)
            remaining = give_up - loop.time()
            if status != _PUSH_FULL or remaining <= 0:
                break
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(2 * backoff, _MAX_BACKOFF_S)
        if status != _PUSH_ACCEPTED:
            raise self._refusal(spec, status, priority, timeout)
        return future

    def stats(self, spec: ModelSpec) -> QueueStats:
        """Queued and in-flight requests of ``spec``'s model (zeros if never used)."""
        lanes = self._lanes_of(spec)
        counts = [self._core.stats(lane) for lane in lanes]
        return QueueStats(sum(c[0] for c in counts), sum(c[1] for c in counts), len(lanes))

    def replica_stats(self, spec: ModelSpec) -> list[ReplicaStats]:
        """The live state of each of ``spec``'s replicas, kept by the C++ dispatcher
        (read lock-free; empty if the model never took a request here)."""
        return [ReplicaStats.from_core(self._core.stats(lane)) for lane in self._lanes_of(spec)]

    def stages(self, spec: ModelSpec) -> dict[str, tuple[list[int], int]]:
        """``spec``'s stage histograms kept by the C++ dispatcher, summed over its replicas
        (read lock-free; empty if the model never took a request here).

        ``{stage: (counts per bucket, the last above every bound; sum)}`` for
        ``queue_wait`` (per request: queued until the batcher took it), ``batch_wait``
        (per batch: its first request taken until the batch went to the model),
        ``execute`` (per batch run: the model call and delivering its results,
        recorded just after the results), all in nanoseconds over
        ``_core.LATENCY_BOUNDS_NS``, and ``batch_size`` (per batch run: requests,
        over ``_core.BATCH_SIZE_BOUNDS``).
        """
        merged: dict[str, tuple[list[int], int]] = {}
        for lane in self._lanes_of(spec):
            for stage, (counts, total) in self._core.stages(lane).items():
                so_far, so_far_total = merged.get(stage, ([0] * len(counts), 0))
                merged[stage] = ([a + b for a, b in zip(so_far, counts)], so_far_total + total)
        return merged

    def backend_stats(self, spec: ModelSpec) -> dict[str, Any] | None:
        """What runs ``spec`` beyond this process's threads (Ray actors, a device); None here."""
        return None

    def choose(self, specs: list[ModelSpec], preferred: int, *, high: bool, quality: list[float],
               costs: list[float], available: list[bool], weights: tuple[float, float], budget_ns: int,
               late_fastest: bool, random_bits: int) -> tuple[int, int]:
        """One load-aware decision among ``specs``, computed in C++ from their replicas' live
        state: ``(index or -1, index into _core.CHOICE_REASONS)``. See
        :class:`fastroute.decision.LoadAware` for the scoring."""
        return self._core.choose(
            [self._lanes_of(spec) for spec in specs], quality, costs, available, preferred, high,
            weights[0], weights[1], budget_ns, late_fastest, random_bits,
        )

    def load_features(self, spec: ModelSpec) -> dict[str, float]:
        """``spec``'s live state as the values of :data:`fastroute.decision.load_aware.LOAD_FEATURES`
        (empty until the model has run here; ``breaker_open`` is the router's to fill)."""
        lanes = self._lanes_of(spec)
        replicas = [ReplicaStats.from_core(self._core.stats(lane)) for lane in lanes]
        ran = [r for r in replicas if r.completed]
        if not ran:
            return {}
        return {
            "queued": float(sum(r.queued for r in replicas)),
            "in_flight": float(sum(r.in_flight for r in replicas)),
            "expected_ms": min(self._core.expected_ns(lane, False) for lane in lanes) / 1e6,
            "request_ms": min(r.request_ms for r in ran),
            "error_rate": max(r.error_rate for r in ran),
        }

    def _lanes_of(self, spec: ModelSpec) -> tuple[int, ...]:
        known = self._lanes.get(id(spec))
        return known[1] if known is not None else ()

    def retire(self, spec: ModelSpec, *, drain: bool = True) -> None:
        """Stop accepting requests for ``spec`` and wait until its queues are empty.

        With ``drain`` every accepted request runs first; otherwise the queued
        ones fail with :class:`~fastroute.RouterClosed`. Blocks until the
        model's last batch has returned. A later ``submit`` for this spec
        starts fresh queues. Specs are told apart by identity: retiring one
        leaves another with the same name and version running.
        """
        with self._lock:
            known = self._lanes.pop(id(spec), None)
        for lane in known[1] if known is not None else ():
            self._core.retire(lane, drain)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests, run (``drain``) or fail the queued ones, join the workers.

        With ``drain``, waits until every accepted request has ended (deadlines
        still apply), up to ``timeout`` seconds. Without it, every request not
        yet started fails at once with :class:`~fastroute.RouterClosed`, and
        model calls already running are waited for only up to ``timeout``
        (not at all without one): they finish on their own and their requests
        still get their results. Workers still inside a model call after an
        explicit ``timeout`` are left to finish on their own and a
        ``RouterClosed`` error reports it. A ``submit`` waiting for queue room
        is refused at once.

        Idempotent; a later call waits again (and ``drain=False`` fails what an
        earlier draining call left queued). Safe from inside a model or a
        future's done-callback: there it starts the shutdown and returns
        without waiting (the workers finish on their own).
        """
        timeout_s = math.inf if timeout is None else _positive_seconds("timeout", timeout)
        with self._lock:
            self._closed = True
        self._finalizer.detach()
        if not drain and timeout is None:
            timeout_s = 0.0
        finished = _close_core(self._core, self._waiting, drain, timeout_s)
        if not finished and timeout is not None and not self._core.on_worker_thread():
            raise RouterClosed(f"workers still running a model after {timeout}s; they finish on their own")

    def _queues_natively(self) -> bool:
        """Whether a router may queue requests on :attr:`native_queue` itself, bypassing
        :meth:`_push` (subclasses that queue stand-ins for some specs say no)."""
        return True

    def _runs_in_callers(self) -> bool:
        """Whether a waiting ``result()`` may run its request itself (subclasses that run
        models elsewhere say no)."""
        return bool(self.config.caller_runs)

    def __enter__(self) -> CPUExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _push(
        self, spec: ModelSpec, x: Any, high: bool, deadline_ns: int, timeout_s: float
    ) -> tuple[int, ResultHandle]:
        """One push to the less loaded of ``spec``'s lanes: (push status, the request's handle);
        a refused request leaves no waiting entry."""
        known = self._lanes.get(id(spec))
        lanes = known[1] if known is not None else self._add_model(spec)
        lane = lanes[0] if len(lanes) == 1 else self._pick_replica(lanes)
        return self._queue.push(lane, spec, x, high, deadline_ns, timeout_s)

    def _add_model(self, spec: ModelSpec) -> tuple[int, ...]:
        with self._lock:
            if self._closed:
                raise RouterClosed(f"executor closed; model {spec.name!r} not started")
            known = self._lanes.get(id(spec))
            if known is None:
                known = self._lanes[id(spec)] = (spec, self._add_lanes(spec))
            return known[1]

    def _add_lanes(self, spec: ModelSpec) -> tuple[int, ...]:
        """One lane per replica (reusing retired ones), or none and Overloaded."""
        lanes: list[int] = []
        try:
            for _ in range(spec.replicas):
                lanes.append(self._core.add_lane(spec.batched))  # only a batched model waits for a batch to fill
        except Overloaded as error:
            for lane in lanes:
                self._core.retire(lane, True)  # empty: frees it at once
            raise Overloaded(
                f"cannot start model {spec.name!r} version {spec.version!r} ({spec.replicas} replicas): "
                f"all {self.config.max_lanes} queues (max_lanes) are in use; retire models or raise max_lanes"
            ) from error
        return tuple(lanes)

    def _pick_replica(self, lanes: tuple[int, ...]) -> int:
        first, second = self._rng.sample(lanes, 2)
        load_first, load_second = self._core.stats(first), self._core.stats(second)
        return first if load_first[0] + load_first[1] <= load_second[0] + load_second[1] else second


def _refusal(queue_capacity: int, spec: ModelSpec, status: int, priority: str, timeout: float | None) -> Exception:
    """Why a push was refused (a full queue, else closed), as the exception submit raises."""
    if status == _PUSH_FULL:
        return Overloaded(
            f"queue of model {spec.name!r} is full ({queue_capacity} {priority} requests"
            + (f", waited {timeout}s)" if timeout else ")")
        )
    return RouterClosed(f"model {spec.name!r} version {spec.version!r} no longer accepts requests")


def request_times(priority: str, deadline: float | None) -> tuple[bool, int | None]:
    """``submit``'s priority and deadline checked as submit checks them: (high?, the
    absolute deadline on the dispatcher's clock, or None without one)."""
    deadline_ns = _deadline_or_none(deadline)
    return _is_high(priority), None if deadline_ns == _NO_DEADLINE else deadline_ns


def _is_high(priority: str) -> bool:
    if priority == "normal":
        return False
    if priority == "high":
        return True
    raise InvalidInput(f"priority must be one of {PRIORITIES}, got {priority!r}")


def _deadline_or_none(seconds_from_now: float | None) -> int:
    """The absolute deadline on the dispatcher's clock (time.monotonic_ns is the
    same steady clock), saturated at "no deadline" for absurdly far ones."""
    if seconds_from_now is None:
        return _NO_DEADLINE
    seconds = _positive_seconds("deadline", seconds_from_now)
    if seconds >= _FOREVER_S:  # also inf, which int() cannot take
        return _NO_DEADLINE
    return min(time.monotonic_ns() + int(seconds * 1e9), _NO_DEADLINE)


def _positive_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInput(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)
