"""ByModality: send each input to the model registered for its modality."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..analyzer import Analysis
from ..errors import NoRoute, PolicyError
from .base import Candidates, Choice, Policy

__all__ = ["ByModality"]


class ByModality(Policy):
    """Send each input to the model registered for its modality.

    With ``preferred`` (modality -> model name) that model wins when it serves
    the modality; otherwise the first registered model serving the modality
    does. Raises ``NoRoute`` naming the modality and what is registered when
    nothing serves it. ``preferred`` is read-only once built (a router plans its
    choice per modality once per set of registered models): to change it,
    assign a new ByModality.
    """

    def __init__(self, preferred: Mapping[str, str] | None = None) -> None:
        self.preferred: Mapping[str, str] = MappingProxyType(dict(preferred or {}))
        for modality, name in self.preferred.items():
            if not isinstance(name, str):
                raise PolicyError(f"preferred[{modality!r}] must be a model name, got {name!r}")

    def select(self, analysis: Analysis, candidates: Candidates) -> Choice:
        modality = analysis.modality
        preferred = self.preferred.get(modality)
        if preferred is not None and preferred in candidates:
            return Choice(preferred, f"preferred model for modality {modality!r}")
        if not candidates:
            registered = dict(candidates.registered)
            raise NoRoute(f"no model serves modality {modality!r}; registered: {registered}")
        return Choice(candidates.names[0], f"registered for modality {modality!r}")
