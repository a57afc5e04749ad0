"""Models, factories and comparers that the config-file tests name by import path."""

from __future__ import annotations

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
