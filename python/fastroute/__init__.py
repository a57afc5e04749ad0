"""fastroute: route every machine-learning request to the model best suited for it.

A request flows through four parts, one subpackage each: the analyzer
(modality and features), the decision engine (policies), the model library
(registry, leases, experiments, config files) and the executors.
"""

from __future__ import annotations

from .analyzer import (
    DTYPE_KINDS,
    FEATURE_NAMES,
    MIMES,
    MODALITIES,
    SCRIPTS,
    SOURCES,
    Analysis,
    BatchAnalysis,
    analyze,
    analyze_batch,
)
from .errors import (
    ConfigError,
    CorruptFile,
    DeadlineExceeded,
    FastrouteError,
    InvalidInput,
    ModelError,
    NoRoute,
    Overloaded,
    PolicyError,
    RegistrationError,
    RouterClosed,
    UnsupportedInput,
)
from .decision import BatchChoice, ByModality, Choice, Forest, Policy, Rule, Rules, Threshold, Tree
from .decision.evaluate import Evaluation, cross_validate, evaluate
from .executors import CPUExecutor
from .library import Canary, CanaryThresholds, ModelSpec, Registry, Shadow, Split
from .router import Decision, Router

__version__ = "0.1.0"

__all__ = [
    "DTYPE_KINDS",
    "FEATURE_NAMES",
    "MIMES",
    "MODALITIES",
    "SCRIPTS",
    "SOURCES",
    "Analysis",
    "BatchAnalysis",
    "CPUExecutor",
    "Canary",
    "CanaryThresholds",
    "BatchChoice",
    "ByModality",
    "Choice",
    "ConfigError",
    "CorruptFile",
    "DeadlineExceeded",
    "Decision",
    "Evaluation",
    "FastrouteError",
    "Forest",
    "InvalidInput",
    "ModelError",
    "ModelSpec",
    "NoRoute",
    "Overloaded",
    "Policy",
    "PolicyError",
    "Registry",
    "RegistrationError",
    "Router",
    "RouterClosed",
    "Shadow",
    "Split",
    "Rule",
    "Rules",
    "Threshold",
    "Tree",
    "UnsupportedInput",
    "analyze",
    "analyze_batch",
    "cross_validate",
    "evaluate",
]
