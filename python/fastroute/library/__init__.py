"""Model library: registered model versions, leases on them, experiments and config files.

Rooms: ``spec`` (ModelSpec), ``registry`` (Registry, aliases, swaps),
``catalog`` (the immutable snapshot of the models a policy chooses from),
``leases`` (a request's claim on a version, drain on retire), ``experiments``
(Split, Canary, Shadow, and their significance tests), ``bandit_split``
(BanditSplit: a split that learns), ``config`` (read, validate and apply a
YAML/TOML file) and ``config_text`` (the file's bytes into plain data, safely).
"""

from __future__ import annotations

from .bandit_split import BanditEvent, BanditSplit
from .experiments import Canary, CanaryThresholds, Shadow, Split
from .leases import Lease
from .registry import DEFAULT_ALIAS, ModelPlan, Registry
from .spec import ModelSpec

__all__ = [
    "DEFAULT_ALIAS",
    "BanditEvent",
    "BanditSplit",
    "Canary",
    "CanaryThresholds",
    "Lease",
    "ModelPlan",
    "ModelSpec",
    "Registry",
    "Shadow",
    "Split",
]
