"""The model library: every model version the router may send a request to.

A model is identified by ``(name, version)``. Each name also has aliases
(``stable``, ``canary``, ``latest``...) that point at versions and move
atomically, and optionally one experiment (a :class:`~fastroute.library.experiments.Split`
or :class:`~fastroute.library.experiments.Canary`) and one
:class:`~fastroute.library.experiments.Shadow`.

Every request holds a :class:`Lease` on the exact :class:`ModelSpec` it runs
on, from the routing decision until its result is delivered. Unregistering a
version hides it from new requests at once and then waits until its leases
are released, so no request is lost or served by a half-registered model;
:meth:`Registry.swap` loads and warms the new version before moving the alias
and retires the old one only after it drains (load before unload).
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from ..analyzer import MODALITIES
from ..errors import NoRoute, RegistrationError
from .bandit_split import BanditSplit
from .catalog import Catalog, Resolved
from .experiments import Canary, Experiment, Shadow
from .leases import InFlight, Lease
from .spec import ModelSpec, validate_spec, warm_up

Hook = Callable[[ModelSpec], None]

__all__ = ["DEFAULT_ALIAS", "Lease", "ModelPlan", "ModelSpec", "Registry"]

#: The alias a bare model name resolves to when no experiment is set.
DEFAULT_ALIAS = "stable"


@dataclass
class ModelPlan:
    """The complete desired routing state of one model name (see :meth:`Registry.apply`)."""

    versions: dict[str, ModelSpec]
    aliases: dict[str, str] = field(default_factory=dict)
    experiment: Experiment | None = None
    shadow: Shadow | None = None


@dataclass
class _Entry:
    """Everything registered under one model name."""

    versions: dict[str, ModelSpec] = field(default_factory=dict)  # active, registration order
    aliases: dict[str, str] = field(default_factory=dict)
    experiment: Experiment | None = None
    shadow: Shadow | None = None

    def references(self, version: str) -> list[str]:
        """What still routes to ``version``: aliases, the experiment, the shadow."""
        found = [f"alias {alias!r}" for alias, target in self.aliases.items() if target == version]
        if self.experiment is not None and version in self.experiment.versions():
            found.append("the experiment")
        if self.shadow is not None and self.shadow.version == version:
            found.append("the shadow")
        return found


class Registry:
    """Registered models by name and version, with aliases and experiments. Thread-safe.

    A bare name resolves, for a request, through its experiment when one is
    set; otherwise (and for :meth:`get`) through the ``stable`` alias when
    set, else to the most recently registered version.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._entries: dict[str, _Entry] = {}  # guarded by _lock
        # id(spec) -> its lock-free count of held leases (see leases.py); the dict is guarded by _lock.
        self._in_flight: dict[int, InFlight] = {}
        self._retire_hooks: list[Hook | weakref.WeakMethod] = []  # guarded by _lock
        # Hidden specs whose retirement timed out: hooked when their last lease ends.
        self._retiring: dict[int, ModelSpec] = {}  # id(spec) -> spec; guarded by _lock
        # Serialises swap(): each one checks, registers, moves the alias and retires as a unit.
        self._swapping = threading.Lock()
        # Replaced (never mutated) under _lock whenever names or default versions change; read without it.
        self._catalog = Catalog((), MODALITIES)

    # -- registration -------------------------------------------------------------

    def register(self, spec: ModelSpec, *, warmup: Any = None, aliases: Iterable[str] = ()) -> ModelSpec:
        """Add ``spec``; with ``warmup`` (a sample input) run it once before it takes traffic.

        ``aliases`` are pointed at the new version in the same atomic step
        that makes it visible. A failing warm-up registers nothing.
        """
        validate_spec(spec)
        aliases = list(aliases)
        with self._lock:
            self._check_new_version(spec, aliases)
        if warmup is not None:
            warm_up(spec, warmup)
        with self._lock:
            self._check_new_version(spec, aliases)
            entry = self._entries.setdefault(spec.name, _Entry())
            entry.versions[spec.version] = spec
            entry.aliases.update(dict.fromkeys(aliases, spec.version))
            self._publish()
        return spec

    def unregister(self, name: str, version: str, *, timeout: float | None = None) -> ModelSpec:
        """Stop routing to ``name``/``version`` now; return once its in-flight requests end.

        Refused while an alias, experiment or shadow still points at the
        version. Raises RegistrationError if requests are still in flight
        after ``timeout`` seconds (the version stays hidden and is retired,
        retire hooks included, when they finish).
        """
        with self._lock:
            entry = self._entry(name)
            spec = self._version(entry, name, version)
            references = entry.references(version)
            if references:
                raise RegistrationError(
                    f"cannot unregister model {name!r} version {version!r}: "
                    f"{', '.join(references)} still route to it"
                )
            del entry.versions[version]
            if not entry.versions:
                del self._entries[name]
            self._publish()
        self._wait_drained([spec], timeout)
        return spec

    def swap(
        self, spec: ModelSpec, *, alias: str = DEFAULT_ALIAS, warmup: Any = None, timeout: float | None = None
    ) -> ModelSpec | None:
        """Hot swap: load and warm ``spec``, move ``alias`` to it, retire what it replaces.

        The replaced version is the one ``alias`` pointed at (for the default
        alias with none set: the version the name resolved to). It is retired
        only after its in-flight requests finish; it is returned (None when
        nothing was replaced). Concurrent swaps run one after the other.
        """
        with self._swapping:
            with self._lock:
                entry = self._entries.get(spec.name)
                old = self._swap_target(entry, alias)
                if old is not None:
                    others = [ref for ref in entry.references(old) if ref != f"alias {alias!r}"]
                    if others:
                        raise RegistrationError(
                            f"cannot swap out model {spec.name!r} version {old!r}: "
                            f"{', '.join(others)} still route to it"
                        )
            self.register(spec, warmup=warmup)
            self.set_alias(spec.name, alias, spec.version)
            if old is None or old == spec.version:
                return None
            return self.unregister(spec.name, old, timeout=timeout)

    def apply(self, plans: Mapping[str, ModelPlan], *, remove: Iterable[str] = (), timeout: float | None = None) -> None:
        """Atomically make each planned name's state exactly its plan; drop ``remove`` names.

        Specs absent from the new state are retired after their in-flight
        requests finish; replaced shadows are closed. Either every plan is
        valid and all of them take effect in one step, or none does.
        """
        remove = set(remove)
        for name, plan in plans.items():
            _check_plan(name, plan)
        with self._lock:
            old_entries = {name: self._entries[name] for name in set(plans) | remove if name in self._entries}
            for name in remove:
                self._entries.pop(name, None)
            for name, plan in plans.items():
                self._entries[name] = _Entry(dict(plan.versions), dict(plan.aliases), plan.experiment, plan.shadow)
            kept = {id(spec) for entry in self._entries.values() for spec in entry.versions.values()}
            live_shadows = {id(entry.shadow) for entry in self._entries.values()}
            self._publish()
        retired = [spec for entry in old_entries.values() for spec in entry.versions.values() if id(spec) not in kept]
        for entry in old_entries.values():
            if entry.shadow is not None and id(entry.shadow) not in live_shadows:
                entry.shadow.close(timeout=0)  # signal only: a hung shadow must not hold up the swap
        self._wait_drained(retired, timeout)

    def add_retire_hook(self, hook: Hook) -> None:
        """Call ``hook(spec)`` after each retired spec has drained (e.g. to free its executor queues).

        Called for every retired spec object, also one whose name and version a
        new spec took over (specs are told apart by identity). Called by the
        retiring call, or, when that timed out, on a thread of its own once
        the spec's last request ends. A bound method is held weakly: the
        registry never keeps a subscriber (an executor and its workers) alive.
        """
        with self._lock:
            self._retire_hooks.append(_held(hook))

    def remove_retire_hook(self, hook: Hook) -> None:
        """Stop calling ``hook`` (one added by :meth:`add_retire_hook`; an unknown one is ignored)."""
        with self._lock:
            held = _held(hook)
            if held in self._retire_hooks:
                self._retire_hooks.remove(held)

    # -- aliases, experiments, shadows ---------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``name`` at ``version``, atomically."""
        self.move_aliases(name, {alias: version})

    def move_aliases(self, name: str, targets: Mapping[str, str]) -> None:
        """Point several aliases of ``name`` at versions in one atomic step."""
        with self._lock:
            entry = self._entry(name)
            for alias, version in targets.items():
                _check_alias(name, alias, entry.versions)
                self._version(entry, name, version)
            entry.aliases.update(targets)
            self._publish()

    def remove_alias(self, name: str, alias: str) -> None:
        """Drop ``name``'s ``alias`` (NoRoute naming the aliases when it has none such)."""
        with self._lock:
            entry = self._entry(name)
            if entry.aliases.pop(alias, None) is None:
                raise NoRoute(f"model {name!r} has no alias {alias!r}; aliases: {sorted(entry.aliases)}")
            self._publish()

    def aliases(self, name: str) -> dict[str, str]:
        """A copy of ``name``'s aliases (alias -> version)."""
        with self._lock:
            return dict(self._entry(name).aliases)

    def set_experiment(self, name: str, experiment: Experiment | None) -> None:
        """Let ``experiment`` choose the version of each request for ``name`` (None removes it)."""
        with self._lock:
            entry = self._entry(name)
            if experiment is not None:
                for version in experiment.versions():
                    self._version(entry, name, version)
            entry.experiment = experiment
            self._publish()

    def conclude_canary(self, name: str, *, retire: bool = True, timeout: float | None = None) -> str:
        """End ``name``'s finished canary (or BanditSplit) in one atomic step and return the winning version.

        Promoted: the ``stable`` alias moves to the winner. Rolled back:
        stable stays. Either way the experiment is removed; with ``retire``
        the losing versions are then unregistered once their requests drain
        (unless an alias or shadow still routes to them).
        """
        with self._lock:
            entry = self._entry(name)
            experiment = entry.experiment
            if not isinstance(experiment, (Canary, BanditSplit)) or experiment.state == "running":
                state = experiment.state if isinstance(experiment, (Canary, BanditSplit)) else "no canary"
                raise RegistrationError(f"model {name!r}: no finished canary to conclude ({state})")
            if isinstance(experiment, Canary):
                promoted = experiment.state == "promoted"
                winner = experiment.candidate if promoted else experiment.stable
            else:
                winner = experiment.winner or experiment.stable
            entry.aliases[DEFAULT_ALIAS] = winner
            entry.experiment = None
            self._publish()
            losers = [v for v in sorted(experiment.versions()) if v != winner and not entry.references(v)]
        if retire:
            for loser in losers:
                self.unregister(name, loser, timeout=timeout)
        return winner

    def experiment(self, name: str) -> Experiment | None:
        """The experiment deciding ``name``'s version per request, or None."""
        with self._lock:
            return self._entry(name).experiment

    def set_shadow(self, name: str, shadow: Shadow | None) -> None:
        """Mirror a share of ``name``'s requests to ``shadow.version`` (None removes it)."""
        with self._lock:
            entry = self._entry(name)
            if shadow is not None:
                self._version(entry, name, shadow.version)
            entry.shadow = shadow
            self._publish()

    def shadow(self, name: str) -> Shadow | None:
        """The shadow mirroring ``name``'s requests, or None."""
        with self._lock:
            return self._entry(name).shadow

    def close(self) -> None:
        """Stop every shadow's workers (call when the router closes); routing is unaffected."""
        with self._lock:
            shadows = [entry.shadow for entry in self._entries.values() if entry.shadow is not None]
        for shadow in shadows:
            shadow.close()

    # -- lookup -------------------------------------------------------------------

    def lease(self, name: str, version: str | None = None, *, key: Any = None) -> Lease:
        """Choose the version serving one request and hold it until the lease is released.

        ``version`` may be a version or an alias; without it the experiment
        (sticky by ``key`` when given), the ``stable`` alias or the latest
        version decides.
        """
        with self._lock:
            entry = self._entry(name)
            spec, reason, experiment = self._choose_version(entry, name, version, key)
            in_flight = self._in_flight_of(spec)
            in_flight.hold()
            shadow = entry.shadow
        return Lease(in_flight, reason, experiment, shadow)

    def settle(self, lease: Lease, x: Any, done: Any) -> None:
        """End the lease of request ``x`` with the outcome of ``done``, its finished
        ResultHandle or Future (None: it was never queued); a result is offered to the
        model's shadow too (see :meth:`mirror`)."""
        if done is None or done.cancelled():
            lease.discard()
        elif done.exception() is not None:
            lease.release(done.exception())
        else:
            lease.release()
            self.mirror(lease, x, done.result())

    def mirror(self, lease: Lease, x: Any, result: Any) -> None:
        """Offer request ``x``, which ``lease``'s version served with ``result``, to the
        model's shadow, if it has one (never raises for it)."""
        shadow = lease.shadow
        if shadow is None:
            return
        name = lease.spec.name

        def run_shadow(sample: Any) -> Any:
            with self.lease(name, shadow.version) as shadow_lease:
                return shadow_lease.spec.run_one(sample)

        shadow.offer(x, result, lease.spec.version, run_shadow)

    def resolve(self, name: str, version: str | None = None, *, key: Any = None) -> tuple[ModelSpec, str]:
        """The version :meth:`lease` would choose and why, without holding it (a decision only)."""
        with self._lock:
            spec, reason, _ = self._choose_version(self._entry(name), name, version, key)
            return spec, reason

    def get(self, name: str, version: str | None = None) -> ModelSpec:
        """The spec of ``name`` at ``version`` or alias (default: ``stable``, else latest)."""
        with self._lock:
            entry = self._entry(name)
            return self._pinned(entry, name, version)[0] if version is not None else _default_spec(entry)

    def names(self) -> list[str]:
        """Every registered model name, in registration order."""
        with self._lock:
            return list(self._entries)

    def versions(self, name: str) -> list[str]:
        """Active versions of ``name`` in registration order."""
        with self._lock:
            return list(self._entry(name).versions)

    def list(
        self,
        name: str | None = None,
        *,
        modality: str | None = None,
        device: str | None = None,
        tag: str | None = None,
    ) -> list[ModelSpec]:
        """Every active version, in registration order per name, optionally filtered."""
        with self._lock:
            specs = [spec for entry in self._entries.values() for spec in entry.versions.values()]
        return [
            spec
            for spec in specs
            if (name is None or spec.name == name)
            and (modality is None or spec.modality == modality)
            and (device is None or spec.device == device)
            and (tag is None or tag in spec.tags)
        ]

    @property
    def catalog(self) -> Catalog:
        """The model names a request can be routed to now, by modality: an immutable
        snapshot, read without a lock (see :mod:`fastroute.library.catalog`)."""
        return self._catalog

    def for_modality(self, modality: str) -> list[str]:
        """Names whose default version serves ``modality``, in registration order."""
        return list(self._catalog.for_modality(modality).names)

    def in_flight(self, spec: ModelSpec) -> int:
        """How many requests currently hold a lease on ``spec``."""
        with self._lock:
            return self._count(spec)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- internals (callers hold _lock unless noted) --------------------------------

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise NoRoute(f"no model named {name!r}; registered: {sorted(self._entries)}")
        return entry

    @staticmethod
    def _version(entry: _Entry, name: str, version: str) -> ModelSpec:
        try:
            return entry.versions[version]
        except KeyError:
            raise NoRoute(f"model {name!r} has no version {version!r}; versions: {list(entry.versions)}") from None

    def _pinned(self, entry: _Entry, name: str, ref: str) -> tuple[ModelSpec, str]:
        if ref in entry.aliases:
            version = entry.aliases[ref]
            return entry.versions[version], f"alias {ref!r} -> version {version!r}"
        return self._version(entry, name, ref), f"version {ref!r} requested"

    def _choose_version(
        self, entry: _Entry, name: str, version: str | None, key: Any
    ) -> tuple[ModelSpec, str, Experiment | None]:
        """Pinned version or alias, else the experiment, else the default; and why."""
        if version is not None:
            return (*self._pinned(entry, name, version), None)
        if entry.experiment is not None:
            assignment = entry.experiment.choose(key)
            spec = self._version(entry, name, assignment.version)
            return spec, assignment.reason, entry.experiment
        return (*self._default(entry), None)

    @staticmethod
    def _default(entry: _Entry) -> tuple[ModelSpec, str]:
        spec = _default_spec(entry)
        if DEFAULT_ALIAS in entry.aliases:
            return spec, f"alias {DEFAULT_ALIAS!r} -> version {spec.version!r}"
        return spec, f"latest version {spec.version!r}"

    def _publish(self) -> None:
        """Replace the catalog after names, default versions, experiments or shadows changed."""
        resolved = {}
        for name, entry in self._entries.items():
            if entry.experiment is None:
                spec, reason = self._default(entry)
                resolved[name] = Resolved(spec, reason, self._in_flight_of(spec), entry.shadow is not None)
        defaults = (_default_spec(entry) for entry in self._entries.values())
        self._catalog = Catalog(defaults, MODALITIES, resolved)

    def _in_flight_of(self, spec: ModelSpec) -> InFlight:
        """``spec``'s lease count, created on first use."""
        in_flight = self._in_flight.get(id(spec))
        if in_flight is None:
            in_flight = self._in_flight[id(spec)] = InFlight(spec, self._drained_one)
        return in_flight

    def _is_active(self, spec: ModelSpec) -> bool:
        """Whether this very spec (not merely its name and version) is registered."""
        entry = self._entries.get(spec.name)
        return entry is not None and entry.versions.get(spec.version) is spec

    def _swap_target(self, entry: _Entry | None, alias: str) -> str | None:
        if entry is None:
            return None
        if alias in entry.aliases:
            return entry.aliases[alias]
        return _default_spec(entry).version if alias == DEFAULT_ALIAS else None

    def _check_new_version(self, spec: ModelSpec, aliases: list[str]) -> None:
        entry = self._entries.get(spec.name, _Entry())
        if spec.version in entry.versions:
            raise RegistrationError(f"model {spec.name!r} version {spec.version!r} is already registered")
        if spec.version in entry.aliases:
            raise RegistrationError(f"model {spec.name!r}: version {spec.version!r} is already an alias")
        for alias in aliases:
            _check_alias(spec.name, alias, {**entry.versions, spec.version: spec})

    def _count(self, spec: ModelSpec) -> int:
        in_flight = self._in_flight.get(id(spec))
        return 0 if in_flight is None else in_flight.count

    def _forget(self, spec: ModelSpec) -> None:
        """Drop the count of a retired spec nothing holds (so the spec can be freed)."""
        if not self._is_active(spec) and self._count(spec) == 0:
            self._in_flight.pop(id(spec), None)

    def _drained_one(self, in_flight: InFlight) -> None:
        """InFlight callback (without _lock): the last lease on a retiring spec ended.

        Wakes _wait_drained; a spec whose retirement timed out is hooked now,
        on a thread of its own: the last lease may end inside an executor
        worker (a future's done callback), where a hook waiting for that
        executor's queue to drain would wait for itself.
        """
        spec = in_flight.spec
        with self._lock:
            self._drained.notify_all()
            retiring = self._retiring.pop(id(spec), None) if in_flight.count == 0 else None
            if retiring is None or self._is_active(retiring):
                return
            self._forget(retiring)
            hooks = list(self._retire_hooks)
        threading.Thread(target=_call_hooks, args=(hooks, [retiring]), name="fastroute-retire", daemon=True).start()

    def _wait_drained(self, specs: list[ModelSpec], timeout: float | None) -> None:
        """Block (without holding _lock on entry) until no lease holds any of ``specs``
        (hidden already), then call the retire hooks of those no longer registered. On
        timeout the ones still held are hooked when their last lease ends (see _drained_one)."""
        with self._lock:
            for spec in specs:  # from now on, a last lease ending on one of them wakes this wait
                in_flight = self._in_flight.get(id(spec))
                if in_flight is not None:
                    in_flight.mark_retiring()
            self._drained.wait_for(lambda: not any(self._count(spec) for spec in specs), timeout)
            held = {id(spec): spec for spec in specs if self._count(spec)}  # counts drop without _lock
            drained = not held
            busy = {f"{spec.name}/{spec.version}": self._count(spec) for spec in held.values()}
            hooks = list(self._retire_hooks)
            gone = [spec for spec in specs if not self._is_active(spec)]
            self._retiring.update((id(spec), spec) for spec in gone if id(spec) in held)
            drained_now = [spec for spec in gone if id(spec) not in held]
            for spec in drained_now:
                self._forget(spec)
        _call_hooks(hooks, drained_now)
        if not drained:
            raise RegistrationError(
                f"retired models still have requests in flight after {timeout}s: {busy}; "
                "they take no new requests and are retired when these finish"
            )


def _held(hook: Hook) -> Hook | weakref.WeakMethod:
    """How the registry holds a retire hook: a bound method weakly (equal to another
    WeakMethod of the same method while its object lives), anything else as it is."""
    return weakref.WeakMethod(hook) if inspect.ismethod(hook) else hook


def _call_hooks(hooks: list[Hook | weakref.WeakMethod], specs: list[ModelSpec]) -> None:
    live = [held() if isinstance(held, weakref.WeakMethod) else held for held in hooks]
    for spec in specs:
        for hook in live:
            if hook is not None:  # a method whose object is gone
                hook(spec)


def _check_alias(name: str, alias: str, versions: Mapping[str, ModelSpec]) -> None:
    if not isinstance(alias, str) or not alias:
        raise RegistrationError(f"model {name!r}: alias must be a non-empty str, got {alias!r}")
    if alias in versions:
        raise RegistrationError(f"model {name!r}: alias {alias!r} is also a version name")


def _check_plan(name: str, plan: ModelPlan) -> None:
    if not plan.versions:
        raise RegistrationError(f"model {name!r}: a plan needs at least one version")
    for version, spec in plan.versions.items():
        validate_spec(spec)
        if spec.key != (name, version):
            raise RegistrationError(f"model {name!r}: plan lists {spec.name!r}/{spec.version!r} as {version!r}")
    entry = _Entry(plan.versions, plan.aliases, plan.experiment, plan.shadow)
    for alias, version in plan.aliases.items():
        _check_alias(name, alias, plan.versions)
        Registry._version(entry, name, version)
    for version in plan.experiment.versions() if plan.experiment is not None else ():
        Registry._version(entry, name, version)
    if plan.shadow is not None:
        Registry._version(entry, name, plan.shadow.version)


def _default_spec(entry: _Entry) -> ModelSpec:
    """The version a bare name serves without an experiment: ``stable``, else the latest."""
    version = entry.aliases.get(DEFAULT_ALIAS)
    return entry.versions[version] if version is not None else next(reversed(entry.versions.values()))
