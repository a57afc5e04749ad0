"""Decision trees and forests learned from routing logs, served by the C++ scorer.

Training uses scikit-learn; the served form is fastroute's own flat arrays
(see ``csrc/scorer.hpp``), so a fitted or imported tree scores in C++ with the
same decisions as scikit-learn on the same rows.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..analyzer import FEATURE_NAMES
from ..errors import InvalidInput, PolicyError
from .compiled import FORMAT, FORMAT_VERSION, Compiled, CompiledPolicy, as_feature_matrix, build_scorer

__all__ = ["Forest", "Tree", "routing_objective"]

_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "values", "tree_begin", "divisor")
#: Per array: the dtype kinds accepted, the number of dimensions and the dtype the scorer reads.
_ARRAY_TYPES = {
    "feature": ("iu", 1, np.int32),
    "threshold": ("fiu", 1, np.float64),
    "left": ("iu", 1, np.int32),
    "right": ("iu", 1, np.int32),
    "missing_left": ("biu", 1, np.uint8),
    "values": ("fiu", 2, np.float64),
    "tree_begin": ("iu", 1, np.uint32),
    "divisor": ("fiu", 1, np.float64),
}


def _scorer_array(name: str, value: Any) -> np.ndarray:
    """``value`` in the dtype the scorer reads, or PolicyError naming the array: a wrong kind,
    shape, or integers the scorer's type cannot hold are refused, never cast."""
    kinds, ndim, dtype = _ARRAY_TYPES[name]
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        raise PolicyError(f"{name}: dtype {array.dtype} where {'an integer' if kinds == 'iu' else 'a numeric'} array belongs")
    if array.ndim != ndim:
        raise PolicyError(f"{name}: shape {array.shape} where a {ndim}-D array belongs")
    if array.dtype.kind in "iu" and np.dtype(dtype).kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise PolicyError(f"{name}: values outside [{info.min}, {info.max}]")
    return np.ascontiguousarray(array, dtype=dtype)


def _sklearn(module: str) -> Any:
    """``sklearn.<module>``, or PolicyError naming the extra that installs it."""
    try:
        return importlib.import_module(f"sklearn.{module}")
    except ImportError as error:
        raise PolicyError(
            f"fitting a tree or forest needs scikit-learn: pip install 'fastroute[learn]' ({error})"
        ) from None


def routing_objective(
    outcomes: Any, n_models: int, *, cost: Any = None, cost_weight: float = 0.0, loss: bool = False
) -> np.ndarray:
    """Per-input objective (n, k): quality (or -loss) - cost_weight * cost; NaN = not run.

    Raises InvalidInput for a wrong shape, Inf, or a model never observed.
    """
    values = np.asarray(outcomes, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != n_models:
        raise InvalidInput(f"outcomes must have shape (n, {n_models}) (one column per model), got {values.shape}")
    if np.isinf(values).any():
        raise InvalidInput(f"outcomes contain Inf at row {int(np.argwhere(np.isinf(values))[0][0])}")
    empty = np.flatnonzero(np.isnan(values).all(axis=0))
    if empty.size:
        raise InvalidInput(f"outcomes column {int(empty[0])} is all NaN: that model was never observed")
    objective = -values if loss else values
    if cost is not None and cost_weight:
        cost = np.broadcast_to(np.asarray(cost, dtype=np.float64), values.shape) if np.ndim(cost) else cost
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape not in ((n_models,), values.shape) or not np.isfinite(cost).all():
            raise InvalidInput(f"cost must be finite with shape ({n_models},) or {values.shape}, got {cost.shape}")
        objective = objective - cost_weight * cost
    return objective


def training_features(features: Any, n_rows: int | None = None) -> np.ndarray:
    """``features`` as a float32 (n, F) training matrix (with ``n_rows`` rows when given), or InvalidInput."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise InvalidInput(f"features must be a 2-D (n, F) matrix, got shape {array.shape}")
    matrix = as_feature_matrix(array, array.shape[1])
    if np.isinf(matrix).any():
        raise InvalidInput(f"features contain Inf at row {int(np.argwhere(np.isinf(matrix))[0][0])}")
    if n_rows is not None and len(matrix) != n_rows:
        raise InvalidInput(f"features have {len(matrix)} rows but outcomes have {n_rows}")
    return matrix


def default_feature_names(width: int, names: Sequence[str] | None) -> tuple[str, ...]:
    """``names`` checked against ``width``, else FEATURE_NAMES (or x0, x1... for another width)."""
    if names is not None:
        if len(names) != width:
            raise PolicyError(f"{len(names)} feature names for {width} feature columns")
        return tuple(names)
    return FEATURE_NAMES if width == len(FEATURE_NAMES) else tuple(f"x{i}" for i in range(width))


class _TreeEnsemble(CompiledPolicy):
    """Shared serving side of Tree and Forest: flat arrays compiled to a ForestScorer."""

    _kind = ""

    def _compile(self, arrays: Mapping[str, np.ndarray], models: Sequence[str], feature_names: Sequence[str]) -> None:
        arrays = {name: _scorer_array(name, arrays[name]) for name in _ARRAYS}
        scorer = build_scorer(_core.ForestScorer, len(feature_names), *(arrays[name] for name in _ARRAYS))
        if scorer.num_models != len(models):
            raise PolicyError(f"leaf values have {scorer.num_models} columns for {len(models)} models")
        self._install(scorer, models, feature_names, arrays)

    def predict_scores(self, features: Any) -> np.ndarray:
        """Per-model scores (n, k) as the policy computes them (forests: the mean over trees)."""
        scorer = self._checked_state().scorer
        return scorer.predict_scores(as_feature_matrix(features, scorer.num_features))

    def _reason(self, state: Compiled, reason: int, index: int) -> str:
        return f"{self._kind} leaf {reason} -> {state.models[index]}"  # explain() gives the path

    def explain(self, row: Any) -> str:
        """The decision and the path through the first tree, with feature names and thresholds."""
        state = self._checked_state()
        vector = as_feature_matrix(row, len(state.feature_names))[0]
        arrays = state.detail
        steps = []
        path = state.scorer.path(vector, 0)
        for node, child in zip(path[:-1], path[1:]):
            feature = arrays["feature"][node]
            side = "<=" if child == arrays["left"][node] else ">"
            steps.append(f"{state.feature_names[feature]}={vector[feature]:.6g} {side} {arrays['threshold'][node]:.6g}")
        index, _, _, leaf = state.scorer.score(vector)
        return f"{self._reason(state, leaf, index)}; path: " + " and ".join(steps or ["(root is a leaf)"])

    def save(self, path: str | Path) -> None:
        state = self._checked_state()
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self._kind,
            "models": list(state.models),
            "feature_names": list(state.feature_names),
        }
        np.savez(path, header=np.array(json.dumps(header)), **state.detail)

    @classmethod
    def _from_saved(cls, body: Mapping[str, Any]) -> Any:
        policy = cls()
        policy._compile(body, body["models"], body["feature_names"])
        return policy

    @classmethod
    def from_sklearn(
        cls,
        estimator: Any,
        models: Sequence[str],
        *,
        loss: bool = False,
        feature_names: Sequence[str] | None = None,
    ) -> Any:
        """Import a fitted scikit-learn tree or forest (classifier or regressor).

        Classifiers: ``classes_`` are model names, or integer indices into
        ``models``; the policy picks the class scikit-learn predicts.
        Regressors: one output per model predicting its quality (or its loss
        with ``loss=True``); the policy picks the best predicted model.
        """
        trees = _trees_of(estimator)
        if not trees or not all(hasattr(tree, "tree_") for tree in trees):
            raise PolicyError(f"{type(estimator).__name__} is not a fitted scikit-learn tree or forest")
        classes = getattr(estimator, "classes_", None)
        if classes is None and trees[0].tree_.n_outputs != len(models):
            raise PolicyError(f"regressor has {trees[0].tree_.n_outputs} outputs for {len(models)} models")
        columns = np.arange(len(models)) if classes is None else _class_columns(classes, models)
        arrays = _flatten([(tree, columns) for tree in trees], len(models), loss)
        policy = cls()
        policy._compile(arrays, list(models), default_feature_names(trees[0].tree_.n_features, feature_names))
        return policy

    def _estimator(self) -> Any:
        raise NotImplementedError

    def fit(
        self,
        features: Any,
        outcomes: Any,
        *,
        models: Sequence[str],
        cost: Any = None,
        cost_weight: float = 0.0,
        loss: bool = False,
        feature_names: Sequence[str] | None = None,
    ) -> Any:
        """Learn from logs and return self.

        ``outcomes`` (n, k): each model's observed quality per input (higher is
        better, or a loss with ``loss=True``; NaN where the model was not run).
        The objective is quality - cost_weight * cost. ``method="regression"``
        predicts every model's objective; ``"classification"`` learns the best
        model per input, weighted by how much choosing wrong could cost.
        When some cells are unobserved, regression learns each model's
        objective from the inputs it ran on (one tree or forest per model).
        """
        models = list(models)
        objective = routing_objective(outcomes, len(models), cost=cost, cost_weight=cost_weight, loss=loss)
        matrix = training_features(features, len(objective))
        names = default_feature_names(matrix.shape[1], feature_names)
        observed = ~np.isnan(objective).all(axis=1)
        matrix, objective = matrix[observed], objective[observed]
        if len(matrix) == 0:
            raise InvalidInput("no input has an observed outcome")
        if self.method == "classification":
            trees = self._fit_classifier(matrix, objective)
        elif np.isnan(objective).any():
            trees = self._fit_regressor_per_model(matrix, objective)
        else:
            estimator = self._estimator().fit(matrix, objective)
            trees = [(tree, np.arange(len(models))) for tree in _trees_of(estimator)]
        self._compile(_flatten(trees, len(models), False), models, names)
        return self

    def _fit_classifier(self, matrix: np.ndarray, objective: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        # Among tied best models (all correct, all timed out...) the label is the one
        # best on average, so ties teach the single best model, not the first column.
        is_best = objective >= np.nanmax(objective, axis=1, keepdims=True)
        best = np.argmax(np.where(is_best, np.nanmean(objective, axis=0), -np.inf), axis=1)
        weight = np.nanmax(objective, axis=1) - np.nanmin(objective, axis=1)
        if not (weight > 0).any():
            weight = np.ones_like(weight)
        estimator = self._estimator().fit(matrix, best, sample_weight=weight)
        return [(tree, estimator.classes_.astype(np.int64)) for tree in _trees_of(estimator)]

    def _fit_regressor_per_model(self, matrix: np.ndarray, objective: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        """With unobserved cells, each model's objective is learned from the inputs it ran on."""
        trees = []
        for model in range(objective.shape[1]):
            observed = ~np.isnan(objective[:, model])
            estimator = self._estimator().fit(matrix[observed], objective[observed, model])
            trees += [(tree, np.array([model])) for tree in _trees_of(estimator)]
        return trees


def _class_columns(classes: np.ndarray, models: Sequence[str]) -> np.ndarray:
    if classes.dtype.kind in "iu":
        if classes.min() < 0 or classes.max() >= len(models):
            raise PolicyError(f"classifier classes {classes.tolist()} are not indices into {len(models)} models")
        return classes.astype(np.int64)
    unknown = [c for c in classes.tolist() if c not in models]
    if unknown:
        raise PolicyError(f"classifier classes {unknown} are not among the models {list(models)}")
    return np.array([list(models).index(c) for c in classes.tolist()], dtype=np.int64)


def _flatten(trees: Sequence[tuple[Any, np.ndarray]], n_models: int, negate: bool) -> dict[str, np.ndarray]:
    """Concatenate scikit-learn trees into fastroute's flat arrays.

    Each tree comes with the model column of each of its outputs (regressors)
    or classes (classifiers). Leaves hold those scores; the scorer sums them
    in tree order and divides each column by the number of trees scoring it,
    as scikit-learn's forests do, so scores match bit for bit.
    """
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS[:6]}
    begin = [0]
    trees_per_model = np.zeros(n_models)
    for tree, columns in trees:
        t, offset = tree.tree_, begin[-1]
        classifier = hasattr(tree, "classes_")
        if classifier and t.n_outputs != 1:
            raise PolicyError("multi-output classifiers are not supported; use one output")
        leaf = np.zeros((t.node_count, n_models))
        leaf[:, columns] = t.value[:, 0, :] if classifier else t.value[:, :, 0]  # class fractions or outputs
        trees_per_model[columns] += 1
        parts["values"].append(-leaf if negate else leaf)
        parts["feature"].append(np.where(t.children_left < 0, 0, t.feature))
        parts["threshold"].append(np.where(t.children_left < 0, 0.0, t.threshold))
        parts["left"].append(np.where(t.children_left < 0, -1, t.children_left + offset))
        parts["right"].append(np.where(t.children_right < 0, -1, t.children_right + offset))
        parts["missing_left"].append(np.asarray(t.missing_go_to_left, dtype=np.uint8))
        begin.append(offset + t.node_count)
    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    arrays["tree_begin"] = np.array(begin, dtype=np.uint32)
    arrays["divisor"] = np.maximum(trees_per_model, 1.0)
    return arrays


def _trees_of(estimator: Any) -> list[Any]:
    return list(getattr(estimator, "estimators_", [estimator]))


class Tree(_TreeEnsemble):
    """One decision tree: axis-aligned splits, per-model scores in the leaves.

    A row goes left when ``feature <= threshold``; a missing (NaN) value
    follows the direction scikit-learn learned for the node (the larger child
    when it saw no missing values). The chosen model is the leaf's best score.
    """

    _kind = "tree"

    def __init__(self, *, max_depth: int | None = 8, min_samples_leaf: int = 1, method: str = "regression",
                 random_state: int | None = 0) -> None:
        if method not in ("regression", "classification"):
            raise PolicyError(f"method must be 'regression' or 'classification', got {method!r}")
        self.max_depth, self.min_samples_leaf, self.method, self.random_state = (
            max_depth, min_samples_leaf, method, random_state)

    def _estimator(self) -> Any:
        tree = _sklearn("tree")
        cls = tree.DecisionTreeRegressor if self.method == "regression" else tree.DecisionTreeClassifier
        return cls(max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf, random_state=self.random_state)


class Forest(_TreeEnsemble):
    """A random forest (or extra-trees with ``extra=True``): the mean of its trees' scores.

    Each row is scored by every tree; the per-model scores are averaged and
    the best model wins, exactly as scikit-learn's forest predicts.
    """

    _kind = "forest"

    def __init__(self, *, n_trees: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: Any = 1.0, method: str = "regression", extra: bool = False,
                 random_state: int | None = 0, n_jobs: int = 1) -> None:
        if method not in ("regression", "classification"):
            raise PolicyError(f"method must be 'regression' or 'classification', got {method!r}")
        if n_trees < 1:
            raise PolicyError(f"n_trees must be >= 1, got {n_trees}")
        self.n_trees, self.max_depth, self.min_samples_leaf, self.max_features = (
            n_trees, max_depth, min_samples_leaf, max_features)
        self.method, self.extra, self.random_state, self.n_jobs = method, extra, random_state, n_jobs

    def _estimator(self) -> Any:
        ensemble = _sklearn("ensemble")
        name = ("ExtraTrees" if self.extra else "RandomForest") + (
            "Regressor" if self.method == "regression" else "Classifier")
        return getattr(ensemble, name)(
            n_estimators=self.n_trees, max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, random_state=self.random_state, n_jobs=self.n_jobs)
