"""Rules: an ordered rule table over feature comparisons, parsed once and scored in C++."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..analyzer import FEATURE_NAMES, MODALITIES
from ..errors import PolicyError
from .compiled import Compiled, CompiledPolicy, build_scorer, write_json

__all__ = ["Rule", "Rules", "parse_condition"]


_OPS = _core.COMPARE_OPS  # symbol -> the scorer's comparison code
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

    @classmethod
    def of(cls, value: Any) -> Rule:
        """A Rule from a Rule, a ``[modality, when, model]`` list or a mapping with
        ``model`` and optionally ``modality`` (default any) and ``when`` (default
        always): the forms a config or policy file can hold. PolicyError otherwise."""
        if isinstance(value, Rule):
            rule = value
        elif isinstance(value, Mapping):
            unknown = sorted(set(map(str, value)) - {"modality", "when", "model"})
            if unknown or "model" not in value:
                raise PolicyError(f"a rule mapping takes model, modality and when; got keys {sorted(map(str, value))}")
            rule = cls(value.get("modality"), value.get("when", ""), value["model"])
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 3:
            rule = cls(*value)
        else:
            raise PolicyError(f"a rule is a Rule, [modality, when, model] or a mapping; got {value!r:.80}")
        for field_name, allowed in (("modality", (str, type(None))), ("when", str), ("model", str)):
            if not isinstance(getattr(rule, field_name), allowed):
                raise PolicyError(f"rule {field_name} must be a str, got {getattr(rule, field_name)!r:.80}")
        return rule


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
    ``models`` fixes the model order (default: first appearance). Each rule
    may also be given as a list or mapping (see :meth:`Rule.of`).

    Served by a router, the table only considers models able to take the
    input (registered for its modality): a matching rule naming another
    modality's model is skipped, and the default applies only if it can take
    the input, else the router raises ``NoRoute``.
    """

    def __init__(
        self,
        rules: Sequence[Rule | Sequence[Any] | Mapping[str, Any]],
        default: str,
        *,
        models: Sequence[str] | None = None,
        feature_names: Sequence[str] = FEATURE_NAMES,
    ) -> None:
        if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Sequence):
            raise PolicyError(f"rules must be a list of rules, got {type(rules).__name__}")
        parsed = []
        for number, rule in enumerate(rules):
            try:
                parsed.append(Rule.of(rule))
            except PolicyError as error:
                raise PolicyError(f"rule {number}: {error}") from None
        if not isinstance(default, str):
            raise PolicyError(f"default must be a model name, got {default!r:.80}")
        self.rules = tuple(parsed)
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
        return cls(body["rules"], body["default"], models=body["models"], feature_names=body["feature_names"])
