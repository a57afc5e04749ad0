"""User features: columns a policy reads after the analyzer's FEATURE_NAMES.

Their values for one input come, in this order of precedence, from the live
state (``load_<feature>__<model>`` columns, filled by the caller), from values
the caller passes by name, and from extractors registered with
:meth:`UserFeatures.add`; a column none of them fills is missing (NaN).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInput, PolicyError
from .analysis import FEATURE_NAMES, Analysis, BatchAnalysis

__all__ = ["FeatureBatch", "FeatureRow", "LiveColumns", "UserFeatures", "given_rows", "user_columns"]

Extractor = Callable[[Any], Sequence[float]]
#: The live-state values among some columns: ``live(columns) -> {column: value}``.
LiveColumns = Callable[[Sequence[str]], Mapping[str, float]]


@dataclass(frozen=True)
class FeatureRow:
    """What a policy sees for one input when user features follow the analyzer's (in its feature_names order)."""

    modality: str
    features: np.ndarray
    #: The columns' names (the policy's feature_names), when known.
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureBatch:
    """What a Python policy's select_batch sees when user features follow the analyzer's: one FeatureRow per input."""

    modalities: list[str]
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.modalities)

    def __getitem__(self, index: int) -> FeatureRow:
        return FeatureRow(self.modalities[index], self.features[index])


def user_columns(feature_names: Sequence[str]) -> tuple[str, ...]:
    """The user feature columns of a policy reading ``feature_names``."""
    return tuple(feature_names[len(FEATURE_NAMES) :])


class UserFeatures:
    """The extractors of one router, and the policy input rows built with them."""

    def __init__(self) -> None:
        self._extractors: list[tuple[tuple[str, ...], Extractor]] = []

    def add(self, names: Sequence[str], extractor: Extractor) -> None:
        """Register ``extractor(x) -> values`` computing the features ``names`` for each input.

        Names are checked once, here: identifiers, not analyzer features, not
        registered twice (PolicyError).
        """
        names = tuple(names)
        taken = set(FEATURE_NAMES).union(*(set(group) for group, _ in self._extractors))
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise PolicyError(f"feature name must be an identifier, got {name!r}")
            if name in taken:
                raise PolicyError(f"feature {name!r} is already defined")
        if not names or not callable(extractor):
            raise PolicyError("add_features needs at least one name and a callable extractor")
        self._extractors.append((names, extractor))

    def row(
        self, feature_names: Sequence[str], analysis: Analysis, x: Any,
        given: Mapping[str, float] | None, live: LiveColumns,
    ) -> Analysis | FeatureRow:
        """One input's policy input: its analysis alone, or a FeatureRow when the policy reads user features."""
        columns = user_columns(feature_names)
        if not columns and not given:
            return analysis
        values = dict.fromkeys(columns, np.nan)
        for names, extractor in self._extractors:
            if any(name in values for name in names):
                values.update(zip(names, _extracted(names, extractor(x))))
        for name, value in (given or {}).items():
            if name not in values:
                raise InvalidInput(f"unknown user feature {name!r}; the policy reads {list(columns)}")
            values[name] = value
        values.update(live(columns))
        row = np.concatenate([analysis.features, np.array([values[c] for c in columns], dtype=np.float32)])
        return FeatureRow(analysis.modality, row, tuple(feature_names))

    def batch(
        self, feature_names: Sequence[str], batch: BatchAnalysis, xs: Any, given: Any, live: LiveColumns
    ) -> BatchAnalysis | FeatureBatch:
        """A batch's policy input; ``given`` holds user feature columns as an (n, U)
        array in the policy's order or a mapping name -> (n,) values."""
        columns = user_columns(feature_names)
        if not columns and given is None:
            return batch
        user = self._extracted_columns(columns, xs, len(batch.features))
        if isinstance(given, Mapping):
            for name, values in given.items():
                if name not in columns:
                    raise InvalidInput(f"unknown user feature {name!r}; the policy reads {list(columns)}")
                user[:, columns.index(name)] = np.asarray(values, dtype=np.float32)
        elif given is not None:
            user = np.asarray(given, dtype=np.float32).reshape(len(batch.features), -1)
            if user.shape[1] != len(columns):
                raise InvalidInput(f"features have {user.shape[1]} columns; the policy reads {list(columns)}")
        for column, value in live(columns).items():
            user[:, columns.index(column)] = value
        return FeatureBatch(batch.modalities, np.concatenate([batch.features, user], axis=1))

    def _extracted_columns(self, columns: tuple[str, ...], xs: Any, n: int) -> np.ndarray:
        user = np.full((n, len(columns)), np.nan, dtype=np.float32)
        for names, extractor in self._extractors:
            used = [(j, columns.index(name)) for j, name in enumerate(names) if name in columns]
            if used:
                extracted = np.array([_extracted(names, extractor(x)) for x in xs], dtype=np.float32)
                for j, column in used:
                    user[:, column] = extracted[:, j]
        return user


def given_rows(given: Any, index: int) -> Any:
    """Row ``index`` of a batch's given user features (see :meth:`UserFeatures.batch`), as a batch of one."""
    if given is None:
        return None
    if isinstance(given, Mapping):
        return {name: np.asarray(values)[index : index + 1] for name, values in given.items()}
    return np.asarray(given)[index : index + 1]


def _extracted(names: tuple[str, ...], values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != len(names):
        raise InvalidInput(f"feature extractor for {list(names)} returned {len(values)} values")
    return values
