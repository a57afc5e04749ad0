"""The request path without Python work per stage: analyze -> policy -> candidate mask -> version.

A router asks :meth:`FastPath.decide` first for each plain request (no user
features given). It answers when the request needs nothing the general path
does in Python:

- the policy is compiled (a :class:`~fastroute.decision.compiled.CompiledPolicy`
  whose ``select`` is not overridden, reading exactly ``FEATURE_NAMES``): one
  native call (``Scorer.route``) analyses the input and scores its feature row
  among the models serving its modality (a per-modality ``ModelMask``);
- or the policy is :class:`~fastroute.decision.by_modality.ByModality`: its
  choice for each modality is computed once per catalog, and the request pays
  the analysis and a table lookup;
- and the chosen name resolves without an experiment (the registry's catalog
  holds the version resolved, see :class:`~fastroute.library.catalog.Resolved`).

Anything else (a Python or learning policy, user features, LoadAware, an
experiment or, for ``infer``, a shadow on the chosen model, an input no
candidate can take) gets None, and the router takes the general path, which
keeps every behaviour (and raises NoRoute where nothing serves the input).

A router asked to time its decisions (``Router.route_stages``, set by the server
for /metrics) gets them timed here too: the native call times its analysis and
scoring itself. It then takes this path only while every registered model
resolves plainly, so no request is timed by both paths.

The plan (policy, compiled state and catalog -> what to call) is rebuilt when
any of the three changes; it is one tuple, swapped atomically. Decisions are
recorded with :meth:`FeedbackStore.record_plain`: their ids join feedback as
any other.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import _core
from ..analyzer import FEATURE_NAMES, MODALITIES, analyze
from ..errors import NoRoute
from ..library.catalog import Catalog, Resolved
from .base import Decision, Policy
from .by_modality import ByModality
from .compiled import CompiledPolicy
from .feedback import FeedbackStore

if TYPE_CHECKING:
    from ..library.registry import Registry

__all__ = ["FastPath"]

_NO_MODEL = _core.NO_MODEL


class _ByModalityPlan:
    """ByModality's choice per modality code, for one catalog."""

    __slots__ = ("_choices", "plain")

    def __init__(self, policy: ByModality, catalog: Catalog) -> None:
        self.plain = _resolves_plainly(catalog)
        self._choices: dict[int, tuple[str, str]] = {}
        for code, modality in enumerate(MODALITIES):
            try:
                choice = policy.select(_ModalityOnly(modality), catalog.for_modality(modality))
            except NoRoute:
                continue  # the general path raises it, with the registered models named
            self._choices[code] = (choice.model, choice.reason)

    def choose(self, x: Any, hint: str | None, stages: Any) -> tuple[Any, str, str, float | None] | None:
        started = time.perf_counter_ns() if stages is not None else 0
        analysis = analyze(x, hint)
        analyzed = time.perf_counter_ns() if stages is not None else 0
        chosen = self._choices.get(analysis.modality_code)
        if stages is not None:
            stages.record(started, analyzed, time.perf_counter_ns())
        return None if chosen is None else (analysis, chosen[0], chosen[1], None)


class _CompiledPlan:
    """A compiled policy's scorer and per-modality mask, for one catalog; reasons are
    formatted once per (reason code, model) and kept (at most one per leaf, rule or cut
    and model)."""

    __slots__ = ("_policy", "_state", "_mask", "_reasons", "plain")

    def __init__(self, policy: CompiledPolicy, state: Any, catalog: Catalog) -> None:
        self.plain = _resolves_plainly(catalog)
        self._policy, self._state = policy, state
        self._mask = state.masks.for_modalities(catalog.for_modality)
        self._reasons: dict[int, str] = {}

    def choose(self, x: Any, hint: str | None, stages: Any) -> tuple[Any, str, str, float | None] | None:
        state = self._state
        analysis, index, score, code = state.scorer.route(x, hint, self._mask, stages)
        if index == _NO_MODEL:
            return None
        models = state.models
        key = code * len(models) + index
        reason = self._reasons.get(key)
        if reason is None:
            reason = self._reasons[key] = self._policy._reason(state, code, index)
        return analysis, models[index], reason, None if score != score else score  # NaN: no score (rules)


class FastPath:
    """Decides plain requests without the general path's Python stages (see the module doc).
    Thread-safe: the plan is one immutable tuple read once per request."""

    def __init__(self) -> None:
        self._plan: tuple[Any, Any, Catalog | None, Any] = (None, None, None, None)

    def decide(
        self, policy: Policy, registry: Registry, x: Any, hint: str | None, store: FeedbackStore, *, hold: bool,
        stages: _core.RouteStages | None = None,
    ) -> tuple[Decision, Resolved] | None:
        """The decision for ``x`` and its resolved version (held when ``hold``: the caller runs
        it with :meth:`Resolved.run_held`), recorded in ``store``; None: take the general path.
        With ``stages``, the analysis and the policy's choice are timed into it.

        Raises what ``analyze(x, hint)`` raises for an input it cannot read.
        """
        catalog = registry.catalog
        cached_policy, cached_state, cached_catalog, plan = self._plan
        state = getattr(policy, "_state", None)  # a compiled policy's current state (a refit replaces it)
        if cached_policy is not policy or cached_catalog is not catalog or cached_state is not state:
            plan = self._replan(policy, state, catalog)
        if plan is None or (stages is not None and not plan.plain):
            return None  # (timed: a request the general path took over would be timed twice)
        routed = plan.choose(x, hint, stages)
        if routed is None:
            return None
        analysis, model, reason, score = routed
        resolved = registry.hold_default(model) if hold else catalog.resolved.get(model)
        if resolved is None:
            return None
        spec = resolved.spec
        decision_id = store.record_plain(model, spec.cost)
        decision = Decision.make(model, spec.version, analysis.modality, (reason, resolved.reason), score,
                                 decision_id, 1.0, analysis)
        return decision, resolved

    def _replan(self, policy: Policy, state: Any, catalog: Catalog) -> Any:
        plan = _plan(policy, state, catalog)
        self._plan = (policy, state, catalog, plan)
        return plan


def _resolves_plainly(catalog: Catalog) -> bool:
    """Every registered model resolves without an experiment or a shadow: a decision of the
    fast path never falls back to the general path for its version (but in a race with a
    catalog change)."""
    resolved = catalog.resolved
    return all(name in resolved and not resolved[name].shadowed for name in catalog.registered)


def _plan(policy: Policy, state: Any, catalog: Catalog) -> Any:
    """What decides ``policy``'s requests natively, or None when it cannot."""
    if type(policy).select is ByModality.select and isinstance(policy, ByModality):
        return _ByModalityPlan(policy, catalog)
    compiled = (
        isinstance(policy, CompiledPolicy)
        and type(policy).select is CompiledPolicy.select
        and state is not None
        and state.feature_names == FEATURE_NAMES
        and not getattr(policy, "reads_text", False)
    )
    return _CompiledPlan(policy, state, catalog) if compiled else None


class _ModalityOnly:
    """What ByModality reads of an input: its modality."""

    __slots__ = ("modality",)

    def __init__(self, modality: str) -> None:
        self.modality = modality
