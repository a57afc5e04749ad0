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
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import Counter, OrderedDict, deque
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


@dataclass(slots=True)
class _Entry:
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
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # guarded by _lock
        self._next = 0  # guarded by _lock
        self._counts: Counter[str] = Counter()  # guarded by _lock
        self._log: deque[LoggedDecision] = deque(maxlen=log_size)  # guarded by _lock

    def record(self, choice: Choice, *, cost: float | None = None) -> str:
        """Record a decision (its model, propensity and learning context); return its id."""
        now = self._clock()
        entry = _Entry(choice.model, choice.propensity, _policy_of(choice), choice.pending, cost, now)
        with self._lock:
            self._evict(now, room=1)
            number = self._next
            self._next += 1
            self._entries[number] = entry
        return f"{self.token}-{number}"

    def observe(self, decision_id: str, error: BaseException | None, latency: float) -> None:
        """Attach what the executor saw; an error teaches the policy its ``error_reward``."""
        with self._lock:
            entry = self._entries.get(self._number(decision_id), None)
            if entry is None:
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
            for extra in ("invalid", "errors_learned", "dropped"):
                counts[extra] = self._counts[extra]
            counts["open"] = sum(not entry.joined for entry in self._entries.values())
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
        if number < 0 or number >= self._next:
            return "unknown", None
        self._evict(self._clock(), room=0)
        entry = self._entries.get(number)
        if entry is None:
            return "expired", None
        if entry.joined:
            return "duplicate", None
        return "joined", entry

    def _number(self, decision_id: str) -> int:
        token, _, digits = decision_id.rpartition("-")
        return int(digits) if token == self.token and digits.isdigit() else -1

    def _evict(self, now: float, room: int) -> None:
        """Drop decisions older than ttl, and the oldest beyond capacity - room. Caller holds _lock."""
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if len(entries) + room <= self.capacity and now - oldest.created <= self.ttl:
                break
            if not oldest.joined:
                self._counts["dropped"] += 1
            entries.popitem(last=False)

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


def _policy_of(choice: Choice) -> OnlinePolicy | None:
    pending = choice.pending
    return pending.policy if pending is not None and isinstance(pending.policy, OnlinePolicy) else None
