"""The model library: every model the router may send a request to."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .analyzer import MODALITIES
from .errors import NoRoute, RegistrationError

__all__ = ["ModelSpec", "Registry"]


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


class Registry:
    """Registered models by name and version. Thread-safe.

    Without an explicit version, a name resolves to its most recently
    registered version.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, dict[str, ModelSpec]] = {}  # guarded by _lock

    def register(self, spec: ModelSpec) -> ModelSpec:
        _validate(spec)
        with self._lock:
            versions = self._versions.setdefault(spec.name, {})
            if spec.version in versions:
                raise RegistrationError(
                    f"model {spec.name!r} version {spec.version!r} is already registered"
                )
            versions[spec.version] = spec
        return spec

    def get(self, name: str, version: str | None = None) -> ModelSpec:
        """The spec of ``name`` at ``version`` (latest when None); NoRoute if absent."""
        with self._lock:
            versions = self._versions.get(name)
            if not versions:
                raise NoRoute(f"no model named {name!r}; registered: {sorted(self._versions)}")
            if version is None:
                return next(reversed(versions.values()))
            try:
                return versions[version]
            except KeyError:
                raise NoRoute(
                    f"model {name!r} has no version {version!r}; versions: {list(versions)}"
                ) from None

    def names(self) -> list[str]:
        with self._lock:
            return list(self._versions)

    def list(self) -> list[ModelSpec]:
        """Every registered version, in registration order per name."""
        with self._lock:
            return [spec for versions in self._versions.values() for spec in versions.values()]

    def for_modality(self, modality: str) -> list[str]:
        """Names whose latest version serves ``modality``, in registration order."""
        with self._lock:
            return [
                name
                for name, versions in self._versions.items()
                if next(reversed(versions.values())).modality == modality
            ]

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._versions

    def __len__(self) -> int:
        with self._lock:
            return len(self._versions)


def _validate(spec: ModelSpec) -> None:
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
