"""The Router: analyse an input, let the policy choose a model, run it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .analyzer import FEATURE_NAMES, analyze, analyze_batch
from .analyzer.user_features import UserFeatures, given_rows
from .decision.base import BatchChoice, Choice, Decision, Policy
from .decision.by_modality import ByModality
from .decision.compiled import CompiledPolicy, check_servable
from .decision.fast_path import native_path
from .decision.feedback import FeedbackStore
from .decision.load_aware import LoadAware, live_columns
from .errors import FastrouteError, InvalidInput, RouterClosed
from .executors.handles import ResultHandle
from .executors.queued import queued_awaitable, queued_when_room, raising
from .executors.resilience import Resilience
from .library.catalog import Candidates, Resolved
from .library import config as config_files
from .library.leases import Lease, run_leased
from .library.registry import Registry
from .library.spec import ModelSpec
from . import _core
from .executors.cpu import request_times as executor_request_times

if TYPE_CHECKING:
    from .analyzer import Analysis
    from .analyzer.user_features import FeatureRow
    from .executors import CPUExecutor

__all__ = ["Decision", "Router"]


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
        resilience: Resilience | None = None,
    ) -> None:
        self.models = Registry()
        # Ends a queued request's lease: settle(lease, x, handle), bound once, not a closure per request.
        self._settle = self.models.settle
        #: Joins outcomes to decisions (capacity and ttl: pass your own FeedbackStore).
        self.feedback_store = feedback if feedback is not None else FeedbackStore()
        self._user_features = UserFeatures()
        self._policy: Policy = ByModality()
        if policy is not None:
            self.policy = policy
        self._executor = executor  # the router owns it: close() closes it
        self._executor_lock = threading.Lock()
        self._closed = False  # guarded by _executor_lock
        if executor is not None:
            self.models.add_retire_hook(executor.retire)  # a retired version's queues drain and close
        self._resilience: Resilience | None = None
        self.resilience = resilience
        self._reload_lock = threading.Lock()  # one reload at a time
        self._loaded_config: config_files.LoadedConfig | None = None  # guarded by _reload_lock
        #: When set, each decision's analyze and decide latencies are recorded into it
        #: (``fastroute.serving`` sets it for /metrics); None costs nothing.
        self.route_stages: _core.RouteStages | None = None
        # The native request path (decision/fast_path.py): route/hold(policy, store, x, hint, stages).
        self._fast_path = native_path(self.models)

    @property
    def resilience(self) -> Resilience | None:
        """Fallbacks, retries and circuit breakers of ``submit``/``ainfer`` (None: a failure goes to the caller)."""
        return self._resilience

    @resilience.setter
    def resilience(self, resilience: Resilience | None) -> None:
        if self._resilience is not None:
            self.models.remove_retire_hook(self._resilience.forget)
        if resilience is not None:
            self.models.add_retire_hook(resilience.forget)  # a retired version's breaker goes
        self._resilience = resilience

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
        self._user_features.add(names, extractor)

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
        On an executor that runs models elsewhere (``device="ray"`` on a RayExecutor,
        ``"cuda:N"`` on a CUDAExecutor) the model's actors or device are set up first:
        a failure there is a :class:`~fastroute.RegistrationError` and nothing is registered.
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
        with self._executor_lock:
            executor = self._executor
        start = getattr(executor, "start", None)  # executors running models elsewhere (Ray, a GPU)
        if start is not None:
            start(spec)  # an actor or device that cannot take the model: RegistrationError, nothing registered
        try:
            return self.models.register(spec, warmup=warmup, aliases=aliases)
        except BaseException:
            if start is not None:
                executor.retire(spec, drain=False)
            raise

    @classmethod
    def from_config(cls, path: str | PathLike[str]) -> Router:
        """A router built from a YAML or TOML file (see :mod:`fastroute.library.config`):
        fully validated and warmed before it exists."""
        loaded = config_files.build(path)
        router = cls(policy=loaded.policy, executor=loaded.executor)
        router.models.apply(loaded.plans)
        router._apply_fallbacks(loaded)
        router._loaded_config = loaded
        return router

    def reload(self, path: str | PathLike[str]) -> None:
        """Apply a changed config file without dropping a request; an invalid one changes nothing.

        What did not change is kept as it is (a running canary keeps its progress);
        changed or new versions are built and warmed first, then the new state takes
        effect atomically and retired versions drain."""
        with self._reload_lock:
            loaded = config_files.rebuild(path, self._loaded_config)
            self.models.apply(loaded.plans)
            self.policy = loaded.policy
            self.models.apply({}, remove=loaded.removed)
            self._apply_fallbacks(loaded)
            self._loaded_config = loaded

    def _apply_fallbacks(self, loaded: config_files.LoadedConfig) -> None:
        """A file's fallbacks (checked with the file); none leaves a router without Resilience as it is."""
        if loaded.fallbacks or self.resilience is not None:
            self.set_fallbacks(loaded.fallbacks)

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
        if not features:
            decision = self._fast_path.route(self._plain_policy(), self.feedback_store, x, hint, self.route_stages)
            if decision is not None:
                return decision
        seen, choice = self._choose(x, hint, features)
        spec, version_reason = self.models.resolve(choice.model, key=key)
        return Decision.of(choice, spec.version, seen, version_reason, self._record(choice, spec))

    def route_batch(self, xs: Any, *, features: Any = None) -> BatchChoice:
        """Route many inputs at once: model indices through the batch scorer.

        ``features`` holds the user feature columns: an (n, U) array in the
        policy's order, or a mapping name -> (n,) values.
        """
        policy = self._serving_policy()
        batch = self._user_features.batch(policy.feature_names, analyze_batch(xs), xs, features, self._live_columns)
        if isinstance(policy, CompiledPolicy):  # each row masked to the models serving its modality
            return policy.decide_batch(batch.features, candidates_of=self.models.catalog.for_modality)
        catalog = self.models.catalog
        choices = policy.select_batch(batch, [catalog.for_modality(modality) for modality in batch.modalities])
        learning = any(choice.pending is not None for choice in choices)
        return BatchChoice.of(choices, tuple(self.feedback_store.record(choice) for choice in choices) if learning else ())

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
        held = self._native_hold(x, hint, features)
        if held is not None:
            result = held[1].run_held(x)
            return (result, held[0]) if return_decision else result
        decision, lease = self._decide_leased(x, hint, key, features)
        with lease:
            result = lease.spec.run_one(x)
        self.models.mirror(lease, x, result)
        return (result, decision) if return_decision else result

    def infer_batch(
        self,
        xs: Sequence[Any],
        *,
        keys: Sequence[Any] | None = None,
        features: Any = None,
        return_decisions: bool = False,
        return_exceptions: bool = False,
    ) -> Any:
        """Route every input, call each chosen model once on its group, keep input order.

        All or nothing by default: the first failure is raised. With
        ``return_exceptions=True`` (as in ``asyncio.gather``) each input's
        failure takes its place in the returned list instead (an input that
        cannot be analysed or routed, its model's :class:`~fastroute.ModelError`),
        and every other input still gets its result. A batched model that
        fails fails its whole group (one exception object per input). Mistakes
        in the call itself (``keys`` of the wrong length, a closed router) are
        still raised.

        With ``return_decisions=True``: ``(results, routed)``, ``routed`` the
        :class:`BatchChoice` whose ``ids`` (learning policies only) and
        ``propensity`` are per input (not combinable with ``return_exceptions``
        yet: InvalidInput).
        """
        if return_decisions and return_exceptions:
            raise InvalidInput("infer_batch: return_decisions and return_exceptions cannot be combined yet")
        if keys is not None and len(keys) != len(xs):
            raise InvalidInput(f"infer_batch got {len(keys)} keys for {len(xs)} inputs")
        routed = None if return_exceptions else self.route_batch(xs, features=features)
        routes = self._route_each(xs, features) if routed is None else routed.routes()
        results: list[Any] = [None] * len(routes)
        leases: list[Lease | None] = [None] * len(routes)
        try:
            for index, route in enumerate(routes):
                if isinstance(route, Exception):
                    results[index] = route  # why this input could not be routed
                    continue
                name, decision_id = route
                try:
                    leases[index] = self.models.lease(name, key=None if keys is None else keys[index])
                except FastrouteError as error:
                    if not return_exceptions:
                        raise
                    results[index] = error
                    continue
                if decision_id is not None:
                    self._observe(leases[index], decision_id)
            run_leased(xs, leases, results, return_exceptions, self.models.mirror)
            return (results, routed) if return_decisions else results
        finally:
            for lease in leases:
                if lease is not None:
                    lease.discard()  # frees leases of groups that never ran; no-op for finished ones

    def _route_each(self, xs: Sequence[Any], features: Any) -> list[tuple[str, str | None] | Exception]:
        """Each input's (model name, decision id), or the exception saying why it cannot be routed.

        One batch decision; only if it fails is each input routed alone (as a
        batch of one, so the decisions are the batch path's) to tell which.
        """
        try:
            return self.route_batch(xs, features=features).routes()
        except RouterClosed:
            raise
        except Exception:  # noqa: BLE001 - some input cannot be routed: found below
            pass
        routes: list[tuple[str, str | None] | Exception] = []
        for index in range(len(xs)):
            try:
                routes.append(self.route_batch(xs[index : index + 1], features=given_rows(features, index)).routes()[0])
            except RouterClosed:
                raise
            except Exception as error:  # noqa: BLE001 - this input's outcome
                routes.append(error)
        return routes

    def _running_executor(self) -> CPUExecutor:
        """:attr:`executor`, read without its lock once it exists (a request racing
        ``close`` is refused by the closed executor itself)."""
        executor = self._executor
        return self.executor if executor is None or self._closed else executor

    @property
    def executor(self) -> CPUExecutor:
        """The executor behind ``submit``/``ainfer``: a default CPUExecutor, created on first use."""
        with self._executor_lock:
            if self._closed:
                raise RouterClosed("the router is closed")
            if self._executor is None:
                from .executors import CPUExecutor

                self._executor = CPUExecutor()
                self.models.add_retire_hook(self._executor.retire)
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
    ) -> ResultHandle:
        """Route ``x`` now and queue it for its model; returns its :class:`~fastroute.ResultHandle`
        (the methods of a concurrent.futures.Future, awaitable; see executors/handles.py).

        The handle's ``decision`` attribute is the :class:`Decision` (its ``id``
        for :meth:`feedback`).

        ``priority`` ("high" or "normal"), ``deadline`` (seconds the model may
        take to start it) and ``timeout`` (seconds to wait for queue room, else
        ``Overloaded``): see :meth:`fastroute.executors.cpu.CPUExecutor.submit`.
        The request holds a lease on its model version until it completes, so
        a hot swap retires the old version only after this request ends. A plain
        request (native path, no ``timeout``, no per-request ``features``, no
        resilience) is routed, held and queued in one native call.
        """
        executor = self._running_executor()
        if self._resilience is not None:
            return self._submit_resilient(executor, x, priority, deadline, timeout, hint, key, features)
        if timeout is None and not features:  # routed, held and queued in one native call
            # (_running_executor refused a closed router: the policy is read as _plain_policy does)
            handle = self._fast_path.submit(
                self._policy, self.feedback_store, x, hint, self.route_stages, executor.native_queue, priority, deadline
            )
            if handle is not None:
                return handle
        decision, spec, end, args = self._decide_held(x, hint, key, features, (executor, priority, deadline))
        try:
            handle = executor.submit(spec, x, priority=priority, deadline=deadline, timeout=timeout)
        except BaseException:
            end(*args, None)  # nothing was queued
            raise
        handle.decision = decision
        handle.add_done_callback(end, *args)  # the hold ends with the request
        return handle

    def ainfer(
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
    ) -> Awaitable[Any]:
        """:meth:`submit` for asyncio: ``await router.ainfer(x)`` waits for queue room (up to
        ``timeout``) without blocking the event loop; the result is delivered on the caller's
        loop, with every other request of its batch awaited there, no polling.
        With ``return_decision=True``: ``(result, decision)``.

        Returns an awaitable, not a coroutine: when the request is queued at once (no
        resilience, no ``return_decision``), the asyncio future its handle sets, which
        ``asyncio.gather`` and ``asyncio.wait_for`` take without wrapping it in a task;
        otherwise a coroutine. Errors are raised when it is awaited. (``asyncio.create_task``
        takes only coroutines: use ``asyncio.ensure_future``.) Call it on the event loop
        that awaits it.

        With ``resilience``, a full queue is not waited for: the request goes to a
        fallback or fails with Overloaded."""
        if return_decision or features or self._resilience is not None:
            return self._ainfer(x, priority, deadline, timeout, hint, key, features, return_decision)
        asyncio.get_running_loop()  # outside a loop: RuntimeError now, before anything is queued
        try:
            executor = self._running_executor()
            policy = self._plain_policy()
            # No Decision: the caller never sees it (nor its feedback id), so none is made or recorded.
            future = self._fast_path.ainfer(
                policy, self.feedback_store, x, hint, self.route_stages, executor.native_queue, priority, deadline
            )
            if future is not None:  # routed, held and queued in one native call
                return future
            resolved = self._fast_path.hold_only(policy, self.feedback_store, x, hint, self.route_stages)
        except Exception as error:  # noqa: BLE001 - raised where the caller awaits
            return raising(error)
        if resolved is None:  # the general path decides
            return self._ainfer(x, priority, deadline, timeout, hint, key, features, return_decision)
        return queued_awaitable(executor, resolved.spec, x, priority, deadline, timeout, resolved.in_flight.holds)

    async def _ainfer(
        self,
        x: Any,
        priority: str,
        deadline: float | None,
        timeout: float | None,
        hint: str | None,
        key: Any,
        features: Mapping[str, float] | None,
        return_decision: bool,
    ) -> Any:
        """ainfer's coroutine: with resilience, or when the decision is returned too."""
        executor = self.executor
        if self.resilience is not None:
            future = self._submit_resilient(executor, x, priority, deadline, None, hint, key, features)
            try:
                result = await future
            except asyncio.CancelledError:
                future.cancel()  # now: its queued attempt is dropped before it runs (a handle learns it lazily)
                raise
            return (result, future.decision) if return_decision else result
        decision, spec, end, args = self._decide_held(x, hint, key, features, (executor, priority, deadline))
        result = await queued_when_room(executor, spec, x, priority, deadline, timeout, end, args)
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

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests; run (``drain``) or fail the queued ones; join the workers.

        ``timeout`` (seconds) bounds the wait for model calls still running:
        past it ``RouterClosed`` says so and they finish on their own. Without
        ``drain`` nothing waits for a running model unless ``timeout`` asks to
        (see :meth:`fastroute.executors.CPUExecutor.close`). Idempotent, and
        safe from inside a model or a future's done-callback. Requests refused
        afterwards raise ``RouterClosed``.
        """
        with self._executor_lock:
            self._closed = True
            executor = self._executor
        try:
            if executor is not None:
                executor.close(drain=drain, timeout=timeout)
        finally:
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

    def set_fallbacks(self, fallbacks: Mapping[str, Sequence[str]]) -> None:
        """Set each model's ordered fallbacks (``{"big": ["mid", "small"]}``), used by
        ``submit``/``ainfer`` when the model fails, is overloaded or its breaker is open.

        Checked now: registered models of the same modality, no cycle (ConfigError).
        Creates a default :class:`~fastroute.executors.resilience.Resilience` if the
        router has none.
        """
        if self.resilience is None:
            self.resilience = Resilience()
        self.resilience.set_fallbacks(fallbacks, self._modality_of)

    def stats(self) -> dict[str, Any]:
        """Live state, read without locks from the C++ dispatcher and breakers.

        ``models``: per registered version ``"name/version"``: ``replicas`` (one
        :class:`~fastroute.executors.ReplicaStats` each: queued, in flight, EWMA
        service times, error rate), ``backend`` (what runs the model out of process, e.g.
        ``{"actors": [ActorStats, ...]}`` on a RayExecutor; None in process), ``breaker`` (state, window counts, transitions;
        None without resilience or before its first request) and ``leases`` (requests
        holding the version). ``resilience``: requests, retries, fallbacks served,
        failed to the caller and the retry budget (None without resilience).
        """
        with self._executor_lock:
            executor = self._executor
        models = {}
        for spec in self.models.list():
            models[f"{spec.name}/{spec.version}"] = {
                "replicas": executor.replica_stats(spec) if executor is not None else [],
                "backend": executor.backend_stats(spec) if executor is not None else None,
                "breaker": self.resilience.breaker_stats(spec) if self.resilience is not None else None,
                "leases": self.models.in_flight(spec),
            }
        return {"models": models, "resilience": self.resilience.stats() if self.resilience is not None else None}

    def _modality_of(self, name: str) -> str | None:
        return self.models.get(name).modality if name in self.models else None

    def _submit_resilient(
        self,
        executor: CPUExecutor,
        x: Any,
        priority: str,
        deadline: float | None,
        timeout: float | None,
        hint: str | None,
        key: Any,
        features: Mapping[str, float] | None,
    ) -> ResultHandle:
        """submit() with fallbacks, retries and breakers (see executors/resilience.py)."""
        seen, choice = self._choose(x, hint, features, (executor, priority, deadline))
        self.resilience.check_pending(self._modality_of)

        def decide(lease: Lease) -> Decision:
            served = lease.spec.name
            why = choice if served == choice.model else Choice(served, f"fallback of {choice.model!r}")
            return self._leased_decision(lease, seen, why)

        return self.resilience.submit(
            executor, x, choice.model, lease=lambda name: self.models.lease(name, key=key), decide=decide,
            settle=lambda lease, done: self._settle(lease, x, done),
            priority=priority, deadline=deadline, timeout=timeout,
        )

    def _choose_under_load(
        self,
        policy: LoadAware,
        executor: CPUExecutor,
        priority: str,
        deadline: float | None,
        choice: Choice,
        candidates: Candidates,
    ) -> Choice:
        """The LoadAware verdict among the preferred model and its spill candidates."""
        high, deadline_ns = executor_request_times(priority, deadline)
        names = policy.spill_candidates(choice.model, candidates.names)
        specs = [self.models.get(name) for name in names]
        budget_ns = _core.NO_DEADLINE if deadline_ns is None else deadline_ns - _core.monotonic_ns()
        resilience = self.resilience
        available = [resilience is None or resilience.available(spec) for spec in specs]
        return policy.choose_under_load(choice, specs, executor, high=high, budget_ns=budget_ns, available=available)

    def _decide_held(
        self,
        x: Any,
        hint: str | None,
        key: Any,
        features: Mapping[str, float] | None,
        under_load: tuple[CPUExecutor, str, float | None],
    ) -> tuple[Decision, ModelSpec, Callable[..., None], tuple[Any, ...]]:
        """A request to queue: its decision, the spec to queue it on and how its hold on
        that version ends: ``end(*args, handle)`` once the handle settles (``handle`` None:
        it was never queued). On the native path ``end`` is the version's native hold
        count (no experiment, no shadow: nothing to observe), dropped without a Python
        frame; a lease is settled with the outcome."""
        held = self._native_hold(x, hint, features)
        if held is not None:
            decision, resolved = held
            return decision, resolved.spec, resolved.in_flight.holds, ()
        decision, lease = self._decide_leased(x, hint, key, features, under_load)
        return decision, lease.spec, self._settle, (lease, x)

    def _native_hold(
        self, x: Any, hint: str | None, features: Mapping[str, float] | None
    ) -> tuple[Decision, Resolved] | None:
        """The native path's decision and held version for ``x``, or None when the
        general path decides (features given per request, or the native path declines)."""
        if features:
            return None
        return self._fast_path.hold(self._plain_policy(), self.feedback_store, x, hint, self.route_stages)

    def _decide_leased(
        self,
        x: Any,
        hint: str | None,
        key: Any,
        features: Mapping[str, float] | None,
        under_load: tuple[CPUExecutor, str, float | None] | None = None,
    ) -> tuple[Decision, Lease]:
        """The decision plus a lease on its model version, held until the request completes."""
        seen, choice = self._choose(x, hint, features, under_load)
        lease = self.models.lease(choice.model, key=key)
        return self._leased_decision(lease, seen, choice), lease

    def _leased_decision(self, lease: Lease, seen: Analysis | FeatureRow, choice: Choice) -> Decision:
        """The decision served by ``lease``'s version, recorded for feedback; the
        executor's latency and error reach the feedback store when the lease ends."""
        decision = Decision.of(choice, lease.spec.version, seen, lease.reason, self._record(choice, lease.spec))
        self._observe(lease, decision.id)
        return decision

    def _record(self, choice: Choice, spec: ModelSpec) -> str:
        """The decision's id in the feedback store (the model's registered cost is its default cost)."""
        return self.feedback_store.record(choice, cost=spec.cost)

    def _observe(self, lease: Lease, decision_id: str) -> None:
        """The executor's latency and error reach the feedback store when the lease ends."""
        lease.on_outcome = self.feedback_store.observer(decision_id)

    def _choose(
        self,
        x: Any,
        hint: str | None,
        features: Mapping[str, float] | None,
        under_load: tuple[CPUExecutor, str, float | None] | None = None,
    ) -> tuple[Analysis | FeatureRow, Choice]:
        """Analyse ``x`` and let the policy name its model among those serving its modality; a
        LoadAware policy also weighs the live load of ``under_load`` = (executor, priority, deadline).
        Returns what the policy read (the analysis, or with user features a FeatureRow) and its choice."""
        stages = self.route_stages
        started = time.perf_counter_ns() if stages is not None else 0
        policy = self._serving_policy()
        analysis = analyze(x, hint=hint)
        analyzed = time.perf_counter_ns() if stages is not None else 0
        candidates = self.models.catalog.for_modality(analysis.modality)
        row = self._user_features.row(policy.feature_names, analysis, x, features, self._live_columns)
        if getattr(policy, "reads_text", False):  # text policies (Linear) read the prompt itself
            choice = policy.select_text(x, row, candidates)
        else:
            choice = policy.select(row, candidates)
        if under_load is not None and isinstance(policy, LoadAware):
            choice = self._choose_under_load(policy, *under_load, choice, candidates)
        if stages is not None:
            stages.record(started, analyzed, time.perf_counter_ns())
        return row, choice

    def _plain_policy(self) -> Policy:
        """The policy as the native path takes it (unpinned: a policy reading user features,
        the only kind pinned, is never decided there)."""
        if self._closed:
            raise RouterClosed("the router is closed")
        return self._policy

    def _serving_policy(self) -> Policy:
        """The policy one request uses from start to end, whatever is swapped or refitted meanwhile."""
        if self._closed:
            raise RouterClosed("the router is closed")
        policy = self._policy  # read once: a concurrent swap never splits a request
        return policy.pinned() if len(policy.feature_names) > len(FEATURE_NAMES) else policy

    def _live_columns(self, columns: Sequence[str]) -> dict[str, float]:
        """The live-state columns (``load_<feature>__<model>``, see LOAD_FEATURES) among ``columns``."""
        return live_columns(columns, self._live_state)

    def _live_state(self, model: str) -> dict[str, float]:
        """``model``'s live load on the executor and its breaker state."""
        spec = self.models.get(model) if model in self.models else None
        executor = self._executor
        live = executor.load_features(spec) if executor is not None and spec is not None else {}
        open_now = spec is not None and self.resilience is not None and not self.resilience.available(spec)
        return {**live, "breaker_open": float(open_now)}
