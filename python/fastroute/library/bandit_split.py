"""BanditSplit: a version experiment that learns, shifting traffic to the better version.

Beside :class:`~fastroute.library.experiments.Split` (fixed weights) and
:class:`~fastroute.library.experiments.Canary` (fixed steps), a BanditSplit
runs Thompson sampling over versions of one model (Beta posteriors, in C++:
``fastroute._core.Bandit``): a request goes to a version with the probability
that it is the best, so the better version gets more traffic as evidence
grows, with no fixed steps, while every version keeps at least ``floor`` of
the traffic. A version earns reward 1 for a request that succeeded (and, with
``latency_target``, finished within it), 0 otherwise; :meth:`record` adds
rewards in [0, 1] from elsewhere (answer quality).

Guarantees: a version that errs more than ``stable`` both by more than
``max_error_increase`` and significantly (the one-sided Fisher exact test
:class:`~fastroute.library.experiments.Canary` uses, :func:`~fastroute.library.experiments.errs_more`)
is rolled back at once (it gets no more traffic), so a version no worse than
stable is not rolled back on noise. A version is tested on some of its own
outcomes once stable has ``min_samples`` (see :meth:`BanditSplit.look_level`):
each before its own ``min_samples``, so a failing version goes early, then at
``min_samples`` x 1, 2, 4, 8...; ``significance`` bounds the chance that a
version no worse than stable is ever rolled back, over the whole experiment
however long it runs (a union bound over versions and tests, the levels
shrinking geometrically; Thompson sampling makes sample sizes depend on past
outcomes, so the bound is approximate: the seeded simulation in
tests/library/test_bandit_significance.py measures it). When the best version's
probability of being best reaches ``promote_at`` (every active version having
``min_samples`` requests) it is promoted and takes all traffic. Every
transition is in :attr:`history`; ``on_event`` is called with each outside the lock.
Sticky: keyed requests map to versions through a Split over the current
shares (refreshed every ``refresh`` outcomes), so a key keeps its version
unless the shares move across its point.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import _core
from ..errors import ExperimentError
from .experiments import Assignment, Experiment, RandomSource, Split, errs_more

__all__ = ["BanditEvent", "BanditSplit"]


@dataclass(frozen=True)
class BanditEvent:
    """One transition: ``action`` is start, rollback (of ``version``) or promote (of ``version``)."""

    time: float
    action: str
    version: str | None
    shares: dict[str, float]
    reason: str


class BanditSplit(Experiment):
    """Thompson sampling over versions with a floor share, rollback and promotion (see the module doc)."""

    def __init__(
        self,
        versions: Sequence[str],
        *,
        stable: str | None = None,
        floor: float = 0.05,
        min_samples: int = 100,
        max_error_increase: float = 0.01,
        significance: float = 0.05,
        promote_at: float | None = 0.95,
        latency_target: float | None = None,
        refresh: int = 50,
        name: str = "bandit",
        seed: int = 0,
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[BanditEvent], None] | None = None,
    ) -> None:
        versions = [str(v) for v in versions]
        if len(versions) < 2 or len(set(versions)) != len(versions):
            raise ExperimentError(f"bandit {name!r}: needs at least two distinct versions, got {versions}")
        self.stable = versions[0] if stable is None else stable
        if self.stable not in versions:
            raise ExperimentError(f"bandit {name!r}: stable version {self.stable!r} is not among {versions}")
        if not 0 <= floor * len(versions) <= 1:
            raise ExperimentError(f"bandit {name!r}: floor must be in [0, 1/{len(versions)}], got {floor!r}")
        if min_samples < 1 or refresh < 1:
            raise ExperimentError(f"bandit {name!r}: min_samples and refresh must be >= 1")
        if not 0 < significance < 1:
            raise ExperimentError(f"bandit {name!r}: significance must be in (0, 1), got {significance!r}")
        if promote_at is not None and not 0.5 < promote_at <= 1:
            raise ExperimentError(f"bandit {name!r}: promote_at must be in (0.5, 1] or None, got {promote_at!r}")
        self.name, self.floor, self.min_samples = name, floor, min_samples
        self.max_error_increase, self.significance = max_error_increase, significance
        self.promote_at, self.latency_target = promote_at, latency_target
        self.refresh, self.clock = refresh, clock
        self._versions = tuple(versions)
        self._on_event = on_event
        self._draws = np.random.default_rng(seed)
        self._bandit = _core.Bandit(
            "thompson_beta", len(versions), 0, floor * len(versions), 1.0, 1.0, 1.0, seed, False, 10.0, [], []
        )
        self._lock = threading.Lock()
        self._active = np.ones(len(versions), dtype=np.uint8)  # guarded by _lock
        self._requests = np.zeros(len(versions), dtype=np.int64)  # guarded by _lock
        self._errors = np.zeros(len(versions), dtype=np.int64)  # guarded by _lock
        self._since_refresh = 0  # guarded by _lock
        self._state = "running"  # running | promoted | rolled_back; guarded by _lock
        self._winner: str | None = None  # guarded by _lock
        self._history: list[BanditEvent] = []  # guarded by _lock
        shares = self._shares()
        self._split = Split(shares, name=name, rng=rng if rng is not None else random.Random(seed))
        self._record("start", None, shares, f"Thompson sampling over {versions}, floor {floor:g} each")

    @property
    def state(self) -> str:
        """running, promoted or rolled_back."""
        with self._lock:
            return self._state

    @property
    def winner(self) -> str | None:
        """The promoted version, or stable after every other was rolled back; None while running."""
        with self._lock:
            return self._winner

    @property
    def shares(self) -> dict[str, float]:
        """Each version's current share of keyed traffic (its chance of being best, with the floor)."""
        return self._split.weights

    @property
    def history(self) -> list[BanditEvent]:
        """Every transition so far (start, rollbacks, promote), oldest first."""
        with self._lock:
            return list(self._history)

    def versions(self) -> set[str]:
        return set(self._versions)

    def look_level(self, requests: int) -> float | None:
        """The significance level of the error test on a version's ``requests``-th outcome,
        or None when that outcome is not tested. Each version other than stable has
        ``significance / (len(versions) - 1)``: half shared by its outcomes before
        ``min_samples`` (each tested), half spent at ``min_samples`` x 2^k (k = 0, 1, 2...),
        the k-th test getting a 2^-(k+1) part of it, so the levels over any number of tests
        sum to at most ``significance``."""
        budget = self.significance / (len(self._versions) - 1)
        if requests < self.min_samples:
            return budget / 2 / self.min_samples
        multiple, rest = divmod(requests, self.min_samples)
        if rest or multiple & (multiple - 1):  # not min_samples x a power of two
            return None
        return budget / 2 / (2 * multiple)

    def choose(self, key: Any = None) -> Assignment:
        with self._lock:
            winner, active = self._winner, self._active.copy()
        if winner is not None:
            return Assignment(winner, f"bandit {self.name!r} -> version {winner!r} ({self.state.replace('_', ' ')})")
        if key is not None:
            version = self._split.choose(key).version
            return Assignment(version, f"bandit {self.name!r} -> version {version!r} (sticky key)")
        arm, propensity, _ = self._bandit.decide(None, active)
        version = self._versions[arm]
        return Assignment(version, f"bandit {self.name!r} -> version {version!r} (Thompson draw, p={propensity:.3g})")

    def observe(self, version: str, ok: bool, latency: float) -> None:
        success = ok and (self.latency_target is None or latency <= self.latency_target)
        self._learn(version, 1.0 if success else 0.0, error=not ok)

    def record(self, version: str, reward: float) -> None:
        """Learn a reward in [0, 1] for ``version`` from outside the executor (e.g. answer quality)."""
        self._learn(version, reward, error=False, counted=False)

    # -- internals ----------------------------------------------------------------

    def _learn(self, version: str, reward: float, *, error: bool, counted: bool = True) -> None:
        if version not in self._versions:
            return
        arm = self._versions.index(version)
        with self._lock:
            if self._state != "running" or not self._active[arm]:
                return
        self._bandit.update(arm, None, reward)  # InvalidInput for NaN or out of [0, 1]: nothing learned
        events = []
        with self._lock:
            if counted:
                self._requests[arm] += 1
                self._errors[arm] += error
                events += self._judge_errors(arm)
            self._since_refresh += 1
            if self._since_refresh >= self.refresh and self._state == "running":
                self._since_refresh = 0
                events += self._judge_shares()
        for event in events:
            if self._on_event is not None:
                self._on_event(event)

    def _judge_errors(self, arm: int) -> list[BanditEvent]:
        """Roll ``arm`` back when this outcome is a look and it errs significantly more than
        stable (caller holds _lock)."""
        stable = self._versions.index(self.stable)
        if self._state != "running" or not self._active[arm]:  # another thread ended it since _learn looked
            return []
        if arm == stable or self._requests[stable] < self.min_samples:
            return []
        level = self.look_level(int(self._requests[arm]))
        if level is None:
            return []
        worse = errs_more(
            int(self._errors[arm]), int(self._requests[arm]), int(self._errors[stable]), int(self._requests[stable]),
            self.max_error_increase, level,
        )
        if worse is None:
            return []
        self._active[arm] = 0
        if self._active.sum() == 1:
            self._state, self._winner = "rolled_back", self.stable
        return [self._move("rollback", self._versions[arm], worse)]

    def _judge_shares(self) -> list[BanditEvent]:
        """Refresh the sticky shares; promote a version that is best with probability promote_at."""
        best = self._chance_best()
        self._split.set_weights(self._shares(best))
        if self.promote_at is None:
            return []
        leader = int(np.argmax(best))
        sampled = all(self._requests[a] >= self.min_samples for a in np.flatnonzero(self._active))
        if best[leader] >= self.promote_at and sampled:
            self._state, self._winner = "promoted", self._versions[leader]
            return [self._move("promote", self._versions[leader], f"best with probability {best[leader]:.3f}")]
        return []

    def _chance_best(self, draws: int = 4000) -> np.ndarray:
        """Each active version's probability of having the best mean (Monte Carlo over the posteriors)."""
        stats = self._bandit.export_stats(False)
        a, b = 1.0 + stats[:, 1], 1.0 + np.maximum(stats[:, 0] - stats[:, 1], 0.0)
        samples = self._draws.beta(a, b, size=(draws, len(a)))
        samples[:, self._active == 0] = -1.0
        return np.bincount(samples.argmax(axis=1), minlength=len(a)) / draws

    def _shares(self, best: np.ndarray | None = None) -> dict[str, float]:
        active = self._active.astype(bool)
        if best is None:
            best = active / active.sum()
        floor = self.floor * active
        shares = floor + (1.0 - floor.sum()) * best * active
        return dict(zip(self._versions, (shares / shares.sum()).tolist()))

    def _move(self, action: str, version: str, reason: str) -> BanditEvent:
        shares = ({v: float(v == self._winner) for v in self._versions} if self._winner is not None
                  else self._shares(self._chance_best()))
        self._split.set_weights(shares)
        return self._record(action, version, shares, reason)

    def _record(self, action: str, version: str | None, shares: dict[str, float], reason: str) -> BanditEvent:
        event = BanditEvent(self.clock(), action, version, shares, reason)
        self._history.append(event)
        return event
