"""Fallbacks in config files: checked with the rest of the file, applied on load and reload."""

from __future__ import annotations

import numpy as np
import pytest
from test_config import write

from fastroute import ConfigError, Router

FALLBACKS = """
models:
  main:
    modality: tabular
    versions: {"1": {model: "config_models:broken"}}
    fallbacks: [backup]
  backup:
    modality: tabular
    versions: {"1": {model: "config_models:double"}}
policy: {use: ByModality, args: {preferred: {tabular: main}}}
"""


def test_a_config_fallback_serves_when_the_model_fails(tmp_path):
    with Router.from_config(write(tmp_path, FALLBACKS)) as router:
        future = router.submit(np.ones(2))
        assert future.result(30).tolist() == [2.0, 2.0]
        assert future.decision.model == "backup"
        assert router.resilience is not None and router.resilience.fallbacks("main") == ("backup",)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("fallbacks: [backup]", "fallbacks: [nobody]"), "'nobody' is not a registered model"),
        (lambda t: t.replace("modality: tabular\n    versions: {\"1\": {model: \"config_models:double\"}}",
                             "modality: text\n    versions: {\"1\": {model: \"config_models:double\"}}"),
         "fallbacks must serve the same modality"),
        (lambda t: t.replace("versions: {\"1\": {model: \"config_models:double\"}}",
                             "versions: {\"1\": {model: \"config_models:double\"}}\n    fallbacks: [main]"),
         "fallback cycle: main -> backup -> main"),
    ],
)
def test_bad_fallbacks_fail_the_file_naming_it(tmp_path, edit, message):
    path = write(tmp_path, edit(FALLBACKS))
    with pytest.raises(ConfigError, match=message) as caught:
        Router.from_config(path)
    assert str(path) in str(caught.value)


def test_reload_replaces_the_fallbacks_and_a_bad_one_changes_nothing(tmp_path):
    path = write(tmp_path, FALLBACKS)
    with Router.from_config(path) as router:
        cycle = FALLBACKS.replace(
            "versions: {\"1\": {model: \"config_models:double\"}}",
            "versions: {\"1\": {model: \"config_models:double\"}}\n    fallbacks: [main]",
        )
        write(tmp_path, cycle)
        with pytest.raises(ConfigError, match="fallback cycle"):
            router.reload(path)
        assert router.resilience.fallbacks("main") == ("backup",)
        write(tmp_path, FALLBACKS.replace("    fallbacks: [backup]\n", ""))
        router.reload(path)
        assert router.resilience.fallbacks("main") == ()
