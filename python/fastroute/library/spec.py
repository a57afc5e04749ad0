"""ModelSpec: one registered model version, its metadata, and how it is called."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np

from ..analyzer import MODALITIES
from ..errors import ModelError, RegistrationError

__all__ = ["ModelSpec", "group_by_spec", "stack_if_possible", "validate_spec", "warm_up"]

T = TypeVar("T")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model version and its metadata.

    ``model`` is called with one input, or, when ``batched`` is true, once
    with a batch (a stacked numpy array when the inputs stack, else a list)
    and must return one result per input.
    """

    name: str
    version: str
    model: Callable[[Any], Any]
    modality: str
    batched: bool = False
    cost: float = 0.0
    device: str = "cpu"
    replicas: int = 1
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    def run_one(self, x: Any) -> Any:
        """The model's result for one input (a batch of one if the model is batched).

        The model's exception becomes a :class:`ModelError` naming the model,
        with the original as ``__cause__``, as on every path that runs a model.
        """
        return self.run_batch([x])[0] if self.batched else self._call(x)

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        """The model's results for ``inputs``, in order: one call on the stacked
        batch if the model is batched, else one call per input.

        The one place a batched model's output is checked, for every path: it
        must be a sequence (list, tuple, array...) of one result per input;
        anything else (None, a scalar, a generator, a str, bytes or a dict,
        even of the right length) is a :class:`ModelError`.
        """
        if not self.batched:
            return [self._call(x) for x in inputs]
        output = self._call(stack_if_possible(inputs))
        if not _is_result_sequence(output):
            raise ModelError(
                self.name,
                f"returned {type(output).__name__}; a batched model must return one result per input "
                f"(a list, tuple or array of {len(inputs)})",
            )
        try:
            outputs = list(output)
        except Exception as error:
            raise ModelError.caused_by(self.name, error, "its results could not be read: ") from error
        if len(outputs) != len(inputs):
            raise ModelError(self.name, f"returned {len(outputs)} results for a batch of {len(inputs)}")
        return outputs

    def run_outcomes(self, inputs: list[Any], *, per_item: bool) -> list[tuple[ModelError | None, Any]]:
        """(error, result) for each input, in order. Per item, an unbatched model's failure
        is its input's alone and a batched one's is each input's (a copy each); otherwise
        the first :class:`ModelError` is raised."""
        if per_item and not self.batched:
            return [self._attempt(x) for x in inputs]
        try:
            return [(None, output) for output in self.run_batch(inputs)]
        except ModelError as error:
            if not per_item:
                raise
            return [(error.copy(), None) for _ in inputs]

    def _attempt(self, x: Any) -> tuple[ModelError | None, Any]:
        try:
            return None, self._call(x)
        except ModelError as error:
            return error, None

    def _call(self, argument: Any) -> Any:
        try:
            return self.model(argument)
        except ModelError:  # already names this model (an executor's stand-in model raised it)
            raise
        except Exception as error:
            raise ModelError.caused_by(self.name, error) from error


def _is_result_sequence(output: Any) -> bool:
    """Whether a batched model's output holds one item per input: an array of at
    least one dimension, or a sized, indexable sequence that is not text, bytes or
    a mapping (whose items are characters, byte values or keys, not results)."""
    if isinstance(output, np.ndarray):
        return output.ndim >= 1
    if isinstance(output, (str, bytes, bytearray, Mapping)):
        return False
    return hasattr(type(output), "__len__") and hasattr(type(output), "__getitem__")


def group_by_spec(items: list[T], spec_of: Callable[[T], ModelSpec]) -> list[tuple[ModelSpec, list[T]]]:
    """``items`` grouped by the model version each is for (the very spec object, not its
    name), groups in order of first appearance, items in order within each group.
    Allocates one group when every item is for the same spec (the common case)."""
    if not items:
        return []
    first = spec_of(items[0])
    if all(spec_of(item) is first for item in items):
        return [(first, items)]
    groups: dict[int, tuple[ModelSpec, list[T]]] = {}
    for item in items:
        spec = spec_of(item)
        groups.setdefault(id(spec), (spec, []))[1].append(item)
    return list(groups.values())


def stack_if_possible(inputs: list[Any]) -> Any:
    """A stacked array when every input is an array of one shape and dtype, else the list."""
    first = inputs[0]
    if isinstance(first, np.ndarray) and all(
        isinstance(x, np.ndarray) and x.shape == first.shape and x.dtype == first.dtype
        for x in inputs
    ):
        return np.stack(inputs)
    return inputs


def validate_spec(spec: ModelSpec) -> None:
    """RegistrationError naming the first field of ``spec`` that is not valid."""
    if not isinstance(spec.name, str) or not spec.name:
        raise RegistrationError(f"model name must be a non-empty str, got {spec.name!r}")
    if not isinstance(spec.version, str) or not spec.version:
        raise RegistrationError(f"version must be a non-empty str, got {spec.version!r}")
    if not callable(spec.model):
        raise RegistrationError(
            f"model {spec.name!r} must be callable, got {type(spec.model).__name__}"
        )
    if spec.modality not in MODALITIES:
        raise RegistrationError(
            f"model {spec.name!r}: unknown modality {spec.modality!r}; expected one of {MODALITIES}"
        )
    if spec.cost < 0 or spec.replicas < 1:
        raise RegistrationError(
            f"model {spec.name!r}: cost must be >= 0 and replicas >= 1 "
            f"(got cost={spec.cost!r}, replicas={spec.replicas!r})"
        )


def warm_up(spec: ModelSpec, sample: Any) -> None:
    """Run ``spec`` once on ``sample``; a failure becomes RegistrationError naming the version."""
    try:
        spec.run_one(sample)
    except ModelError as error:
        raise RegistrationError(
            f"model {spec.name!r} version {spec.version!r} failed its warm-up: {error.__cause__ or error!r}"
        ) from error
