"""The request path in one native call: analyze -> policy -> version -> feedback record -> Decision.

A router asks its :class:`~fastroute._core.FastRoute` (made by :func:`native_path`) first
for each plain request (no user features given): ``route(policy, store, x, hint,
stages)`` returns the Decision, ``hold(...)`` the Decision and the version held for the
request (infer), both in one C++ call (csrc/bind_fast_path.cpp). ``submit(..., queue,
priority, deadline)`` and ``ainfer(...)`` also queue the request in the same call on the
executor's ``_core.RequestQueue`` (``CPUExecutor.native_queue``) when its version has one
started lane, linking the hold to the handle (it ends with the request): the handle, or
its asyncio future. It answers when the request needs nothing the general path does in
Python:

- the policy is compiled (a :class:`~fastroute.decision.compiled.CompiledPolicy`
  whose ``select`` is not overridden, reading exactly ``FEATURE_NAMES``): the
  input's feature row is scored among the models serving its modality (a
  per-modality ``ModelMask``);
- or the policy is :class:`~fastroute.decision.by_modality.ByModality`: its
  choice for each modality is computed once per catalog, and the request pays
  the analysis and a table lookup;
- and the chosen name resolves without an experiment (the registry's catalog
  holds the version resolved, see :class:`~fastroute.library.catalog.Resolved`),
  and, for a hold, without a shadow.

Anything else (a Python or learning policy, user features, LoadAware, an
experiment, an input no candidate can take) gets None, and the router takes the
general path, which keeps every behaviour (and raises NoRoute where nothing
serves the input). An input the analyzer cannot read raises what ``analyze``
raises.

The native call records the decision in the feedback store's ring exactly as
:meth:`FeedbackStore.record_plain` does (its ids join feedback as any other) and
builds the Decision with its reason left as the pair (policy's reason, version's
reason), joined only when read; each pair is formatted once per (reason code,
model) and kept.

A router asked to time its decisions (``Router.route_stages``, set by the server
for /metrics) gets them timed here too: the native call times its analysis and
choice itself. It then takes this path only while every registered model
resolves plainly, so no request is timed by both paths.

The plan (what to call for this policy, its compiled state, the catalog and the
store) is rebuilt by :func:`_plan` whenever one of the four changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import _core
from ..analyzer import FEATURE_NAMES, MODALITIES, analyze
from ..errors import NoRoute
from ..library.catalog import Catalog
from .base import Decision, Policy
from .by_modality import ByModality
from .compiled import CompiledPolicy
from .feedback import FeedbackStore

if TYPE_CHECKING:
    from ..library.registry import Registry

__all__ = ["native_path"]

_NO_MODEL = _core.NO_MODEL
_NATIVE_ANALYZE = analyze  # this module's analyze replaced (tests routing plain values): the native path calls it


def native_path(registry: Registry) -> _core.FastRoute:
    """The native request path of a router whose models ``registry`` holds (see the module doc)."""
    stand_in = analyze if analyze is not _NATIVE_ANALYZE else None
    return _core.FastRoute(registry, Decision, _plan, stand_in)


def _plan(policy: Policy, catalog: Catalog, store: FeedbackStore) -> _core.FastRoutePlan:
    """What decides ``policy``'s requests natively under ``catalog``, recording into ``store``
    (a plan without a RoutePlan: the general path decides)."""
    state = getattr(policy, "_state", None)  # a compiled policy's current state (a refit replaces it)
    reads_state = isinstance(policy, CompiledPolicy)
    if type(policy).select is ByModality.select and isinstance(policy, ByModality):
        names, plan, policy_reason = _by_modality(policy, catalog)
    elif _is_native_compiled(policy, state):
        names, plan = state.models, _core.RoutePlan(state.scorer, state.masks.for_modalities(catalog.for_modality))

        def policy_reason(code: int, index: int) -> str:
            return policy._reason(state, code, index)
    else:
        return _core.FastRoutePlan(policy, state, reads_state, catalog, store, None, (), (), (), False, None,
                                   store.plain_ring())
    resolved = [catalog.resolved.get(name) for name in names]

    def reason_of(code: int, index: int) -> tuple[str, str]:
        return policy_reason(code, index), resolved[index].reason

    costs = [None if r is None else r.spec.cost for r in resolved]
    return _core.FastRoutePlan(policy, state, reads_state, catalog, store, plan, names, resolved, costs,
                               _resolves_plainly(catalog), reason_of, store.plain_ring())


def _by_modality(policy: ByModality, catalog: Catalog) -> tuple[tuple[str, ...], Any, Callable[[int, int], str]]:
    """ByModality's choice per modality code, for one catalog: (names, plan, reason by modality code)."""
    reasons: dict[int, str] = {}
    chosen: dict[int, str] = {}
    for code, modality in enumerate(MODALITIES):
        try:
            choice = policy.select(_ModalityOnly(modality), catalog.for_modality(modality))
        except NoRoute:
            continue  # the general path raises it, with the registered models named
        chosen[code], reasons[code] = choice.model, choice.reason
    names = tuple(dict.fromkeys(chosen.values()))
    table = [names.index(chosen[code]) if code in chosen else _NO_MODEL for code in range(len(MODALITIES))]
    return names, _core.RoutePlan.by_modality(table, len(names)), lambda code, index: reasons[code]


def _is_native_compiled(policy: Policy, state: Any) -> bool:
    return (
        isinstance(policy, CompiledPolicy)
        and type(policy).select is CompiledPolicy.select
        and state is not None
        and state.feature_names == FEATURE_NAMES
        and not getattr(policy, "reads_text", False)
    )


def _resolves_plainly(catalog: Catalog) -> bool:
    """Every registered model resolves without an experiment or a shadow: a decision of the
    fast path never falls back to the general path for its version (but in a race with a
    catalog change)."""
    resolved = catalog.resolved
    return all(name in resolved and not resolved[name].shadowed for name in catalog.registered)


class _ModalityOnly:
    """What ByModality reads of an input: its modality."""

    __slots__ = ("modality",)

    def __init__(self, modality: str) -> None:
        self.modality = modality
