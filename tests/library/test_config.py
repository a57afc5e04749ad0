"""Router.from_config and router.reload: strict validation, safe loading, atomic reloads."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ClientLoad, route_everything_as

from fastroute import Canary, ConfigError, CPUExecutor, Router, Shadow
from fastroute.library.config import load_config

GOOD = """
models:
  m:
    modality: tabular
    versions:
      "1": {model: "config_models:double", tags: [baseline]}
      "2": {factory: "config_models:make_scaler", kwargs: {factor: 3.0}, cost: 2.5, warmup: [1.0, 2.0]}
    aliases: {stable: "1"}
    canary: {stable: "1", candidate: "2", steps: [0.1, 0.5], min_samples: 20, seed: 4}
    shadow: {version: "2", share: 0.5, compare: "config_models:same", seed: 1}
policy: {use: ByModality, args: {preferred: {tabular: m}}}
"""

GOOD_TOML = """
[models.m]
modality = "tabular"
aliases = { stable = "1" }

[models.m.versions."1"]
model = "config_models:double"
tags = ["baseline"]

[models.m.versions."2"]
factory = "config_models:make_scaler"
kwargs = { factor = 3.0 }
cost = 2.5
warmup = [1.0, 2.0]

[models.m.canary]
stable = "1"
candidate = "2"
steps = [0.1, 0.5]
min_samples = 20
seed = 4

[models.m.shadow]
version = "2"
share = 0.5
compare = "config_models:same"
seed = 1

[policy]
use = "ByModality"
args = { preferred = { tabular = "m" } }
"""


def write(tmp_path: Path, text: str, name: str = "router.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize("name,text", [("router.yaml", GOOD), ("router.toml", GOOD_TOML)], ids=["yaml", "toml"])
def test_from_config_builds_the_described_router(tmp_path: Path, name: str, text: str) -> None:
    router = Router.from_config(write(tmp_path, text, name))
    models = router.models
    assert models.versions("m") == ["1", "2"] and models.aliases("m") == {"stable": "1"}
    assert models.get("m", "1").model(2.0) == 4.0 and models.get("m", "2").model(2.0) == 6.0
    assert models.get("m", "2").cost == 2.5 and models.get("m", "1").tags == {"baseline"}
    canary = models.experiment("m")
    assert isinstance(canary, Canary) and canary.thresholds.steps == (0.1, 0.5) and canary.share == 0.1
    assert isinstance(models.shadow("m"), Shadow) and models.shadow("m").share == 0.5
    assert router.policy.preferred == {"tabular": "m"}


def test_yaml_and_toml_describe_the_same_config(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD)) == load_config(write(tmp_path, GOOD_TOML, "router.toml"))


MISTAKES = {
    "unknown key": (
        GOOD.replace("tags: [baseline]", "colour: red"),
        r"models\.m\.versions\.1\.colour: unknown key",
    ),
    "unknown top-level key": (GOOD + "\nrouting: {}\n", r": routing: unknown key; expected one of models, executor, policy"),
    "wrong type": (GOOD.replace("cost: 2.5", "cost: expensive"), r"models\.m\.versions\.2\.cost: expected a number, got 'expensive' \(a string\)"),
    "out of range": (GOOD.replace("share: 0.5", "share: 1.5"), r"models\.m\.shadow\.share: Input should be less than or equal to 1"),
    "missing field": (GOOD.replace("    modality: tabular\n", ""), r"models\.m\.modality: Field required"),
    "missing model version": (GOOD.replace('candidate: "2"', 'candidate: "3"'), r"models\.m\.canary\.candidate: unknown version '3'; versions: \['1', '2'\]"),
    "alias to a missing version": (GOOD.replace('{stable: "1"}', '{stable: "9"}'), r"models\.m\.aliases\.stable: unknown version '9'"),
    "weights not summing to 1": (
        GOOD.replace('canary: {stable: "1", candidate: "2", steps: [0.1, 0.5], min_samples: 20, seed: 4}', 'split: {weights: {"1": 0.6, "2": 0.3}}'),
        r"models\.m\.split\.weights: weights must sum to 1, got 0\.9",
    ),
    "split and canary together": (
        GOOD.replace("    shadow:", '    split: {weights: {"1": 1.0}}\n    shadow:'),
        r"models\.m: a model takes a split or a canary, not both",
    ),
    "unresolvable module": (GOOD.replace('"config_models:double", tags', '"no_such_pkg.models:make", tags'), r"models\.m\.versions\.1\.model: cannot import module 'no_such_pkg\.models'"),
    "unresolvable object": (GOOD.replace("config_models:same", "config_models:nope"), r"models\.m\.shadow\.compare: 'config_models:nope' does not resolve: no attribute 'nope'"),
    "malformed import path": (GOOD.replace("config_models:same", "os.system('x')"), r"models\.m\.shadow\.compare: String should match pattern"),
    "model and factory together": (
        GOOD.replace('{model: "config_models:double", tags', '{model: "a:b", factory: "a:b", tags'),
        r"models\.m\.versions\.1: Value error, give exactly one of 'model'",
    ),
    "unknown modality": (GOOD.replace("modality: tabular", "modality: smell"), r"models\.m\.modality: unknown modality 'smell'"),
    "bad executor settings": (GOOD + "executor: {threads: 0}\n", r"executor\.threads: Input should be greater than or equal to 1"),
    "executor setting from the future": (GOOD + "executor: {gpus: 2}\n", r"executor\.gpus: unknown key"),
    "bad canary thresholds": (GOOD.replace("steps: [0.1, 0.5]", "steps: [0.5, 0.1]"), r"models\.m\.canary: canary steps must be increasing shares"),
    "unknown policy": (GOOD.replace("use: ByModality", "use: Psychic"), r"policy\.use: unknown policy 'Psychic'"),
    "policy routing to an undeclared model": (
        GOOD.replace("policy: {use: ByModality, args: {preferred: {tabular: m}}}", "policy: {use: Rules, args: {rules: [], default: ghost}}"),
        r"policy: routes to models not under 'models': \['ghost'\]",
    ),
    "policy a router cannot serve": (
        GOOD.replace("policy: {use: ByModality, args: {preferred: {tabular: m}}}", "policy: {use: Rules, args: {rules: [], default: m, feature_names: [a, b]}}"),
        r"policy: policy features must start with fastroute.FEATURE_NAMES",
    ),
    "failing factory": (GOOD.replace('"config_models:make_scaler", kwargs', '"config_models:failing_factory", kwargs'), r"models\.m\.versions\.2\.factory: RuntimeError\(\"cannot build with \{'factor': 3\.0\}\"\)"),
    "failing warm-up": (
        GOOD.replace('"config_models:double", tags: [baseline]', '"config_models:refuses_warmup", warmup: boom'),
        r"models\.m\.versions\.1\.warmup: model 'm' version '1' failed its warm-up: ValueError\('warm-up input rejected'\)",
    ),
    "invalid YAML": ("models: [unclosed\n", r"invalid YAML: while parsing a flow sequence"),
    "not a mapping": ("- just\n- a list\n", r"\(top level\): expected a mapping, got list"),
    "no models": ("models: {}\n", r"models: Dictionary should have at least 1 item"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_class_of_mistake_names_file_field_and_problem(tmp_path: Path, mistake: str) -> None:
    text, problem = MISTAKES[mistake]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*" + problem):
        Router.from_config(path)


def test_invalid_toml_and_unknown_file_types(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"router\.toml: invalid TOML"):
        Router.from_config(write(tmp_path, "[models\n", "router.toml"))
    with pytest.raises(ConfigError, match=r"router\.json: unsupported config type '\.json'"):
        Router.from_config(write(tmp_path, "{}", "router.json"))
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        Router.from_config(tmp_path / "missing.yaml")


def test_yaml_tags_that_would_run_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"models: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
    with pytest.raises(ConfigError, match="invalid YAML"):
        Router.from_config(write(tmp_path, text))
    assert not marker.exists()


def test_nothing_is_imported_before_the_whole_file_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "probe_models.py").write_text("def model(x):\n    return x\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = GOOD.replace('"config_models:double", tags', '"probe_models:model", tags').replace(
        'share: 0.5', 'share: 2'
    )
    with pytest.raises(ConfigError, match="share"):
        Router.from_config(write(tmp_path, text))
    assert "probe_models" not in sys.modules


RELOADED = """
models:
  m:
    modality: tabular
    versions:
      "2": {factory: "config_models:make_scaler", kwargs: {factor: 3.0}, cost: 2.5, warmup: [1.0, 2.0]}
      "3": {factory: "config_models:make_scaler", kwargs: {factor: 4.0}, warmup: [1.0]}
    aliases: {stable: "2", next: "3"}
    split: {weights: {"2": 0.5, "3": 0.5}, seed: 0}
policy: {use: ByModality}
"""


def test_invalid_reload_leaves_the_running_config_untouched(tmp_path: Path) -> None:
    router = Router.from_config(write(tmp_path, GOOD))
    before = (router.models.list(), router.models.aliases("m"), router.models.experiment("m"), router.policy)
    broken = RELOADED.replace('"3": 0.5', '"3": 0.6')
    with pytest.raises(ConfigError, match="weights must sum to 1"):
        router.reload(write(tmp_path, broken, "next.yaml"))
    failing = RELOADED.replace("factor: 4.0}, warmup: [1.0]", "factor: 4.0}, warmup: boom").replace(
        '"config_models:make_scaler", kwargs: {factor: 4.0}', '"config_models:failing_factory", kwargs: {factor: 4.0}'
    )
    with pytest.raises(ConfigError, match=r"versions\.3\.factory: RuntimeError"):
        router.reload(write(tmp_path, failing, "next.yaml"))
    with pytest.raises(ConfigError, match=r"next\.yaml: executor: executor settings cannot change on a running router"):
        router.reload(write(tmp_path, RELOADED + "executor: {threads: 4}\n", "next.yaml"))
    after = (router.models.list(), router.models.aliases("m"), router.models.experiment("m"), router.policy)
    assert after == before and all(a is b for a, b in zip(after[0], before[0]))


def test_reload_keeps_unchanged_parts(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    router = Router.from_config(path)
    first, canary, shadow = router.models.get("m", "1"), router.models.experiment("m"), router.models.shadow("m")
    router.reload(write(tmp_path, GOOD.replace("share: 0.5", "share: 0.25")))
    assert router.models.get("m", "1") is first, "an unchanged version is not rebuilt"
    assert router.models.experiment("m") is canary, "a running canary keeps its progress"
    assert router.models.shadow("m") is not shadow and router.models.shadow("m").share == 0.25


def test_reload_under_load_drops_no_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    route_everything_as(monkeypatch)
    router = Router.from_config(write(tmp_path, GOOD))

    def request(worker: int, i: int) -> str:
        return f"x{router.infer(2.0, key=f'user-{worker}-{i}') / 2.0:g}"

    with ClientLoad(threads=4, per_thread=1500, request=request) as load:
        for _ in range(3):
            router.reload(write(tmp_path, RELOADED, "next.yaml"))
            router.reload(write(tmp_path, GOOD))
        router.reload(write(tmp_path, RELOADED, "next.yaml"))

    assert sum(load.outcomes.values()) == load.total
    assert set(load.outcomes) <= {"x2", "x3", "x4"}, load.outcomes
    assert router.models.versions("m") == ["2", "3"]
    assert router.models.aliases("m") == {"stable": "2", "next": "3"}
    assert {router.infer(2.0, key=f"k{i}") for i in range(100)} == {6.0, 8.0}
    router.models.close()


def test_fastroute_imports_without_the_config_extra(tmp_path: Path) -> None:
    """pydantic and PyYAML are optional: blocked, `import fastroute` still works and
    from_config explains what to install."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pydantic"] = None
        sys.modules["yaml"] = None
        import fastroute
        try:
            fastroute.Router.from_config({str(write(tmp_path, GOOD))!r})
        except fastroute.ConfigError as error:
            print(error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "config files need the 'config' extra (pip install fastroute[config])" in result.stdout


def test_executor_section_builds_the_routers_executor(tmp_path: Path) -> None:
    router = Router.from_config(write(tmp_path, GOOD + "executor: {threads: 1, max_batch: 8, max_delay_us: 100}\n"))
    try:
        assert isinstance(router.executor, CPUExecutor)
        assert (router.executor.config.threads, router.executor.config.max_batch) == (1, 8)
        with pytest.raises(ConfigError, match="executor settings cannot change"):
            router.reload(write(tmp_path, GOOD + "executor: {threads: 2}\n", "next.yaml"))
    finally:
        router.close()


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_config_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    router = Router.from_config(EXAMPLES / "library.yaml")
    assert router.models.versions("sentiment") == ["1", "2"] and router.models.versions("risk") == ["1", "2"]
    assert isinstance(router.models.experiment("sentiment"), Canary)
    assert router.models.shadow("risk").version == "2"
    assert router.models.get("sentiment", "2").model("not bad") == "positive"
    assert router.models.get("sentiment", "1").model("not bad") == "negative"


def test_example_script_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_library.py")], capture_output=True, text=True, timeout=120, check=True
    )
    assert "requests served per model version:" in result.stdout
    assert "sentiment canary:" in result.stdout and "start -> share 0.1" in result.stdout
    assert re.search(r"risk shadow \(v2\): \{.*'ok': \d+", result.stdout), result.stdout
