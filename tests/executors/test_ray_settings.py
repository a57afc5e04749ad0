"""RaySettings: the one definition of a RayExecutor's own settings (names, defaults, bounds),
read by RayExecutor's signature and used as the config files' ``executor.ray`` section.

Unit tests: nothing here starts Ray (bad settings are refused before Ray is imported or
connected; config files are parsed, not built), so they need neither Ray nor the 'ray' extra.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from fastroute import ConfigError
from fastroute.executors.ray_actors import RayExecutor, RaySettings
from fastroute.library.config import load_config

ONE_MODEL = 'models:\n  m: {modality: tabular, versions: {"1": {model: "config_models:double"}}}\n'

#: Settings out of their bounds, and the message each gets wherever it is given.
OUT_OF_BOUNDS = {
    "negative connect timeout": (
        {"connect_timeout_s": -1.0}, "RaySettings.connect_timeout_s must be a finite number of seconds > 0, got -1.0"
    ),
    "zero start timeout": (
        {"start_timeout_s": 0.0}, "RaySettings.start_timeout_s must be a finite number of seconds > 0, got 0.0"
    ),
    "infinite call timeout": (
        {"call_timeout_s": float("inf")}, "RaySettings.call_timeout_s must be a finite number of seconds > 0, got inf"
    ),
    "empty address": ({"address": ""}, "RaySettings.address must be a non-empty string or None, got ''"),
}
#: Settings at their bounds: accepted everywhere.
AT_THE_BOUNDS = [{"call_timeout_s": None}, {"connect_timeout_s": 1e-3, "start_timeout_s": 1e-3}, {"address": "auto"}]


def ray_section(tmp_path: Path, values: dict) -> RaySettings:
    """``values`` as a config file's ``executor.ray`` section, parsed (not built: no Ray)."""
    yaml_values = ", ".join(f"{name}: {_yaml(value)}" for name, value in values.items())
    path = tmp_path / "router.yaml"
    path.write_text(ONE_MODEL + f"executor: {{threads: 2, ray: {{{yaml_values}}}}}\n")
    return load_config(path).executor.ray


def _yaml(value: object) -> str:
    if value is None:
        return "null"
    if value == float("inf"):
        return ".inf"
    return repr(value)


def test_the_executor_signature_defaults_are_the_settings_defaults() -> None:
    parameters = inspect.signature(RayExecutor.__init__).parameters
    for setting in fields(RaySettings):
        assert parameters[setting.name].default == setting.default, setting.name
    own = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"rng"}
    assert own == {setting.name for setting in fields(RaySettings)}  # every own keyword is a setting


def test_a_config_file_section_left_empty_takes_the_executors_defaults(tmp_path: Path) -> None:
    assert ray_section(tmp_path, {}) == RaySettings()


@pytest.mark.parametrize("values", AT_THE_BOUNDS, ids=str)
def test_values_at_the_bounds_are_accepted_by_both(tmp_path: Path, values: dict) -> None:
    assert ray_section(tmp_path, values) == RaySettings(**values)


@pytest.mark.parametrize("mistake", OUT_OF_BOUNDS)
def test_the_config_file_and_the_executor_refuse_the_same_values(tmp_path: Path, mistake: str) -> None:
    values, message = OUT_OF_BOUNDS[mistake]
    with pytest.raises(ConfigError, match=re.escape(message)):
        RaySettings(**values)
    with pytest.raises(ConfigError, match=r"router\.yaml: executor\.ray: Value error, " + re.escape(message)):
        ray_section(tmp_path, values)
    ray = _ray_if_installed()
    with pytest.raises(ConfigError, match=re.escape(message)):
        RayExecutor(**values)  # refused before Ray is imported or connected
    assert ray is None or not ray.is_initialized()


def test_an_unknown_ray_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"executor\.ray\.timeout_s: unknown key"):
        ray_section(tmp_path, {"timeout_s": 5})


def test_actor_options_are_copied() -> None:
    options = {"num_cpus": 1}
    settings = RaySettings(actor_options=options)
    options["num_cpus"] = 64
    assert settings.actor_options == {"num_cpus": 1}
    with pytest.raises(ConfigError, match="actor_options must be a mapping or None, got 4"):
        RaySettings(actor_options=4)
    with pytest.raises(ConfigError, match="retry_dead must be a bool, got 'yes'"):
        RaySettings(retry_dead="yes")


def _ray_if_installed():
    """The ray module when installed and not yet started (else None): the check that refusing
    bad settings did not start it."""
    try:
        import ray
    except ImportError:
        return None
    return None if ray.is_initialized() else ray
