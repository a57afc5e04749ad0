"""Linear: one linear scorer per model over hashed n-grams of the prompt and dense features.

Text routing (which LLM answers this prompt) needs to know what the prompt is
about; the analyzer's dense features cannot tell a maths question from a
history one. :class:`Linear` scores each model with a linear function of the
prompt's hashed n-gram counts (:class:`~fastroute.analyzer.HashedNgrams`,
exactly scikit-learn's HashingVectorizer) plus, optionally, dense feature
columns (the analyzer's and user features, standardised; NaN counts as the
training mean). The highest score wins. Hashing and scoring run in C++ in one
call per prompt (``route(text)``), batches as CSR without the GIL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..analyzer import FEATURE_NAMES, HashedNgrams
from ..errors import InvalidInput, PolicyError
from .base import BatchChoice, Candidates, Choice, Policy
from .compiled import FORMAT, FORMAT_VERSION
from .masks import no_route
from .trees import routing_objective

__all__ = ["Linear"]

_METHODS = ("regression", "classification")
#: The bias of a model a classifier never saw as best: finite, never chosen.
_NEVER = -1e30


class Linear(Policy):
    """One linear scorer per model over hashed prompt n-grams (+ dense columns); the top score wins.

    ``method``: ``"regression"`` fits each model's objective (quality, or
    -loss, minus ``cost_weight`` x cost) with ridge regression (``alpha``) on
    the inputs where that model was run (NaN outcomes are skipped);
    ``"classification"`` fits a multinomial logistic regression (``C``) of the
    per-input best model. ``dense``: names of dense feature columns the
    policy also reads (analyzer feature names or user columns), given to
    ``fit``/``route`` as a matrix/row in that order.

    Guarantee: the chosen model is the argmax of the fitted scores plus the
    calibration offsets (``calibrate``), the first on a tie; the features
    equal scikit-learn's HashingVectorizer, so ``from_sklearn`` serves a model
    trained there with the same decisions.
    """

    reads_text = True

    def __init__(
        self,
        text: HashedNgrams | None = None,
        *,
        method: str = "regression",
        alpha: float = 10.0,
        C: float = 1.0,
        dense: Sequence[str] = (),
    ) -> None:
        if method not in _METHODS:
            raise PolicyError(f"method must be one of {_METHODS}, got {method!r}")
        if not (alpha > 0 and C > 0):
            raise PolicyError(f"alpha and C must be > 0, got alpha={alpha!r}, C={C!r}")
        self.text = text if text is not None else HashedNgrams("word", (1, 2), 2**18)
        self.method, self.alpha, self.C = method, float(alpha), float(C)
        self.dense_names = tuple(dense)
        self._models: tuple[str, ...] = ()
        self._arrays: dict[str, np.ndarray] = {}
        self._scorer: Any = None

    # ---- state -------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        """The models scored, in column order; PolicyError before fitting."""
        self._checked()
        return self._models

    @property
    def feature_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The analyzer's columns, then the dense user columns this policy reads."""
        return FEATURE_NAMES + tuple(name for name in self.dense_names if name not in FEATURE_NAMES)

    @property
    def fitted(self) -> bool:
        return self._scorer is not None

    def _checked(self) -> Any:
        scorer = self._scorer
        if scorer is None:
            raise PolicyError("the Linear policy is not fitted: call fit(), from_sklearn() or load()")
        return scorer

    def _install(self, models: Sequence[str], arrays: Mapping[str, np.ndarray]) -> None:
        arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}
        k, d = len(models), len(self.dense_names)
        if len(set(models)) != k or k < 1:
            raise PolicyError(f"models must be distinct names, got {list(models)}")
        offsets = arrays.get("offsets", np.zeros(k, np.float32))
        scorer = _core.LinearScorer(
            k, d, self.text.n_features, arrays["dense_weights"], arrays["dense_mean"], arrays["dense_scale"],
            arrays["sparse_weights"], arrays["intercept"] + offsets)
        self._arrays = {**arrays, "offsets": offsets}
        self._models = tuple(models)
        self._scorer = scorer  # last: one assignment swaps the whole state

    # ---- fitting -----------------------------------------------------------

    def fit(
        self,
        texts: Sequence[str | bytes],
        outcomes: Any,
        *,
        models: Sequence[str],
        dense: Any = None,
        cost: Any = None,
        cost_weight: float = 0.0,
        loss: bool = False,
        sample_weight: Any = None,
    ) -> Linear:
        """Learn from logs and return self (needs scikit-learn: the ``learn`` extra).

        ``outcomes`` (n, k): each model's quality per prompt (higher is
        better, or a loss with ``loss=True``), NaN where it was not run;
        ``cost`` per model (k,) or per cell (n, k), weighted by ``cost_weight``.
        """
        from scipy import sparse

        objective = routing_objective(outcomes, len(models), cost=cost, cost_weight=cost_weight, loss=loss)
        if len(texts) != len(objective):
            raise InvalidInput(f"{len(texts)} texts but {len(objective)} rows of outcomes")
        matrix = self._dense_matrix(dense, len(objective))
        mean = np.nanmean(matrix, axis=0) if matrix.shape[1] else np.zeros(0)
        mean = np.nan_to_num(mean)
        scale = np.nanstd(matrix, axis=0) if matrix.shape[1] else np.zeros(0)
        scale = np.where(np.nan_to_num(scale) > 0, np.nan_to_num(scale), 1.0)
        standard = np.nan_to_num((matrix - mean) / scale)
        features = sparse.hstack([sparse.csr_matrix(standard), self.text.transform(texts)]).tocsr()
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        coef, intercept = (self._fit_regression if self.method == "regression" else self._fit_classification)(
            features, objective, weights)
        d = matrix.shape[1]
        self._install(models, {
            "dense_weights": coef[:, :d].T, "dense_mean": mean, "dense_scale": scale,
            "sparse_weights": coef[:, d:].T, "intercept": intercept,
        })
        return self

    def _fit_regression(self, features: Any, objective: np.ndarray, weights: Any) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import Ridge

        k = objective.shape[1]
        coef = np.zeros((k, features.shape[1]))
        intercept = np.zeros(k)
        for m in range(k):
            seen = ~np.isnan(objective[:, m])
            ridge = Ridge(alpha=self.alpha).fit(features[seen], objective[seen, m],
                                                sample_weight=None if weights is None else weights[seen])
            coef[m], intercept[m] = ridge.coef_, ridge.intercept_
        return coef, intercept

    def _fit_classification(self, features: Any, objective: np.ndarray, weights: Any) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        best = np.nanargmax(np.where(np.isnan(objective), -np.inf, objective), axis=1)
        k = objective.shape[1]
        coef = np.zeros((k, features.shape[1]))
        intercept = np.full(k, _NEVER)
        classes = np.unique(best)
        if len(classes) == 1:
            intercept[classes[0]] = 0.0
            return coef, intercept
        model = LogisticRegression(C=self.C, max_iter=1000).fit(features, best, sample_weight=weights)
        if len(classes) == 2:  # one coefficient row: the second class's log-odds over the first
            coef[classes[1]], intercept[classes[1]] = model.coef_[0], model.intercept_[0]
            intercept[classes[0]] = 0.0
        else:
            coef[classes], intercept[classes] = model.coef_, model.intercept_
        return coef, intercept

    @classmethod
    def from_sklearn(cls, estimator: Any, models: Sequence[str], *, text: HashedNgrams | None = None) -> Linear:
        """Serve a fitted scikit-learn linear model (or a Pipeline of HashingVectorizer and one).

        The estimator has ``coef_`` (k, F) or (F,) and ``intercept_`` over the
        hashed features alone; a classifier's ``classes_`` index ``models``.
        A binary classifier scores ``classes_[1]`` by its log-odds and
        ``classes_[0]`` 0; a one-output regressor of two models scores
        ``models[1]``'s advantage and ``models[0]`` 0. Models a classifier
        never saw are never chosen.
        """
        steps = getattr(estimator, "steps", None)
        if steps is not None:
            if len(steps) != 2:
                raise PolicyError("a Pipeline must be (HashingVectorizer, linear model)")
            text, estimator = HashedNgrams.from_sklearn(steps[0][1]), steps[1][1]
        if text is None:
            raise PolicyError("from_sklearn needs text= (the HashedNgrams the model was trained on) or a Pipeline")
        coef = np.atleast_2d(np.asarray(getattr(estimator, "coef_", None), dtype=np.float64))
        if coef.ndim != 2 or coef.shape[1] != text.n_features:
            raise PolicyError(f"the estimator's coef_ must have {text.n_features} columns, got shape {coef.shape}")
        intercept = np.broadcast_to(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64), len(coef))
        k = len(models)
        full_coef, full_intercept = np.zeros((k, coef.shape[1])), np.zeros(k)
        classes = getattr(estimator, "classes_", None)
        rows = list(range(k)) if classes is None else [int(c) for c in classes]
        if len(coef) == 1 and len(rows) == 2 and classes is not None:  # binary: classes_[1]'s log-odds
            full_intercept[:] = _NEVER
            full_intercept[rows[0]] = 0.0
            full_coef[rows[1]], full_intercept[rows[1]] = coef[0], intercept[0]
        elif len(coef) == 1 and k == 2:
            full_coef[1], full_intercept[1] = coef[0], intercept[0]
        elif len(coef) == len(rows) and all(0 <= r < k for r in rows):
            full_intercept[:] = _NEVER if classes is not None else 0.0
            full_coef[rows], full_intercept[rows] = coef, intercept
        else:
            raise PolicyError(f"{len(coef)} coefficient rows do not match {k} models {list(models)}")
        policy = cls(text)
        policy._install(models, {
            "dense_weights": np.zeros((0, k)), "dense_mean": np.zeros(0), "dense_scale": np.zeros(0),
            "sparse_weights": full_coef.T, "intercept": full_intercept,
        })
        return policy

    # ---- scoring -----------------------------------------------------------

    def _dense_matrix(self, dense: Any, n: int) -> np.ndarray:
        d = len(self.dense_names)
        if d == 0:
            if dense is not None and np.size(dense):
                raise InvalidInput("this policy reads no dense features (dense=() at construction)")
            return np.zeros((n, 0), dtype=np.float32)
        matrix = np.asarray(dense, dtype=np.float32)
        if matrix.shape != (n, d):
            raise InvalidInput(f"dense features must have shape ({n}, {d}) for {list(self.dense_names)}, got {matrix.shape}")
        if np.isinf(matrix).any():
            raise InvalidInput("dense features contain Inf")
        return matrix

    def scores(self, texts: Sequence[str | bytes], dense: Any = None) -> np.ndarray:
        """(n, k) float32 scores, calibration offsets included."""
        return self._score(texts, dense)[1]

    def predict(self, texts: Sequence[str | bytes], dense: Any = None) -> np.ndarray:
        """The chosen model index (n,) of each text."""
        return self._score(texts, dense)[0]

    def _score(self, texts: Sequence[str | bytes], dense: Any) -> tuple[np.ndarray, np.ndarray]:
        scorer = self._checked()
        indptr, indices, values = self.text.hash_batch(texts)
        matrix = self._dense_matrix(dense, len(indptr) - 1) if self.dense_names else None
        return scorer.score_csr(indptr, indices, values, matrix)

    def decide_batch(self, texts: Sequence[str | bytes], dense: Any = None) -> BatchChoice:
        """Choices for many texts: model indices, top scores and margins."""
        best, scores = self._score(texts, dense)
        top = scores[np.arange(len(best)), best]
        runner = np.partition(scores, -2, axis=1)[:, -2] if scores.shape[1] > 1 else np.full(len(best), np.nan)
        return BatchChoice(self.models, best, top.astype(np.float32), (top - runner).astype(np.float32))

    def route(self, text: str | bytes, dense: Any = None, candidates: Candidates | None = None) -> Choice:
        """The model for one prompt: hashed and scored in one C++ call. With ``candidates`` (the
        models able to take it) the best-scored candidate wins; NoRoute when none is a model here."""
        scorer = self._checked()
        row = None
        if self.dense_names:
            row = self._dense_matrix(np.asarray(dense, dtype=np.float32).reshape(1, -1), 1)[0]
        best, scores = scorer.route_text(self.text._hasher, text, row)
        among = f"{len(scores)}"
        if candidates is not None and self._models[best] not in candidates.names:
            allowed = np.array([model in candidates.names for model in self._models])
            if not allowed.any():
                raise no_route(candidates.modality, candidates, self._models)
            best = int(np.argmax(np.where(allowed, scores, -np.inf)))  # the first on a tie, as the scorer
            among = f"the {int(allowed.sum())} candidates"
        return Choice(self._models[best], f"linear score {float(scores[best]):.4g} is the highest of {among}",
                      score=float(scores[best]))

    def select_text(self, text: Any, analysis: Any, candidates: Candidates | None = None) -> Choice:
        """Router hook: the prompt itself, with its analysis row for the dense columns; the best-scored
        of ``candidates`` wins (NoRoute when none is one of this policy's models)."""
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise InvalidInput(f"the Linear policy routes text prompts, got {type(text).__name__}")
        dense = None
        if self.dense_names:
            names = self.feature_names
            dense = np.asarray(analysis.features, dtype=np.float32)[[names.index(n) for n in self.dense_names]]
        return self.route(text, dense, candidates)

    def select(self, analysis: Any, models: Any = None) -> Choice:
        raise PolicyError("the Linear policy reads the prompt text: route through Router.route(text) or Linear.route(text)")

    # ---- calibration -------------------------------------------------------

    def calibrate(
        self,
        texts: Sequence[str | bytes],
        dense: Any = None,
        *,
        share: float | None = None,
        budget: float | None = None,
        costs: Sequence[float] | None = None,
    ) -> Linear:
        """Shift the scores by ``-lam * cost`` so the traffic on ``texts`` meets a target; return self.

        ``share``: the share of traffic for the most expensive model (costs
        default to the model order, cheapest first). ``budget`` with ``costs``:
        the highest mean cost not above it. ``lam`` is found by bisection
        (the cost routed falls as lam grows); any number of models.
        """
        if (share is None) == (budget is None):
            raise PolicyError("calibrate needs exactly one of share= or budget=")
        k = len(self._models)
        cost = np.arange(k, dtype=np.float64) if costs is None else np.asarray(costs, dtype=np.float64)
        if cost.shape != (k,) or not np.isfinite(cost).all() or np.ptp(cost) <= 0:
            raise PolicyError(f"costs must give {k} finite costs, not all equal, got {costs!r}")
        if share is not None and not 0 <= share <= 1:
            raise PolicyError(f"share must be in [0, 1], got {share!r}")
        scorer = self._checked()
        indptr, indices, values = self.text.hash_batch(texts)
        matrix = self._dense_matrix(dense, len(indptr) - 1) if self.dense_names else None
        raw = scorer.score_csr(indptr, indices, values, matrix)[1].astype(np.float64) - self._arrays["offsets"]
        unit = (cost - cost.min()) / np.ptp(cost)
        expensive = int(np.argmax(cost))
        arrays = self._arrays

        def routed(lam: float) -> float:
            # Scored by the C++ scorer itself, so float32 rounding at near-ties is the served one.
            self._install(self._models, {**arrays, "offsets": -lam * unit})
            chosen = self._scorer.score_csr(indptr, indices, values, matrix)[0]
            return float((chosen == expensive).mean()) if share is not None else float(cost[chosen].mean())

        target = share if share is not None else budget
        span = float(np.ptp(raw)) + 1.0 if raw.size else 1.0
        low, high = -2 * span, 2 * span  # everything expensive at low, everything cheapest at high
        for _ in range(60):  # invariant: routed(high) <= target
            middle = (low + high) / 2
            if routed(middle) > target:
                low = middle
            else:
                high = middle
        self._install(self._models, {**arrays, "offsets": -high * unit})
        return self

    # ---- persistence -------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write an uncompressed ``.npz`` (read back by ``fastroute.decision.load``, never pickle)."""
        self._checked()
        header = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": "linear", "models": list(self._models),
            "feature_names": list(self.feature_names), "dense": list(self.dense_names), "text": self.text.settings(),
            "method": self.method, "alpha": self.alpha, "C": self.C,
        }
        np.savez(path, header=np.array(json.dumps(header)), **self._arrays)

    @classmethod
    def _from_saved(cls, body: Mapping[str, Any]) -> Linear:
        settings = dict(body["text"])
        if not isinstance(settings, dict):
            raise PolicyError("text settings must be a mapping")
        text = HashedNgrams(settings.pop("analyzer"), tuple(settings.pop("ngram_range")), settings.pop("n_features"),
                            **settings)
        policy = cls(text, method=body["method"], alpha=body["alpha"], C=body["C"], dense=body["dense"])
        policy._install(body["models"], {name: body[name] for name in (
            "dense_weights", "dense_mean", "dense_scale", "sparse_weights", "intercept", "offsets")})
        return policy

    def __repr__(self) -> str:
        state = f"models={list(self._models)}" if self.fitted else "unfitted"
        return f"Linear({self.text!r}, method={self.method!r}, {state})"

    def __deepcopy__(self, memo: dict) -> Linear:
        copy = Linear(self.text, method=self.method, alpha=self.alpha, C=self.C, dense=self.dense_names)
        if self.fitted:
            copy._install(self._models, self._arrays)
        return copy
