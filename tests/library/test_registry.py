"""The model library: versions, metadata, aliases, leases, unregistering, hot swap."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest
from helpers import ClientLoad, Versioned, route_everything_as

from fastroute import NoRoute, RegistrationError, Router, _core
from fastroute.library.experiments import Shadow, Split
from fastroute.library import ModelPlan, ModelSpec, Registry


def spec(version: str, name: str = "m", **metadata) -> ModelSpec:
    return ModelSpec(name, version, lambda x: (version, x), metadata.pop("modality", "tabular"), **metadata)


@pytest.fixture
def registry() -> Registry:
    return Registry()


def test_lookup_defaults_to_stable_alias_then_latest(registry: Registry) -> None:
    registry.register(spec("1"))
    registry.register(spec("2"))
    assert registry.get("m").version == "2"
    registry.set_alias("m", "stable", "1")
    assert registry.get("m").version == "1"
    assert registry.get("m", "2").version == "2"
    assert registry.get("m", "stable").version == "1"
    with pytest.raises(NoRoute, match=r"'m' has no version '3'; versions: \['1', '2'\]"):
        registry.get("m", "3")
    with pytest.raises(NoRoute, match=r"no model named 'x'; registered: \['m'\]"):
        registry.get("x")


def test_listing_filters_on_metadata(registry: Registry) -> None:
    registry.register(spec("1", device="cuda:0", tags=frozenset({"fast"}), cost=2.0, replicas=2, batched=True))
    registry.register(spec("2"))
    registry.register(spec("1", name="img", modality="image"))
    assert [s.key for s in registry.list()] == [("m", "1"), ("m", "2"), ("img", "1")]
    assert [s.key for s in registry.list(device="cuda:0")] == [("m", "1")]
    assert [s.key for s in registry.list(tag="fast")] == [("m", "1")]
    assert [s.key for s in registry.list(modality="image")] == [("img", "1")]
    assert [s.key for s in registry.list("m")] == [("m", "1"), ("m", "2")]
    assert registry.versions("m") == ["1", "2"]
    assert registry.for_modality("image") == ["img"]
    first = registry.get("m", "1")
    assert (first.cost, first.replicas, first.batched) == (2.0, 2, True)


def test_aliases_move_together_and_cannot_shadow_versions(registry: Registry) -> None:
    registry.register(spec("1"), aliases=["stable"])
    registry.register(spec("2"), aliases=["canary"])
    registry.move_aliases("m", {"stable": "2", "canary": "1"})
    assert registry.aliases("m") == {"stable": "2", "canary": "1"}
    with pytest.raises(NoRoute, match="no version '9'"):
        registry.move_aliases("m", {"stable": "1", "canary": "9"})
    assert registry.aliases("m") == {"stable": "2", "canary": "1"}, "a failed move changes nothing"
    with pytest.raises(RegistrationError, match="alias '1' is also a version name"):
        registry.set_alias("m", "1", "2")
    with pytest.raises(RegistrationError, match="version 'stable' is already an alias"):
        registry.register(spec("stable"))
    registry.remove_alias("m", "canary")
    with pytest.raises(NoRoute, match="no alias 'canary'"):
        registry.remove_alias("m", "canary")


def test_alias_moves_are_atomic_for_concurrent_readers(registry: Registry) -> None:
    registry.register(spec("1"), aliases=["stable"])
    registry.register(spec("2"), aliases=["canary"])
    stop = threading.Event()
    torn: list[dict[str, str]] = []

    def read() -> None:
        while not stop.is_set():
            seen = registry.aliases("m")
            if seen["stable"] == seen["canary"]:
                torn.append(seen)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for i in range(2000):
        registry.move_aliases("m", {"stable": "2", "canary": "1"} if i % 2 == 0 else {"stable": "1", "canary": "2"})
    stop.set()
    for reader in readers:
        reader.join()
    assert torn == []


def test_warm_up_runs_before_the_version_is_visible(registry: Registry) -> None:
    seen_during_warmup: list[list[str]] = []

    def model(x):
        seen_during_warmup.append(registry.versions("m"))
        return x

    registry.register(spec("1"))
    registry.register(ModelSpec("m", "2", model, "tabular"), warmup=0)
    assert seen_during_warmup == [["1"]]
    assert registry.versions("m") == ["1", "2"]


def test_failed_warm_up_registers_nothing(registry: Registry) -> None:
    def broken(x):
        raise RuntimeError("weights missing")

    with pytest.raises(RegistrationError, match=r"'m' version '1' failed its warm-up: RuntimeError\('weights missing'\)"):
        registry.register(ModelSpec("m", "1", broken, "tabular"), warmup=0, aliases=["stable"])
    assert "m" not in registry


def test_bad_metadata_is_rejected(registry: Registry) -> None:
    with pytest.raises(RegistrationError, match="unknown modality 'smell'"):
        registry.register(spec("1", modality="smell"))
    with pytest.raises(RegistrationError, match="replicas >= 1"):
        registry.register(spec("1", replicas=0))
    with pytest.raises(RegistrationError, match="must be callable, got int"):
        registry.register(ModelSpec("m", "1", 3, "tabular"))  # type: ignore[arg-type]


def test_unregister_waits_for_in_flight_requests(registry: Registry) -> None:
    first = registry.register(spec("1"))
    registry.register(spec("2"))
    lease = registry.lease("m", "1")
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (registry.unregister("m", "1"), finished.set()))
    worker.start()
    while "1" in registry.versions("m"):
        pass  # wait until the version is hidden
    with pytest.raises(NoRoute, match="no version '1'"):
        registry.lease("m", "1")
    assert not finished.wait(0.05), "unregister returned while a request was in flight"
    assert registry.in_flight(first) == 1
    lease.release()
    worker.join()
    assert finished.is_set() and registry.in_flight(first) == 0


def test_retire_hooks_run_after_each_retired_version_drains(registry: Registry) -> None:
    retired: list[tuple[str, int]] = []
    registry.add_retire_hook(lambda spec: retired.append((spec.version, registry.in_flight(spec))))
    registry.register(spec("1"), aliases=["stable"])
    lease = registry.lease("m")
    swapper = threading.Thread(target=registry.swap, args=(spec("2"),))
    swapper.start()
    while registry.aliases("m")["stable"] != "2":
        pass  # wait until the alias moved
    assert retired == []
    lease.release()
    swapper.join()
    registry.apply({"m": ModelPlan({"3": spec("3")})})
    registry.apply({"m": ModelPlan({"3": spec("3")})})  # a new spec under the same key retires the old one
    assert retired == [("1", 0), ("2", 0), ("3", 0)]


class Subscriber:
    def __init__(self) -> None:
        self.retired: list[str] = []

    def on_retired(self, spec: ModelSpec) -> None:
        self.retired.append(spec.version)


def test_a_bound_method_hook_is_held_weakly_and_can_be_removed(registry: Registry) -> None:
    kept, removed, dropped = Subscriber(), Subscriber(), Subscriber()
    for subscriber in (kept, removed, dropped):
        registry.add_retire_hook(subscriber.on_retired)
    registry.remove_retire_hook(removed.on_retired)
    dropped_ref = weakref.ref(dropped)
    del dropped, subscriber  # the loop variable held it too
    gc.collect()
    assert dropped_ref() is None  # the registry did not keep it alive
    registry.register(spec("1"))
    registry.register(spec("2"))
    registry.unregister("m", "1")
    assert kept.retired == ["1"] and removed.retired == []


def test_unregister_timeout_and_references(registry: Registry) -> None:
    registry.register(spec("1"), aliases=["stable"])
    registry.register(spec("2"))
    with pytest.raises(RegistrationError, match=r"'1': alias 'stable' still route to it"):
        registry.unregister("m", "1")
    registry.set_experiment("m", Split({"1": 0.5, "2": 0.5}))
    with pytest.raises(RegistrationError, match=r"'2': the experiment still route to it"):
        registry.unregister("m", "2")
    registry.set_experiment("m", None)
    lease = registry.lease("m", "2")
    with pytest.raises(RegistrationError, match=r"in flight after 0.01s: \{'m/2': 1\}"):
        registry.unregister("m", "2", timeout=0.01)
    lease.release()
    assert registry.versions("m") == ["1"]


def test_a_timed_out_retirement_runs_its_hooks_when_the_last_request_ends(registry: Registry) -> None:
    hooked = threading.Event()
    retired: list[tuple[str, int]] = []

    def hook(spec: ModelSpec) -> None:
        retired.append((spec.version, registry.in_flight(spec)))
        hooked.set()

    registry.add_retire_hook(hook)
    registry.register(spec("1"))
    registry.register(spec("2"))
    first, second = registry.lease("m", "1"), registry.lease("m", "1")
    with pytest.raises(RegistrationError, match=r"in flight after 0.01s: \{'m/1': 2\}"):
        registry.unregister("m", "1", timeout=0.01)
    first.release()
    assert retired == []
    second.release()
    assert hooked.wait(30)
    assert retired == [("1", 0)]


def test_lease_reasons_name_the_rule(registry: Registry) -> None:
    registry.register(spec("1"))
    with registry.lease("m") as lease:
        assert lease.reason == "latest version '1'"
    registry.register(spec("2"), aliases=["stable"])
    with registry.lease("m") as lease:
        assert (lease.spec.version, lease.reason) == ("2", "alias 'stable' -> version '2'")
    with registry.lease("m", "1") as lease:
        assert lease.reason == "version '1' requested"


def test_apply_is_all_or_nothing(registry: Registry) -> None:
    registry.register(spec("1"), aliases=["stable"])
    bad = {
        "m": ModelPlan({"2": spec("2")}, aliases={"stable": "2"}),
        "n": ModelPlan({"1": spec("1", name="n")}, aliases={"stable": "7"}),
    }
    with pytest.raises(NoRoute, match="'n' has no version '7'"):
        registry.apply(bad)
    assert registry.versions("m") == ["1"] and "n" not in registry
    shadow = Shadow("1")
    registry.apply({"m": ModelPlan({"1": spec("1"), "2": spec("2")}, {"stable": "2"}, shadow=shadow)})
    assert registry.get("m").version == "2" and registry.shadow("m") is shadow


def test_hot_swap_under_load_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads call router.infer while v1 -> v2 -> v3 swap in: every request is served exactly once,
    by a warmed version, and no version serves after its swap returned."""
    route_everything_as(monkeypatch)
    router = Router()
    models = {v: Versioned(v) for v in "123"}
    router.register("m", models["1"], modality="tabular", version="1", warmup=Versioned.WARMUP)

    def request(worker: int, i: int) -> str:
        _, echoed = router.infer((worker, i))
        return "ok" if echoed == (worker, i) else "wrong result"

    with ClientLoad(threads=4, per_thread=1500, request=request) as load:
        for old, new in (("1", "2"), ("2", "3")):
            retired = router.models.swap(ModelSpec("m", new, models[new], "tabular"), warmup=Versioned.WARMUP)
            assert retired is not None and retired.version == old
            models[old].retired = True

    assert load.outcomes == {"ok": load.total}
    assert sum(model.calls for model in models.values()) == load.total
    assert [v for model in models.values() for v in model.violations] == []
    assert router.models.versions("m") == ["3"] and router.models.aliases("m") == {"stable": "3"}


def test_swap_refuses_a_version_still_in_an_experiment(registry: Registry) -> None:
    registry.register(spec("1"), aliases=["stable"])
    registry.register(spec("2"))
    registry.set_experiment("m", Split({"1": 0.9, "2": 0.1}))
    with pytest.raises(RegistrationError, match=r"swap out model 'm' version '1': the experiment"):
        registry.swap(spec("3"))
    assert registry.versions("m") == ["1", "2"], "a refused swap registers nothing"


def test_alias_moves_under_load_serve_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads call router.infer while `stable` flips between versions: every request is
    served exactly once, by one of the two versions, with its own input."""
    route_everything_as(monkeypatch)
    router = Router()
    router.register("m", lambda x: ("1", x), modality="tabular", version="1", aliases=["stable"])
    router.register("m", lambda x: ("2", x), modality="tabular", version="2")

    def request(worker: int, i: int) -> str:
        version, echoed = router.infer((worker, i))
        return f"v{version}" if echoed == (worker, i) else "wrong result"

    flips = 0
    with ClientLoad(threads=4, per_thread=1500, request=request) as load:
        while load.running():
            router.models.set_alias("m", "stable", "2" if flips % 2 == 0 else "1")
            flips += 1
    assert sum(load.outcomes.values()) == load.total
    assert set(load.outcomes) <= {"v1", "v2"} and flips > 1, (load.outcomes, flips)


def test_closing_the_registry_stops_its_shadows(registry: Registry) -> None:
    registry.register(spec("1"))
    registry.register(spec("2"))
    shadow = Shadow("2")
    registry.set_shadow("m", shadow)
    assert shadow.offer(1, 1, "1", lambda x: x)
    registry.close()
    assert shadow.wait_idle(timeout=30) and sum(shadow.counts().values()) == 1
    assert not shadow.offer(2, 2, "1", lambda x: x), "a closed shadow mirrors nothing"


def test_concurrent_swaps_of_one_model_run_one_after_the_other(registry: Registry) -> None:
    """Version 2's warm-up holds its swap open while version 3's swap starts: the second
    swap must wait, then replace version 2, so exactly one version is left."""
    registry.register(spec("1"), aliases=["stable"])
    warming, finish_warmup = threading.Event(), threading.Event()

    def slow_to_warm(x):
        warming.set()
        finish_warmup.wait(timeout=30)
        return x

    retired: dict[str, str] = {}
    first = threading.Thread(
        target=lambda: retired.setdefault("2", registry.swap(ModelSpec("m", "2", slow_to_warm, "tabular"), warmup=0).version)
    )
    second = threading.Thread(target=lambda: retired.setdefault("3", registry.swap(spec("3")).version))
    first.start()
    assert warming.wait(timeout=30)
    second.start()
    second.join(timeout=0.2)  # gives an unserialised swap time to run ahead
    finish_warmup.set()
    first.join()
    second.join()
    assert retired == {"2": "1", "3": "2"}
    assert registry.versions("m") == ["3"] and registry.aliases("m") == {"stable": "3"}


class CountingLock:
    """A lock that counts its acquisitions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquisitions = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        acquired = self._lock.acquire(blocking, timeout)
        self.acquisitions += acquired
        return acquired

    def release(self) -> None:
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def test_a_request_takes_the_registry_lock_at_most_once() -> None:
    """Policies read the lock-free catalog; only the lease takes the lock; its release does not.
    infer and submit on the fast path (a plain model, no experiment) hold their version without
    the lock; with user features (the general path) submit leases it once."""
    with Router() as router:
        router.register("m", lambda x: x, modality="tabular")
        router.executor  # created once (it subscribes to retirements), not per request
        lock = CountingLock()
        router.models._lock, router.models._drained = lock, threading.Condition(lock)
        router.infer(np.ones(3))
        assert lock.acquisitions == 0
        router.submit(np.ones(3)).result(timeout=30)
        assert lock.acquisitions == 0
        router.route_stages = _core.RouteStages()  # timed decisions (a server's) stay on the fast path
        router.submit(np.ones(3)).result(timeout=30)
        assert lock.acquisitions == 0 and sum(router.route_stages.snapshot()["analyze"][0]) == 1
        router.models.set_experiment("m", Split({"1": 1.0}))  # the general path: the split draws the version
        lock.acquisitions = 0
        router.submit(np.ones(3)).result(timeout=30)
        assert lock.acquisitions == 1 and sum(router.route_stages.snapshot()["analyze"][0]) == 2  # timed once
