"""Models the Ray tests build inside actors (importable there: the test fixture puts this folder on PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def make_doubler(delay_s: float = 0.0):
    """A batched model: each row doubled, tagged with the actor's process id."""

    def run(batch: np.ndarray) -> list:
        time.sleep(delay_s)
        return [(os.getpid(), float(row.sum()) * 2) for row in batch]

    return run


def make_dies_once(marker: str):
    """Kills its process on the first batch it sees while ``marker`` does not exist (creating it first)."""

    def run(batch: np.ndarray) -> list:
        if not Path(marker).exists():
            Path(marker).touch()
            os._exit(1)
        return [float(row.sum()) for row in batch]

    return run


def make_always_dies():
    def run(batch: np.ndarray) -> list:
        os._exit(1)

    return run


def make_broken():
    raise RuntimeError("weights file missing")


def make_raises():
    def run(batch: np.ndarray) -> list:
        raise KeyError("no such column")

    return run
