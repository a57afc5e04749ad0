"""The model library under the dispatch runtime: ``router.submit`` holds a lease per request."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import Counter

import pytest
from helpers import Versioned, route_everything_as

from fastroute import CPUExecutor, RegistrationError, Router, Shadow, Split
from fastroute.library import ModelPlan, ModelSpec


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch):
    route_everything_as(monkeypatch)
    router = Router()
    yield router
    router.close()


def test_hot_swap_under_submit_load_loses_nothing(router: Router) -> None:
    models = {v: Versioned(v) for v in "123"}
    router.register("m", models["1"], modality="tabular", version="1", warmup=Versioned.WARMUP)
    threads, per_thread = 4, 1000  # 4,000 requests fit the default queue: none is refused
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    started = threading.Barrier(threads + 1)

    def client(worker: int) -> None:
        started.wait()
        futures = []
        for i in range(per_thread):
            try:
                futures.append(router.submit((worker, i)))
            except Exception as error:  # counted, then asserted absent
                futures.append(error)
        for i, future in enumerate(futures):
            try:
                if isinstance(future, Exception):
                    raise future
                _, echoed = future.result(timeout=60)
                outcome = "ok" if echoed == (worker, i) else "wrong result"
            except Exception as error:  # counted, then asserted absent
                outcome = type(error).__name__
            with lock:
                outcomes[outcome] += 1

    clients = [threading.Thread(target=client, args=(w,)) for w in range(threads)]
    for thread in clients:
        thread.start()
    started.wait()
    for old, new in (("1", "2"), ("2", "3")):
        router.models.swap(ModelSpec("m", new, models[new], "tabular"), warmup=Versioned.WARMUP)
        models[old].retired = True
    for thread in clients:
        thread.join()

    assert outcomes == {"ok": threads * per_thread}
    assert sum(model.calls for model in models.values()) == threads * per_thread
    assert [v for model in models.values() for v in model.violations] == []
    assert all(router.models.in_flight(spec) == 0 for spec in router.models.list())


def test_submit_follows_the_split_and_feeds_the_shadow(router: Router) -> None:
    router.register("m", lambda x: ("1", x), modality="tabular", version="1")
    router.register("m", lambda x: ("2", x), modality="tabular", version="2")
    router.register("m", lambda x: ("3", x), modality="tabular", version="3")
    split = Split({"1": 0.5, "2": 0.5}, name="ab")
    shadow = Shadow("3", compare=lambda served, mirrored: served[1] == mirrored[1], queue_size=1000)
    router.models.set_experiment("m", split)
    router.models.set_shadow("m", shadow)
    keys = [f"user-{i}" for i in range(200)]
    results = [router.submit(i, key=key).result(timeout=60) for i, key in enumerate(keys)]
    assert [version for version, _ in results] == [split.choose(key).version for key in keys]
    assert shadow.wait_idle(timeout=60) and shadow.counts() == {"ok": 200}
    assert {record.comparison for record in shadow.records()} == {True}


def test_a_new_definition_of_a_version_serves_submit_as_infer(router: Router) -> None:
    router.register("m", lambda x: ("old", x), modality="tabular", version="1")
    assert router.submit(1).result(timeout=60) == ("old", 1)
    router.models.apply({"m": ModelPlan({"1": ModelSpec("m", "1", lambda x: ("new", x), "tabular")})})
    assert router.infer(2) == ("new", 2)
    assert router.submit(3).result(timeout=60) == ("new", 3)


def test_versions_can_be_redefined_forever_without_keeping_old_models(monkeypatch: pytest.MonkeyPatch) -> None:
    route_everything_as(monkeypatch)
    with Router(executor=CPUExecutor(threads=1, max_lanes=2)) as router:
        router.register("m", lambda x: (0, x), modality="tabular", version="1")
        replaced = []
        for generation in range(1, 20):
            model = lambda x, generation=generation: (generation, x)  # noqa: E731
            replaced.append(weakref.ref(model))
            router.models.apply({"m": ModelPlan({"1": ModelSpec("m", "1", model, "tabular")})})
            assert router.submit("x").result(timeout=60) == (generation, "x")
        del model
        gc.collect()
        assert [ref() is None for ref in replaced] == [True] * 18 + [False]  # only the serving one is kept


def test_a_timed_out_unregister_frees_the_queues_once_the_request_ends(router: Router) -> None:
    release = threading.Event()
    router.register("m", lambda x: release.wait(60) and ("1", x), modality="tabular", version="1")
    router.register("m", lambda x: ("2", x), modality="tabular", version="2")
    router.models.set_alias("m", "stable", "1")
    pending = router.submit(0)
    old = router.models.get("m", "1")
    router.models.set_alias("m", "stable", "2")
    queues_freed = threading.Event()
    router.models.add_retire_hook(lambda spec: queues_freed.set())  # runs after the router's own hook
    with pytest.raises(RegistrationError, match="in flight after 0.01s"):
        router.models.unregister("m", "1", timeout=0.01)
    assert router.executor.stats(old).replicas == 1
    release.set()
    assert pending.result(timeout=60) == ("1", 0)
    assert queues_freed.wait(60)
    assert router.executor.stats(old).replicas == 0


def test_submit_on_the_native_path_holds_its_version_until_the_request_ends() -> None:
    """A plain model under ByModality: submit decides natively (no lease object) and its hold
    on the version ends with the request, also when the queue refuses it or it is cancelled."""
    import numpy as np

    from fastroute import Overloaded

    started, release = threading.Event(), threading.Event()

    def model(x):
        started.set()
        release.wait(30)
        return x

    with Router(executor=CPUExecutor(threads=1, queue_capacity=1)) as router:
        spec = router.register("m", model, modality="tabular")
        running = router.submit(np.ones(3))
        assert started.wait(30)
        queued = router.submit(np.ones(3))
        assert router.models.in_flight(spec) == 2
        with pytest.raises(Overloaded):
            router.submit(np.ones(3))
        assert router.models.in_flight(spec) == 2  # the refused one's hold is gone
        assert queued.cancel()
        assert router.models.in_flight(spec) == 1
        release.set()
        assert running.result(30).tolist() == [1.0, 1.0, 1.0]
        assert running.decision.model == "m"
        # The hold ends in a done-callback, which runs just after result() may return.
        deadline = time.monotonic() + 30
        while router.models.in_flight(spec) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert router.models.in_flight(spec) == 0


def test_a_hot_swap_retires_the_old_version_only_after_its_queued_native_requests_end() -> None:
    """Requests queued on the native path (their hold a native count, dropped by the handle
    itself) keep the old version until each has ended; new requests go to the new one."""
    import numpy as np

    x = np.ones(3, dtype=np.float32)
    started, release = threading.Event(), threading.Event()

    def old_model(x):
        started.set()
        release.wait(30)
        return "1"

    retired: list = []
    with Router(executor=CPUExecutor(threads=1)) as router:
        old = router.register("m", old_model, modality="tabular")
        router.models.add_retire_hook(retired.append)
        running = router.submit(x)
        assert started.wait(30)
        queued = [router.submit(x) for _ in range(5)]
        assert router.models.in_flight(old) == 6
        swap = threading.Thread(target=router.models.swap, args=(ModelSpec("m", "2", lambda x: "2", "tabular"),),
                                kwargs={"timeout": 60})
        swap.start()
        deadline = time.monotonic() + 30
        while router.route(x).version != "2" and time.monotonic() < deadline:
            time.sleep(0.001)
        assert router.route(x).version == "2" and swap.is_alive()  # the swap waits for the old holds
        assert old not in retired and router.models.in_flight(old) == 6
        release.set()
        swap.join(60)
        assert [handle.result(30) for handle in [running, *queued]] == ["1"] * 6
        assert retired.count(old) == 1 and router.models.in_flight(old) == 0
        assert router.submit(x).result(30) == "2"
