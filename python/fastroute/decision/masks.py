"""Which of a compiled policy's models can take an input.

A compiled policy's arrays name models, whatever modality each serves. Served
by a router, it chooses only among the input's candidates (the models
registered for its modality): the C++ scorer takes a ``_core.ModelMask`` and
skips masked rules, ranks only allowed tree scores, moves a threshold to the
nearest allowed model. A mask is built once per set of candidates and cached
with the policy's compiled state, so a request pays a dict lookup; when every
model of the policy may take the input no mask is passed at all and the
scorer's unmasked fast path runs.

How to cover several modalities: either one policy per modality (a Rules
table whose rules name the modality, or separate policies composed by a
policy of your own that dispatches on ``analysis.modality``), or one policy
over the models of every modality, whose choice the router masks by
compatibility, as here: a forest trained on image and text models sends
text only to text models.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from ..analyzer import MODALITIES
from ..errors import NoRoute

__all__ = ["ModelMasks", "no_route"]

#: Cached masks per compiled state; past this many distinct candidate sets the cache starts over.
_MAX_CACHED = 256


class ModelMasks:
    """The masks of one compiled state (its ``models``), built on first use. Thread-safe."""

    def __init__(self, models: Sequence[str]) -> None:
        self._models = tuple(models)
        self._lock = threading.Lock()
        self._cache: dict[Any, Any] = {}  # guarded by _lock for writes; reads are single dict lookups
        # The last candidates seen and their mask: a router hands the same immutable
        # Candidates object until the registry changes, so most requests stop here.
        self._last: tuple[Any, Any] = (None, None)

    def for_candidates(self, candidates: Any) -> Any:
        """The mask for one input's ``candidates`` (anything with ``.names``); None when
        every model of the policy is among them (nothing to mask)."""
        last_candidates, last_mask = self._last
        if candidates is last_candidates:
            return last_mask
        key = candidates.names
        mask = self._cache.get(key, self)
        if mask is self:
            flags = self._flags(set(key))
            mask = self._store(key, None if flags.all() else _core.ModelMask(flags[None, :]))
        self._last = (candidates, mask)
        return mask

    def for_modalities(self, candidates_of: Any) -> Any:
        """One mask for rows of every modality: ``candidates_of(modality)`` gives each
        modality's candidates (None: none); the scorer picks the group by each row's
        modality code."""
        groups = [candidates_of(modality) for modality in MODALITIES]
        names = tuple(() if group is None else group.names for group in groups)
        key = ("by modality", names)
        found = self._cache.get(key, self)
        if found is not self:
            return found
        flags = np.stack([self._flags(set(group)) for group in names])
        return self._store(key, None if flags.all() else _core.ModelMask(flags))

    def _flags(self, allowed: set[str]) -> np.ndarray:
        return np.fromiter((model in allowed for model in self._models), dtype=np.uint8, count=len(self._models))

    def _store(self, key: Any, mask: Any) -> Any:
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = mask
        return mask


def no_route(modality: str, candidates: Any, models: Sequence[str], row: int | None = None) -> NoRoute:
    """The NoRoute for an input of ``modality`` that none of the policy's ``models`` can take."""
    registered = getattr(candidates, "registered", {})
    serving = {model: registered.get(model, "not registered") for model in models}
    where = "" if row is None else f"input {row}: "
    return NoRoute(
        f"{where}no model of the policy can take an input of modality {modality!r}: its models serve "
        f"{serving}; models registered for {modality!r}: {list(candidates.names)}"
    )
