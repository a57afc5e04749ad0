"""Decision engine: policies choose which registered model serves an input.

A policy sees feature rows: the analyzer's ``FEATURE_NAMES`` columns, then any
user feature columns (``policy.feature_names`` lists them all, in order), and
returns a :class:`Choice`. The compiled policies (:class:`Rules`,
:class:`Tree`, :class:`Forest`, :class:`Threshold`) validate everything at
construction and score in C++ (``fastroute._core``). Each decision reads one
immutable compiled state, so swapping ``router.policy``, or refitting or
recalibrating a policy in use, is atomic: no request sees half a policy.

Policy contract used by the Router:

- ``select(analysis, models) -> Choice``: ``analysis.features`` is one row of
  ``len(policy.feature_names)`` values (``analysis.modality`` a str).
- ``select_batch(batch, models) -> list[Choice]``: ``batch.features`` is (n, F).
- compiled policies add ``decide_batch(features) -> BatchChoice`` (model
  indices straight from the batch scorer), ``explain(row)`` and ``save(path)``.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .analyzer import FEATURE_NAMES, MODALITIES, Analysis
from .compiled import (
    FORMAT,
    FORMAT_VERSION,
    BatchChoice,
    Choice,
    Compiled,
    CompiledPolicy,
    Policy,
    build_scorer,
    write_json,
)
from .errors import InvalidInput, NoRoute, PolicyError
from .registry import Registry
from .trees import Forest, Tree

__all__ = [
    "BatchChoice",
    "ByModality",
    "Choice",
    "Forest",
    "Policy",
    "Rule",
    "Rules",
    "Threshold",
    "Tree",
    "load",
]

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


# ---- rules ----------------------------------------------------------------

_OPS = {"<": 0, "<=": 1, ">": 2, ">=": 3, "==": 4, "!=": 5}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op><=|>=|==|!=|<|>))"
)


@dataclass(frozen=True)
class Rule:
    """``Rule("image", "height > 512 and channels == 3", model="big")``.

    ``modality`` is a modality name or ``None`` for any. ``when`` is a
    conjunction (``and``) of comparisons between a feature name and a number
    (``<, <=, >, >=, ==, !=``), or a range ``100 <= width < 2000``; an empty
    string always matches. A missing (NaN) feature fails every comparison.
    """

    modality: str | None
    when: str
    model: str


@dataclass(frozen=True)
class _Comparison:
    feature: int
    op: str
    value: float


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            position += len(text[position:]) - len(text[position:].lstrip())
            raise PolicyError(f"unexpected character {text[position]!r} at position {position} in {text!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def parse_condition(text: str, feature_names: Sequence[str]) -> list[_Comparison]:
    """Parse a rule's ``when`` into comparisons; PolicyError with the position on error."""
    index = {name: i for i, name in enumerate(feature_names)}
    comparisons: list[_Comparison] = []
    tokens = _tokens(text)
    clause: list[tuple[str, str, int]] = []

    def close_clause(end: int) -> None:
        comparisons.extend(_parse_clause(clause, text, end, index))
        clause.clear()

    for token in tokens:
        if token[0] == "name" and token[1] == "and":
            close_clause(token[2])
        else:
            clause.append(token)
    if tokens:
        close_clause(len(text))
    return comparisons


def _parse_clause(clause, text: str, end: int, index: Mapping[str, int]) -> list[_Comparison]:
    kinds = [kind for kind, _, _ in clause]
    if kinds not in (["name", "op", "number"], ["number", "op", "name"], ["number", "op", "name", "op", "number"]):
        position = clause[0][2] if clause else end
        raise PolicyError(
            f"expected 'feature <op> number' or 'number <op> feature <op> number' at position {position} in {text!r}"
        )
    name_token = next(token for token in clause if token[0] == "name")
    if name_token[1] not in index:
        raise PolicyError(f"unknown feature {name_token[1]!r} at position {name_token[2]} in {text!r}")
    feature = index[name_token[1]]
    if kinds[0] == "name":
        return [_Comparison(feature, clause[1][1], float(clause[2][1]))]
    result = [_Comparison(feature, _MIRROR[clause[1][1]], float(clause[0][1]))]
    if len(clause) == 5:
        result.append(_Comparison(feature, clause[3][1], float(clause[4][1])))
    return result


class Rules(CompiledPolicy):
    """An ordered rule table: the first rule whose modality and condition match wins.

    Rules are parsed and checked once, here: unknown features, unknown models
    (when ``models`` is given) and malformed conditions raise PolicyError with
    the position of the error. No rule matching sends the input to ``default``.
    ``models`` fixes the model order (default: first appearance).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        default: str,
        *,
        models: Sequence[str] | None = None,
        feature_names: Sequence[str] = FEATURE_NAMES,
    ) -> None:
        self.rules = tuple(rules)
        self.default = default
        names = list(models) if models is not None else list(dict.fromkeys([r.model for r in self.rules] + [default]))
        for number, model in [(i, r.model) for i, r in enumerate(self.rules)] + [(None, default)]:
            if model not in names:
                where = "default" if number is None else f"rule {number}"
                raise PolicyError(f"{where} routes to unknown model {model!r}; models: {names}")
        feature_names = tuple(feature_names)
        features, ops, values, begin = [], [], [], [0]
        for number, rule in enumerate(self.rules):
            try:
                comparisons = self._comparisons(rule, feature_names)
            except PolicyError as error:
                raise PolicyError(f"rule {number}: {error}") from None
            features += [c.feature for c in comparisons]
            ops += [_OPS[c.op] for c in comparisons]
            values += [c.value for c in comparisons]
            begin.append(len(features))
        scorer = build_scorer(
            _core.RuleScorer,
            len(feature_names),
            len(names),
            np.array(features, np.uint32),
            np.array(ops, np.uint8),
            np.array(values, np.float32),
            np.array(begin, np.uint32),
            np.array([names.index(r.model) for r in self.rules], np.int32),
            names.index(default),
        )
        reasons = tuple(
            f"rule {i}: {r.modality or 'any'}{': ' + r.when if r.when.strip() else ''}" for i, r in enumerate(self.rules)
        )
        self._install(scorer, names, feature_names, reasons)

    @staticmethod
    def _comparisons(rule: Rule, feature_names: tuple[str, ...]) -> list[_Comparison]:
        comparisons = []
        if rule.modality is not None:
            if rule.modality not in MODALITIES:
                raise PolicyError(f"unknown modality {rule.modality!r}; expected one of {MODALITIES}")
            if "modality" not in feature_names:
                raise PolicyError("a modality rule needs a 'modality' feature column")
            comparisons.append(_Comparison(feature_names.index("modality"), "==", MODALITIES.index(rule.modality)))
        return comparisons + parse_condition(rule.when, feature_names)

    def _reason(self, state: Compiled, reason: int, index: int) -> str:
        return state.detail[reason] if reason >= 0 else f"default: no rule matched -> {self.default}"

    def save(self, path: str | Path) -> None:
        write_json(path, "rules", {
            "rules": [[r.modality, r.when, r.model] for r in self.rules],
            "default": self.default,
            "models": list(self.models),
            "feature_names": list(self.feature_names),
        })

    @classmethod
    def _from_saved(cls, body: Mapping[str, Any]) -> Rules:
        rules = [Rule(modality, when, model) for modality, when, model in body["rules"]]
        return cls(rules, body["default"], models=body["models"], feature_names=body["feature_names"])


# ---- threshold ------------------------------------------------------------


class Threshold(CompiledPolicy):
    """Route to the cheaper model unless a score exceeds a cut point.

    ``score`` names the feature column holding the score (for an LLM router,
    e.g. a user feature with the predicted chance that the weak model fails).
    With models ``[m0, m1, ..., mk]`` (cheapest first) and ascending ``cuts``
    ``[c1, ..., ck]``, a row goes to ``m_j`` where j is the number of cuts its
    score strictly exceeds. A missing score goes to ``missing`` (default: the
    cheapest model). :meth:`calibrate` picks the cuts for a target share of
    traffic or a cost budget.
    """

    def __init__(
        self,
        score: str,
        models: Sequence[str],
        cuts: Sequence[float] | None = None,
        *,
        missing: str | None = None,
        feature_names: Sequence[str] = FEATURE_NAMES,
    ) -> None:
        self.score = score
        self._unfitted_feature_names = tuple(feature_names)
        self._unfitted_models = tuple(models)
        if score not in self.feature_names:
            raise PolicyError(f"unknown score feature {score!r}; features: {list(self.feature_names)}")
        if len(self.models) < 2:
            raise PolicyError(f"a threshold needs at least two models, got {list(self.models)}")
        self.missing = missing if missing is not None else self.models[0]
        if self.missing not in self.models:
            raise PolicyError(f"missing model {self.missing!r} is not one of {list(self.models)}")
        if cuts is not None:
            self._compile(cuts)

    def _compile(self, cuts: Sequence[float]) -> None:
        cuts = np.asarray(cuts, dtype=np.float32).ravel()
        if len(cuts) != len(self.models) - 1:
            raise PolicyError(f"{len(self.models)} models need {len(self.models) - 1} cuts, got {len(cuts)}")
        models, names = self._unfitted_models, self._unfitted_feature_names
        scorer = build_scorer(
            _core.ThresholdScorer, len(names), names.index(self.score), cuts, models.index(self.missing)
        )
        self._install(scorer, models, names, tuple(float(c) for c in cuts))

    @property
    def cuts(self) -> tuple[float, ...]:
        """The cut points in use (ascending); PolicyError before calibration."""
        return self._checked_state().detail

    def calibrate(
        self,
        scores: Any,
        *,
        share: float | Sequence[float] | None = None,
        budget: float | None = None,
        costs: Sequence[float] | None = None,
    ) -> Threshold:
        """Choose the cuts from observed ``scores`` (1-D) and return self.

        ``share``: the target share of traffic for each model above the
        cheapest (a float for two models), as quantiles of ``scores``.
        ``budget`` with ``costs`` (per model, cheapest first, two models): the
        largest share for the expensive model whose mean cost stays within budget.
        """
        values = np.asarray(scores, dtype=np.float64).ravel()
        values = values[~np.isnan(values)]
        if values.size == 0:
            raise InvalidInput("calibrate needs at least one non-missing score")
        if (share is None) == (budget is None):
            raise PolicyError("calibrate needs exactly one of share= or budget=")
        if budget is not None:
            share = _share_for_budget(budget, costs, len(self.models))
        shares = np.atleast_1d(np.asarray(share, dtype=np.float64))
        if len(shares) != len(self.models) - 1 or (shares < 0).any() or shares.sum() > 1:
            raise PolicyError(f"share must give {len(self.models) - 1} non-negative shares summing to <= 1, got {share!r}")
        # Model j (j >= 1) takes the top shares[j-1] of the score distribution above model j+1's.
        upper = np.cumsum(shares[::-1])[::-1]  # share of traffic at or above each cut
        # A row goes up only when its score strictly exceeds the cut: shares never overshoot.
        cuts = np.quantile(values, 1.0 - upper, method="inverted_cdf")
        cuts = _strictly_ascending(np.where(upper <= 0, np.float32(np.finfo(np.float32).max), cuts))
        self._compile(cuts)
        return self

    def _reason(self, state: Compiled, reason: int, index: int) -> str:
        if reason < 0:
            return f"{self.score} missing -> {state.models[index]}"
        return f"{self.score} above {index} of cuts {list(state.detail)} -> {state.models[index]}"

    def save(self, path: str | Path) -> None:
        write_json(path, "threshold", {
            "score": self.score,
            "models": list(self.models),
            "cuts": list(self.cuts),
            "missing": self.missing,
            "feature_names": list(self.feature_names),
        })

    @classmethod
    def _from_saved(cls, body: Mapping[str, Any]) -> Threshold:
        return cls(body["score"], body["models"], body["cuts"], missing=body["missing"], feature_names=body["feature_names"])


def _share_for_budget(budget: float, costs: Sequence[float] | None, n_models: int) -> float:
    if costs is None or len(costs) != 2 or n_models != 2:
        raise PolicyError("budget= needs costs= for exactly two models (cheap, expensive)")
    cheap, expensive = float(costs[0]), float(costs[1])
    if not expensive > cheap:
        raise PolicyError(f"costs must be (cheaper, more expensive), got {list(costs)}")
    return float(np.clip((budget - cheap) / (expensive - cheap), 0.0, 1.0))


def _strictly_ascending(cuts: np.ndarray) -> np.ndarray:
    cuts = cuts.astype(np.float32)
    for i in range(1, len(cuts)):
        if not cuts[i] > cuts[i - 1]:
            cuts[i] = np.nextafter(cuts[i - 1], np.float32(np.inf))
    return cuts


def load(path: str | Path) -> CompiledPolicy:
    """Load a policy written by ``save``; a corrupt or foreign file raises PolicyError."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
                header = json.loads(str(archive["header"]))
                arrays = {name: archive[name] for name in archive.files if name != "header"}
        else:
            header, arrays = json.loads(path.read_text()), {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise PolicyError(f"{path}: not a readable policy file ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise PolicyError(f"{path}: not a fastroute policy file (format/version header missing or unknown)")
    kinds = {"rules": Rules, "threshold": Threshold, "tree": Tree, "forest": Forest}
    kind = header.get("kind")
    if kind not in kinds:
        raise PolicyError(f"{path}: unknown policy kind {kind!r}")
    try:
        return kinds[kind]._from_saved({**header, **arrays})
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, PolicyError):
            raise PolicyError(f"{path}: {error}") from None
        raise PolicyError(f"{path}: invalid {kind} policy ({type(error).__name__}: {error})") from None

