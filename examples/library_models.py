"""Models imported by ``library.yaml`` (the model-library example).

Two versions of a sentiment model (the second understands "not good") and
two versions of a tabular risk score, plus the functions the shadow uses to
compare a mirrored result with the served one.
"""

from __future__ import annotations

import re

import numpy as np

POSITIVE = frozenset("good great excellent love fine happy fast helpful".split())
NEGATIVE = frozenset("bad awful terrible hate slow broken useless sad".split())
NEGATIONS = frozenset("not never no hardly".split())


def keyword_sentiment(text: str) -> str:
    """Version 1: count positive and negative words."""
    words = re.findall(r"[a-z']+", text.lower())
    score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def make_sentiment(handle_negation: bool = True):
    """Version 2's factory: like version 1, but a negation flips the next sentiment word."""

    def sentiment(text: str) -> str:
        score, flip = 0, 1
        for word in re.findall(r"[a-z']+", text.lower()):
            if handle_negation and word in NEGATIONS:
                flip = -1
                continue
            polarity = (word in POSITIVE) - (word in NEGATIVE)
            score += flip * polarity
            flip = 1 if polarity else flip
        return "positive" if score > 0 else "negative" if score < 0 else "neutral"

    return sentiment


def make_linear(weights: list[float]):
    """A linear risk score over a feature vector, as a factory taking its weights."""
    coefficients = np.asarray(weights, dtype=np.float64)

    def score(features: np.ndarray) -> float:
        return float(np.asarray(features, dtype=np.float64) @ coefficients)

    return score


def same_label(served: str, mirrored: str) -> bool:
    return served == mirrored


def absolute_difference(served: float, mirrored: float) -> float:
    return abs(served - mirrored)
