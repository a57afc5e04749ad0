"""Hostile and unusual config files end in a ConfigError naming the problem (issue 9).

Each test here failed before the fix: a raw TypeError, AttributeError,
RecursionError, ValueError or UnicodeDecodeError, a silently accepted file,
or code run before the file was rejected.
"""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import config_models
import numpy as np
import pytest

from fastroute import ConfigError, Router, Rule, Rules
from fastroute.library.config_text import MAX_VALUE_CHARS, MAX_VALUE_ITEMS

TABULAR = """
models:
  m:
    modality: tabular
    versions:
      "1": {{{version}}}
{extra}"""


def write(tmp_path: Path, text: str, name: str = "router.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def tabular(version: str, extra: str = "") -> str:
    return TABULAR.format(version=version, extra=extra)


@pytest.fixture(autouse=True)
def no_calls_yet():
    config_models.CALLS.clear()
    yield
    config_models.CALLS.clear()


# -- arguments ---------------------------------------------------------------------------


def test_factory_arguments_may_be_named_path_where_or_function(tmp_path: Path) -> None:
    text = tabular('factory: "config_models:make_recorder", kwargs: {path: p, where: w, function: f}')
    router = Router.from_config(write(tmp_path, text))
    assert router.infer(np.ones(2)) == {"path": "p", "where": "w", "function": "f"}


def test_a_saved_policy_is_loaded_with_use_load(tmp_path: Path) -> None:
    Rules([Rule(None, "length > 3", model="m")], default="m").save(tmp_path / "policy.json")
    text = tabular('model: "config_models:double"', f"policy: {{use: load, args: {{path: '{tmp_path / 'policy.json'}'}}}}")
    router = Router.from_config(write(tmp_path, text))
    assert isinstance(router.policy, Rules)
    assert router.infer(np.ones(5)).tolist() == [2.0] * 5


def test_rules_given_as_lists_and_mappings(tmp_path: Path) -> None:
    text = tabular(
        'model: "config_models:double"',
        """policy:
  use: Rules
  args:
    rules: [[tabular, "length > 3", m], {modality: null, when: "", model: m}]
    default: m
""",
    )
    router = Router.from_config(write(tmp_path, text))
    assert router.policy.rules == (Rule("tabular", "length > 3", "m"), Rule(None, "", "m"))
    assert "rule 0" in router.route(np.ones(5)).reason


@pytest.mark.parametrize(
    "rules",
    ["[[tabular, m]]", "[tabular]", "[{modality: tabular, when: '', model: m, extra: 1}]", "[[tabular, [x], m]]"],
)
def test_malformed_rules_name_the_rule(tmp_path: Path, rules: str) -> None:
    text = tabular('model: "config_models:double"', f"policy: {{use: Rules, args: {{rules: {rules}, default: m}}}}")
    with pytest.raises(ConfigError, match=r"policy: rule 0"):
        Router.from_config(write(tmp_path, text))


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["router.yaml", "router.toml"])
def test_deeply_nested_files(tmp_path: Path, name: str) -> None:
    depth = 50_000
    text = "a: " + "[" * depth + "]" * depth + "\n" if name.endswith("yaml") else "a = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ConfigError, match="nested too deeply"):
        Router.from_config(write(tmp_path, text, name))


@pytest.mark.parametrize("name,line", [("router.yaml", "a: {digits}\n"), ("router.toml", "a = {digits}\n")])
def test_an_integer_of_5000_digits(tmp_path: Path, name: str, line: str) -> None:
    with pytest.raises(ConfigError, match="digits"):
        Router.from_config(write(tmp_path, line.format(digits="7" * 5000), name))


@pytest.mark.parametrize("name", ["router.yaml", "router.toml"])
def test_a_file_that_is_not_utf8(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"models: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"not UTF-8.*byte 8"):
        Router.from_config(path)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    text = """
models:
  m:
    modality: tabular
    versions:
      "1": {model: "config_models:double"}
  m:
    modality: text
    versions:
      "1": {model: "config_models:double"}
"""
    with pytest.raises(ConfigError, match=r"duplicate key 'm' .*line 7"):
        Router.from_config(write(tmp_path, text))


def test_yaml_alias_expansion_beyond_a_small_budget_is_refused(tmp_path: Path) -> None:
    levels = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    # The last list holds 9**9 (387 million) strings once its aliases are expanded.
    text = tabular('model: "config_models:double", warmup: [%s]' % ", ".join(levels))
    assert len(text.encode()) < 600
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="aliases expand"):
            Router.from_config(write(tmp_path, text))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    text = """
models:
  m:
    modality: tabular
    versions:
      "1": &one {model: "config_models:double", cost: 1.5}
      "2": *one
"""
    router = Router.from_config(write(tmp_path, text))
    assert router.models.get("m", "2").cost == 1.5


# -- what a file may do ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "second,problem",
    [
        ('model: "config_models:NOT_CALLABLE"', "is not callable"),
        ('model: "config_models:double.__globals__"', "dunder"),
        ('model: "builtins:__import__"', "dunder"),
        ('model: "no_such_module_x:f"', "cannot import"),
        ('model: "config_models:double", replicas: 100000000', "replicas"),
    ],
)
def test_nothing_is_called_before_every_path_resolves(tmp_path: Path, second: str, problem: str) -> None:
    text = """
models:
  a:
    modality: tabular
    versions:
      "1": {factory: "config_models:make_recorder"}
  b:
    modality: text
    versions:
      "1": {%s}
""" % second
    with pytest.raises(ConfigError, match=problem):
        Router.from_config(write(tmp_path, text))
    assert config_models.CALLS == []


def test_an_imported_policy_is_not_called_before_the_models_resolve(tmp_path: Path) -> None:
    text = tabular('model: "config_models:NOT_CALLABLE"', 'policy: {use: "config_models:make_recorder"}')
    with pytest.raises(ConfigError, match="not callable"):
        Router.from_config(write(tmp_path, text))
    assert config_models.CALLS == []


@pytest.mark.parametrize(
    "extra,problem",
    [
        ("executor: {queue_capacity: 1073741824}", "queue_capacity"),
        ("executor: {threads: 100000}", "threads"),
    ],
)
def test_executor_limits_are_checked_before_anything_is_called(tmp_path: Path, extra: str, problem: str) -> None:
    text = tabular('factory: "config_models:make_recorder"', extra)
    with pytest.raises(ConfigError, match=problem):
        Router.from_config(write(tmp_path, text))
    assert config_models.CALLS == []


def test_shadow_queue_size_is_bounded(tmp_path: Path) -> None:
    text = """
models:
  m:
    modality: tabular
    versions:
      "1": {model: "config_models:double"}
      "2": {model: "config_models:double"}
    shadow: {version: "2", queue_size: 1000000000000}
"""
    with pytest.raises(ConfigError, match="queue_size"):
        Router.from_config(write(tmp_path, text))


def test_warmup_values_are_bounded(tmp_path: Path) -> None:
    big_string = tabular('model: "config_models:double", warmup: "%s"' % ("x" * (MAX_VALUE_CHARS + 1)))
    with pytest.raises(ConfigError, match="warmup.*too large"):
        Router.from_config(write(tmp_path, big_string))
    many = "[" + ", ".join(["1"] * (MAX_VALUE_ITEMS + 1)) + "]"
    big_list = f'[models.m]\nmodality = "tabular"\n[models.m.versions."1"]\nmodel = "config_models:double"\nwarmup = {many}\n'
    with pytest.raises(ConfigError, match="warmup.*too large"):
        Router.from_config(write(tmp_path, big_list, "router.toml"))


def test_factory_arguments_are_bounded(tmp_path: Path) -> None:
    text = tabular('factory: "config_models:make_recorder", kwargs: {blob: "%s"}' % ("x" * (MAX_VALUE_CHARS + 1)))
    with pytest.raises(ConfigError, match="kwargs.*too large"):
        Router.from_config(write(tmp_path, text))
    assert config_models.CALLS == []


# -- messages ----------------------------------------------------------------------------------


def test_a_misspelt_top_level_key_is_named_first(tmp_path: Path) -> None:
    text = tabular('model: "config_models:double"').replace("models:", "model:")
    with pytest.raises(ConfigError, match=r"router\.yaml: model: unknown key; expected one of .*models"):
        Router.from_config(write(tmp_path, text))


def test_the_unknown_policy_error_lists_only_policies(tmp_path: Path) -> None:
    text = tabular('model: "config_models:double"', "policy: {use: Forrest}")
    with pytest.raises(ConfigError, match=r"unknown policy 'Forrest'") as raised:
        Router.from_config(write(tmp_path, text))
    message = str(raised.value)
    assert "Forest" in message and "Rules" in message and "ByModality" in message
    for helper in ("Choice", "BatchChoice", "'Policy'", "'Rule'"):
        assert helper not in message
