"""RemoteModel: a model named by import path, built where it runs.

A Ray actor (or any other process) cannot share the router's model object;
it rebuilds the model from the same import path (and factory arguments) the
config file names. Called in the router's own process (``Router.infer``, a
warm-up) it builds the model there once, on first use.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["RAY_DEVICE", "RemoteModel", "build_model"]

RAY_DEVICE = "ray"  # the ModelSpec.device of models built and run in Ray actors


class RemoteModel:
    """``target`` (``"package.module:object"``), called with ``args``/``kwargs`` when
    ``call`` is true (a factory), else used as it is (a model object).

    Pickles as its import path and arguments only: each process builds its own model.
    Thread-safe: concurrent first calls build the model once.
    """

    def __init__(
        self, target: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, call: bool = True
    ) -> None:
        self.target, self.args, self.kwargs, self.call = target, tuple(args), dict(kwargs or {}), call
        self._built: Any = None
        self._lock = threading.Lock()

    def build(self) -> Any:
        """A new model built from the import path (imports the module)."""
        module_name, _, attributes = self.target.partition(":")
        found: Any = importlib.import_module(module_name)
        for attribute in attributes.split("."):
            found = getattr(found, attribute)
        return found(*self.args, **self.kwargs) if self.call else found

    def __call__(self, x: Any) -> Any:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self.build()
        return self._built(x)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.target, self.args, self.kwargs, self.call))

    def __repr__(self) -> str:
        return f"RemoteModel({self.target!r}, args={self.args!r}, kwargs={self.kwargs!r}, call={self.call})"


def _rebuild(target: str, args: tuple, kwargs: dict, call: bool) -> RemoteModel:
    return RemoteModel(target, args, kwargs, call=call)


def build_model(model: Any) -> Any:
    """The model to run in this process: a RemoteModel is built here, anything else is used as it is."""
    return model.build() if isinstance(model, RemoteModel) else model
