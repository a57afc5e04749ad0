"""Decision engine: policies choose which registered model serves an input.

A policy sees feature rows: the analyzer's ``FEATURE_NAMES`` columns, then any
user feature columns (``policy.feature_names`` lists them all, in order), and
returns a :class:`Choice`. The compiled policies (:class:`Rules`,
:class:`Tree`, :class:`Forest`, :class:`Threshold`) validate everything at
construction and score in C++ (``fastroute._core``). Each decision reads one
immutable compiled state, so swapping ``router.policy``, or refitting or
recalibrating a policy in use, is atomic: no request sees half a policy.

Policy contract used by the Router:

- ``select(analysis, candidates) -> Choice``: ``analysis.features`` is one row of
  ``len(policy.feature_names)`` values (``analysis.modality`` a str);
  ``candidates`` (:class:`Candidates`, immutable) are the models registered for
  that modality: names, and per name its modality, cost and tags. A policy
  never sees the registry.
- ``select_batch(batch, candidates) -> list[Choice]``: ``batch.features`` is
  (n, F), ``candidates[i]`` row i's candidates.
- compiled policies add ``decide_batch(features) -> BatchChoice`` (model
  indices straight from the batch scorer), ``explain(row)`` and ``save(path)``.

Rooms: ``base`` (Policy, Choice), ``compiled`` (the C++-scored policies' common
part and file format), ``by_modality``, ``rules``, ``threshold``, ``trees``, ``linear`` (hashed
n-gram text routing),
``online`` (bandits that learn from feedback), ``feedback`` (the store joining
outcomes to decisions), ``io`` (load), ``load_aware`` (the LoadAware wrapper: load, priority, deadlines),
``auto`` (AutoPolicy: the learner chosen by inner cross-validation),
``evaluate`` (offline measures on routing logs: import it from
``fastroute`` or ``fastroute.decision.evaluate``).
"""

from __future__ import annotations

from .auto import AutoPolicy, LogForest, Pairwise
from .base import BatchChoice, Candidates, Choice, Policy
from .by_modality import ByModality
from .compiled import CompiledPolicy
from .io import load
from .linear import Linear
from .load_aware import ClassWeights, LoadAware
from .online import EpsilonGreedy, LinThompson, LinUCB, OnlinePolicy, ThompsonSampling, UCB1
from .rules import Rule, Rules
from .threshold import Threshold
from .trees import Forest, Tree

# The built-in policies and their helpers; a config file's ``policy.use`` may name any of these.
__all__ = [
    "AutoPolicy",
    "BatchChoice",
    "ByModality",
    "Choice",
    "ClassWeights",
    "EpsilonGreedy",
    "Forest",
    "LinThompson",
    "Linear",
    "LinUCB",
    "LogForest",
    "LoadAware",
    "OnlinePolicy",
    "Pairwise",
    "Policy",
    "Rule",
    "Rules",
    "Threshold",
    "ThompsonSampling",
    "Tree",
    "UCB1",
    "load",
]
