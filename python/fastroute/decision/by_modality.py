"""ByModality: send each input to the model registered for its modality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..analyzer import Analysis
from ..errors import NoRoute, PolicyError
from .base import Choice, Policy

if TYPE_CHECKING:
    from ..library.registry import Registry

__all__ = ["ByModality"]


class ByModality(Policy):
    """Send each input to the model registered for its modality.

    With ``preferred`` (modality -> model name) that model wins; otherwise the
    first registered model serving the modality does. Raises ``NoRoute``
    naming the modality and what is registered when nothing serves it.
    """

    def __init__(self, preferred: Mapping[str, str] | None = None) -> None:
        self.preferred = dict(preferred or {})
        for modality, name in self.preferred.items():
            if not isinstance(name, str):
                raise PolicyError(f"preferred[{modality!r}] must be a model name, got {name!r}")

    def select(self, analysis: Analysis, models: Registry) -> Choice:
        modality = analysis.modality
        preferred = self.preferred.get(modality)
        if preferred is not None and preferred in models:
            return Choice(preferred, f"preferred model for modality {modality!r}")
        candidates = models.for_modality(modality)
        if not candidates:
            registered = {spec.name: spec.modality for spec in models.list()}
            raise NoRoute(f"no model serves modality {modality!r}; registered: {registered}")
        return Choice(candidates[0], f"registered for modality {modality!r}")
