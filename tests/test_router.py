"""The Router's first slice: register, route by modality, infer, infer_batch."""

from __future__ import annotations

import numpy as np
import pytest

import fastroute
from fastroute import NoRoute, RegistrationError, Router
from fastroute.decision import ByModality


class CountingModel:
    """A batched or single-input model that records how it was called."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls: list[object] = []

    def __call__(self, batch):
        self.calls.append(batch)
        return [f"{self.tag}:{i}" for i in range(len(batch))]


@pytest.fixture
def router():
    router = Router()
    router.register("tab", lambda x: ("tab", float(np.sum(x))), modality="tabular")
    router.register("img", lambda x: ("img", np.shape(x)), modality="image")
    router.register("txt", lambda x: ("txt", len(x)), modality="text")
    yield router
    assert all(router.models.in_flight(spec) == 0 for spec in router.models.list()), "a lease leaked"
    router.close()


def test_route_picks_the_model_registered_for_the_modality(router: Router) -> None:
    decision = router.route(np.arange(5, dtype=np.float32))
    assert (decision.model, decision.version, decision.modality) == ("tab", "1", "tabular")
    assert "tabular" in decision.reason
    assert router.route(np.zeros((32, 32, 3), np.uint8)).model == "img"
    assert router.route("hello world").model == "txt"


def test_infer_runs_the_chosen_model(router: Router) -> None:
    assert router.infer(np.array([1.0, 2.0, 3.5])) == ("tab", 6.5)
    assert router.infer("four") == ("txt", 4)


def test_no_route_names_the_modality_and_what_is_registered(router: Router) -> None:
    waveform = np.sin(np.linspace(0, 100, 16_000)).astype(np.float32)
    with pytest.raises(NoRoute, match=r"'audio'.*'tab': 'tabular'"):
        router.route(waveform)


def test_duplicate_registration_is_rejected(router: Router) -> None:
    with pytest.raises(RegistrationError, match=r"'tab' version '1' is already registered"):
        router.register("tab", lambda x: x, modality="tabular")
    router.register("tab", lambda x: x, modality="tabular", version="2")
    assert router.models.get("tab").version == "2"
    assert router.models.get("tab", "1").version == "1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": 42}, "must be callable, got int"),
        ({"modality": "smell"}, "unknown modality 'smell'"),
        ({"name": ""}, "non-empty str"),
        ({"cost": -1.0}, "cost must be >= 0"),
        ({"replicas": 0}, "replicas >= 1"),
    ],
)
def test_invalid_registration_is_rejected(kwargs: dict, message: str) -> None:
    arguments = {"name": "m", "model": lambda x: x, "modality": "tabular"} | kwargs
    name, model = arguments.pop("name"), arguments.pop("model")
    with pytest.raises(RegistrationError, match=message):
        Router().register(name, model, **arguments)


def test_infer_batch_calls_each_model_once_and_keeps_order() -> None:
    router = Router()
    tabular, text = CountingModel("tab"), CountingModel("txt")
    router.register("tab", tabular, modality="tabular", batched=True)
    router.register("txt", text, modality="text", batched=True)
    inputs = [np.ones(4), "a", np.zeros(4), "b c", np.full(4, 2.0)]

    results = router.infer_batch(inputs)

    assert results == ["tab:0", "txt:0", "tab:1", "txt:1", "tab:2"]
    assert len(tabular.calls) == len(text.calls) == 1
    stacked = tabular.calls[0]
    assert isinstance(stacked, np.ndarray) and stacked.shape == (3, 4)
    assert text.calls[0] == ["a", "b c"]


def test_infer_batch_passes_a_list_when_inputs_do_not_stack() -> None:
    router = Router()
    model = CountingModel("tab")
    router.register("tab", model, modality="tabular", batched=True)
    router.infer_batch([np.ones(3), np.ones(5)])
    assert isinstance(model.calls[0], list) and len(model.calls[0]) == 2


def test_infer_batch_unbatched_model_is_called_per_input(router: Router) -> None:
    assert router.infer_batch([np.ones(2), "xyz"]) == [("tab", 2.0), ("txt", 3)]


def test_batched_model_returning_the_wrong_count_is_a_model_error() -> None:
    router = Router()
    router.register("short", lambda batch: [0], modality="tabular", batched=True)
    with pytest.raises(fastroute.ModelError, match="'short'.*1 results for a batch of 2"):
        router.infer_batch([np.ones(2), np.ones(2)])


def test_by_modality_prefers_the_named_model(router: Router) -> None:
    router.register("tab2", lambda x: "second", modality="tabular")
    assert router.route(np.ones(3)).model == "tab"
    router.policy = ByModality(preferred={"tabular": "tab2"})
    assert router.infer(np.ones(3)) == "second"


def test_every_path_gives_a_batched_model_the_same_input_type() -> None:
    router = Router()
    model = CountingModel("tab")
    router.register("tab", model, modality="tabular", batched=True)
    router.infer(np.ones(3))
    router.infer_batch([np.ones(3)])
    router.submit(np.ones(3)).result(timeout=30)
    router.close()
    assert [type(batch).__name__ for batch in model.calls] == ["ndarray"] * 3
    assert all(batch.shape == (1, 3) for batch in model.calls)


def test_a_failing_model_is_a_model_error_on_every_path(router: Router) -> None:
    def broken(x):
        raise ArithmeticError("overflowed")

    router.register("bad", broken, modality="text")
    router.policy = ByModality(preferred={"text": "bad"})
    outcomes = []
    for run in (lambda: router.infer("x"), lambda: router.infer_batch(["x"]), lambda: router.submit("x").result(30)):
        with pytest.raises(fastroute.ModelError, match="'bad' failed: ArithmeticError: overflowed") as caught:
            run()
        outcomes.append(type(caught.value.__cause__))
    assert outcomes == [ArithmeticError] * 3


def test_a_closed_router_refuses_every_request(router: Router) -> None:
    router.close()
    for request in (
        lambda: router.route(np.ones(2)),
        lambda: router.infer(np.ones(2)),
        lambda: router.infer_batch([np.ones(2)]),
        lambda: router.route_batch([np.ones(2)]),
        lambda: router.submit(np.ones(2)),
    ):
        with pytest.raises(fastroute.RouterClosed, match="closed"):
            request()


class TenantPolicy(fastroute.Policy):
    """A Python policy reading a user feature: tenant 1 goes to 'txt', others to 'tab'."""

    feature_names = fastroute.FEATURE_NAMES + ("tenant",)

    def select(self, row, models):
        model = "txt" if row.features[-1] == 1 else "tab"
        return fastroute.Choice(model, f"tenant {row.features[-1]:g}")


def test_user_features_reach_a_python_policy_on_single_and_batch_paths(router: Router) -> None:
    router.policy = TenantPolicy()
    assert router.route(np.ones(2), features={"tenant": 1}).model == "txt"
    assert router.route(np.ones(2), features={"tenant": 2}).model == "tab"
    batch = router.route_batch([np.ones(2), np.ones(2)], features={"tenant": [1, 2]})
    assert batch.names() == ["txt", "tab"]


def test_a_pinned_policy_keeps_its_state_when_the_policy_is_refitted() -> None:
    pytest.importorskip("sklearn", reason="fitting a Tree needs scikit-learn")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, len(fastroute.FEATURE_NAMES))).astype(np.float32)
    outcomes = rng.random((200, 2))
    tree = fastroute.Tree(max_depth=2).fit(features, outcomes, models=["a", "b"])
    view = tree.pinned()
    tree.fit(features, outcomes, models=["c", "d"])
    assert view.models == ("a", "b") and tree.models == ("c", "d")
    assert set(view.decide_batch(features).names()) <= {"a", "b"}


def test_a_router_reads_well() -> None:
    """Its repr names the policy, each version and its modality, the executor (an object address before)."""
    router = fastroute.Router()
    router.register("summer", lambda x: x, modality="tabular")
    router.register("counter", lambda x: x, modality="text", version="2")
    assert repr(router) == "Router(policy=ByModality, models=['summer:1 (tabular)', 'counter:2 (text)'], executor=None)"
    router.close()
    assert repr(router).endswith("executor=None, closed)")
