"""What a policy may choose from: immutable snapshots of the registered models.

The registry publishes a new :class:`Catalog` whenever a model name appears,
disappears, changes its default version or gains or loses an experiment or a
shadow; reading it takes no lock. For one
input the router hands the policy ``catalog.for_modality(modality)``: the
:class:`Candidates` serving that input's modality, each described by the
metadata of the version its bare name resolves to by default (``stable``,
else the latest). For names no experiment decides per request, the catalog
also holds that version resolved (:class:`Resolved`), so a request on the
fast path resolves its model without a lock or any Python work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .spec import ModelSpec

if TYPE_CHECKING:
    from .leases import InFlight

__all__ = ["Candidate", "Candidates", "Catalog", "Resolved"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model name a policy may choose, with what policies decide on."""

    name: str
    modality: str
    cost: float
    tags: frozenset[str]

    @classmethod
    def of(cls, spec: ModelSpec) -> Candidate:
        return cls(spec.name, spec.modality, spec.cost, spec.tags)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The version a bare model name serves while no experiment decides per request:
    its spec, why (``"alias 'stable' -> version '2'"``, ``"latest version '1'"``),
    its lease count, and whether a shadow mirrors its requests."""

    spec: ModelSpec
    reason: str
    in_flight: InFlight
    shadowed: bool

    def run_held(self, x: Any) -> Any:
        """The version's result for ``x`` (:meth:`ModelSpec.run_one`), for a request that
        holds it (the native request path's hold, decision/fast_path.py); the hold ends here,
        whatever happens."""
        try:
            return self.spec.run_one(x)
        finally:
            self.in_flight.drop()


class Candidates:
    """The models one input may be routed to, in registration order. Immutable.

    ``name in candidates``, ``candidates[name]`` (a :class:`Candidate`),
    iteration, ``len`` and ``names`` are all O(1) or a tuple read.
    ``modality`` is the input modality they serve; ``registered`` maps every
    registered name to its modality (for error messages).
    """

    __slots__ = ("modality", "names", "registered", "_by_name")

    modality: str
    names: tuple[str, ...]
    registered: Mapping[str, str]
    _by_name: Mapping[str, Candidate]

    def __init__(self, modality: str, models: Iterable[Candidate], registered: Mapping[str, str]) -> None:
        by_name = MappingProxyType({model.name: model for model in models})
        for name, value in (("modality", modality), ("names", tuple(by_name)), ("registered", registered),
                            ("_by_name", by_name)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Candidates are immutable (cannot set {name!r})")

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Candidate:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Candidates({self.modality!r}, {list(self.names)})"


class Catalog:
    """Every registered model name by the modality it serves, as of one moment. Immutable."""

    __slots__ = ("_by_modality", "_registered", "resolved")

    def __init__(
        self, defaults: Iterable[ModelSpec], modalities: Iterable[str], resolved: Mapping[str, Resolved] | None = None
    ) -> None:
        candidates = [Candidate.of(spec) for spec in defaults]
        self._registered: Mapping[str, str] = MappingProxyType({c.name: c.modality for c in candidates})
        self._by_modality = {
            modality: Candidates(modality, [c for c in candidates if c.modality == modality], self._registered)
            for modality in modalities
        }
        #: How each name resolves for every request (a name missing: an experiment decides per request).
        self.resolved: Mapping[str, Resolved] = MappingProxyType(dict(resolved or {}))

    def for_modality(self, modality: str) -> Candidates:
        """The candidates serving ``modality`` (empty for one nothing serves)."""
        found = self._by_modality.get(modality)
        return found if found is not None else Candidates(modality, (), self._registered)

    @property
    def registered(self) -> Mapping[str, str]:
        """Every registered name and the modality of its default version."""
        return self._registered
