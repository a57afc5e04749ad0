"""Models, factories and comparers that the config-file tests name by import path."""

from __future__ import annotations

import threading
import time
from typing import Any


def make_scaler(factor: float = 2.0):
    """A model factory for config tests."""
    return lambda x: x * factor


def failing_factory(**kwargs: Any):
    raise RuntimeError(f"cannot build with {kwargs}")


def refuses_warmup(x: Any) -> Any:
    if x == "boom":
        raise ValueError("warm-up input rejected")
    return x


def same(served: Any, mirrored: Any) -> bool:
    return served == mirrored


def double(x: Any) -> Any:
    return x * 2


CALLS: list[str] = []

#: Not callable: a config file must not name it as a model or factory.
NOT_CALLABLE = 42


def make_recorder(**kwargs: Any):
    """A factory that leaves a trace in CALLS, and takes any keyword (path, where, function...)."""
    CALLS.append("make_recorder")
    return lambda x: kwargs


def broken(x: Any) -> Any:
    raise RuntimeError("always fails")


class Gate:
    """A model that answers its name after ``seconds``, and blocks while its gate is closed
    (a test holds a queue with it: requests pile up behind the one running)."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self.open = threading.Event()
        self.open.set()

    def __call__(self, x: Any) -> str:
        self.open.wait(30)
        time.sleep(self.seconds)
        return self.name


BIG = Gate("big", 0.002)
SMALL = Gate("small", 0.0001)


def make_net(inputs: int, outputs: int, seed: int = 0) -> Any:
    """A torch Linear layer with seeded weights (the CUDA executor moves it to its device)."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Linear(inputs, outputs)
