"""Build and reload a Router from a YAML or TOML file.

The file is parsed (YAML through ``yaml.safe_load`` only, TOML through
``tomllib``), validated as a whole (pydantic models with unknown keys
forbidden, then cross-references: aliases, splits, canaries and shadows
must name versions that exist, weights must sum to 1), and only then are the named import paths imported, models built and
warmed. Any mistake raises :class:`fastroute.ConfigError` naming the file,
the field and the problem, before anything is applied. Nothing is imported or
executed but the ``package.module:object`` paths the file names; no pickle.

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
    policy: {use: ByModality}

pydantic and PyYAML come with the ``config`` extra and are imported only here.
"""

from __future__ import annotations

import importlib
import random
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import decision as policies
from ..analyzer import MODALITIES
from ..decision.compiled import check_servable
from ..errors import ConfigError, FastrouteError, PolicyError
from .experiments import Canary, CanaryThresholds, Experiment, Shadow, Split
from .registry import ModelPlan
from .spec import ModelSpec, validate_spec, warm_up

if TYPE_CHECKING:
    from ..router import Router

__all__ = ["load_config", "load_router", "reload_router"]

IMPORT_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"


def load_config(path: str | Path) -> Any:
    """Parse and validate ``path`` without importing anything it names; a ``RouterConfig``."""
    path = Path(path)
    schema = _schema()
    raw = _read(path)
    try:
        config = schema.RouterConfig.model_validate(raw)
    except schema.ValidationError as error:
        problems = error.errors()
        where = ".".join(str(part) for part in problems[0]["loc"]) or "(top level)"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ConfigError(f"{path}: {where}: {problems[0]['msg']}{more}") from None
    _check_references(config, path)
    return config


def load_router(path: str | Path, router_cls: type[Router]) -> Router:
    """A new router built from ``path``: fully validated and warmed before it exists."""
    config = load_config(path)
    built = _build(config, Path(path), previous=None)
    if config.executor is None:
        router = router_cls(policy=built.policy)
    else:
        router = router_cls(policy=built.policy, executor=_build_executor(config.executor, Path(path)))
    router.models.apply(built.plans)
    with _RELOAD_LOCK:
        _LOADED[router] = built
    return router


def reload_router(router: Router, path: str | Path) -> None:
    """Apply a changed ``path`` to a running router; an invalid file leaves it untouched.

    Versions, experiments, shadows and the policy whose definition did not
    change are kept as they are (a running canary keeps its progress).
    Changed or new versions are built and warmed first; then the new state
    takes effect atomically per registry and retired versions drain.
    """
    with _RELOAD_LOCK:
        previous = _LOADED.get(router)
        config = load_config(path)
        old_executor = previous.config.executor if previous is not None else None
        if config.executor is not None and config.executor != old_executor:
            raise ConfigError(
                f"{path}: executor: executor settings cannot change on a running router "
                f"(running: {old_executor}); build a new router with Router.from_config"
            )
        built = _build(config, Path(path), previous)
        router.models.apply(built.plans)
        router.policy = built.policy
        dropped = set(previous.config.models) - set(config.models) if previous is not None else set()
        router.models.apply({}, remove=dropped)
        _LOADED[router] = built


# -- building --------------------------------------------------------------------------


@dataclass
class _Built:
    """What a config file produced, kept to reuse unchanged parts on reload."""

    config: Any
    policy: policies.Policy
    plans: dict[str, ModelPlan] = field(default_factory=dict)


_LOADED: weakref.WeakKeyDictionary[Router, _Built] = weakref.WeakKeyDictionary()
_RELOAD_LOCK = threading.Lock()


def _build(config: Any, path: Path, previous: _Built | None) -> _Built:
    old_config = previous.config if previous is not None else None
    if old_config is not None and config.policy == old_config.policy:
        policy = previous.policy
    else:
        policy = _build_policy(config.policy, path)
    _check_policy_models(policy, config.models, path)
    built = _Built(config, policy)
    for name, model in config.models.items():
        old_model = old_config.models.get(name) if old_config is not None else None
        old_plan = previous.plans.get(name) if previous is not None else None
        built.plans[name] = _build_plan(name, model, old_model, old_plan, path)
    return built


def _build_plan(name: str, model: Any, old_model: Any, old_plan: ModelPlan | None, path: Path) -> ModelPlan:
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
            versions[version] = _build_spec(name, version, model.modality, definition, path)
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
        old_plan.shadow if keep_shadow else _build_shadow(f"{where}.shadow", model.shadow, path),
    )


def _build_spec(name: str, version: str, modality: str, definition: Any, path: Path) -> ModelSpec:
    where = f"models.{name}.versions.{version}"
    if definition.model is not None:
        model = _import(definition.model, path, f"{where}.model")
    else:
        factory = _import(definition.factory, path, f"{where}.factory")
        model = _call(path, f"{where}.factory", factory, *definition.args, **definition.kwargs)
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
        )
        return Canary(canary.stable, canary.candidate, thresholds=thresholds, name=f"{where}.canary", rng=_rng(canary.seed))
    return None


def _build_shadow(where: str, shadow: Any, path: Path) -> Shadow | None:
    if shadow is None:
        return None
    compare = _import(shadow.compare, path, f"{where}.compare") if shadow.compare is not None else None
    return Shadow(
        shadow.version,
        share=shadow.share,
        compare=compare,
        workers=shadow.workers,
        queue_size=shadow.queue_size,
        rng=_rng(shadow.seed),
    )


def _build_policy(policy: Any, path: Path) -> policies.Policy:
    if ":" in policy.use:
        cls = _import(policy.use, path, "policy.use")
    elif policy.use in policies.__all__:
        cls = getattr(policies, policy.use)
    else:
        raise ConfigError(f"{path}: policy.use: unknown policy {policy.use!r}; built in: {policies.__all__}")
    built = _call(path, "policy", cls, **policy.args)
    if not isinstance(built, policies.Policy):
        raise ConfigError(f"{path}: policy.use: {policy.use!r} made a {type(built).__name__}, not a fastroute Policy")
    try:
        check_servable(built)
    except PolicyError as error:
        raise ConfigError(f"{path}: policy: {error}") from None
    return built


def _check_policy_models(policy: policies.Policy, model_names: Iterable[str], path: Path) -> None:
    """A compiled policy may only route to models the file declares."""
    unknown = sorted(set(getattr(policy, "models", ())) - set(model_names))
    if unknown:
        raise ConfigError(f"{path}: policy: routes to models not under 'models': {unknown}")


def _build_executor(executor: Any, path: Path) -> Any:
    try:
        from ..executors import CPUExecutor
    except ImportError as error:
        raise ConfigError(f"{path}: executor: this build has no dispatch runtime: {error}") from None
    return _call(path, "executor", CPUExecutor, **executor.model_dump())


def _rng(seed: int | None) -> random.Random | None:
    return random.Random(seed) if seed is not None else None


def _import(target: str, path: Path, where: str) -> Any:
    """Import ``package.module:object.attr`` (and nothing else)."""
    module_name, _, attributes = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(f"{path}: {where}: cannot import module {module_name!r}: {error!r}") from error
    for attribute in attributes.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise ConfigError(f"{path}: {where}: {target!r} does not resolve: no attribute {attribute!r}") from None
    return found


def _call(path: Path, where: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; any failure becomes a ConfigError naming the file and field."""
    try:
        return function(*args, **kwargs)
    except FastrouteError as error:
        raise ConfigError(f"{path}: {where}: {error}") from error
    except Exception as error:
        raise ConfigError(f"{path}: {where}: {error!r}") from error


# -- reading and validating --------------------------------------------------------------


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"{path}: unsupported config type {suffix!r}; use .yaml, .yml or .toml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: invalid TOML: {error}") from None
    else:
        try:
            import yaml
        except ImportError as error:
            raise ConfigError(f"YAML config files need the 'config' extra (pip install fastroute[config]): {error}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping, got {type(raw).__name__}")
    return raw


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
    from typing import Annotated

    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator

    def int_to_str(value: Any) -> Any:
        """YAML reads ``1:`` as an int; version names are strings."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    Version = Annotated[str, BeforeValidator(int_to_str), StringConstraints(min_length=1)]
    ImportPath = Annotated[str, StringConstraints(pattern=IMPORT_PATH)]
    Name = Annotated[str, StringConstraints(min_length=1)]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

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
        replicas: int = Field(1, ge=1)
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
        seed: int | None = None

    class ShadowConfig(Strict):
        version: Version
        share: float = Field(1.0, ge=0, le=1)
        compare: ImportPath | None = None
        workers: int = Field(1, ge=1)
        queue_size: int = Field(64, ge=1)
        seed: int | None = None

    class ModelConfig(Strict):
        modality: str
        versions: dict[Version, VersionConfig] = Field(min_length=1)
        aliases: dict[Name, Version] = {}
        split: SplitConfig | None = None
        canary: CanaryConfig | None = None
        shadow: ShadowConfig | None = None

    class ExecutorConfig(Strict):
        """Keyword arguments of ``fastroute.executors.CPUExecutor`` (it checks upper bounds)."""

        threads: int = Field(2, ge=1)
        max_batch: int = Field(32, ge=1)
        max_delay_us: int = Field(200, ge=0)
        queue_capacity: int = Field(4096, ge=1)
        spin_us: int = Field(20, ge=0)

    class PolicyConfig(Strict):
        use: Name = "ByModality"
        args: dict[str, Any] = {}

    class RouterConfig(Strict):
        models: dict[Name, ModelConfig] = Field(min_length=1)
        executor: ExecutorConfig | None = None
        policy: PolicyConfig = PolicyConfig()

    return SimpleNamespace(RouterConfig=RouterConfig, ValidationError=ValidationError)
