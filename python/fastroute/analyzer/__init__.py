"""Analyzer: detect an input's modality and extract its feature vector (in C++).

The contract (inputs, modality heuristics, the feature schema) is documented
in :mod:`fastroute.analyzer.analysis`.
"""

from __future__ import annotations

from .analysis import (
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

__all__ = [
    "DTYPE_KINDS",
    "FEATURE_NAMES",
    "MIMES",
    "MODALITIES",
    "SCRIPTS",
    "SOURCES",
    "Analysis",
    "BatchAnalysis",
    "analyze",
    "analyze_batch",
]
