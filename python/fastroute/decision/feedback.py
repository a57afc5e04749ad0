"""The feedback store: joins outcomes to the decisions they follow.

Every decision the router makes is recorded under an id (``"<token>-<n>"``,
the token naming this store, so an id from another router is recognised).
``feedback(id, reward=..., quality=..., cost=..., latency=...)`` joins an
outcome to it from any thread, possibly minutes later, and, when a learning
policy made the decision, teaches that policy. The executor's observations
(latency, errors) are attached without user code (``observe``).

The store is bounded: at most ``capacity`` decisions, each kept ``ttl``
seconds (the oldest leave first). Feedback never raises for an id it cannot
use; it returns and counts a status instead:

- ``"joined"``: the outcome was joined (and learned, for a learning policy);
- ``"unknown"``: not an id this store issued;
- ``"foreign"``: an id issued by another router's store;
- ``"expired"``: issued here but already gone (older than ``ttl``, or pushed
  out by ``capacity``);
- ``"duplicate"``: this decision already has its outcome.

A reward that is not a finite number, or outside the policy's
``reward_range``, raises InvalidInput (counted as ``invalid``) and leaves the
decision open for a corrected retry: a NaN never reaches a model.

Recording is on every request's path, so it takes no lock for a decision no
learning policy made (:meth:`FeedbackStore.record_plain`): decision ``n`` is
stored in slot ``n % capacity`` of a ring (one dict store, atomic in
CPython), where decision ``n + capacity`` later replaces it; its age is
checked when its id is looked up.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import InvalidInput
from .base import Choice
from .online import OnlinePolicy, Outcome, finite_number

__all__ = ["FeedbackStore", "LoggedDecision", "STATUSES"]

#: What feedback() can return (and counts under the same names).
STATUSES = ("joined", "unknown", "foreign", "expired", "duplicate")
_OUTCOME_FIELDS = frozenset(Outcome._fields) - {"reward"}


class LoggedDecision(NamedTuple):
    """A joined decision, as off-policy evaluation reads it."""

    id: str
    model: str
    propensity: float
    reward: float
    features: np.ndarray | None


#: A plain decision as recorded: (number, model, propensity, cost, created).
_Plain = tuple[int, str, float, "float | None", float]


@dataclass(slots=True)
class _Entry:
    number: int
    model: str
    propensity: float
    policy: OnlinePolicy | None  # the learning policy that decided, if any
    pending: Any
    cost: float | None
    created: float
    latency: float | None = None
    error: str | None = None
    joined: bool = False


class FeedbackStore:
    """Bounded join store of decisions awaiting their outcome (see the module doc).

    ``capacity``: decisions kept; ``ttl``: seconds each is kept; ``log_size``:
    joined decisions kept for :meth:`logged` (0: none); ``clock``: seconds,
    monotonic (injected for tests); ``token``: the id prefix (default random).
    Thread-safe: one lock around the table, never held while a policy learns.
    """

    def __init__(
        self,
        capacity: int = 100_000,
        ttl: float = 600.0,
        *,
        log_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        token: str | None = None,
    ) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise InvalidInput(f"capacity must be a positive int, got {capacity!r}")
        if not (isinstance(ttl, (int, float)) and ttl > 0):
            raise InvalidInput(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.capacity, self.ttl, self._clock = capacity, float(ttl), clock
        self.token = token if token is not None else os.urandom(4).hex()
        if "-" in self.token or not self.token:
            raise InvalidInput(f"token must be non-empty without '-', got {self.token!r}")
        self._lock = threading.Lock()
        # Decision n in slot n % capacity: a plain tuple or an _Entry (learning decisions).
        # Written once per decision, without the lock for plain ones; read under it.
        # (A dict: it holds only the slots used so far, whatever the capacity.)
        self._ring: dict[int, _Entry | _Plain] = {}
        # Plain decisions an id was looked up for, as _Entry (joined, observed); guarded by _lock.
        self._looked_up: dict[int, _Entry] = {}
        self._numbers = itertools.count()  # decision numbers: next() is atomic in CPython
        self._counts: Counter[str] = Counter()  # guarded by _lock
        self._log: deque[LoggedDecision] = deque(maxlen=log_size)  # guarded by _lock

    def record(self, choice: Choice, *, cost: float | None = None) -> str:
        """Record a decision (its model, propensity and learning context); return its id."""
        policy = _policy_of(choice)
        if policy is None:
            return self.record_plain(choice.model, cost, choice.propensity)
        number = next(self._numbers)
        self._ring[number % self.capacity] = _Entry(
            number, choice.model, choice.propensity, policy, choice.pending, cost, self._clock())
        return f"{self.token}-{number}"

    def record_plain(self, model: str, cost: float | None = None, propensity: float = 1.0) -> str:
        """Record a decision no learning policy made; return its id (joinable as any other).
        Thread-safe, lock-free, never blocks."""
        number = next(self._numbers)
        self._ring[number % self.capacity] = (number, model, propensity, cost, self._clock())
        return f"{self.token}-{number}"

    def plain_ring(self) -> tuple[Any, dict[int, Any], int, str, Callable[[], float]]:
        """What :meth:`record_plain` writes to, for the native request path to record the same
        entries in C++ (decision/fast_path.py): ``(numbers, ring, capacity, token, clock)``."""
        return self._numbers, self._ring, self.capacity, self.token, self._clock

    def observe(self, decision_id: str, error: BaseException | None, latency: float) -> None:
        """Attach what the executor saw; an error teaches the policy its ``error_reward``.
        Nothing for a decision no learning policy made (nothing reads it there)."""
        number = self._number(decision_id)
        if type(self._ring.get(number % self.capacity) if number >= 0 else None) is not _Entry:
            return
        with self._lock:
            status, entry = self._find(decision_id)
            if entry is None or entry.number != number:
                return
            entry.latency = latency
            entry.error = None if error is None else f"{type(error).__name__}: {error}"
            policy = entry.policy
            learn = error is not None and policy is not None and policy.error_reward is not None and not entry.joined
            if learn:
                entry.joined = True
                self._counts["errors_learned"] += 1
        if learn:
            self._learn(decision_id, entry, float(policy.error_reward))

    def observer(self, decision_id: str) -> Callable[[BaseException | None, float], None]:
        """``observe`` bound to one decision: what a request calls with its (error, latency)
        when it ends (e.g. a :class:`~fastroute.library.leases.Lease`'s ``on_outcome``)."""
        return functools.partial(self.observe, decision_id)

    def feedback(self, decision_id: Any, reward: Any = None, **outcome: Any) -> str:
        """Join ``reward`` (or ``quality``, ``cost``, ``latency``) to a decision; returns the status."""
        unknown = set(outcome) - _OUTCOME_FIELDS
        if unknown:
            raise InvalidInput(f"unknown outcome fields {sorted(unknown)}; known: reward, {sorted(_OUTCOME_FIELDS)}")
        with self._lock:
            status, entry = self._find(decision_id)
            if entry is not None:
                try:
                    value = self._reward(entry, Outcome(reward=reward, **outcome))
                except InvalidInput:
                    self._counts["invalid"] += 1
                    raise
                entry.joined = True
            self._counts[status] += 1
        if entry is not None:
            self._learn(str(decision_id), entry, value)
        return status

    def stats(self) -> dict[str, int]:
        """Counts by status (joined, unknown, foreign, expired, duplicate), plus ``invalid``
        rewards refused, ``errors_learned``, ``dropped`` (left without an outcome) and ``open``."""
        with self._lock:
            counts = {status: self._counts[status] for status in STATUSES}
            for extra in ("invalid", "errors_learned"):
                counts[extra] = self._counts[extra]
            now = self._clock()
            recorded = list(self._ring.values())
            issued = 1 + max((_number_of(slot) for slot in recorded), default=-1)
            counts["open"] = sum(
                not self._expired(entry, now) and not entry.joined
                for entry in (self._as_entry(slot) for slot in recorded))
            # Every decision is open, was joined (by feedback or a learned error) or left without.
            counts["dropped"] = issued - counts["open"] - self._counts["joined"] - self._counts["errors_learned"]
            return counts

    def logged(self) -> list[LoggedDecision]:
        """The most recent joined decisions (up to ``log_size``), oldest first."""
        with self._lock:
            return list(self._log)

    # -- internals -----------------------------------------------------------------

    def _find(self, decision_id: Any) -> tuple[str, _Entry | None]:
        """(status, entry) for an id; the entry only when it can be joined. Caller holds _lock."""
        if not isinstance(decision_id, str) or "-" not in decision_id:
            return "unknown", None
        token, _, digits = decision_id.rpartition("-")
        if token != self.token:
            return "foreign", None
        number = self._number(decision_id)
        slot = self._ring.get(number % self.capacity) if number >= 0 else None
        if slot is None or _number_of(slot) < number:
            return "unknown", None
        if _number_of(slot) > number:  # pushed out by capacity
            return "expired", None
        entry = self._as_entry(slot)
        if self._expired(entry, self._clock()):
            return "expired", None
        if entry.joined:
            return "duplicate", None
        return "joined", entry

    def _number(self, decision_id: str) -> int:
        token, _, digits = decision_id.rpartition("-")
        return int(digits) if token == self.token and digits.isdigit() else -1

    def _as_entry(self, slot: _Entry | _Plain) -> _Entry:
        """A ring slot's decision as an _Entry (made once for a plain one). Caller holds _lock."""
        if type(slot) is _Entry:
            return slot
        number, model, propensity, cost, created = slot
        entry = self._looked_up.get(number)
        if entry is None:
            if len(self._looked_up) >= self.capacity:  # keep only those still in the ring
                ring, capacity = self._ring, self.capacity
                self._looked_up = {n: e for n, e in self._looked_up.items() if _number_of(ring[n % capacity]) == n}
            entry = self._looked_up[number] = _Entry(number, model, propensity, None, None, cost, created)
        return entry

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.created > self.ttl

    def _reward(self, entry: _Entry, outcome: Outcome) -> float:
        if outcome.latency is None and entry.latency is not None:
            outcome = outcome._replace(latency=entry.latency)
        if outcome.cost is None and entry.cost is not None:
            outcome = outcome._replace(cost=entry.cost)
        if entry.policy is not None:
            return entry.policy.reward_of(entry.model, outcome)
        if outcome.reward is not None:
            return finite_number("reward", outcome.reward)
        if outcome.quality is not None:
            return finite_number("quality", outcome.quality)
        raise InvalidInput("feedback needs reward= or quality=")

    def _learn(self, decision_id: str, entry: _Entry, reward: float) -> None:
        """Teach the deciding policy (outside the lock: updates run in C++ without the GIL)."""
        if entry.policy is not None:
            entry.policy.learn(entry.pending, reward)
        row = entry.pending.row if entry.pending is not None else None
        with self._lock:
            self._log.append(LoggedDecision(decision_id, entry.model, entry.propensity, reward, row))


def _number_of(slot: _Entry | _Plain) -> int:
    return slot.number if type(slot) is _Entry else slot[0]


def _policy_of(choice: Choice) -> OnlinePolicy | None:
    pending = choice.pending
    return pending.policy if pending is not None and isinstance(pending.policy, OnlinePolicy) else None
