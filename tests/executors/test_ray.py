"""RayExecutor on a real local Ray instance: batches in actors, P2C, actor death, bad input, config.

Marked slow (Ray takes seconds to start); CI runs them. Skipped without the 'ray' extra.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import pytest
from helpers import local_ray as ray_instance

if importlib.util.find_spec("ray") is None:  # found, not imported: the unit suite deselects this module
    pytest.skip("needs the 'ray' extra", allow_module_level=True)

from fastroute import ConfigError, ModelError, ModelSpec, RegistrationError, Router  # noqa: E402
from fastroute.executors.ray_actors import RayExecutor  # noqa: E402
from fastroute.executors.remote import RemoteModel  # noqa: E402

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
WAIT_S = 120  # generous: only reached when something is broken


@pytest.fixture(scope="module")
def local_ray():
    with ray_instance(num_cpus=2, modules=HERE) as instance:  # actors import ray_models from here
        yield instance


@pytest.fixture
def make_executor(local_ray):
    made = []

    def make(**settings) -> RayExecutor:
        made.append(RayExecutor(**settings))
        return made[-1]

    yield make
    for executor in made:
        pools = [pool for _, pool, _ in executor._runners.values()]
        executor.close()
        assert not executor._runners
        assert all(actor.in_flight == 0 for pool in pools for actor in pool.stats())


def ray_spec(factory: str, *args, replicas: int = 1, **kwargs) -> ModelSpec:
    model = RemoteModel(f"ray_models:{factory}", args, kwargs)
    return ModelSpec("m", "1", model, "tabular", batched=True, device="ray", replicas=replicas)


def rows(n: int) -> list[np.ndarray]:
    return [np.full(3, float(i)) for i in range(n)]


def test_batches_run_in_actors_built_from_the_import_path(make_executor):
    executor = make_executor(threads=2, max_batch=16, max_delay_us=20_000)
    spec = ray_spec("make_doubler")
    futures = [executor.submit(spec, x) for x in rows(40)]
    results = [future.result(timeout=WAIT_S) for future in futures]
    assert [value for _, value in results] == [6.0 * i for i in range(40)]
    assert {pid for pid, _ in results} - {os.getpid()} == {pid for pid, _ in results}  # none ran here
    (actor,) = executor.actor_stats(spec)
    assert actor.calls < 40  # whole batches per actor call, not one call per request
    assert actor.in_flight == 0 and actor.replaced == 0


def test_load_spreads_over_actors_by_in_flight_counts(make_executor):
    executor = make_executor(threads=4, max_batch=4, max_delay_us=0)
    spec = ray_spec("make_doubler", 0.05, replicas=2)
    futures = [executor.submit(spec, x) for x in rows(32)]
    results = [future.result(timeout=WAIT_S) for future in futures]
    assert len({pid for pid, _ in results}) == 2
    actors = executor.actor_stats(spec)
    assert len(actors) == 2 and all(actor.calls > 0 for actor in actors)
    assert sum(r.completed for r in executor.replica_stats(spec)) == 32


def test_a_dead_actor_is_replaced_and_its_batch_retried_once(make_executor, tmp_path):
    executor = make_executor(threads=2, max_batch=8, max_delay_us=20_000)
    spec = ray_spec("make_dies_once", str(tmp_path / "died"))
    futures = [executor.submit(spec, x) for x in rows(24)]
    assert [future.result(timeout=WAIT_S) for future in futures] == [3.0 * i for i in range(24)]
    (actor,) = executor.actor_stats(spec)
    assert actor.replaced == 1


def test_without_retry_only_the_dead_actors_batch_fails(make_executor, tmp_path):
    executor = make_executor(threads=1, max_batch=4, max_delay_us=50_000, retry_dead=False)
    spec = ray_spec("make_dies_once", str(tmp_path / "died"))
    first = [executor.submit(spec, x) for x in rows(4)]
    wait(first, timeout=WAIT_S)
    later = [executor.submit(spec, x) for x in rows(8)]
    for future in first:
        with pytest.raises(ModelError, match="Ray actor died"):
            future.result(timeout=WAIT_S)
    assert [future.result(timeout=WAIT_S) for future in later] == [3.0 * i for i in range(8)]
    assert executor.actor_stats(spec)[0].replaced == 1


def test_an_actor_dying_on_every_try_fails_its_requests_exactly_once(make_executor):
    executor = make_executor(threads=1, max_batch=8, max_delay_us=20_000)
    spec = ray_spec("make_always_dies")
    futures = [executor.submit(spec, x) for x in rows(6)]
    done, pending = wait(futures, timeout=WAIT_S)
    assert not pending
    assert all(isinstance(future.exception(), ModelError) for future in futures)
    assert "again on its retry" in str(futures[0].exception())


def test_a_model_error_in_the_actor_keeps_its_cause(make_executor):
    executor = make_executor(threads=1)
    future = executor.submit(ray_spec("make_raises"), np.zeros(3))
    with pytest.raises(ModelError, match="KeyError"):
        future.result(timeout=WAIT_S)


def test_an_actor_that_cannot_be_built_is_a_registration_error(make_executor):
    executor = make_executor(threads=1, start_timeout_s=WAIT_S)
    with pytest.raises(RegistrationError, match="could not be created.*weights file missing"):
        executor.start(ray_spec("make_broken"))


def test_an_actor_that_cannot_be_placed_times_out_with_a_clear_error(make_executor):
    executor = make_executor(threads=1, start_timeout_s=2, actor_options={"num_cpus": 64})
    started = time.monotonic()
    with pytest.raises(RegistrationError, match="not ready within 2"):
        executor.start(ray_spec("make_doubler"))
    assert time.monotonic() - started < WAIT_S


def test_a_cluster_address_that_does_not_answer_is_a_config_error(local_ray):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match="does not answer"):
        RayExecutor(address=f"127.0.0.1:{port}", connect_timeout_s=1)
    with pytest.raises(ConfigError, match="host:port"):
        RayExecutor(address="nowhere")


def test_declared_in_config_and_shown_in_router_stats(local_ray, tmp_path):
    pytest.importorskip("yaml", reason="needs the 'config' extra")
    path = tmp_path / "router.yaml"
    path.write_text(
        "models:\n"
        "  m:\n"
        "    modality: tabular\n"
        "    versions:\n"
        '      "1": {factory: "ray_models:make_doubler", kwargs: {delay_s: 0.0}, batched: true, device: ray, replicas: 2}\n'
        "executor: {threads: 4, max_batch: 8, ray: {start_timeout_s: 60}}\n"
    )
    router = Router.from_config(path)
    try:
        futures = [router.submit(x, hint="tabular") for x in rows(16)]
        assert [future.result(timeout=WAIT_S)[1] for future in futures] == [6.0 * i for i in range(16)]
        actors = router.stats()["models"]["m/1"]["backend"]["actors"]
        assert len(actors) == 2 and sum(actor.calls for actor in actors) > 0
        assert all(actor.in_flight == 0 for actor in actors)
    finally:
        router.close()
