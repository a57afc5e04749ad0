"""LoadAware: a policy wrapper that weighs each candidate model's live load, the
request's priority and its deadline against predicted quality.

The wrapped policy names the model it would choose on an idle system (the
*preferred* model). Under load, each candidate ``m`` (the preferred model and
every model listed in ``quality`` that serves the input's modality) gets the
utility

    quality'(m) - cost_weight * max(0, cost(m) - cost(preferred))
                - time_weight * max(0, expected(m) - idle(preferred))

where ``expected(m)`` is when a request sent now would be done on ``m``'s
least loaded replica (requests ahead of it / service rate + its service time,
from the C++ dispatcher's live state: in flight, queued high-priority requests
and, for a normal request, queued normal ones too; EWMA time per request) and
``idle(preferred)`` is the preferred model's own service time. ``quality'`` is
``quality[m]``, except that the preferred model counts as at least as good as
every other: on an idle system no penalty applies and nothing beats the
wrapped policy's choice, so the wrapper never downgrades without load.
The highest utility wins; ties go to the preferred model, else to a seeded
random pick among the tied (no "always the first" bias).

Priority classes carry their own weights: by default ``high`` is patient
(keeps the best model and may wait) and ``normal`` spills to faster models
first. Deadlines: a candidate whose expected completion is past the request's
deadline is not eligible; when no candidate is, ``on_late="refuse"`` raises
:class:`~fastroute.DeadlineExceeded` before the request is queued, and
``on_late="fastest"`` sends it to the candidate expected to finish first.
Candidates whose circuit breaker is open are skipped (see
:class:`fastroute.executors.resilience.Resilience`).

The scoring runs in C++ (``_core.Dispatcher.choose``), a few microseconds per
request. Without an executor (``route``, ``infer``) the wrapper chooses exactly
what the wrapped policy chooses.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _core
from ..errors import DeadlineExceeded, Overloaded, PolicyError
from .base import Choice, Policy

__all__ = [
    "ClassWeights", "LoadAware", "LOAD_FEATURES", "LOAD_REASONS", "check_quality", "live_columns", "load_feature",
    "parse_load_feature",
]

#: Why a load-aware decision went where it did (the ``reason`` prefix of its Choice).
LOAD_REASONS: tuple[str, ...] = _core.CHOICE_REASONS
LATE_POLICIES = ("refuse", "fastest")

#: Live-state features any policy may read, one column per (feature, model), named
#: ``load_<feature>__<model>`` (see :func:`load_feature`); the router fills them from the
#: executor's C++ state for each request: ``queued`` and ``in_flight`` (summed over
#: replicas), ``expected_ms`` (when a normal request sent now would be done, best replica),
#: ``request_ms`` (EWMA time per request), ``error_rate`` (EWMA, worst replica),
#: ``breaker_open`` (1.0 while the model's circuit breaker sheds requests). NaN until the
#: model has taken a request on the router's executor.
LOAD_FEATURES: tuple[str, ...] = ("queued", "in_flight", "expected_ms", "request_ms", "error_rate", "breaker_open")
_LOAD_PREFIX = "load_"


def load_feature(feature: str, model: str) -> str:
    """The column name of live-state ``feature`` of ``model``: ``load_queued__big``."""
    if feature not in LOAD_FEATURES:
        raise PolicyError(f"unknown load feature {feature!r}; expected one of {LOAD_FEATURES}")
    return f"{_LOAD_PREFIX}{feature}__{model}"


def parse_load_feature(column: str) -> tuple[str, str] | None:
    """``(feature, model)`` if ``column`` names a load feature, else None."""
    if not column.startswith(_LOAD_PREFIX) or "__" not in column:
        return None
    feature, _, model = column[len(_LOAD_PREFIX) :].partition("__")
    return (feature, model) if feature in LOAD_FEATURES and model else None


def live_columns(columns: Sequence[str], state_of: Callable[[str], Mapping[str, float]]) -> dict[str, float]:
    """The values of the live-state columns among ``columns`` (NaN where a model has no
    such state yet), reading each model's state once: ``state_of(model)``."""
    values: dict[str, float] = {}
    states: dict[str, Mapping[str, float]] = {}
    for column in columns:
        parsed = parse_load_feature(column)
        if parsed is not None:
            feature, model = parsed
            if model not in states:
                states[model] = state_of(model)
            values[column] = states[model].get(feature, math.nan)
    return values


def check_quality(quality: Mapping[str, float]) -> dict[str, float]:
    """``quality`` (model name -> predicted quality) as a dict, or PolicyError naming a value
    that is not a finite number."""
    checked = dict(quality)
    for name, value in checked.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PolicyError(f"quality[{name!r}] must be a finite number, got {value!r}")
    return checked


@dataclass(frozen=True)
class ClassWeights:
    """How one priority class trades quality for speed and cost.

    ``time_per_s``: quality points given up per second of extra expected
    completion time; ``cost``: quality points per unit of extra cost per request.
    """

    time_per_s: float
    cost: float = 0.0

    def __post_init__(self) -> None:
        for name in ("time_per_s", "cost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PolicyError(f"ClassWeights.{name} must be a finite number >= 0, got {value!r}")


#: Defaults: high priority keeps the best model (it may wait up to its deadline);
#: normal priority gives up 0.1 quality for 10 ms saved.
DEFAULT_WEIGHTS: Mapping[str, ClassWeights] = {"high": ClassWeights(1.0), "normal": ClassWeights(10.0)}


@dataclass(frozen=True)
class LoadDecision:
    """A load-aware verdict: the model (None when refused) and why (one of LOAD_REASONS)."""

    model: str | None
    why: str
    preferred: str


class LoadAware(Policy):
    """Wrap ``policy`` so each request's model also depends on load, priority and deadline.

    >>> router.policy = LoadAware(ByModality(), quality={"big": 0.9, "mid": 0.8, "small": 0.7})

    ``quality``: predicted quality of each model that may take spilled traffic
    (models not listed are never spilled to, but may be preferred).
    ``weights``: per priority class ("high", "normal"), see :class:`ClassWeights`.
    ``on_late``: "refuse" or "fastest" (see the module docstring).
    ``seed``: seeds the tie-breaking random generator (``rng`` injects one).
    """

    def __init__(
        self,
        policy: Policy,
        quality: Mapping[str, float],
        *,
        weights: Mapping[str, ClassWeights] | None = None,
        on_late: str = "refuse",
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(policy, Policy):
            raise PolicyError(f"LoadAware wraps a fastroute Policy, got {type(policy).__name__}")
        self.policy = policy
        self.quality = check_quality(quality)
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        for name, value in self.weights.items():
            if name not in DEFAULT_WEIGHTS:
                raise PolicyError(f"unknown priority class {name!r} in weights; expected {sorted(DEFAULT_WEIGHTS)}")
            if not isinstance(value, ClassWeights):
                raise PolicyError(f"weights[{name!r}] must be a ClassWeights, got {type(value).__name__}")
        if on_late not in LATE_POLICIES:
            raise PolicyError(f"on_late must be one of {LATE_POLICIES}, got {on_late!r}")
        self.on_late = on_late
        self._rng = rng if rng is not None else random.Random(seed)

    @property
    def feature_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.policy.feature_names

    def select(self, analysis: Any, candidates: Any) -> Choice:
        """The wrapped policy's choice (no load known: what an idle system gets)."""
        return self.policy.select(analysis, candidates)

    def select_batch(self, batch: Any, candidates: Any) -> list[Choice]:
        return self.policy.select_batch(batch, candidates)

    def pinned(self) -> LoadAware:
        inner = self.policy.pinned()
        if inner is self.policy:
            return self
        twin = LoadAware.__new__(LoadAware)
        twin.__dict__.update(self.__dict__)
        twin.policy = inner
        return twin

    def under_load(
        self,
        preferred: str,
        candidates: list[Any],
        load: Any,
        *,
        high: bool,
        budget_ns: int,
        available: list[bool],
    ) -> LoadDecision:
        """Choose among ``candidates`` (model specs, the preferred one included) using
        ``load`` (a :class:`~fastroute.CPUExecutor`: its ``choose`` reads the live state).
        ``available[i]``: candidate i's breaker admits requests. ``budget_ns``: time left
        to the request's deadline (``_core.NO_DEADLINE`` for none)."""
        names = [spec.name for spec in candidates]
        index = names.index(preferred)
        weights = self.weights["high" if high else "normal"]
        top = max(self.quality.values(), default=0.0)
        quality = [self.quality.get(name, top) if name == preferred else self.quality[name] for name in names]
        chosen, reason = load.choose(
            candidates,
            index,
            high=high,
            quality=quality,
            costs=[float(spec.cost) for spec in candidates],
            available=available,
            weights=(float(weights.time_per_s), float(weights.cost)),
            budget_ns=budget_ns,
            late_fastest=self.on_late == "fastest",
            random_bits=self._rng.getrandbits(64),
        )
        return LoadDecision(names[chosen] if chosen >= 0 else None, LOAD_REASONS[reason], preferred)

    def choose_under_load(
        self, choice: Choice, candidates: list[Any], load: Any, *, high: bool, budget_ns: int, available: list[bool]
    ) -> Choice:
        """:meth:`under_load` for the policy's ``choice`` (``candidates``: its model's spec and
        its spill candidates' specs) as the Choice that serves: ``choice`` itself when its
        model stays preferred. Raises DeadlineExceeded when every candidate would finish late
        (``on_late="refuse"``), Overloaded when every candidate's breaker is open."""
        verdict = self.under_load(
            choice.model, candidates, load, high=high, budget_ns=budget_ns, available=available
        )
        if verdict.model is None:
            names = [spec.name for spec in candidates]
            if verdict.why == "refused_late":
                raise DeadlineExceeded(
                    f"no candidate model ({', '.join(names)}) is expected to finish before the deadline; "
                    "refused before queueing (LoadAware on_late='refuse')"
                )
            raise Overloaded(f"every candidate model's circuit breaker is open: {names}")
        if verdict.model == choice.model and verdict.why == "preferred":
            return choice
        return Choice(verdict.model, f"{verdict.why}: {verdict.model!r} instead of {choice.model!r} ({choice.reason})")

    def spill_candidates(self, preferred: str, modality_models: Sequence[str]) -> list[str]:
        """The preferred model, then every model in ``quality`` among ``modality_models``."""
        return [preferred] + [name for name in modality_models if name != preferred and name in self.quality]
