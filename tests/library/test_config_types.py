"""Config files are strict about types: a value of the wrong type is refused, naming the key,
the type it takes and (for the common slips) the fix; nothing is coerced (no ``true`` for 1,
no ``"10"`` for 10.0, no 2.5 or 2.0 for 2). Only an int is taken for a float (YAML and TOML
write ``1`` for 1.0). Validation only: nothing the files name is imported or built."""

from __future__ import annotations

import copy
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastroute import ClassWeights, ConfigError, Router
from fastroute.executors import RaySettings
from fastroute.executors.config import settings as executor_settings
from fastroute.library.config import load_config

pytest.importorskip("pydantic", reason="needs the 'config' extra")

#: Every section of the schema, each key given a value of its type (ints where floats go).
BASE: dict[str, Any] = {
    "models": {
        "m": {
            "modality": "tabular",
            "versions": {
                "1": {"model": "numpy:sum", "modality": "tabular", "batched": False, "cost": 2, "device": "cpu",
                      "replicas": 1, "tags": ["baseline"], "warmup": [1, 2]},
                "2": {"factory": "numpy:ones", "args": [3], "kwargs": {"dtype": "float32"}},
            },
            "aliases": {"stable": "1"},
            "canary": {"stable": "1", "candidate": "2", "steps": [0.1, 0.5], "min_samples": 20,
                       "max_error_increase": 0, "max_latency_ratio": 2, "latency_quantile": 0.5,
                       "significance": 0.05, "seed": 4},
            "shadow": {"version": "2", "share": 1, "compare": "operator:eq", "workers": 1, "queue_size": 8, "seed": 1},
            "fallbacks": ["s"],
        },
        "s": {"modality": "tabular", "versions": {"1": {"model": "numpy:max"}}, "split": {"weights": {"1": 1}, "seed": 2}},
    },
    "policy": {
        "use": "ByModality",
        "args": {},
        "load_aware": {"quality": {"m": 1, "s": 0.5}, "weights": {"high": {"time_per_s": 1, "cost": 0}},
                       "on_late": "fastest", "seed": 3},
    },
    "executor": {"threads": 2, "max_batch": 8},
}
RAY = {"address": "auto", "connect_timeout_s": 10, "start_timeout_s": 60, "call_timeout_s": 300,
       "actor_options": {"num_cpus": 1}, "retry_dead": False}


def with_value(where: str, value: Any) -> dict[str, Any]:
    """BASE with the key at dotted path ``where`` set to ``value`` (sections made as needed)."""
    config = copy.deepcopy(BASE)
    *sections, key = where.split(".")
    section = config
    for name in sections:
        section = section.setdefault(name, {})
    if isinstance(section, list):
        section[int(key)] = value
    else:
        section[key] = value
    return config


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


QUOTES = "; remove the quotes"
BOOLEAN = "; YAML reads true/false/yes/no/on/off as booleans: give a number"

#: (key path, wrong value, what the message says after the key).
WRONG = [
    # a version
    ("models.m.versions.1.cost", "2.5", "expected a number, got '2.5' (a string)" + QUOTES),
    ("models.m.versions.1.cost", True, "expected a number, got true (a boolean)" + BOOLEAN),
    ("models.m.versions.1.batched", "true", "expected true or false, got 'true' (a string)" + QUOTES),
    ("models.m.versions.1.batched", 1, "expected true or false, got 1 (an integer)"),
    ("models.m.versions.1.replicas", 2.5, "expected an integer, got 2.5 (a float); give a whole number"),
    ("models.m.versions.1.replicas", 2.0, "expected an integer, got 2.0 (a float); write 2"),
    ("models.m.versions.1.replicas", "2", "expected an integer, got '2' (a string)" + QUOTES),
    ("models.m.versions.1.replicas", False, "expected an integer, got false (a boolean)" + BOOLEAN),
    ("models.m.versions.1.device", 0, "expected a string, got 0 (an integer)"),
    ("models.m.versions.1.modality", 3, "expected a string, got 3 (an integer)"),
    ("models.m.versions.1.tags", "baseline", "expected a list, got 'baseline' (a string)"),
    ("models.m.versions.1.tags.0", 7, "expected a string, got 7 (an integer)"),
    ("models.m.versions.1.model", 5, "expected a string, got 5 (an integer)"),
    ("models.m.versions.2.factory", ["numpy:ones"], "expected a string, got ['numpy:ones'] (a list)"),
    ("models.m.versions.2.args", {"a": 1}, "expected a list, got {'a': 1} (a mapping)"),
    ("models.m.versions.2.kwargs", [1], "expected a mapping, got [1] (a list)"),
    # a model
    ("models.m.modality", True, "expected a string, got true (a boolean)"),
    ("models.m.modality", None, "expected a string, got null"),
    ("models.m.aliases.stable", 1.5, "expected a string, got 1.5 (a float)"),
    ("models.m.fallbacks", "s", "expected a list, got 's' (a string)"),
    ("models.m.versions.1", "numpy:sum", "expected a mapping, got 'numpy:sum' (a string)"),
    # canary, shadow, split
    ("models.m.canary.steps.1", "0.5", "expected a number, got '0.5' (a string)" + QUOTES),
    ("models.m.canary.min_samples", 20.0, "expected an integer, got 20.0 (a float); write 20"),
    ("models.m.canary.max_error_increase", "0.01", "expected a number, got '0.01' (a string)" + QUOTES),
    ("models.m.canary.max_latency_ratio", True, "expected a number, got true (a boolean)" + BOOLEAN),
    ("models.m.canary.latency_quantile", "half", "expected a number, got 'half' (a string)"),
    ("models.m.canary.significance", [0.05], "expected a number, got [0.05] (a list)"),
    ("models.m.canary.seed", "4", "expected an integer, got '4' (a string)" + QUOTES),
    ("models.m.canary.stable", 1.0, "expected a string, got 1.0 (a float)"),
    ("models.m.canary.candidate", True, "expected a string, got true (a boolean)"),
    ("models.m.shadow.version", 2.5, "expected a string, got 2.5 (a float)"),
    ("models.m.shadow.share", "0.5", "expected a number, got '0.5' (a string)" + QUOTES),
    ("models.m.shadow.workers", True, "expected an integer, got true (a boolean)" + BOOLEAN),
    ("models.m.shadow.queue_size", 8.5, "expected an integer, got 8.5 (a float); give a whole number"),
    ("models.m.shadow.seed", 1.0, "expected an integer, got 1.0 (a float); write 1"),
    ("models.m.shadow.compare", 3, "expected a string, got 3 (an integer)"),
    ("models.m.split", [0.5], "expected a mapping, got [0.5] (a list)"),
    ("models.s.split.weights.1", "1.0", "expected a number, got '1.0' (a string)" + QUOTES),
    ("models.s.split.seed", False, "expected an integer, got false (a boolean)" + BOOLEAN),
    # policy and LoadAware (its weights are ClassWeights)
    ("policy.use", 5, "expected a string, got 5 (an integer)"),
    ("policy.args", [1], "expected a mapping, got [1] (a list)"),
    ("policy.load_aware.quality.m", "0.9", "expected a number, got '0.9' (a string)" + QUOTES),
    ("policy.load_aware.weights.high.time_per_s", "1", "expected a number, got '1' (a string)" + QUOTES),
    ("policy.load_aware.weights.high.cost", True, "expected a number, got true (a boolean)" + BOOLEAN),
    ("policy.load_aware.weights.high", 3, "expected a mapping, got 3 (an integer)"),
    ("policy.load_aware.seed", 1.5, "expected an integer, got 1.5 (a float); give a whole number"),
    ("policy.load_aware.on_late", True, "Input should be 'refuse' or 'fastest'"),
    # the executor (its settings from ExecutorConfig's table), executor.ray (RaySettings), executor.cuda
    *[(f"executor.{name}", wrong, expected) for name, *_ in executor_settings() for wrong, expected in (
        (True, "expected an integer, got true (a boolean)" + BOOLEAN),
        ("4", "expected an integer, got '4' (a string)" + QUOTES),
        (4.5, "expected an integer, got 4.5 (a float); give a whole number"),
    )],
    ("executor", 4, "expected a mapping, got 4 (an integer)"),
    ("executor.ray", 5, "expected a mapping, got 5 (an integer)"),
    ("executor.ray.address", 6379, "expected a string, got 6379 (an integer)"),
    ("executor.ray.connect_timeout_s", "10", "expected a number, got '10' (a string)" + QUOTES),
    ("executor.ray.connect_timeout_s", True, "expected a number, got true (a boolean)" + BOOLEAN),
    ("executor.ray.start_timeout_s", "60", "expected a number, got '60' (a string)" + QUOTES),
    ("executor.ray.call_timeout_s", False, "expected a number, got false (a boolean)" + BOOLEAN),
    ("executor.ray.actor_options", [1], "expected a mapping, got [1] (a list)"),
    ("executor.ray.retry_dead", "yes", "expected true or false, got 'yes' (a string)"),
    ("executor.ray.retry_dead", 1, "expected true or false, got 1 (an integer)"),
    ("executor.cuda.graphs", "false", "expected true or false, got 'false' (a string)" + QUOTES),
]


@pytest.mark.parametrize("where,value,expected", WRONG, ids=[f"{w}={v!r}" for w, v, _ in WRONG])
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(tmp_path: Path, where: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"router.yaml: {where}: {expected}")):
        load_config(write(tmp_path, with_value(where, value)))


def test_the_table_covers_every_key_of_every_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, with_value("executor.ray", RAY)))
    model = config.models["m"]
    sections = {
        "models.m.versions.1": model.versions["1"], "models.m": model, "models.m.canary": model.canary,
        "models.m.shadow": model.shadow, "models.s.split": config.models["s"].split, "policy": config.policy,
        "policy.load_aware": config.policy.load_aware, "executor": config.executor,
    }
    keys = {f"{where}.{key}" for where, section in sections.items() for key in type(section).model_fields}
    keys |= {f"executor.ray.{f.name}" for f in fields(RaySettings)}
    keys |= {f"policy.load_aware.weights.high.{f.name}" for f in fields(ClassWeights)}
    # A key is covered by a wrong value given to it or inside it (versions 1 and 2 are both VersionConfig).
    covered = {".".join(parts[:i]) for where, _, _ in WRONG
               for parts in [where.replace(".versions.2.", ".versions.1.").split(".")] for i in range(1, len(parts) + 1)}
    assert keys - covered == {"models.m.versions.1.warmup"}  # any value: a sample input


def test_right_types_are_accepted_and_an_int_is_taken_for_a_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, with_value("executor.ray", RAY)))
    model = config.models["m"]
    floats = [model.versions["1"].cost, model.canary.max_error_increase, model.canary.max_latency_ratio,
              model.shadow.share, config.models["s"].split.weights["1"], config.policy.load_aware.quality["m"],
              config.policy.load_aware.weights["high"].time_per_s, config.executor.ray.connect_timeout_s,
              config.executor.ray.call_timeout_s]
    assert floats == [2.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0, 10.0, 300.0]
    assert all(type(value) is float for value in floats)
    assert config.executor.ray == RaySettings("auto", 10.0, 60.0, 300.0, {"num_cpus": 1}, retry_dead=False)
    assert config.policy.load_aware.weights["high"] == ClassWeights(1.0, 0.0)
    assert (config.executor.threads, model.canary.min_samples, model.shadow.seed) == (2, 20, 1)
    assert load_config(write(tmp_path, with_value("executor.cuda", {"graphs": False}))).executor.cuda.graphs is False


def test_a_bound_checked_by_the_dataclass_is_still_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"executor\.ray: .*RaySettings\.connect_timeout_s must be a finite number"):
        load_config(write(tmp_path, with_value("executor.ray.connect_timeout_s", 0)))
    with pytest.raises(ConfigError, match=r"policy\.load_aware\.weights\.high: .*ClassWeights\.cost must be a finite number >= 0"):
        load_config(write(tmp_path, with_value("policy.load_aware.weights.high.cost", -1)))


@pytest.mark.parametrize("name,text,expected", [
    ("router.yaml", 'models: {m: {modality: tabular, versions: {"1": {model: "numpy:sum"}}}}\nexecutor: {threads: yes}\n',
     "executor.threads: expected an integer, got true (a boolean)" + BOOLEAN),
    ("router.toml", '[models.m]\nmodality = "tabular"\nversions = {"1" = {model = "numpy:sum"}}\n'
     '[executor.ray]\nconnect_timeout_s = "10"\n',
     "executor.ray.connect_timeout_s: expected a number, got '10' (a string)" + QUOTES),
], ids=["yaml", "toml"])
def test_router_from_config_refuses_the_typo_as_written(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{name}: {expected}")):
        Router.from_config(path)
