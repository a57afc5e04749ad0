"""Models the serving tests load through config files (imported by the server process)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def total(x: np.ndarray) -> float:
    """A tabular model: the sum of the input."""
    return float(np.sum(x))


def norms(batch: np.ndarray) -> np.ndarray:
    """A batched tabular model: one norm per row (a stacked batch of equal-shape arrays)."""
    return np.linalg.norm(np.asarray(batch, dtype=np.float64).reshape(len(batch), -1), axis=1)


def words(text: Any) -> int:
    """A text model: the number of words (str, or UTF-8 bytes)."""
    return len((text.decode() if isinstance(text, bytes) else text).split())


def shout(text: Any) -> str:
    """A text model returning text."""
    return (text.decode() if isinstance(text, bytes) else text).upper()


def image_shape(image: np.ndarray) -> np.ndarray:
    return np.asarray(image.shape, dtype=np.int64)


def failing(x: Any) -> Any:
    raise RuntimeError("this model always fails")


def slow(x: Any) -> float:
    """Sleeps for the number of seconds its input's first value holds (capped at 5 s)."""
    time.sleep(min(float(np.ravel(x)[0]), 5.0))
    return float(np.ravel(x)[0])


def noop(x: Any) -> int:
    return 0



def batch_sizes(batch: Any) -> list[int]:
    """A batched model answering each row with the size of its batch (10 ms a call, so requests pile up)."""
    time.sleep(0.01)
    return [len(batch)] * len(batch)
