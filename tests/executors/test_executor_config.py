"""One definition of the executor settings: C++ DispatchConfig; Python and config files derive from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fastroute import ConfigError, CPUExecutor, ExecutorError, _core
from fastroute.executors import ExecutorConfig
from fastroute.executors.config import settings


def test_executor_config_is_the_extensions_table() -> None:
    fields = dataclasses.fields(ExecutorConfig)
    assert [(f.name, f.default) for f in fields] == [(name, default) for name, default, _, _ in settings()]
    assert {name for name, *_ in _core.DISPATCH_SETTINGS} >= {"threads", "max_batch", "max_lanes", "spin_us"}


@pytest.mark.parametrize(("name", "low", "high"), [(name, low, high) for name, _, low, high in settings()])
def test_each_bound_is_enforced_with_an_executor_error(name: str, low: int, high: int) -> None:
    ExecutorConfig(**{name: low})
    ExecutorConfig(**{name: high})
    for bad in (low - 1, high + 1, True, 1.5):
        with pytest.raises(ExecutorError, match=rf"executor {name} must be an int in \[{low}, {high}\]"):
            ExecutorConfig(**{name: bad})
    assert issubclass(ExecutorError, ConfigError)  # old catch sites keep working


def test_an_executor_takes_a_config_or_settings_by_name() -> None:
    with CPUExecutor(ExecutorConfig(threads=1, max_lanes=3)) as executor:
        assert executor.config.max_lanes == 3
    with CPUExecutor(threads=1, max_batch=7) as executor:
        assert executor.config == ExecutorConfig(threads=1, max_batch=7)
    with pytest.raises(TypeError, match="not both"):
        CPUExecutor(ExecutorConfig(), threads=2)


def test_a_config_file_may_set_every_executor_setting(tmp_path: Path) -> None:
    pytest.importorskip("pydantic", reason="config files need the 'config' extra")
    pytest.importorskip("yaml", reason="config files need the 'config' extra")
    from fastroute.library.config import load_config

    path = tmp_path / "router.yaml"
    path.write_text(
        'models:\n  m:\n    modality: tabular\n    versions:\n      "1": {model: "builtins:abs"}\n'
        "executor: {threads: 1, max_lanes: 8}\n"
    )
    assert load_config(path).executor.max_lanes == 8
    path.write_text(path.read_text().replace("max_lanes: 8", "max_lanes: 70000"))
    with pytest.raises(ConfigError, match="max_lanes"):
        load_config(path)


def test_constants_crossing_the_boundary_come_from_the_extension() -> None:
    assert {_core.PUSH_ACCEPTED, _core.PUSH_FULL, _core.PUSH_CLOSED} == {0, 1, 2}
    assert set(_core.COMPARE_OPS) == {"<", "<=", ">", ">=", "==", "!="}
    assert sorted(_core.COMPARE_OPS.values()) == list(range(6))
    assert 0 < _core.NO_DEADLINE_FROM_S * 1e9 <= _core.NO_DEADLINE
