"""Loaders for real routing logs: ASlib scenarios, RouteLLM's GSM8K responses, RouterDC's 7-LLM scores.

Both return plain numpy arrays shaped for :mod:`fastroute.decision` and
:func:`fastroute.evaluate`: features (n, F) float32 with NaN for missing,
outcomes (n, k) with one column per model.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInput

__all__ = [
    "PROMPT_FEATURES",
    "AslibScenario",
    "GSM8KResponses",
    "ROUTERDC_BENCHMARKS",
    "RouterDCSplit",
    "load_aslib",
    "load_gsm8k",
    "load_routerdc",
    "prompt_features",
    "read_arff",
]


@dataclass(frozen=True)
class AslibScenario:
    """One ASlib scenario: ``outcomes`` are PAR10 runtimes (a loss: lower is better)."""

    name: str
    instances: list[str]
    feature_names: tuple[str, ...]
    features: np.ndarray  # (n, F) float32, NaN = missing
    models: tuple[str, ...]  # the algorithms
    outcomes: np.ndarray  # (n, k) float64 PAR10
    folds: np.ndarray  # (n,) int, the scenario's own cross-validation folds (1-based)
    cutoff: float


@dataclass(frozen=True)
class GSM8KResponses:
    """Per-prompt correctness (1.0 / 0.0) of a weak and a strong LLM on GSM8K."""

    prompts: list[str]
    models: tuple[str, ...]  # (weak, strong)
    outcomes: np.ndarray  # (n, 2) float64


#: RouterDC's five benchmarks, as (train file stem, test file stem).
ROUTERDC_BENCHMARKS = (
    ("mmlu_train", "mmlu_test"),
    ("gsm8k-train", "gsm8k-test"),
    ("cmmlu_train", "cmmlu_test"),
    ("arc_challenge_train", "arc_challenge_test"),
    ("humaneval_train", "humaneval_test"),
)


@dataclass(frozen=True)
class RouterDCSplit:
    """One side (train or test) of RouterDC's 7-LLM data: every benchmark's prompts, stacked.

    ``outcomes`` (n, 7) are scores in [0, 1]; ``benchmark[i]`` indexes
    ``benchmarks`` (results are averaged per benchmark, then over them).
    """

    prompts: list[str]
    models: tuple[str, ...]
    outcomes: np.ndarray
    benchmark: np.ndarray
    benchmarks: tuple[str, ...]

    def mean_by_benchmark(self, chosen: np.ndarray) -> np.ndarray:
        """Each benchmark's mean score of the chosen models (``chosen``: (n,) model indices)."""
        picked = self.outcomes[np.arange(len(chosen)), np.asarray(chosen)]
        return np.array([picked[self.benchmark == b].mean() for b in range(len(self.benchmarks))])


def load_routerdc(folder: str | Path, split: str) -> RouterDCSplit:
    """Load the ``split`` ("train" or "test") files of RouterDC's ``split2_model7`` data."""
    if split not in ("train", "test"):
        raise InvalidInput(f"split must be 'train' or 'test', got {split!r}")
    prompts: list[str] = []
    rows: list[list[float]] = []
    benchmark: list[int] = []
    models: tuple[str, ...] = ()
    for b, stems in enumerate(ROUTERDC_BENCHMARKS):
        records = json.loads((Path(folder) / f"{stems[split == 'test']}.json").read_text(encoding="utf-8"))
        models = models or tuple(records[0]["scores"])
        for record in records:
            prompts.append(record["question"])
            rows.append([float(record["scores"][m]) for m in models])
            benchmark.append(b)
    names = tuple(test.removesuffix("_test").removesuffix("-test") for _, test in ROUTERDC_BENCHMARKS)
    return RouterDCSplit(prompts, models, np.array(rows), np.array(benchmark), names)


_ATTRIBUTE = re.compile(r"@attribute\s+('[^']*'|\S+)\s+(.+)", re.IGNORECASE)


def read_arff(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Attribute names and raw string rows of an ARFF file (string attributes allowed)."""
    names: list[str] = []
    data_lines: list[str] = []
    in_data = False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stripped = line.strip()
            if not stripped or stripped.startswith("%"):
                continue
            if in_data:
                data_lines.append(stripped)
            elif stripped.lower().startswith("@attribute"):
                match = _ATTRIBUTE.match(stripped)
                if match is None:
                    raise InvalidInput(f"{path}: malformed attribute line {stripped!r}")
                names.append(match.group(1).strip("'"))
            elif stripped.lower().startswith("@data"):
                in_data = True
    rows = list(csv.reader(data_lines, quotechar="'", skipinitialspace=True))
    for number, row in enumerate(rows):
        if len(row) != len(names):
            raise InvalidInput(f"{path}: data row {number} has {len(row)} values, expected {len(names)}")
    return names, rows


def _cutoff(description: Path) -> float:
    match = re.search(r"^algorithm_cutoff_time:\s*([0-9.eE+-]+)", description.read_text(), re.MULTILINE)
    if match is None:
        raise InvalidInput(f"{description}: no algorithm_cutoff_time")
    return float(match.group(1))


def load_aslib(folder: str | Path) -> AslibScenario:
    """Load an ASlib scenario folder; PAR10 averaged over repetitions."""
    folder = Path(folder)
    cutoff = _cutoff(folder / "description.txt")
    names, rows = read_arff(folder / "feature_values.arff")
    instances = [row[0] for row in rows]
    index = {name: i for i, name in enumerate(instances)}
    if len(index) != len(instances):
        raise InvalidInput(f"{folder}: feature_values.arff lists an instance twice")
    features = np.array([[np.nan if v == "?" else float(v) for v in row[2:]] for row in rows], dtype=np.float32)

    _, runs = read_arff(folder / "algorithm_runs.arff")
    models = tuple(dict.fromkeys(row[2] for row in runs))
    column = {name: j for j, name in enumerate(models)}
    total = np.zeros((len(instances), len(models)))
    count = np.zeros_like(total)
    for instance, _, algorithm, runtime, status in (row[:5] for row in runs):
        solved = status == "ok" and runtime != "?" and float(runtime) <= cutoff
        cell = index[instance], column[algorithm]
        total[cell] += float(runtime) if solved else 10.0 * cutoff
        count[cell] += 1
    with np.errstate(invalid="ignore"):
        outcomes = total / count  # NaN where an algorithm has no run

    _, fold_rows = read_arff(folder / "cv.arff")
    folds = np.zeros(len(instances), dtype=np.int64)
    for instance, _, fold in fold_rows:
        folds[index[instance]] = int(float(fold))
    if (folds == 0).any():
        raise InvalidInput(f"{folder}: cv.arff leaves {int((folds == 0).sum())} instances without a fold")
    return AslibScenario(folder.name, instances, tuple(names[2:]), features, models, outcomes, folds, cutoff)


def load_gsm8k(path: str | Path) -> GSM8KResponses:
    """Load RouteLLM's ``gsm8k_responses.csv``: columns prompt, weak model, strong model, ..."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    models = (header[1], header[2])
    outcomes = np.array([[row[1] == "True", row[2] == "True"] for row in rows], dtype=np.float64)
    return GSM8KResponses([row[0] for row in rows], models, outcomes)


PROMPT_FEATURES = ("chars", "words", "numbers", "digits", "percents", "dollars", "sentences", "relations")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_RELATION = re.compile(r"\b(?:half|twice|times|percent|each|every|per)\b")


def prompt_features(prompts: list[str]) -> np.ndarray:
    """Cheap numeric features of math word prompts, named by ``PROMPT_FEATURES``.

    Lengths, how many numbers (and digits) the prompt carries, and counts of
    relation words: rough proxies for how many reasoning steps it needs.
    """
    rows = []
    for prompt in prompts:
        numbers = _NUMBER.findall(prompt)
        rows.append([
            len(prompt), len(prompt.split()), len(numbers), sum(map(len, numbers)), prompt.count("%"),
            prompt.count("$"), prompt.count("."), len(_RELATION.findall(prompt.lower())),
        ])
    return np.log1p(np.array(rows, dtype=np.float64)).astype(np.float32)
