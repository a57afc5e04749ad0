"""Analyzer: detect an input's modality and extract its feature vector.

PLACEHOLDER for the skeleton commit: the C++ implementation lands with the
analyzer work. The public contract other modules rely on:

- ``FEATURE_NAMES``, ``MODALITIES``, ``SCRIPTS``: tuples of str (from _core).
- ``analyze(x, hint=None) -> Analysis`` with ``.modality`` (str), ``.mime``
  (str | None), ``.features`` (float32 vector of len(FEATURE_NAMES)), ``.explain()``.
- ``analyze_batch(xs) -> BatchAnalysis`` with ``.features`` ((n, F) float32),
  ``.modality_codes`` ((n,) uint8 indices into MODALITIES), ``.modalities``
  (list of str), ``len()`` and ``batch[i] -> Analysis``.
"""

from __future__ import annotations

from ._core import FEATURE_NAMES, MODALITIES, SCRIPTS

__all__ = ["FEATURE_NAMES", "MODALITIES", "SCRIPTS", "Analysis", "BatchAnalysis", "analyze", "analyze_batch"]


class Analysis:
    pass


class BatchAnalysis:
    pass


def analyze(x, hint=None):
    raise NotImplementedError


def analyze_batch(xs):
    raise NotImplementedError
