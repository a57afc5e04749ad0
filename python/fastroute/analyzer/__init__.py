"""Analyzer: detect an input's modality and extract its feature vector (in C++).

The contract (inputs, modality heuristics, the feature schema) is documented
in :mod:`fastroute.analyzer.analysis`; hashed n-gram text features (sparse,
as scikit-learn's HashingVectorizer) in :mod:`fastroute.analyzer.ngrams`; the
user feature columns a policy reads after the analyzer's (extractors, values
given per request, live state) in :mod:`fastroute.analyzer.user_features`.
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
from .ngrams import HASH_FEATURES_MAX, HASH_FEATURES_MIN, NGRAM_MAX_N, HashedNgrams

__all__ = [
    "DTYPE_KINDS",
    "FEATURE_NAMES",
    "HASH_FEATURES_MAX",
    "HASH_FEATURES_MIN",
    "MIMES",
    "MODALITIES",
    "NGRAM_MAX_N",
    "SCRIPTS",
    "SOURCES",
    "Analysis",
    "BatchAnalysis",
    "HashedNgrams",
    "analyze",
    "analyze_batch",
]
