"""The Router: analyse an input, let the policy choose a model, run it."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .analyzer import FEATURE_NAMES, Analysis, analyze, analyze_batch
from .decision.base import BatchChoice, Choice, Policy
from .decision.by_modality import ByModality
from .decision.compiled import CompiledPolicy, check_servable
from .decision.feedback import FeedbackStore
from .errors import InvalidInput, PolicyError, RouterClosed
from .library.leases import Lease
from .library.registry import Registry
from .library.spec import ModelSpec

if TYPE_CHECKING:
    from .executors import CPUExecutor

__all__ = ["Decision", "Router"]


@dataclass(frozen=True)
class Decision:
    """Where one request goes, and why.

    ``id`` names the decision for :meth:`Router.feedback`; ``propensity`` is
    the probability the policy gave this model (1.0 for deterministic policies).
    """

    model: str
    version: str
    modality: str
    reason: str
    score: float | None = None
    id: str | None = None
    propensity: float = 1.0


class Router:
    """Routes each request to the registered model best suited for it.

    >>> router = fastroute.Router()
    >>> router.register("double", lambda x: 2 * x, modality="tabular")
    >>> router.infer(np.ones(4))
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        executor: CPUExecutor | None = None,
        feedback: FeedbackStore | None = None,
    ) -> None:
        self.models = Registry()
        #: Joins outcomes to decisions (capacity and ttl: pass your own FeedbackStore).
        self.feedback_store = feedback if feedback is not None else FeedbackStore()
        self._extractors: list[tuple[tuple[str, ...], Callable[[Any], Sequence[float]]]] = []
        self._policy: Policy = ByModality()
        if policy is not None:
            self.policy = policy
        self._executor = executor  # the router owns it: close() closes it
        self._executor_lock = threading.Lock()
        self._closed = False  # guarded by _executor_lock
        self.models.add_retire_hook(self._retire_queues)

    @property
    def policy(self) -> Policy:
        """The routing policy. Assigning swaps it atomically: each request reads it once."""
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = check_servable(policy)

    def add_features(self, names: Sequence[str], extractor: Callable[[Any], Sequence[float]]) -> None:
        """Register ``extractor(x) -> values`` computing the user features ``names`` for each input.

        Names are checked once, here: identifiers, not analyzer features, not registered twice.
        A policy may then split on them (its feature_names list them after FEATURE_NAMES).
        """
        names = tuple(names)
        taken = set(FEATURE_NAMES).union(*(set(group) for group, _ in self._extractors))
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise PolicyError(f"feature name must be an identifier, got {name!r}")
            if name in taken:
                raise PolicyError(f"feature {name!r} is already defined")
        if not names or not callable(extractor):
            raise PolicyError("add_features needs at least one name and a callable extractor")
        self._extractors.append((names, extractor))

    def register(
        self,
        name: str,
        model: Callable[[Any], Any],
        *,
        modality: str,
        version: str = "1",
        batched: bool = False,
        cost: float = 0.0,
        device: str = "cpu",
        replicas: int = 1,
        tags: Sequence[str] = (),
        warmup: Any = None,
        aliases: Sequence[str] = (),
    ) -> ModelSpec:
        """Register ``model`` (a callable on one input, or on a batch if ``batched``).

        ``warmup`` is a sample input run once before the model takes traffic;
        ``aliases`` (e.g. ``["stable"]``) point at this version atomically.
        """
        spec = ModelSpec(
            name=name,
            version=version,
            model=model,
            modality=modality,
            batched=batched,
            cost=cost,
            device=device,
            replicas=replicas,
            tags=frozenset(tags),
        )
        return self.models.register(spec, warmup=warmup, aliases=aliases)

    @classmethod
    def from_config(cls, path: str | PathLike[str]) -> Router:
        """A router built from a YAML or TOML file (see :mod:`fastroute.library.config`)."""
        from .library.config import load_router

        return load_router(path, cls)

    def reload(self, path: str | PathLike[str]) -> None:
        """Apply a changed config file without dropping a request; an invalid one changes nothing."""
        from .library.config import reload_router

        reload_router(self, path)

    def route(
        self,
        x: Any,
        *,
        hint: str | None = None,
        key: Any = None,
        features: Mapping[str, float] | None = None,
    ) -> Decision:
        """Decide which model serves ``x``, without running it.

        ``key`` (a user or session id) keeps a caller on one version of a
        split. ``features`` gives user feature values by name for this
        request; user features neither given nor extracted are missing (NaN).
        """
        analysis, choice = self._choose(x, hint, features)
        spec, version_reason = self.models.resolve(choice.model, key=key)
        return _decision(spec, analysis, choice, version_reason, self._record(choice, spec))

    def route_batch(self, xs: Any, *, features: Any = None) -> BatchChoice:
        """Route many inputs at once: model indices through the batch scorer.

        ``features`` holds the user feature columns: an (n, U) array in the
        policy's order, or a mapping name -> (n,) values.
        """
        policy = self._serving_policy()
        batch = analyze_batch(xs)
        matrix = self._policy_matrix(policy, batch, xs, features)
        if isinstance(policy, CompiledPolicy):
            return policy.decide_batch(matrix)
        if matrix is not batch.features:  # user columns: the policy sees them too
            batch = _PolicyBatch(batch.modalities, matrix)
        choices = policy.select_batch(batch, self.models)
        names = tuple(dict.fromkeys(choice.model for choice in choices))
        index = np.array([names.index(choice.model) for choice in choices], dtype=np.int32)
        score = np.array([np.nan if c.score is None else c.score for c in choices], dtype=np.float32)
        learning = any(choice.pending is not None for choice in choices)
        ids = tuple(self.feedback_store.record(choice) for choice in choices) if learning else ()
        propensity = np.array([choice.propensity for choice in choices], dtype=np.float64)
        return BatchChoice(names, index, score, np.full(len(choices), np.nan, dtype=np.float32), ids, propensity)

    def infer(
        self,
        x: Any,
        *,
        hint: str | None = None,
        key: Any = None,
        features: Mapping[str, float] | None = None,
        return_decision: bool = False,
    ) -> Any:
        """Route ``x`` and return the chosen model's result.

        With ``return_decision=True``: ``(result, decision)``, the decision's
        ``id`` ready for :meth:`feedback`.
        """
        decision, lease = self._decide_leased(x, hint, key, features)
        with lease:
            result = lease.spec.run_one(x)
        self._mirror(lease, x, result)
        return (result, decision) if return_decision else result

    def infer_batch(
        self,
        xs: Sequence[Any],
        *,
        keys: Sequence[Any] | None = None,
        features: Any = None,
        return_decisions: bool = False,
    ) -> Any:
        """Route every input, call each chosen model once on its group, keep input order.

        With ``return_decisions=True``: ``(results, routed)``, ``routed`` the
        :class:`BatchChoice` whose ``ids`` (learning policies only) and
        ``propensity`` are per input.
        """
        routed = self.route_batch(xs, features=features)
        names = routed.names()
        if keys is not None and len(keys) != len(names):
            raise InvalidInput(f"infer_batch got {len(keys)} keys for {len(names)} inputs")
        leases: list[Lease] = []
        try:
            for index, name in enumerate(names):
                leases.append(self.models.lease(name, key=None if keys is None else keys[index]))
                if routed.ids:
                    self._observe(leases[-1], routed.ids[index])
            results = self._run_leased(xs, leases)
            return (results, routed) if return_decisions else results
        finally:
            for lease in leases:
                lease.discard()  # frees leases of groups that never ran; no-op for finished ones

    def _run_leased(self, xs: Sequence[Any], leases: list[Lease]) -> list[Any]:
        """Call each leased model version once on its group of inputs, keep input order."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, lease in enumerate(leases):
            groups[id(lease.spec)].append(index)
        results: list[Any] = [None] * len(leases)
        for indices in groups.values():
            for index in indices:
                leases[index].restart_clock()  # a later group's latency excludes earlier groups
            try:
                outputs = leases[indices[0]].spec.run_batch([xs[i] for i in indices])
            except BaseException as error:
                for index in indices:
                    leases[index].release(error)
                raise
            for index, output in zip(indices, outputs):
                results[index] = output
                leases[index].release()
                self._mirror(leases[index], xs[index], output)
        return results

    @property
    def executor(self) -> CPUExecutor:
        """The executor behind ``submit``/``ainfer``: a default CPUExecutor, created on first use."""
        with self._executor_lock:
            if self._closed:
                raise RouterClosed("the router is closed")
            if self._executor is None:
                from .executors import CPUExecutor

                self._executor = CPUExecutor()
            return self._executor

    def submit(
        self,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
        hint: str | None = None,
        key: Any = None,
        features: Mapping[str, float] | None = None,
    ) -> Future:
        """Route ``x`` now and queue it for its model; returns a Future of the result.

        The future's ``decision`` attribute is the :class:`Decision` (its ``id``
        for :meth:`feedback`).

        ``priority`` ("high" or "normal"), ``deadline`` (seconds the model may
        take to start it) and ``timeout`` (seconds to wait for queue room, else
        ``Overloaded``): see :meth:`fastroute.executors.cpu.CPUExecutor.submit`.
        The request holds a lease on its model version until it completes, so
        a hot swap retires the old version only after this request ends.
        """
        executor = self.executor
        decision, lease = self._decide_leased(x, hint, key, features)
        try:
            future = executor.submit(lease.spec, x, priority=priority, deadline=deadline, timeout=timeout)
        except BaseException:
            lease.discard()
            raise
        future.decision = decision  # type: ignore[attr-defined]
        future.add_done_callback(lambda done: self._complete(lease, x, done))
        return future

    async def ainfer(
        self,
        x: Any,
        *,
        priority: str = "normal",
        deadline: float | None = None,
        timeout: float | None = None,
        hint: str | None = None,
        key: Any = None,
        features: Mapping[str, float] | None = None,
        return_decision: bool = False,
    ) -> Any:
        """:meth:`submit` for asyncio: waits for queue room (up to ``timeout``) without
        blocking the event loop; the result is delivered on the caller's loop, no polling.
        With ``return_decision=True``: ``(result, decision)``."""
        executor = self.executor
        decision, lease = self._decide_leased(x, hint, key, features)
        try:
            future = await executor.asubmit(lease.spec, x, priority=priority, deadline=deadline, timeout=timeout)
        except BaseException:  # CancelledError while waiting for room too
            lease.discard()
            raise
        future.add_done_callback(lambda done: self._complete(lease, x, done))
        result = await asyncio.wrap_future(future, loop=asyncio.get_running_loop())
        return (result, decision) if return_decision else result

    def feedback(self, decision_id: Any, reward: Any = None, **outcome: Any) -> str:
        """Join an outcome to decision ``decision_id`` (from :attr:`Decision.id`), from any thread.

        ``reward=``, or ``quality=`` (with optional ``cost=``, ``latency=``) that a
        learning policy turns into a reward. Returns the status: ``"joined"``,
        or ``"unknown"``, ``"foreign"`` (another router's id), ``"expired"``,
        ``"duplicate"``: counted in :meth:`feedback_stats`, never raised. A reward
        that is NaN, infinite or out of the policy's range raises InvalidInput.
        """
        return self.feedback_store.feedback(decision_id, reward, **outcome)

    def feedback_stats(self) -> dict[str, int]:
        """Feedback counts by status (see :class:`fastroute.decision.feedback.FeedbackStore`)."""
        return self.feedback_store.stats()

    def close(self, drain: bool = True) -> None:
        """Stop accepting requests; run (``drain``) or fail the queued ones; join the workers.

        Idempotent. Requests refused afterwards raise ``RouterClosed``.
        """
        with self._executor_lock:
            self._closed = True
            executor = self._executor
        if executor is not None:
            executor.close(drain=drain)
        self.models.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        """The policy, each registered version with its modality, the executor, and whether closed."""
        models = [f"{spec.name}:{spec.version} ({spec.modality})" for spec in self.models.list()]
        executor = type(self._executor).__name__ if self._executor is not None else None
        closed = ", closed" if self._closed else ""
        return f"Router(policy={type(self._policy).__name__}, models={models}, executor={executor}{closed})"

    def _complete(self, lease: Lease, x: Any, done: Future) -> None:
        """Ends a submitted request's lease and offers its result to the shadow."""
        if done.cancelled():
            lease.discard()
        elif done.exception() is not None:
            lease.release(done.exception())
        else:
            lease.release()
            self._mirror(lease, x, done.result())

    def _retire_queues(self, spec: ModelSpec) -> None:
        """Registry hook: a retired version's executor queues drain and close."""
        with self._executor_lock:
            executor = self._executor
        if executor is not None:
            executor.retire(spec)

    def _decide_leased(
        self, x: Any, hint: str | None, key: Any, features: Mapping[str, float] | None
    ) -> tuple[Decision, Lease]:
        """The decision plus a lease on its model version, held until the request completes."""
        analysis, choice = self._choose(x, hint, features)
        lease = self.models.lease(choice.model, key=key)
        decision = _decision(lease.spec, analysis, choice, lease.reason, self._record(choice, lease.spec))
        self._observe(lease, decision.id)
        return decision, lease

    def _record(self, choice: Choice, spec: ModelSpec) -> str:
        """The decision's id in the feedback store (the model's registered cost is its default cost)."""
        return self.feedback_store.record(choice, cost=spec.cost)

    def _observe(self, lease: Lease, decision_id: str) -> None:
        """The executor's latency and error reach the feedback store when the lease ends."""
        store = self.feedback_store
        lease.on_outcome = lambda error, latency: store.observe(decision_id, error, latency)

    def _choose(
        self, x: Any, hint: str | None, features: Mapping[str, float] | None
    ) -> tuple[Analysis, Choice]:
        """Analyse ``x`` and let the policy name its model."""
        policy = self._serving_policy()
        analysis = analyze(x, hint=hint)
        return analysis, policy.select(self._policy_row(policy, analysis, x, features), self.models)

    def _serving_policy(self) -> Policy:
        """The policy one request uses from start to end, whatever is swapped or refitted meanwhile."""
        if self._closed:
            raise RouterClosed("the router is closed")
        policy = self._policy  # read once: a concurrent swap never splits a request
        return policy.pinned() if len(policy.feature_names) > len(FEATURE_NAMES) else policy

    def _user_columns(self, policy: Policy) -> tuple[str, ...]:
        return tuple(policy.feature_names[len(FEATURE_NAMES) :])

    def _policy_row(self, policy: Policy, analysis: Analysis, x: Any, features: Mapping[str, float] | None) -> Any:
        columns = self._user_columns(policy)
        if not columns and not features:
            return analysis
        values = dict.fromkeys(columns, np.nan)
        for names, extractor in self._extractors:
            if any(name in values for name in names):
                values.update(zip(names, _extracted(names, extractor(x))))
        for name, value in (features or {}).items():
            if name not in values:
                raise InvalidInput(f"unknown user feature {name!r}; the policy reads {list(columns)}")
            values[name] = value
        row = np.concatenate([analysis.features, np.array([values[c] for c in columns], dtype=np.float32)])
        return _PolicyRow(analysis.modality, row)

    def _policy_matrix(self, policy: Policy, batch: Any, xs: Any, features: Any) -> np.ndarray:
        columns = self._user_columns(policy)
        n = len(batch.features)
        user = np.full((n, len(columns)), np.nan, dtype=np.float32)
        for names, extractor in self._extractors:
            used = [(j, columns.index(name)) for j, name in enumerate(names) if name in columns]
            if used:
                extracted = np.array([_extracted(names, extractor(x)) for x in xs], dtype=np.float32)
                for j, column in used:
                    user[:, column] = extracted[:, j]
        if isinstance(features, Mapping):
            for name, values in features.items():
                if name not in columns:
                    raise InvalidInput(f"unknown user feature {name!r}; the policy reads {list(columns)}")
                user[:, columns.index(name)] = np.asarray(values, dtype=np.float32)
        elif features is not None:
            given = np.asarray(features, dtype=np.float32).reshape(n, -1)
            if given.shape[1] != len(columns):
                raise InvalidInput(f"features have {given.shape[1]} columns; the policy reads {list(columns)}")
            user = given
        return np.concatenate([batch.features, user], axis=1) if columns else batch.features

    def _mirror(self, lease: Lease, x: Any, result: Any) -> None:
        """Offer a served request to its model's shadow, if any (never raises for it)."""
        if lease.shadow is not None:
            name, shadow = lease.spec.name, lease.shadow

            def run_shadow(sample: Any) -> Any:
                with self.models.lease(name, shadow.version) as shadow_lease:
                    return shadow_lease.spec.run_one(sample)

            shadow.offer(x, result, lease.spec.version, run_shadow)


@dataclass(frozen=True)
class _PolicyRow:
    """What a policy sees when user features follow the analyzer's."""

    modality: str
    features: np.ndarray


@dataclass(frozen=True)
class _PolicyBatch:
    """What a Python policy's select_batch sees when user features follow the analyzer's."""

    modalities: list[str]
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.modalities)

    def __getitem__(self, index: int) -> _PolicyRow:
        return _PolicyRow(self.modalities[index], self.features[index])


def _extracted(names: tuple[str, ...], values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != len(names):
        raise InvalidInput(f"feature extractor for {list(names)} returned {len(values)} values")
    return values


def _decision(
    spec: ModelSpec, analysis: Analysis, choice: Choice, version_reason: str, decision_id: str
) -> Decision:
    reason = f"{choice.reason}; {version_reason}"
    return Decision(spec.name, spec.version, analysis.modality, reason, choice.score, decision_id, choice.propensity)
