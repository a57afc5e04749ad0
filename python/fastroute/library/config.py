"""Build a router's models, policy and executor from a YAML or TOML file (Router.from_config, reload).

Trust model: **a config file is code**, like a Python module. It names
callables (``package.module:object``) that fastroute imports and calls with
the arguments the file gives, so only load files you would import. What
fastroute guarantees on top of that:

1. The file is parsed safely (:mod:`fastroute.library.config_text`: YAML
   through the safe loader only, no duplicate keys, alias expansion bounded;
   TOML through ``tomllib``; no pickle) and validated as a whole: pydantic
   models with unknown keys forbidden, strict types (nothing coerced: ``true`` is
   no integer, ``"10"`` no number; only an int is taken for a float) and every size bounded (warm-up inputs
   and factory or policy arguments by ``MAX_VALUE_ITEMS`` scalars and
   ``MAX_VALUE_CHARS`` characters, replicas, shadow workers and queue, the
   executor's limits), then cross-references (aliases, splits, canaries and
   shadows name versions that exist, weights sum to 1).
2. Only then is every import path resolved, all of them before any is
   called: each must name a callable, and no part of it may be a dunder name
   (``os:__dict__``, ``builtins:__import__``...).
3. Only then are factories and the policy called and models warmed.

Any mistake raises :class:`fastroute.ConfigError` naming the file, the field
and the problem, before anything is applied.

Example (YAML)::

    models:
      sentiment:
        modality: text
        versions:
          "1": {model: "mymodels:keyword_sentiment"}
          "2": {factory: "mymodels:make_sentiment", kwargs: {threshold: 0.2}, warmup: "ok"}
        aliases: {stable: "1"}
        canary: {stable: "1", candidate: "2", steps: [0.1, 0.5], min_samples: 50}
        shadow: {version: "2", share: 0.2, compare: "mymodels:same_label"}
        fallbacks: [keywords]   # used by submit when sentiment fails (same modality)
      keywords:
        modality: text
        versions:
          "1": {model: "mymodels:keyword_sentiment"}
    policy:
      use: ByModality
      load_aware: {quality: {sentiment: 0.9, keywords: 0.7}}   # optional: LoadAware around it
    executor: {threads: 4, max_batch: 32}   # optional; with ray: {...} or cuda: {...}

pydantic and PyYAML come with the ``config`` extra and are imported only here.
"""

from __future__ import annotations

import importlib
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import decision as policies
from ..analyzer import MODALITIES
from ..decision.compiled import check_servable
from ..decision.load_aware import DEFAULT_WEIGHTS, LATE_POLICIES, ClassWeights, LoadAware, check_quality
from ..errors import ConfigError, FastrouteError, PolicyError
from ..executors.cpu import CPUExecutor
from ..executors.cuda import CUDAExecutor, cuda_index
from ..executors.ray_actors import RayExecutor, RaySettings
from ..executors.remote import RAY_DEVICE, RemoteModel
from ..executors.resilience import check_fallbacks
from .config_text import check_value_size, read_config_file
from .experiments import Canary, CanaryThresholds, Experiment, Shadow, Split
from .registry import ModelPlan
from .spec import ModelSpec, validate_spec, warm_up

__all__ = ["LoadedConfig", "build", "load_config", "rebuild"]

IMPORT_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
_DUNDER = re.compile(r"^__\w*__$")


def _built_in_policies() -> tuple[str, ...]:
    """The policy classes ``fastroute.decision`` exports, base classes left out."""
    classes = [getattr(policies, name) for name in policies.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, policies.Policy)]
    return tuple(sorted(c.__name__ for c in classes if not any(o is not c and issubclass(o, c) for o in classes)))


#: What ``policy.use`` may name without an import path: the built-in policies,
#: and ``load`` (``args: {path: ...}``) for a policy saved with ``policy.save``.
BUILT_IN_POLICIES = _built_in_policies()
#: Bounds of the sizes a file may ask for.
MAX_REPLICAS = 1024
MAX_SHADOW_WORKERS = 64
MAX_SHADOW_QUEUE = 1 << 20
MAX_FALLBACKS = 16


def load_config(path: str | Path) -> Any:
    """Parse and validate ``path`` without importing anything it names; a ``RouterConfig``."""
    path = Path(path)
    schema = _schema()
    raw = read_config_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping, got {type(raw).__name__}")
    try:
        config = schema.RouterConfig.model_validate(raw)
    except schema.ValidationError as error:
        raise ConfigError(f"{path}: {_first_problem(error.errors(), schema.RouterConfig)}") from None
    _check_references(config, path)
    _check_values(config, path)
    _fallbacks(config, path)
    return config


def _fallbacks(config: Any, path: Path) -> dict[str, tuple[str, ...]]:
    """The file's fallback lists, checked (modalities, cycles) against the file's own models."""
    listed = {name: model.fallbacks for name, model in config.models.items() if model.fallbacks}
    try:
        return check_fallbacks(listed, lambda name: config.models[name].modality if name in config.models else None)
    except ConfigError as error:
        raise ConfigError(f"{path}: models: {error}") from None


#: pydantic's error types for a key the schema does not have (a model's; a dataclass's, such as ClassWeights).
_UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")


def _first_problem(problems: list[Any], top: Any) -> str:
    """The problem to report, unknown keys first: a misspelt key also makes the right one look missing."""
    problems = sorted(problems, key=lambda problem: problem["type"] not in _UNKNOWN_KEY)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] in _UNKNOWN_KEY:
        message = "unknown key"
        if len(first["loc"]) == 1:
            message += f"; expected one of {', '.join(top.model_fields)}"
    elif first["type"] in _EXPECTED:
        message = _wrong_type(_EXPECTED[first["type"]], first["input"])
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{where}: {message}{more}"


#: pydantic's error type for a value of the wrong type -> what the key takes. The schema
#: is strict: nothing is coerced (no ``true`` for 1, no ``"10"`` for 10.0, no 2.5 or 2.0 for 2).
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "dataclass_type": "a mapping",
}
#: How a file's value is named in a message (YAML's and TOML's words).
_KINDS = {int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a mapping"}
_NUMBERS = ("an integer", "a number")


def _wrong_type(expected: str, value: Any) -> str:
    """``expected X, got V (its kind)``, and how to write it when the mistake is a common one."""
    if value is None or isinstance(value, bool):
        got = "null" if value is None else f"{str(value).lower()} (a boolean)"
    else:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        got = f"{shown} ({_KINDS.get(type(value), type(value).__name__)})"
    return f"expected {expected}, got {got}{_fix(expected, value)}"


def _fix(expected: str, value: Any) -> str:
    if isinstance(value, bool) and expected in _NUMBERS:
        return "; YAML reads true/false/yes/no/on/off as booleans: give a number"
    if isinstance(value, float) and expected == "an integer":
        return f"; write {int(value)}" if value.is_integer() else "; give a whole number"
    if isinstance(value, str) and (
        (expected in _NUMBERS and _is_finite_number(value)) or (expected == "true or false" and value.lower() in ("true", "false"))
    ):
        return "; remove the quotes"
    return ""


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def build(path: str | Path) -> LoadedConfig:
    """Everything ``path`` describes, validated, built and warmed (its executor too),
    for a new router; nothing is applied anywhere. ConfigError on any problem."""
    config = load_config(path)
    loaded = _build(config, Path(path), previous=None)
    if config.executor is not None:
        loaded.executor = _build_executor(config.executor, Path(path))
        _start_elsewhere(loaded.executor, loaded.plans, Path(path))
    return loaded


def rebuild(path: str | Path, previous: LoadedConfig | None) -> LoadedConfig:
    """``path`` built again for a running router that was built from ``previous``
    (None: not from a file). Versions, experiments, shadows and the policy whose
    definition did not change are reused as they are (a running canary keeps its
    progress); changed or new versions are built and warmed. Executor settings
    cannot change. Nothing is applied; ConfigError on any problem."""
    config = load_config(path)
    old_executor = previous.config.executor if previous is not None else None
    if config.executor is not None and config.executor != old_executor:
        raise ConfigError(
            f"{path}: executor: executor settings cannot change on a running router "
            f"(running: {old_executor}); build a new router with Router.from_config"
        )
    loaded = _build(config, Path(path), previous)
    if previous is not None:
        loaded.removed = frozenset(previous.config.models) - frozenset(config.models)
    return loaded


# -- building --------------------------------------------------------------------------


@dataclass
class LoadedConfig:
    """What a config file produced: the policy, each model's plan (see
    :meth:`~fastroute.library.Registry.apply`), the names the previous file had and
    this one drops, and (for a new router) the executor. A router keeps it to reuse
    the unchanged parts on its next reload."""

    config: Any
    policy: policies.Policy
    plans: dict[str, ModelPlan] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()
    executor: Any = None
    #: model name -> the models to fall back to, in order (checked with the file).
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _build(config: Any, path: Path, previous: LoadedConfig | None) -> LoadedConfig:
    resolved = _resolve_all(config, path)  # every import path, before anything is called
    old_config = previous.config if previous is not None else None
    if old_config is not None and config.policy == old_config.policy:
        policy = previous.policy
    else:
        policy = _build_policy(config.policy, resolved, path)
    _check_policy_models(policy, config.models, path)
    built = LoadedConfig(config, policy, fallbacks=_fallbacks(config, path))
    for name, model in config.models.items():
        old_model = old_config.models.get(name) if old_config is not None else None
        old_plan = previous.plans.get(name) if previous is not None else None
        built.plans[name] = _build_plan(name, model, old_model, old_plan, resolved, path)
    return built


def _import_paths(config: Any) -> list[tuple[str, str]]:
    """(field, import path) of every callable the file names."""
    found = [("policy.use", config.policy.use)] if ":" in config.policy.use else []
    for name, model in config.models.items():
        for version, definition in model.versions.items():
            where = f"models.{name}.versions.{version}"
            found += [(f"{where}.{field_name}", target) for field_name, target in
                      (("model", definition.model), ("factory", definition.factory)) if target is not None]
        if model.shadow is not None and model.shadow.compare is not None:
            found.append((f"models.{name}.shadow.compare", model.shadow.compare))
    return found


def _resolve_all(config: Any, path: Path) -> dict[str, Any]:
    """Import path -> the callable it names, for every path of the file."""
    resolved: dict[str, Any] = {}
    for where, target in _import_paths(config):
        if target not in resolved:
            resolved[target] = _import(target, path, where)
    return resolved


def _build_plan(
    name: str, model: Any, old_model: Any, old_plan: ModelPlan | None, resolved: dict[str, Any], path: Path
) -> ModelPlan:
    where = f"models.{name}"
    versions, rebuilt = {}, set()
    for version, definition in model.versions.items():
        unchanged = (
            old_model is not None
            and old_model.modality == model.modality
            and old_model.versions.get(version) == definition
        )
        if unchanged:
            versions[version] = old_plan.versions[version]
        else:
            versions[version] = _build_spec(name, version, model.modality, definition, resolved, path)
            rebuilt.add(version)
    # A running experiment keeps its measurements only while the versions it measures stay the same.
    keep_experiment = (
        old_model is not None
        and (old_model.split, old_model.canary) == (model.split, model.canary)
        and not (old_plan.experiment is not None and old_plan.experiment.versions() & rebuilt)
    )
    keep_shadow = old_model is not None and old_model.shadow == model.shadow
    return ModelPlan(
        versions,
        dict(model.aliases),
        old_plan.experiment if keep_experiment else _build_experiment(where, model, path),
        old_plan.shadow if keep_shadow else _build_shadow(model.shadow, resolved),
    )


def _build_spec(
    name: str, version: str, modality: str, definition: Any, resolved: dict[str, Any], path: Path
) -> ModelSpec:
    where = f"models.{name}.versions.{version}"
    if definition.device == RAY_DEVICE:  # built inside each Ray actor, from the same import path
        target = definition.model or definition.factory
        model = RemoteModel(target, definition.args, definition.kwargs, call=definition.factory is not None)
    elif definition.model is not None:
        model = resolved[definition.model]
    else:
        model = _call(path, f"{where}.factory", resolved[definition.factory], *definition.args, **definition.kwargs)
    spec = ModelSpec(
        name=name,
        version=version,
        model=model,
        modality=definition.modality or modality,
        batched=definition.batched,
        cost=definition.cost,
        device=definition.device,
        replicas=definition.replicas,
        tags=frozenset(definition.tags),
    )
    _call(path, where, validate_spec, spec)
    if definition.warmup is not None:
        sample = np.asarray(definition.warmup) if isinstance(definition.warmup, list) else definition.warmup
        _call(path, f"{where}.warmup", warm_up, spec, sample)
    return spec


def _build_experiment(where: str, model: Any, path: Path) -> Experiment | None:
    if model.split is not None:
        split = model.split
        return _call(path, f"{where}.split", Split, dict(split.weights), name=f"{where}.split", rng=_rng(split.seed))
    if model.canary is not None:
        canary = model.canary
        thresholds = _call(
            path,
            f"{where}.canary",
            CanaryThresholds,
            steps=tuple(canary.steps),
            min_samples=canary.min_samples,
            max_error_increase=canary.max_error_increase,
            max_latency_ratio=canary.max_latency_ratio,
            latency_quantile=canary.latency_quantile,
            significance=canary.significance,
        )
        return Canary(canary.stable, canary.candidate, thresholds=thresholds, name=f"{where}.canary", rng=_rng(canary.seed))
    return None


def _build_shadow(shadow: Any, resolved: dict[str, Any]) -> Shadow | None:
    if shadow is None:
        return None
    compare = resolved[shadow.compare] if shadow.compare is not None else None
    return Shadow(
        shadow.version,
        share=shadow.share,
        compare=compare,
        workers=shadow.workers,
        queue_size=shadow.queue_size,
        rng=_rng(shadow.seed),
    )


def _build_policy(policy: Any, resolved: dict[str, Any], path: Path) -> policies.Policy:
    """``policy.use`` built with ``policy.args``, wrapped in LoadAware when the file has ``policy.load_aware``."""
    cls = resolved[policy.use] if ":" in policy.use else getattr(policies, policy.use)
    built = _call(path, "policy", cls, **policy.args)
    if not isinstance(built, policies.Policy):
        raise ConfigError(f"{path}: policy.use: {policy.use!r} made a {type(built).__name__}, not a fastroute Policy")
    try:
        check_servable(built)
    except PolicyError as error:
        raise ConfigError(f"{path}: policy: {error}") from None
    if policy.load_aware is None:
        return built
    return _call(path, "policy.load_aware", LoadAware, built, **_given(policy.load_aware))


def _given(section: Any) -> dict[str, Any]:
    """The keys a file gave in ``section``, as keyword arguments: a key left out takes the
    default of the class it configures (defined there, never restated here)."""
    return {name: getattr(section, name) for name in section.model_fields_set}


def _check_policy_models(policy: policies.Policy, model_names: Iterable[str], path: Path) -> None:
    """A compiled policy may only route to models the file declares (LoadAware: its wrapped policy)."""
    routing = policy.policy if isinstance(policy, LoadAware) else policy
    unknown = sorted(set(getattr(routing, "models", ())) - set(model_names))
    if unknown:
        raise ConfigError(f"{path}: policy: routes to models not under 'models': {unknown}")


def _build_executor(executor: Any, path: Path) -> Any:
    """A CPUExecutor; a RayExecutor with an ``executor.ray`` section, a CUDAExecutor with ``executor.cuda``."""
    settings = executor.model_dump(exclude=_ELSEWHERE_SECTIONS)
    if executor.ray is not None:
        return _call(path, "executor.ray", RayExecutor, **settings, **asdict(executor.ray))
    if executor.cuda is not None:
        return _call(path, "executor.cuda", CUDAExecutor, **settings, **_given(executor.cuda))
    return _call(path, "executor", CPUExecutor, **settings)


#: The executor section's subsections naming where some models run; the rest are queue settings.
_ELSEWHERE_SECTIONS = {"ray", "cuda"}


def _start_elsewhere(executor: Any, plans: dict[str, ModelPlan], path: Path) -> None:
    """Set up the actors or devices of versions the executor runs elsewhere (Ray, a GPU)
    before the router takes traffic; a failure is a ConfigError naming the version."""
    start = getattr(executor, "start", None)
    if start is None:
        return
    for name, plan in plans.items():
        for version, spec in plan.versions.items():
            try:
                start(spec)
            except FastrouteError as error:
                executor.close(drain=False)
                raise ConfigError(f"{path}: models.{name}.versions.{version}: {error}") from error


def _rng(seed: int | None) -> random.Random | None:
    return random.Random(seed) if seed is not None else None


def _import(target: str, path: Path, where: str) -> Any:
    """The callable ``package.module:object.attr`` names (no dunder part; nothing else)."""
    module_name, _, attributes = target.partition(":")
    dunders = [part for part in re.split(r"[.:]", target) if _DUNDER.match(part) and part != "__main__"]
    if dunders:
        raise ConfigError(f"{path}: {where}: {target!r} names the dunder {dunders[0]!r}; name a public callable")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(f"{path}: {where}: cannot import module {module_name!r}: {error!r}") from error
    for attribute in attributes.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise ConfigError(f"{path}: {where}: {target!r} does not resolve: no attribute {attribute!r}") from None
    if not callable(found):
        raise ConfigError(f"{path}: {where}: {target!r} is not callable (a {type(found).__name__})")
    return found


def _call(path: Path, where: str, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; any failure becomes a ConfigError naming the file and field."""
    try:
        return function(*args, **kwargs)
    except FastrouteError as error:
        raise ConfigError(f"{path}: {where}: {error}") from error
    except Exception as error:
        raise ConfigError(f"{path}: {where}: {error!r}") from error


# -- reading and validating --------------------------------------------------------------


def _check_references(config: Any, path: Path) -> None:
    """Cross-field rules the schema alone cannot state."""
    for name, model in config.models.items():
        where = f"models.{name}"
        versions = list(model.versions)

        def must_exist(field_name: str, version: str) -> None:
            if version not in model.versions:
                raise ConfigError(f"{path}: {where}.{field_name}: unknown version {version!r}; versions: {versions}")

        _check_modality(path, f"{where}.modality", model.modality)
        for version, definition in model.versions.items():
            if definition.modality is not None:
                _check_modality(path, f"{where}.versions.{version}.modality", definition.modality)
        for alias, version in model.aliases.items():
            if alias in model.versions:
                raise ConfigError(f"{path}: {where}.aliases.{alias}: alias {alias!r} is also a version name")
            must_exist(f"aliases.{alias}", version)
        if model.split is not None and model.canary is not None:
            raise ConfigError(f"{path}: {where}: a model takes a split or a canary, not both")
        if model.split is not None:
            for version in model.split.weights:
                must_exist("split.weights", version)
            total = sum(model.split.weights.values())
            if not abs(total - 1.0) <= 1e-6:
                raise ConfigError(f"{path}: {where}.split.weights: weights must sum to 1, got {total:g}")
        if model.canary is not None:
            must_exist("canary.stable", model.canary.stable)
            must_exist("canary.candidate", model.canary.candidate)
        if model.shadow is not None:
            must_exist("shadow.version", model.shadow.version)
        for version, definition in model.versions.items():
            _check_device(path, f"{where}.versions.{version}.device", definition.device, config.executor)
    _check_one_place_elsewhere(config.executor, path)
    _check_load_aware_models(config, path)


def _check_one_place_elsewhere(executor: Any, path: Path) -> None:
    """One executor runs a router's models: Ray or CUDA, not both."""
    if executor is not None and executor.ray is not None and executor.cuda is not None:
        raise ConfigError(f"{path}: executor: give 'ray' or 'cuda', not both (one executor runs a router's models)")


def _check_load_aware_models(config: Any, path: Path) -> None:
    """LoadAware's quality names only the file's models."""
    load_aware = config.policy.load_aware
    unknown = sorted(set(load_aware.quality) - set(config.models)) if load_aware is not None else []
    if unknown:
        raise ConfigError(
            f"{path}: policy.load_aware.quality: names models not under 'models': {unknown}; models: {list(config.models)}"
        )


def _check_device(path: Path, where: str, device: str, executor: Any) -> None:
    """A version on a GPU needs the CUDA executor: on a CPUExecutor it would run in process, on the CPU."""
    try:
        on_gpu = cuda_index(device) is not None
    except FastrouteError as error:
        raise ConfigError(f"{path}: {where}: {error}") from None
    if on_gpu and (executor is None or executor.cuda is None):
        raise ConfigError(
            f"{path}: {where}: {device!r} models run on the CUDA executor; add 'executor: {{cuda: {{}}}}' "
            "(the 'cuda' extra: PyTorch)"
        )


def _check_values(config: Any, path: Path) -> None:
    """Bounds the schema does not state: free-form values, the policy's name, LoadAware's quality."""
    use = config.policy.use
    if ":" not in use and use not in BUILT_IN_POLICIES + ("load",):
        raise ConfigError(
            f"{path}: policy.use: unknown policy {use!r}; built in: {', '.join(BUILT_IN_POLICIES)} "
            "(or load, with args {path: ...}, for a saved policy), or an import path 'package.module:Class'"
        )
    check_value_size(config.policy.args, f"{path}: policy.args")
    if use == LoadAware.__name__:
        raise ConfigError(
            f"{path}: policy.use: LoadAware wraps another policy: name that policy in 'use' and give LoadAware's "
            "settings under 'load_aware', e.g. policy: {use: ByModality, load_aware: {quality: {big: 0.9, small: 0.7}}}"
        )
    if config.policy.load_aware is not None:
        try:
            check_quality(config.policy.load_aware.quality)
        except PolicyError as error:
            raise ConfigError(f"{path}: policy.load_aware.quality: {error}") from None
    for name, model in config.models.items():
        for version, definition in model.versions.items():
            where = f"{path}: models.{name}.versions.{version}"
            check_value_size(definition.args, f"{where}.args")
            check_value_size(definition.kwargs, f"{where}.kwargs")
            check_value_size(definition.warmup, f"{where}.warmup")


def _check_modality(path: Path, where: str, modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"{path}: {where}: unknown modality {modality!r}; expected one of {MODALITIES}")


# -- schema (pydantic, imported on first use) -----------------------------------------------


_SCHEMA: Any = None


def _schema() -> Any:
    """The pydantic models, built once on first use so ``import fastroute`` needs no pydantic."""
    global _SCHEMA
    if _SCHEMA is None:
        try:
            _SCHEMA = _define_schema()
        except ImportError as error:
            raise ConfigError(f"config files need the 'config' extra (pip install fastroute[config]): {error}") from None
    return _SCHEMA


def _define_schema() -> Any:
    from types import SimpleNamespace
    from typing import Annotated, Literal

    from pydantic import (
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        StringConstraints,
        ValidationError,
        create_model,
        model_validator,
    )

    from ..executors.config import settings as executor_settings

    def int_to_str(value: Any) -> Any:
        """YAML reads ``1:`` as an int; version names are strings."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    Version = Annotated[str, BeforeValidator(int_to_str), StringConstraints(min_length=1)]
    ImportPath = Annotated[str, StringConstraints(pattern=IMPORT_PATH)]
    Name = Annotated[str, StringConstraints(min_length=1)]

    class Strict(BaseModel):
        """No unknown keys and no coercion: a value of the wrong type (``threads: true``,
        ``connect_timeout_s: "10"``, ``replicas: 2.5``) is refused; only an int is taken for a float."""

        model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    class FromMapping:
        """Marks a dataclass section (RaySettings, ClassWeights) to be built from the file's mapping.

        Strict mode would demand an instance of the dataclass itself; this relaxes only that
        outer check, so its fields stay strict (they take the schema's config) and its own
        ``__post_init__`` still checks their bounds."""

        def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
            schema = handler(source)
            handler.resolve_ref_schema(schema)["strict"] = False
            return schema

    class VersionConfig(Strict):
        """One model version: ``model`` (an object) or ``factory`` (called with args/kwargs)."""

        model: ImportPath | None = None
        factory: ImportPath | None = None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        modality: str | None = None
        batched: bool = False
        cost: float = Field(0.0, ge=0)
        device: Name = "cpu"
        replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
        tags: list[str] = []
        warmup: Any = None

        @model_validator(mode="after")
        def one_source(self) -> VersionConfig:
            if (self.model is None) == (self.factory is None):
                raise ValueError("give exactly one of 'model' (an import path) or 'factory'")
            if self.model is not None and (self.args or self.kwargs):
                raise ValueError("'args' and 'kwargs' go with 'factory', not 'model'")
            return self

    class SplitConfig(Strict):
        weights: dict[Version, float] = Field(min_length=1)
        seed: int | None = None

    class CanaryConfig(Strict):
        stable: Version
        candidate: Version
        steps: list[float] = list(CanaryThresholds.steps)
        min_samples: int = CanaryThresholds.min_samples
        max_error_increase: float = CanaryThresholds.max_error_increase
        max_latency_ratio: float = CanaryThresholds.max_latency_ratio
        latency_quantile: float = CanaryThresholds.latency_quantile
        significance: float = CanaryThresholds.significance
        seed: int | None = None

    class ShadowConfig(Strict):
        version: Version
        share: float = Field(1.0, ge=0, le=1)
        compare: ImportPath | None = None
        workers: int = Field(1, ge=1, le=MAX_SHADOW_WORKERS)
        queue_size: int = Field(64, ge=1, le=MAX_SHADOW_QUEUE)
        seed: int | None = None

    class ModelConfig(Strict):
        modality: str
        versions: dict[Version, VersionConfig] = Field(min_length=1)
        aliases: dict[Name, Version] = {}
        split: SplitConfig | None = None
        canary: CanaryConfig | None = None
        shadow: ShadowConfig | None = None
        fallbacks: list[Name] = Field([], max_length=MAX_FALLBACKS)

    class CudaConfig(Strict):
        """Keyword arguments of ``fastroute.executors.cuda.CUDAExecutor`` beyond the queue settings
        (only those given are passed: its defaults apply); its ``device: cuda[:N]`` versions run on GPUs."""

        graphs: bool | None = None

    # Keyword arguments of ``fastroute.executors.CPUExecutor``: the settings, defaults and
    # bounds of its ExecutorConfig (defined once, in C++); with ``ray``, a RayExecutor's own
    # (RaySettings: its keys, defaults and bounds, validated by it); with ``cuda``, a CUDAExecutor's.
    ExecutorConfig = create_model(  # noqa: N806 - a class
        "ExecutorConfig",
        __base__=Strict,
        ray=(Annotated[RaySettings, FromMapping()] | None, None),
        cuda=(CudaConfig | None, None),
        **{name: (int, Field(default, ge=low, le=high)) for name, default, low, high in executor_settings()},
    )

    class LoadAwareConfig(Strict):
        """Keyword arguments of ``fastroute.LoadAware`` around the policy ``use`` names (only those
        given are passed: its defaults apply). ``weights`` entries are ClassWeights, validated by it."""

        quality: dict[Name, float] = Field(min_length=1)
        weights: dict[Literal[tuple(DEFAULT_WEIGHTS)], Annotated[ClassWeights, FromMapping()]] | None = None  # type: ignore[valid-type]
        on_late: Literal[LATE_POLICIES] | None = None  # type: ignore[valid-type]
        seed: int | None = None

    class PolicyConfig(Strict):
        use: Name = "ByModality"
        args: dict[str, Any] = {}
        load_aware: LoadAwareConfig | None = None

    class RouterConfig(Strict):
        models: dict[Name, ModelConfig] = Field(min_length=1)
        executor: ExecutorConfig | None = None
        policy: PolicyConfig = PolicyConfig()

    return SimpleNamespace(RouterConfig=RouterConfig, ValidationError=ValidationError)
