"""fastroute: route every machine-learning request to the model best suited for it.

A request flows through four parts: the analyzer (modality and features), the
decision engine (policies), the model library (registry) and the executors.
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
from .executors import CPUExecutor
from .experiments import Canary, CanaryThresholds, Shadow, Split
from .registry import ModelSpec, Registry
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
    "ConfigError",
    "CorruptFile",
    "DeadlineExceeded",
    "Decision",
    "FastrouteError",
    "InvalidInput",
    "ModelError",
    "ModelSpec",
    "NoRoute",
    "Overloaded",
    "PolicyError",
    "Registry",
    "RegistrationError",
    "Router",
    "RouterClosed",
    "Shadow",
    "Split",
    "UnsupportedInput",
    "analyze",
    "analyze_batch",
]
