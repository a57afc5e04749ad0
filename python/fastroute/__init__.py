"""fastroute: route every machine-learning request to the model best suited for it.

A request flows through four parts, one subpackage each: the analyzer
(modality and features), the decision engine (policies), the model library
(registry, leases, experiments, config files) and the executors.
"""

from __future__ import annotations

from .analyzer import (
    DTYPE_KINDS,
    FEATURE_NAMES,
    HashedNgrams,
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
from .decision import (
    UCB1,
    BatchChoice,
    ByModality,
    Candidates,
    Choice,
    ClassWeights,
    EpsilonGreedy,
    Forest,
    LinThompson,
    Linear,
    LinUCB,
    LoadAware,
    OnlinePolicy,
    Policy,
    Rule,
    Rules,
    ThompsonSampling,
    Threshold,
    Tree,
)
from .decision.feedback import FeedbackStore
from .decision.evaluate import Evaluation, StrongWeakCurve, cross_validate, evaluate, strong_weak_curve
from .executors import BreakerSettings, CPUExecutor, Resilience, RetryPolicy
from .library import BanditSplit, Canary, CanaryThresholds, ModelSpec, Registry, Shadow, Split
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
    "BanditSplit",
    "BatchChoice",
    "BreakerSettings",
    "ByModality",
    "Candidates",
    "Choice",
    "ClassWeights",
    "ConfigError",
    "CorruptFile",
    "DeadlineExceeded",
    "Decision",
    "EpsilonGreedy",
    "Evaluation",
    "FeedbackStore",
    "FastrouteError",
    "Forest",
    "InvalidInput",
    "LinThompson",
    "LinUCB",
    "Linear",
    "HashedNgrams",
    "LoadAware",
    "ModelError",
    "ModelSpec",
    "NoRoute",
    "OnlinePolicy",
    "Overloaded",
    "Policy",
    "PolicyError",
    "Registry",
    "RegistrationError",
    "Resilience",
    "RetryPolicy",
    "Router",
    "RouterClosed",
    "Shadow",
    "Split",
    "StrongWeakCurve",
    "Rule",
    "Rules",
    "ThompsonSampling",
    "Threshold",
    "Tree",
    "UCB1",
    "UnsupportedInput",
    "analyze",
    "analyze_batch",
    "cross_validate",
    "evaluate",
    "strong_weak_curve",
]
