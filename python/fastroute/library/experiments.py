"""Experiments: choose which version of a model serves each request.

- :class:`Split` spreads traffic over versions by weight, sticky per request key.
- :class:`Canary` steps a candidate's share up while it measures no worse than
  the stable version, and rolls it back at once when it measures significantly
  worse (one-sided exact tests on errors and on a latency quantile).
- :class:`Shadow` mirrors a share of requests to a candidate off the request
  path, records and compares its results, and never returns them.

Attach them with ``router.models.set_experiment(name, ...)`` /
``set_shadow(name, ...)``. Clocks and random generators are injectable so
tests control time and chance.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import ExperimentError

__all__ = [
    "Assignment",
    "Canary",
    "CanaryEvent",
    "CanaryThresholds",
    "Experiment",
    "Shadow",
    "MIN_ABOVE_QUANTILE",
    "ShadowRecord",
    "Split",
    "errs_more",
    "hypergeometric_tail",
    "more_often",
    "slower_at_quantile",
]


class RandomSource(Protocol):
    """Anything with ``random() -> float in [0, 1)``: ``random.Random``, ``numpy.random.Generator``."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class Assignment:
    """An experiment's verdict for one request: the version and why."""

    version: str
    reason: str


class Experiment:
    """Base class: picks a version per request and may learn from outcomes."""

    clock: Callable[[], float] = time.perf_counter

    def versions(self) -> set[str]:
        """Every version this experiment may send traffic to."""
        raise NotImplementedError

    def choose(self, key: Any = None) -> Assignment:
        """The version serving one request (sticky for a given ``key``) and why."""
        raise NotImplementedError

    def observe(self, version: str, ok: bool, latency: float) -> None:
        """One finished request: did ``version`` succeed, and how long did it take."""


class Split(Experiment):
    """Weighted traffic across versions, sticky by request key.

    A keyed request maps to a point in [0, 1) by a keyed BLAKE2 hash of the
    split's name and the key, so the same key always sees the same version
    while the weights stand (also across processes). Unkeyed requests draw
    the point from ``rng``. ``set_weights`` changes the weights live and
    atomically; weights must be >= 0 and sum to 1.
    """

    def __init__(self, weights: Mapping[str, float], *, name: str = "split", rng: RandomSource | None = None) -> None:
        self.name = name
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._versions: list[str] = []  # guarded by _lock
        self._bounds: list[float] = []  # cumulative upper bounds; guarded by _lock
        self._weights: dict[str, float] = {}  # guarded by _lock
        self._verdicts: list[tuple[Assignment, Assignment]] = []  # (random, sticky) per version; guarded by _lock
        self.set_weights(weights)

    @property
    def weights(self) -> dict[str, float]:
        """A copy of the current weights (version -> share)."""
        with self._lock:
            return dict(self._weights)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Replace the weights atomically (validated first: nothing changes on error)."""
        checked = _check_weights(self.name, weights)
        versions = [version for version, weight in checked.items() if weight > 0]
        bounds = list(itertools.accumulate(checked[version] for version in versions))
        verdicts = [
            tuple(
                Assignment(version, f"split {self.name!r} -> version {version!r} ({how}, weight {checked[version]:g})")
                for how in ("random draw", "sticky key")
            )
            for version in versions
        ]
        with self._lock:
            self._weights, self._versions, self._bounds, self._verdicts = checked, versions, bounds, verdicts

    def versions(self) -> set[str]:
        with self._lock:
            return set(self._weights)

    def choose(self, key: Any = None) -> Assignment:
        point = None if key is None else _unit_hash(self.name, key)
        with self._lock:
            if point is None:
                point = self._rng.random()
            index = min(bisect.bisect_right(self._bounds, point), len(self._versions) - 1)
            return self._verdicts[index][key is not None]


#: Fewest requests per version expected above the latency quantile at a judgement
#: (``min_samples * (1 - latency_quantile)``): below it the quantile test has no power.
MIN_ABOVE_QUANTILE = 5


@dataclass(frozen=True)
class CanaryThresholds:
    """How a canary steps and what counts as worse than stable.

    At each step in ``steps`` (increasing shares in (0, 1)) the candidate is
    judged once both versions have ``min_samples`` finished requests in the
    step; passing the last step promotes it to all traffic. It is worse, and
    rolled back, when it is worse both by more than a margin and significantly
    (so a small window does not roll back on noise):

    - errors: its error rate exceeds stable's by more than ``max_error_increase``
      (absolute) and a one-sided Fisher exact test says it errs more often
      than stable. Errors are also tested before the step's end, on each
      candidate outcome once stable has ``min_samples``, so a failing
      candidate is rolled back as soon as the evidence is in.
    - latency (at the step's end): its ``latency_quantile`` latency exceeds
      stable's times ``max_latency_ratio`` and a one-sided quantile test says
      so: Mood's median test generalised to that quantile, comparing how many
      of its latencies and of stable's (times ``max_latency_ratio``) lie above
      their pooled quantile, by a Fisher exact test.

    ``significance`` bounds the chance that a candidate no worse than stable
    (no more errors; latencies within ``max_latency_ratio``) is ever rolled
    back, over the whole canary (a union bound, so the true rate is lower):
    each step has ``significance / len(steps)``, half for its end (a quarter
    each for errors and latency) and half shared by the at most
    ``min_samples`` early error tests. The latency test needs requests above
    the quantile: ``min_samples * (1 - latency_quantile)`` must be at least
    :data:`MIN_ABOVE_QUANTILE`.
    """

    steps: tuple[float, ...] = (0.05, 0.25, 0.5)
    min_samples: int = 100
    max_error_increase: float = 0.01
    max_latency_ratio: float = 1.2
    latency_quantile: float = 0.5
    significance: float = 0.05

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not steps or any(not 0 < s < 1 for s in steps) or list(steps) != sorted(set(steps)):
            raise ExperimentError(f"canary steps must be increasing shares in (0, 1), got {self.steps!r}")
        if self.min_samples < 1:
            raise ExperimentError(f"canary min_samples must be >= 1, got {self.min_samples!r}")
        if not 0 <= self.max_error_increase <= 1:
            raise ExperimentError(f"canary max_error_increase must be in [0, 1], got {self.max_error_increase!r}")
        if not self.max_latency_ratio >= 1:
            raise ExperimentError(f"canary max_latency_ratio must be >= 1, got {self.max_latency_ratio!r}")
        if not 0 < self.latency_quantile < 1:
            raise ExperimentError(f"canary latency_quantile must be in (0, 1), got {self.latency_quantile!r}")
        if not 0 < self.significance < 1:
            raise ExperimentError(f"canary significance must be in (0, 1), got {self.significance!r}")
        if self.min_samples * (1 - self.latency_quantile) < MIN_ABOVE_QUANTILE:
            needed = math.ceil(MIN_ABOVE_QUANTILE / (1 - self.latency_quantile))
            raise ExperimentError(
                f"canary min_samples {self.min_samples} leaves fewer than {MIN_ABOVE_QUANTILE} requests per version "
                f"above latency_quantile {self.latency_quantile:g}, too few to test latency: raise min_samples to "
                f">= {needed} or lower latency_quantile"
            )
        object.__setattr__(self, "steps", steps)

    def step_level(self) -> float:
        """The significance level of each test at a step's end (errors, latency)."""
        return self.significance / len(self.steps) / 4

    def early_level(self) -> float:
        """The significance level of each error test before a step's end."""
        return self.significance / len(self.steps) / (2 * self.min_samples)


@dataclass(frozen=True)
class CanaryEvent:
    """One canary transition: ``action`` is start, step, promote or rollback."""

    time: float
    action: str
    share: float
    reason: str


class _Arm:
    """One version's outcomes during the current canary step."""

    def __init__(self, window: int) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=window)

    def add(self, ok: bool, latency: float) -> None:
        self.requests += 1
        self.errors += not ok
        self.latencies.append(latency)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests

    def latency(self, q: float) -> float:
        return float(np.quantile(self.latency_array(), q))

    def latency_array(self) -> np.ndarray:
        return np.fromiter(self.latencies, float, len(self.latencies))


class Canary(Experiment):
    """A candidate version whose share steps up while it is no worse than stable.

    Requests split between ``stable`` and ``candidate`` like a :class:`Split`
    (sticky by key) at the current step's share. Outcomes come back through
    :meth:`observe`; at each judgement the canary steps up, promotes
    (candidate takes all traffic) or rolls back at once (stable takes all
    traffic). Every transition and its reason is in :attr:`history`, and
    ``on_event`` (if given) is called with each :class:`CanaryEvent` outside
    the canary's lock.
    """

    def __init__(
        self,
        stable: str,
        candidate: str,
        *,
        thresholds: CanaryThresholds | None = None,
        name: str = "canary",
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[CanaryEvent], None] | None = None,
    ) -> None:
        if stable == candidate:
            raise ExperimentError(f"canary {name!r}: stable and candidate are both {stable!r}")
        self.stable, self.candidate, self.name = stable, candidate, name
        self.thresholds = thresholds if thresholds is not None else CanaryThresholds()
        self.clock = clock
        self._on_event = on_event
        self._lock = threading.Lock()
        self._step = 0  # guarded by _lock
        self._state = "running"  # running | promoted | rolled_back; guarded by _lock
        self._history: list[CanaryEvent] = []  # guarded by _lock
        self._split = Split(self._weights(self.thresholds.steps[0]), name=name, rng=rng)
        self._arms = self._fresh_arms()  # guarded by _lock
        self._verdicts = self._describe()  # version -> Assignment for the current step; guarded by _lock
        self._record("start", self.thresholds.steps[0], f"candidate {candidate!r} starts beside stable {stable!r}")

    @property
    def state(self) -> str:
        """running, promoted or rolled_back."""
        with self._lock:
            return self._state

    @property
    def share(self) -> float:
        """The candidate's current share of traffic."""
        return self._split.weights[self.candidate]

    @property
    def history(self) -> list[CanaryEvent]:
        """Every transition so far (start, steps, then promote or rollback), oldest first."""
        with self._lock:
            return list(self._history)

    def versions(self) -> set[str]:
        return {self.stable, self.candidate}

    def choose(self, key: Any = None) -> Assignment:
        version = self._split.choose(key).version
        with self._lock:
            return self._verdicts[version]

    def observe(self, version: str, ok: bool, latency: float) -> None:
        with self._lock:
            if self._state != "running" or version not in self._arms:
                return
            self._arms[version].add(ok, latency)
            event = self._judge(candidate_outcome=version == self.candidate)
        if event is not None and self._on_event is not None:
            self._on_event(event)

    # -- internals (callers hold _lock) ---------------------------------------------

    def _judge(self, candidate_outcome: bool) -> CanaryEvent | None:
        stable, candidate = self._arms[self.stable], self._arms[self.candidate]
        limits = self.thresholds
        if stable.requests < limits.min_samples or candidate.requests == 0:
            return None
        if candidate.requests < limits.min_samples:  # early: errors only, one test per candidate outcome
            worse = self._more_errors(stable, candidate, limits.early_level()) if candidate_outcome else None
        else:
            worse = self._more_errors(stable, candidate, limits.step_level()) or self._slower(stable, candidate)
        if worse:
            self._state = "rolled_back"
            return self._move("rollback", 0.0, worse)
        if candidate.requests < limits.min_samples:
            return None
        measured = self._measured(stable, candidate)
        if self._step + 1 == len(self.thresholds.steps):
            self._state = "promoted"
            return self._move("promote", 1.0, f"passed the last step: {measured}")
        self._step += 1
        return self._move("step", self.thresholds.steps[self._step], f"no worse than stable: {measured}")

    def _more_errors(self, stable: _Arm, candidate: _Arm, level: float) -> str | None:
        """Why the candidate errs more than stable (by over the margin, significantly at ``level``), or None."""
        return errs_more(
            candidate.errors, candidate.requests, stable.errors, stable.requests, self.thresholds.max_error_increase, level
        )

    def _slower(self, stable: _Arm, candidate: _Arm) -> str | None:
        """Why the candidate's latency quantile is over stable's x the ratio (significantly), or None."""
        limits = self.thresholds
        q, ratio = limits.latency_quantile, limits.max_latency_ratio
        candidate_latency, stable_latency = candidate.latency(q), stable.latency(q)
        if candidate_latency <= stable_latency * ratio:
            return None
        p = slower_at_quantile(candidate.latency_array(), stable.latency_array() * ratio, q)
        if p >= limits.step_level():
            return None
        return (
            f"latency q{q:g} {candidate_latency:.6g}s > stable {stable_latency:.6g}s x {ratio:g} "
            f"(p={p:.2g} < {limits.step_level():.2g})"
        )

    def _measured(self, stable: _Arm, candidate: _Arm) -> str:
        q = self.thresholds.latency_quantile
        return (
            f"errors {candidate.error_rate:.4f} vs {stable.error_rate:.4f}, "
            f"latency q{q:g} {candidate.latency(q):.6g}s vs {stable.latency(q):.6g}s"
        )

    def _move(self, action: str, share: float, reason: str) -> CanaryEvent:
        self._split.set_weights(self._weights(share))
        self._arms = self._fresh_arms()
        self._verdicts = self._describe()
        return self._record(action, share, reason)

    def _describe(self) -> dict[str, Assignment]:
        if self._state == "running":
            share = self.thresholds.steps[self._step]
            detail = f"step {self._step + 1}/{len(self.thresholds.steps)}, candidate share {share:g}"
        else:
            detail = self._state.replace("_", " ")
        return {
            version: Assignment(version, f"canary {self.name!r} -> version {version!r} ({detail})")
            for version in (self.stable, self.candidate)
        }

    def _record(self, action: str, share: float, reason: str) -> CanaryEvent:
        event = CanaryEvent(self.clock(), action, share, reason)
        self._history.append(event)
        return event

    def _weights(self, share: float) -> dict[str, float]:
        return {self.stable: 1.0 - share, self.candidate: share}

    def _fresh_arms(self) -> dict[str, _Arm]:
        window = max(1000, 10 * self.thresholds.min_samples)
        return {self.stable: _Arm(window), self.candidate: _Arm(window)}


# -- significance tests -----------------------------------------------------------------------


def more_often(hits: int, trials: int, other_hits: int, other_trials: int) -> float:
    """One-sided Fisher exact test: the p-value of "the first sample's rate (``hits`` of
    ``trials``) is higher than the second's". Exact for any sample size (no normal
    approximation), conditional on the total number of hits."""
    return hypergeometric_tail(hits, trials + other_trials, hits + other_hits, trials)


def errs_more(errors: int, requests: int, stable_errors: int, stable_requests: int, margin: float,
              level: float) -> str | None:
    """Why a version errs more than stable, or None: its error rate (``errors`` of ``requests``)
    exceeds stable's by more than ``margin`` (absolute) and :func:`more_often` rejects "no more
    errors than stable" at ``level``. Both must hold: the margin alone rolls back on noise."""
    rate, stable_rate = errors / requests, stable_errors / stable_requests
    if rate <= stable_rate + margin:
        return None
    p = more_often(errors, requests, stable_errors, stable_requests)
    if p >= level:
        return None
    return (
        f"error rate {rate:.4f} after {requests} requests > stable {stable_rate:.4f} + {margin:g} "
        f"(p={p:.2g} < {level:.2g})"
    )


def slower_at_quantile(latencies: np.ndarray, baseline: np.ndarray, q: float) -> float:
    """One-sided quantile test (Mood's median test at quantile ``q``): the p-value of "the
    ``q`` quantile of ``latencies`` is above that of ``baseline``". Counts each sample's
    values above the pooled ``q`` quantile and compares the counts with :func:`more_often`;
    rank-based, so a few extreme latencies weigh no more than any other above the quantile."""
    pooled = np.quantile(np.concatenate([latencies, baseline]), q)
    above, baseline_above = int(np.count_nonzero(latencies > pooled)), int(np.count_nonzero(baseline > pooled))
    return more_often(above, len(latencies), baseline_above, len(baseline))


def hypergeometric_tail(at_least: int, population: int, marked: int, draws: int) -> float:
    """P(X >= ``at_least``) for X the marked items among ``draws`` taken without replacement
    from ``population`` items of which ``marked`` are marked. Sums whichever tail is the
    shorter from its largest term outwards, stopping once the terms no longer count."""
    low, high = max(0, draws - (population - marked)), min(marked, draws)
    if at_least <= low:
        return 1.0
    if at_least > high:
        return 0.0
    unmarked = population - marked

    def up(k: int) -> float:  # P(X = k + 1) / P(X = k)
        return (marked - k) * (draws - k) / ((k + 1) * (unmarked - draws + k + 1))

    if at_least > draws * marked / population:  # the upper tail, from at_least up
        k, term = at_least, math.exp(_log_hypergeometric(at_least, marked, unmarked, draws))
        total = term
        while k < high and term > total * 1e-17:
            term *= up(k)
            k += 1
            total += term
        return min(1.0, total)
    k, term = at_least - 1, math.exp(_log_hypergeometric(at_least - 1, marked, unmarked, draws))
    below = term  # the lower tail, from at_least - 1 down
    while k > low and term > below * 1e-17:
        k -= 1
        term /= up(k)
        below += term
    return max(0.0, 1.0 - below)


def _log_hypergeometric(k: int, marked: int, unmarked: int, draws: int) -> float:
    return _log_choose(marked, k) + _log_choose(unmarked, draws - k) - _log_choose(marked + unmarked, draws)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@dataclass(frozen=True)
class ShadowRecord:
    """One mirrored request: ``status`` is ok, error (the shadow raised) or compare_error."""

    time: float
    version: str
    served_version: str
    status: str
    latency: float
    comparison: Any = None
    error: str | None = None


class Shadow:
    """Mirror a share of requests to a candidate version, off the request path.

    :meth:`offer` only enqueues (never blocks, never raises for the shadow's
    sake): ``workers`` daemon threads run the candidate, call
    ``compare(served_result, shadow_result)`` and record the outcome. The
    queue is bounded: when the shadow is slow or hangs, further mirrors are
    dropped and counted, so a shadow failure never affects served requests.
    """

    def __init__(
        self,
        version: str,
        *,
        share: float = 1.0,
        compare: Callable[[Any, Any], Any] | None = None,
        workers: int = 1,
        queue_size: int = 64,
        max_records: int = 1000,
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= share <= 1:
            raise ExperimentError(f"shadow share must be in [0, 1], got {share!r}")
        if workers < 1 or queue_size < 1 or max_records < 1:
            raise ExperimentError(
                f"shadow workers, queue_size and max_records must be >= 1, "
                f"got {workers!r}, {queue_size!r}, {max_records!r}"
            )
        self.version, self.share, self.compare = version, share, compare
        self.clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Any, Any, str, Callable[[Any], Any]] | None] = queue.Queue(queue_size)
        self._records: deque[ShadowRecord] = deque(maxlen=max_records)  # guarded by _lock
        self._counts: Counter[str] = Counter()  # guarded by _lock
        self._workers = workers
        self._threads: list[threading.Thread] = []  # guarded by _lock
        self._closed = False  # guarded by _lock
        self._pending = 0  # enqueued mirrors not yet recorded or dropped; guarded by _lock
        self._idle = threading.Condition(self._lock)

    def offer(self, x: Any, served: Any, served_version: str, run: Callable[[Any], Any]) -> bool:
        """Maybe mirror ``x`` (whose served result is ``served``); True when enqueued.

        ``run(x)`` executes the candidate version on a shadow worker. Never
        blocks: a full queue drops the mirror and counts it.
        """
        with self._lock:
            if self._closed or self._rng.random() >= self.share:
                return False
            self._start_workers()
            try:
                self._jobs.put_nowait((x, served, served_version, run))
            except queue.Full:
                self._counts["dropped"] += 1
                return False
            self._pending += 1
        return True

    def records(self) -> list[ShadowRecord]:
        """The most recent records (at most ``max_records``), oldest first."""
        with self._lock:
            return list(self._records)

    def counts(self) -> dict[str, int]:
        """Outcome totals: ok, error, compare_error, dropped."""
        with self._lock:
            return dict(self._counts)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every enqueued mirror has been recorded or dropped; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 1.0) -> bool:
        """Stop mirroring: pending mirrors are dropped (and counted), workers exit.

        Returns True when every worker has exited within ``timeout``; a hung
        shadow's worker is a daemon thread and never blocks interpreter exit.
        """
        with self._lock:
            threads = list(self._threads)
            if not self._closed:
                self._closed = True
                self._drop_pending()
                if threads:
                    self._jobs.put_nowait(None)  # room: the queue is empty and offers have stopped
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _drop_pending(self) -> None:
        """Empty the queue, counting each mirror as dropped (caller holds _lock)."""
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                return
            self._settle("dropped")

    def _start_workers(self) -> None:
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work, name=f"fastroute-shadow-{self.version}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._mirror(*job)
        try:
            self._jobs.put_nowait(None)  # pass the stop signal on to the next worker
        except queue.Full:
            pass

    def _mirror(self, x: Any, served: Any, served_version: str, run: Callable[[Any], Any]) -> None:
        started = self.clock()
        try:
            result = run(x)
        except Exception as error:
            self._add(ShadowRecord(started, self.version, served_version, "error", self.clock() - started, error=repr(error)))
            return
        latency = self.clock() - started
        try:
            comparison = self.compare(served, result) if self.compare is not None else None
        except Exception as error:
            self._add(ShadowRecord(started, self.version, served_version, "compare_error", latency, error=repr(error)))
            return
        self._add(ShadowRecord(started, self.version, served_version, "ok", latency, comparison))

    def _add(self, record: ShadowRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._settle(record.status)

    def _settle(self, status: str) -> None:
        """Count one mirror's end (caller holds _lock)."""
        self._counts[status] += 1
        self._pending -= 1
        if self._pending == 0:
            self._idle.notify_all()


def _check_weights(name: str, weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise ExperimentError(f"split {name!r}: weights must be a non-empty mapping version -> weight, got {weights!r}")
    checked: dict[str, float] = {}
    for version, weight in weights.items():
        if not isinstance(version, str) or not version:
            raise ExperimentError(f"split {name!r}: version must be a non-empty str, got {version!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ExperimentError(f"split {name!r}: weight of {version!r} must be a finite number >= 0, got {weight!r}")
        checked[version] = float(weight)
    total = sum(checked.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ExperimentError(f"split {name!r}: weights must sum to 1, got {total:g} from {dict(weights)!r}")
    return checked


def _unit_hash(salt: str, key: Any) -> float:
    """A point in [0, 1) fixed by (salt, key), stable across processes."""
    data = key if isinstance(key, bytes) else str(key).encode()
    digest = hashlib.blake2b(data, digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0**64
