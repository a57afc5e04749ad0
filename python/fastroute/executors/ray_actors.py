"""RayExecutor: models with ``device="ray"`` run as Ray actors, batched in the router.

The router keeps the C++ queue and batcher of :class:`CPUExecutor`: a model
registered with ``device="ray"`` and ``replicas=N`` gets N queues (lanes) and N
actors; the batcher gathers a micro-batch in the router's process and one
worker thread sends it, whole, in one actor call (amortising Ray's per-call
cost over the batch), waiting for it with the GIL released. Every other
model runs in process exactly as on a :class:`CPUExecutor`.

- Models are built inside each actor: a :class:`~fastroute.executors.remote.RemoteModel`
  (what a config file's ``device: ray`` version becomes) from its import path,
  any other model object shipped by Ray's pickling.
- Actor choice: power of two choices on the in-flight calls counted here.
- An actor that dies fails only the batch it held: the batch is retried once
  on a replacement (``retry_dead``) or failed with :class:`~fastroute.ModelError`;
  either way each request gets exactly one result or one error, and the dead
  actor is replaced.
- Bounded waits: connecting to a cluster (``connect_timeout_s``), an actor
  becoming ready (``start_timeout_s``: a model that cannot be built, or an
  actor that cannot be placed, is a :class:`~fastroute.RegistrationError`),
  one batch call (``call_timeout_s``: the batch fails, the actor is replaced).

``threads`` bounds the batches in flight at once, across every model: give at
least the total number of actors. Ray itself comes with the ``ray`` extra and
is imported on construction only.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError, ModelError, RegistrationError
from ..library.spec import ModelSpec
from .config import ExecutorConfig
from .offload import OffloadingExecutor
from .remote import RAY_DEVICE, build_model

__all__ = ["RAY_DEVICE", "ActorStats", "RayExecutor", "RaySettings"]


@dataclass(frozen=True)
class RaySettings:
    """A :class:`RayExecutor`'s own settings (beyond the queue settings of
    :class:`~fastroute.executors.ExecutorConfig`), validated once: the one definition of their
    defaults and bounds. RayExecutor's keyword arguments default to these, and a config file's
    ``executor.ray`` section is this class (its keys, defaults and bounds).

    - ``address``: a Ray cluster (``"host:port"``, ``"ray://host:port"`` or ``"auto"``);
      None starts (or reuses) a local instance.
    - ``connect_timeout_s``: longest wait for the cluster at ``address`` to answer.
    - ``start_timeout_s``: longest wait for a model's actors to be ready.
    - ``call_timeout_s``: longest wait for one batch call (None: no limit).
    - ``actor_options``: passed to ``ray.remote`` (``num_cpus``, ``num_gpus``, ``resources``...).
    - ``retry_dead``: retry a dead actor's batch once on its replacement.

    Timeouts are finite numbers of seconds > 0; anything else is a :class:`~fastroute.ConfigError`.
    """

    address: str | None = None
    connect_timeout_s: float = 10.0
    start_timeout_s: float = 60.0
    call_timeout_s: float | None = 300.0
    actor_options: Mapping[str, Any] | None = None
    retry_dead: bool = True

    def __post_init__(self) -> None:
        if self.address is not None and not (isinstance(self.address, str) and self.address):
            raise ConfigError(f"RaySettings.address must be a non-empty string or None, got {self.address!r}")
        for name in ("connect_timeout_s", "start_timeout_s", "call_timeout_s"):
            value = getattr(self, name)
            if name == "call_timeout_s" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"RaySettings.{name} must be a finite number of seconds > 0, got {value!r}")
        if self.actor_options is not None:
            if not isinstance(self.actor_options, Mapping):
                raise ConfigError(f"RaySettings.actor_options must be a mapping or None, got {self.actor_options!r}")
            object.__setattr__(self, "actor_options", dict(self.actor_options))  # the caller's dict may change later
        if not isinstance(self.retry_dead, bool):
            raise ConfigError(f"RaySettings.retry_dead must be a bool, got {self.retry_dead!r}")


@dataclass(frozen=True)
class ActorStats:
    """One actor's state as seen from the router: in-flight batch calls, calls
    answered, and how many actors died in this replica slot (each replaced)."""

    actor_id: str
    in_flight: int
    calls: int
    replaced: int


class _ModelActor:
    """The Ray actor body: builds its model once, runs whole batches through ModelSpec.run_batch."""

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = replace(spec, model=build_model(spec.model))

    def ready(self) -> bool:
        return True

    def run(self, batch: Any) -> list[Any]:
        return self._spec.run_batch(list(batch))


class _ActorPool:
    """The actors of one model: P2C choice on local in-flight counts, replacement on death.

    Called by the dispatcher's workers with one stacked batch (thread-safe).
    """

    def __init__(self, ray: Any, spec: ModelSpec, options: dict, timeouts: tuple[float, float | None],
                 retry_dead: bool, rng: random.Random) -> None:
        self._ray, self._spec, self._rng, self._retry_dead = ray, spec, rng, retry_dead
        self._start_timeout_s, self._call_timeout_s = timeouts
        self._actor_class = ray.remote(**options)(_ModelActor) if options else ray.remote(_ModelActor)
        self._lock = threading.Lock()
        self._actors = [self._new_actor() for _ in range(spec.replicas)]  # guarded by _lock
        self._in_flight = [0] * spec.replicas  # guarded by _lock
        self._calls = [0] * spec.replicas  # guarded by _lock
        self._replaced = [0] * spec.replicas  # guarded by _lock
        self._wait_ready()

    def __call__(self, batch: Any) -> list[Any]:
        attempts_left = 2 if self._retry_dead else 1
        while True:
            attempts_left -= 1
            slot, actor = self._acquire()
            try:
                return self._call(slot, actor, batch)
            except self._ray.exceptions.RayActorError as death:
                self._replace(slot, actor)
                if not attempts_left:
                    when = "during the batch and again on its retry: " if self._retry_dead else "during the batch: "
                    raise ModelError.caused_by(self._spec.name, death, "its Ray actor died " + when)
            finally:
                self._release(slot)

    def _call(self, slot: int, actor: Any, batch: Any) -> list[Any]:
        ray = self._ray
        reference = actor.run.remote(batch)
        try:
            outputs = ray.get(reference, timeout=self._call_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self._replace(slot, actor)  # it may be stuck in the model: its batch is failed, not retried
            raise ModelError(self._spec.name, f"its Ray actor did not answer within {self._call_timeout_s}s")
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None) or error  # the model's own exception, when Ray kept it
            raise cause if isinstance(cause, ModelError) else ModelError.caused_by(self._spec.name, cause)
        with self._lock:
            self._calls[slot] += 1
        return outputs

    def _acquire(self) -> tuple[int, Any]:
        with self._lock:
            slots = len(self._actors)
            if slots == 1:
                slot = 0
            else:
                first, second = self._rng.sample(range(slots), 2)
                slot = first if self._in_flight[first] <= self._in_flight[second] else second
            self._in_flight[slot] += 1
            return slot, self._actors[slot]

    def _release(self, slot: int) -> None:
        with self._lock:
            self._in_flight[slot] -= 1

    def _replace(self, slot: int, dead: Any) -> None:
        """A new actor in ``slot`` unless another thread already replaced ``dead``."""
        with self._lock:
            if self._actors[slot] is not dead:
                return
            self._actors[slot] = self._new_actor()
            self._replaced[slot] += 1
        self._ray.kill(dead, no_restart=True)

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._spec)

    def _wait_ready(self) -> None:
        ray = self._ray
        with self._lock:
            actors = list(self._actors)
        pending = [actor.ready.remote() for actor in actors]
        try:
            ray.get(pending, timeout=self._start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RegistrationError(
                f"model {self._spec.name!r} version {self._spec.version!r}: its {len(actors)} Ray actor(s) were "
                f"not ready within {self._start_timeout_s}s (not enough cluster resources for the actor options?)"
            ) from None
        except ray.exceptions.RayError as error:
            self.close()
            raise RegistrationError(
                f"model {self._spec.name!r} version {self._spec.version!r}: its Ray actor could not be created: "
                f"{_root_cause(error)}"
            ) from error

    def stats(self) -> list[ActorStats]:
        with self._lock:
            return [
                ActorStats(actor._actor_id.hex(), self._in_flight[slot], self._calls[slot], self._replaced[slot])
                for slot, actor in enumerate(self._actors)
            ]

    def close(self) -> None:
        with self._lock:
            actors = list(self._actors)
        for actor in actors:
            self._ray.kill(actor, no_restart=True)


def _root_cause(error: BaseException) -> str:
    """The innermost error's ``Type: message`` (a failed actor constructor is wrapped twice)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"


class RayExecutor(OffloadingExecutor):
    """A :class:`CPUExecutor` that runs ``device="ray"`` models on Ray actors (see the module doc).

    >>> executor = RayExecutor(threads=8, max_batch=32)     # ray.init() here unless already connected
    >>> future = executor.submit(ModelSpec("m", "1", model, "tabular", device="ray", replicas=2), x)

    ``address``, the timeouts, ``actor_options`` and ``retry_dead``: see
    :class:`RaySettings` (their defaults and bounds; checked before Ray is touched).
    :meth:`start` creates a model's actors ahead of its first request. Closing the
    executor kills its actors and leaves Ray itself running.
    """

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        address: str | None = RaySettings.address,
        connect_timeout_s: float = RaySettings.connect_timeout_s,
        start_timeout_s: float = RaySettings.start_timeout_s,
        call_timeout_s: float | None = RaySettings.call_timeout_s,
        actor_options: Mapping[str, Any] | None = RaySettings.actor_options,
        retry_dead: bool = RaySettings.retry_dead,
        rng: random.Random | None = None,
        **settings: int,
    ) -> None:
        ray_settings = RaySettings(
            address=address, connect_timeout_s=connect_timeout_s, start_timeout_s=start_timeout_s,
            call_timeout_s=call_timeout_s, actor_options=actor_options, retry_dead=retry_dead,
        )
        self._ray = _connect(address, connect_timeout_s)
        super().__init__(config, rng=rng, **settings)
        self._ray_settings = ray_settings

    def actor_stats(self, spec: ModelSpec) -> list[ActorStats]:
        """Each of ``spec``'s actors: id, in-flight calls, calls answered, replacements (empty if none)."""
        return self.runner_stats(spec) or []

    def backend_stats(self, spec: ModelSpec) -> dict[str, Any] | None:
        """``{"actors": actor_stats(spec)}`` for a model on Ray, else None."""
        return {"actors": self.actor_stats(spec)} if self._offloads(spec) else None

    def _offloads(self, spec: ModelSpec) -> bool:
        return spec.device == RAY_DEVICE

    def _make_runner(self, spec: ModelSpec) -> _ActorPool:
        ray_settings = self._ray_settings
        timeouts = (ray_settings.start_timeout_s, ray_settings.call_timeout_s)
        options = ray_settings.actor_options or {}
        return _ActorPool(self._ray, spec, options, timeouts, ray_settings.retry_dead, self._rng)


def _connect(address: str | None, timeout_s: float) -> Any:
    """The ``ray`` module, connected: to ``address`` after checking that it answers within
    ``timeout_s``, or to a local instance. ConfigError when Ray is missing or the cluster is silent."""
    try:
        import ray
    except ImportError:
        raise ConfigError("RayExecutor needs Ray: pip install 'fastroute[ray]'") from None
    if address not in (None, "auto"):
        _check_answers(address, timeout_s)
    if ray.is_initialized():
        return ray
    if address is None:
        ray.init(include_dashboard=False, log_to_driver=False)
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # noqa: BLE001 - Ray's errors are varied; each becomes one clear ConfigError
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {error!r}") from error
    return ray


def _check_answers(address: str, timeout_s: float) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address must be 'host:port', 'ray://host:port' or 'auto', got {address!r}")
    started = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        waited = time.monotonic() - started
        raise ConfigError(
            f"the Ray cluster at {address!r} does not answer ({error.__class__.__name__}: {error}, after {waited:.1f}s); "
            "check the address and that `ray start --head` runs there"
        ) from None
