"""Failure handling around the executor: fallbacks, retries within a budget, circuit breakers.

One :class:`Resilience` per router (``Router(resilience=...)``) holds:

- **Fallbacks**: per model name, an ordered list of models of the same modality
  (``Router.set_fallbacks``, or ``fallbacks:`` under a model in a config file) tried when the model raises (:class:`~fastroute.ModelError`), its queue is
  full (:class:`~fastroute.Overloaded`) or its circuit breaker is open.
  Checked when set (unknown model, other modality, cycle: ConfigError). A
  request whose deadline passed is not sent anywhere else.
- **Retries** (:class:`RetryPolicy`): only for model exceptions of a type listed
  in ``retry_on``, on the same model, after an exponential backoff with full
  jitter, at most ``max_retries`` per request, and only while the C++
  :class:`_core.RetryBudget` allows: every request deposits ``budget`` of a
  retry, so retries add at most that share of extra load (plus ``burst``).
- **Circuit breakers** (:class:`BreakerSettings`): one per model version (C++
  ``_core.CircuitBreaker``): it opens when the failure rate over ``window_s``
  reaches ``failure_rate`` (with at least ``min_calls`` calls), sheds traffic
  to the fallbacks while open, lets ``probes`` probe requests through after
  ``cooldown_s`` (half-open) and closes when they all succeed (a failed probe
  opens it again).

Every accepted request still ends with exactly one result or one error: a
:class:`RequestRun` owns the caller's ResultHandle and settles it once, whatever
retries and fallbacks ran. The handle carries ``decision``: the Decision of the
model it was queued on (set when it is queued), then of the model that served
it (or failed last), whose ``attempts`` list what was tried and why.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from .. import _core
from ..errors import ConfigError, DeadlineExceeded, ModelError, NoRoute, Overloaded
from .cpu import request_times
from .handles import ResultHandle

__all__ = ["BreakerSettings", "Resilience", "RetryPolicy", "RequestRun", "BREAKER_STATES", "check_fallbacks"]

#: A breaker's states, as ``router.stats()`` reports them.
BREAKER_STATES: tuple[str, ...] = _core.BREAKER_STATES
_ALLOWED, _PROBE, _REJECTED = 0, 1, 2  # CircuitBreaker.admit


def _check_number(owner: str, name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not (low <= value <= high) or value != value:
        kind = "an int" if integer else "a number"
        raise ConfigError(f"{owner}.{name} must be {kind} in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often and how fast (see the module docstring).

    ``retry_on``: exception types raised by a model that are worth retrying
    (matched against the ModelError's ``__cause__``); empty: no retries.
    ``budget``: most extra load retries may add, as a share of requests (0.1: 10%).
    ``burst``: retries that may be saved up for a burst of failures.
    ``backoff_s``/``max_backoff_s``: the first backoff and its cap; each retry
    waits a uniformly random time up to min(cap, backoff * 2**attempt).
    """

    retry_on: tuple[type[BaseException], ...] = ()
    max_retries: int = 2
    budget: float = 0.1
    burst: float = 10.0
    backoff_s: float = 0.001
    max_backoff_s: float = 0.05

    def __post_init__(self) -> None:
        types = tuple(self.retry_on)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
            raise ConfigError(f"RetryPolicy.retry_on must list exception types, got {self.retry_on!r}")
        object.__setattr__(self, "retry_on", types)
        _check_number("RetryPolicy", "max_retries", self.max_retries, 0, 100, integer=True)
        _check_number("RetryPolicy", "budget", self.budget, 0.0, 1.0)
        _check_number("RetryPolicy", "burst", self.burst, 0.0, 1e6)
        _check_number("RetryPolicy", "backoff_s", self.backoff_s, 0.0, 60.0)
        _check_number("RetryPolicy", "max_backoff_s", self.max_backoff_s, self.backoff_s, 600.0)

    def retryable(self, error: BaseException) -> bool:
        """Whether ``error`` (what the request's handle raised) is one the policy retries."""
        cause = error.__cause__ if isinstance(error, ModelError) else None
        return cause is not None and isinstance(cause, self.retry_on)


@dataclass(frozen=True)
class BreakerSettings:
    """Circuit breaker thresholds, one breaker per model version (see the module docstring)."""

    failure_rate: float = 0.5
    min_calls: int = 20
    window_s: float = 1.0
    cooldown_s: float = 0.5
    probes: int = 3

    def __post_init__(self) -> None:
        _check_number("BreakerSettings", "failure_rate", self.failure_rate, 1e-9, 1.0)
        _check_number("BreakerSettings", "min_calls", self.min_calls, 1, 1 << 30, integer=True)
        _check_number("BreakerSettings", "window_s", self.window_s, 1e-6, 86400.0)
        _check_number("BreakerSettings", "cooldown_s", self.cooldown_s, 1e-6, 86400.0)
        _check_number("BreakerSettings", "probes", self.probes, 1, 1 << 20, integer=True)

    def build(self) -> Any:
        return _core.CircuitBreaker(self.failure_rate, self.min_calls, self.window_s, self.cooldown_s, self.probes)


class _Delays:
    """Runs callbacks after a delay on one daemon thread (started on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []  # guarded by _lock
        self._order = itertools.count()
        self._thread: threading.Thread | None = None  # guarded by _lock

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._order), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fastroute-retry", daemon=True)
                self._thread.start()
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._lock.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, callback = heapq.heappop(self._heap)
            callback()  # RequestRun callbacks never raise


class _NeverOpen:
    """The breaker of every model when breakers are off."""

    state = 0

    def admit(self, now_ns: int) -> int:
        return _ALLOWED

    def would_admit(self, now_ns: int) -> bool:
        return True

    def record(self, ok: bool, probe: bool, now_ns: int) -> None:
        pass

    def cancel_probe(self) -> None:
        pass


_NEVER_OPEN = _NeverOpen()


class Resilience:
    """Fallbacks, retries and circuit breakers of one router. Thread-safe.

    ``breaker=None`` turns the circuit breakers off; the default ``RetryPolicy``
    retries nothing (list ``retry_on``). ``clock`` (monotonic nanoseconds,
    default the dispatcher's) drives the breakers; ``rng`` draws the backoff jitter.
    """

    def __init__(
        self,
        *,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        breaker: BreakerSettings | None = BreakerSettings(),
        clock: Callable[[], int] = _core.monotonic_ns,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(retry, RetryPolicy) or not (breaker is None or isinstance(breaker, BreakerSettings)):
            raise ConfigError(
                f"Resilience needs a RetryPolicy and BreakerSettings (or None), got {retry!r}, {breaker!r}"
            )
        self.retry = retry
        self.breaker = breaker
        self._fallbacks: dict[str, tuple[str, ...]] = {}
        self._pending_fallbacks = dict(fallbacks or {})  # checked once the router's models are known
        self.clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._budget = _core.RetryBudget(self.retry.budget, self.retry.burst)
        self._lock = threading.Lock()
        self._breakers: dict[int, tuple[Any, Any]] = {}  # id(spec) -> (spec, breaker); guarded by _lock
        self._counts = dict.fromkeys(("requests", "retries", "fallbacks", "failed"), 0)  # guarded by _lock
        self.delays = _Delays()

    # -- configuration -----------------------------------------------------------

    def set_fallbacks(self, fallbacks: Mapping[str, Sequence[str]], modality_of: Callable[[str], str | None]) -> None:
        """Replace the fallback lists after checking them (see :func:`check_fallbacks`)."""
        checked = check_fallbacks(fallbacks, modality_of)
        with self._lock:
            self._fallbacks = checked
            self._pending_fallbacks = {}

    def check_pending(self, modality_of: Callable[[str], str | None]) -> None:
        """Check the fallbacks given to the constructor (called by the router when
        they are first needed, so the models can be registered after Resilience is built)."""
        if self._pending_fallbacks:
            self.set_fallbacks(self._pending_fallbacks, modality_of)

    def fallbacks(self, name: str) -> tuple[str, ...]:
        return self._fallbacks.get(name, ())

    # -- live state ------------------------------------------------------------

    def breaker_for(self, spec: Any) -> Any:
        """The circuit breaker of this model version (one per spec object, created on first use)."""
        known = self._breakers.get(id(spec))
        if known is not None:
            return known[1]
        if self.breaker is None:
            return _NEVER_OPEN
        with self._lock:
            known = self._breakers.setdefault(id(spec), (spec, self.breaker.build()))
            return known[1]

    def forget(self, spec: Any) -> None:
        """Drop a retired version's breaker (keeps the state bounded)."""
        with self._lock:
            self._breakers.pop(id(spec), None)

    def available(self, spec: Any) -> bool:
        """Lock-free: whether this version's breaker would admit a request now
        (closed, or open past its cooldown, or half-open with a probe slot free)."""
        known = self._breakers.get(id(spec))
        return known is None or known[1].would_admit(self.clock())

    def count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def stats(self) -> dict[str, Any]:
        """Counters (requests, retries, fallbacks served, failed to the caller) and the retry budget."""
        with self._lock:
            return {**self._counts, "retry_budget": self._budget.balance}

    def breaker_stats(self, spec: Any) -> dict[str, Any] | None:
        known = self._breakers.get(id(spec))
        return None if known is None else known[1].snapshot()

    def backoff_s(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, backoff * 2**retry)]."""
        policy = self.retry
        return self._rng.uniform(0.0, min(policy.max_backoff_s, policy.backoff_s * (2.0**retry)))

    def may_retry(self, error: BaseException, retries: int) -> bool:
        """Whether a failed attempt is retried: a retryable error, retries left, budget left."""
        return retries < self.retry.max_retries and self.retry.retryable(error) and self._budget.try_spend()

    def on_request(self) -> None:
        self._budget.on_request()
        self.count("requests")


    def submit(
        self,
        executor: Any,
        x: Any,
        model: str,
        *,
        lease: Callable[[str], Any],
        decide: Callable[[Any], Any],
        settle: Callable[[Any, ResultHandle], None],
        priority: str,
        deadline: float | None,
        timeout: float | None,
    ) -> ResultHandle:
        """Queue ``x`` on ``executor`` for ``model``, or for its fallbacks in order when it
        fails, is overloaded or its breaker is open; the returned future settles once.

        ``lease(name)`` holds a version of a model, ``decide(lease)`` is the decision
        for the model that takes the request (the future's ``decision``), and
        ``settle(lease, done)`` ends each attempt's lease with its outcome.
        """
        _, deadline_ns = request_times(priority, deadline)

        def submit_one(leased: Any, seconds_left: float | None, wait: float | None) -> tuple[ResultHandle, Any]:
            inner = executor.submit(leased.spec, x, priority=priority, deadline=seconds_left, timeout=wait)
            return inner, decide(leased)

        chain = (model, *self.fallbacks(model))
        return RequestRun(self, chain, lease, submit_one, settle, deadline_ns=deadline_ns, timeout=timeout).start()


def check_fallbacks(
    fallbacks: Mapping[str, Sequence[str]], modality_of: Callable[[str], str | None]
) -> dict[str, tuple[str, ...]]:
    """The fallback lists as tuples, checked: each fallback a registered model
    (``modality_of`` returns None for unknown names) of its model's modality, no model
    its own fallback or listed twice, and no cycle (a -> b -> a). ConfigError otherwise."""
    checked: dict[str, tuple[str, ...]] = {}
    for name, chain in fallbacks.items():
        chain = (chain,) if isinstance(chain, str) else tuple(chain)
        modality = modality_of(name)
        if modality is None:
            raise ConfigError(f"fallbacks for unknown model {name!r}")
        for fallback in chain:
            other = modality_of(fallback)
            if other is None:
                raise ConfigError(f"model {name!r}: fallback {fallback!r} is not a registered model")
            if other != modality:
                raise ConfigError(
                    f"model {name!r} ({modality}) cannot fall back to {fallback!r} ({other}): "
                    "fallbacks must serve the same modality"
                )
        if name in chain or len(set(chain)) != len(chain):
            raise ConfigError(f"model {name!r}: fallbacks {list(chain)} repeat a model or name the model itself")
        checked[name] = chain
    cycle = _find_cycle(checked)
    if cycle:
        raise ConfigError(f"fallback cycle: {' -> '.join(cycle)}")
    return checked


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle in the fallback graph as a path (a, b, a), or [] if there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        for nxt in graph.get(node, ()):
            found = visit(nxt, path + [node])
            if found:
                return found
        done.add(node)
        return []

    for start in graph:
        found = visit(start, [])
        if found:
            return found
    return []


# Queues a leased request: (lease, seconds left to the deadline or None, queue timeout)
# -> (the executor's handle, the Decision for that model). Raises Overloaded when
# the queue is full, or any routing error.
Submit = Callable[[Any, "float | None", "float | None"], tuple[ResultHandle, Any]]


class RequestRun:
    """One request across its attempts: settles ``future`` exactly once.

    Tries ``chain`` in order (the chosen model, then its fallbacks). For each
    model: the breaker must admit it; then it is queued through ``launch``.
    A retryable failure is retried on the same model after a backoff (budget
    permitting); a ModelError, a full queue or an open breaker moves on to the
    next model; anything else (deadline passed, router closed) ends the request.
    """

    def __init__(
        self,
        resilience: Resilience,
        chain: Sequence[str],
        lease: Callable[[str], Any],
        submit: Submit,
        finish: Callable[[Any, ResultHandle], None],
        *,
        deadline_ns: int | None,
        timeout: float | None,
    ) -> None:
        self.future = ResultHandle()
        self._resilience = resilience
        self._chain = tuple(chain)
        self._lease = lease
        self._submit = submit
        self._finish = finish
        self._deadline_ns = deadline_ns
        self._timeout = timeout  # only the first attempt may wait for room: later ones run on workers
        self._attempts: list[str] = []
        self._inner: ResultHandle | None = None
        self.future.add_done_callback(self._on_outer_done)

    def start(self) -> ResultHandle:
        self._resilience.on_request()
        self._attempt(0, retries=0)
        return self.future

    def _on_outer_done(self, outer: ResultHandle) -> None:
        inner = self._inner
        if outer.cancelled() and inner is not None:
            inner.cancel()

    def _seconds_left(self) -> float | None:
        if self._deadline_ns is None:
            return None
        return (self._deadline_ns - _core.monotonic_ns()) / 1e9

    def _attempt(self, index: int, retries: int) -> None:
        """Queue the request on chain[index] or the next model that takes it; never raises."""
        last_error: BaseException | None = None
        while index < len(self._chain):
            if self.future.cancelled():
                return
            name = self._chain[index]
            left = self._seconds_left()
            if left is not None and left <= 0:
                self._fail(DeadlineExceeded(f"request passed its deadline before {name!r} could take it"))
                return
            try:
                try:
                    lease = self._lease(name)
                except NoRoute:
                    if index == 0:
                        raise
                    self._attempts.append(f"{name}: not registered")  # unregistered since it was set
                    index += 1
                    continue
                breaker = self._resilience.breaker_for(lease.spec)
                admission = breaker.admit(self._resilience.clock())
                if admission == _REJECTED:
                    lease.discard()
                    self._attempts.append(f"{name}: circuit breaker open")
                    last_error = Overloaded(f"model {name!r}: circuit breaker open")
                    index += 1
                    continue
                probe = admission == _PROBE
                try:
                    inner, decision = self._submit(lease, left, self._timeout)
                except BaseException as error:
                    lease.discard()
                    if probe:
                        breaker.cancel_probe()
                    if not isinstance(error, Overloaded):
                        raise
                    self._attempts.append(f"{name}: overloaded")
                    last_error = error
                    index += 1
                    continue
            except BaseException as error:  # noqa: BLE001 - delivered to the caller's ResultHandle
                self._fail(error)
                return
            self._timeout = None
            self._inner = inner
            self.future.decision = decision  # type: ignore[attr-defined]  # until the request ends
            inner.add_done_callback(lambda done: self._done(index, retries, lease, decision, breaker, probe, done))
            return
        self._fail(last_error or Overloaded("no model left to try"))

    def _done(self, index: int, retries: int, lease: Any, decision: Any, breaker: Any, probe: bool, done: ResultHandle) -> None:
        self._finish(lease, done)
        if done.cancelled():
            if probe:
                breaker.cancel_probe()
            self.future.cancel()
            return
        error = done.exception()
        name = self._chain[index]
        model_failed = isinstance(error, ModelError)
        if error is None or model_failed:
            breaker.record(error is None, probe, self._resilience.clock())
        if error is None:
            self._succeed(index, decision, done.result())
        elif self._resilience.may_retry(error, retries):
            self._attempts.append(f"{name}: {type(error.__cause__).__name__}, retried")
            self._resilience.count("retries")
            delay = self._resilience.backoff_s(retries)
            self._resilience.delays.call_later(delay, lambda: self._attempt(index, retries + 1))
        elif model_failed and index + 1 < len(self._chain):
            self._attempts.append(f"{name}: {error}")
            self._attempt(index + 1, 0)
        else:
            self._attempts.append(f"{name}: {type(error).__name__}")
            self._fail(error, decision)

    def _succeed(self, index: int, decision: Any, result: Any) -> None:
        if index > 0:
            self._resilience.count("fallbacks")
            why = "; ".join(self._attempts)
            decision = decision.explained(f"fallback {self._chain[index]!r} served ({why})", self._attempts)
        elif self._attempts:
            decision = decision.explained(decision.reason, self._attempts)
        self.future.decision = decision  # type: ignore[attr-defined]
        if self.future.set_running_or_notify_cancel():
            self.future.set_result(result)

    def _fail(self, error: BaseException, decision: Any = None) -> None:
        self._resilience.count("failed")
        if decision is not None:
            self.future.decision = decision.explained(decision.reason, self._attempts)  # type: ignore[attr-defined]
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(error)
