"""The native request path (decision/fast_path.py): same decisions as the general path, taken
only where nothing per request needs Python, and every fallback keeps its behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

import fastroute
from fastroute import (FEATURE_NAMES, ByModality, FeedbackStore, ModelError, NoRoute, Router, Rule, Rules, Threshold,
                       Tree)
from fastroute.library.experiments import Shadow, Split
from fastroute.decision.fast_path import native_path
from fastroute.library.registry import Registry
from helpers import GeneralPathOnly

MODELS = ["m0", "m1", "m2"]
INPUTS = [np.linspace(-1.0, 1.0, 16, dtype=np.float32), np.arange(40.0).reshape(5, 8), "a short text",
          np.full(16, np.nan, dtype=np.float32), np.ones((3, 4), dtype=np.int16)]


def fitted_tree() -> Tree:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(600, len(FEATURE_NAMES))).astype(np.float32)
    rows[:, 0] = 0  # tabular
    labels = (rows[:, FEATURE_NAMES.index("mean")] > 0).astype(int) + (rows[:, FEATURE_NAMES.index("std")] > 0.5)
    return Tree.from_sklearn(DecisionTreeClassifier(max_depth=4, random_state=0).fit(rows, labels), MODELS)


def make_router(policy=None, **store) -> Router:
    router = Router(policy, feedback=FeedbackStore(**store) if store else None)
    for name in MODELS:
        router.register(name, lambda x, name=name: name, modality="tabular", cost=float(len(name)))
    router.register("reader", lambda x: "reader", modality="text")
    return router


def general_path_only(router: Router) -> Router:
    """The same router with the native path switched off: what every request did before it."""
    router._fast_path = GeneralPathOnly()
    return router


def no_general_path(monkeypatch: pytest.MonkeyPatch, router: Router) -> None:
    def general(*args, **kwargs):
        raise AssertionError("the request took the general path")

    monkeypatch.setattr(router, "_choose", general)


def rules() -> Rules:
    return Rules([Rule("tabular", "length > 20", model="m2"), Rule("text", "", model="reader")], default="m0")


COMPILED = {
    "tree": fitted_tree,
    "rules": rules,
    "threshold": lambda: Threshold("mean", MODELS, [-0.5, 0.5], missing="m1"),
}


@pytest.mark.parametrize("policy", [None, ByModality({"tabular": "m1"}), "tree", "rules", "threshold"])
def test_native_decisions_are_the_general_paths(policy, monkeypatch) -> None:
    make = COMPILED[policy] if policy in COMPILED else (lambda: policy)
    fast, general = make_router(make()), general_path_only(make_router(make()))
    no_general_path(monkeypatch, fast)
    reads_text = policy not in ("tree", "threshold")  # no model of the tree or the threshold takes text
    for x in INPUTS if reads_text else [x for x in INPUTS if not isinstance(x, str)]:
        ours, theirs = fast.route(x), general.route(x)
        for field in ("model", "version", "modality", "reason", "score", "propensity", "attempts"):
            assert getattr(ours, field) == getattr(theirs, field), field
        np.testing.assert_array_equal(ours.features.features, theirs.features.features)
        assert fast.infer(x) == general.infer(x) == ours.model
        result, decision = fast.infer(x, return_decision=True)
        assert result == decision.model and decision.id != ours.id
    assert fast.models.in_flight(fast.models.get("m1")) == 0  # every hold was dropped


def test_native_decision_ids_join_feedback_as_any_other() -> None:
    clock = [0.0]
    router = make_router(capacity=300, ttl=60.0, clock=lambda: clock[0], token="ours")
    x = INPUTS[0]
    first = router.route(x).id
    assert router.feedback(first, quality=0.5) == "joined"
    assert router.feedback(first, quality=0.5) == "duplicate"
    assert router.feedback("ours-99999", reward=1.0) == "unknown"
    late = router.infer(x, return_decision=True)[1].id
    clock[0] = 61.0
    assert router.feedback(late, reward=1.0) == "expired"
    crowded = [router.route(x).id for _ in range(1000)]  # past the filing batch and the capacity
    assert router.feedback(crowded[0], reward=1.0) == "expired"
    assert router.feedback(crowded[-1], reward=1.0) == "joined"
    stats = router.feedback_stats()
    assert stats["joined"] == 2 and stats["duplicate"] == 1 and stats["unknown"] == 1 and stats["expired"] == 2
    assert stats["open"] == 299 and stats["dropped"] == 1 + 700  # late (ttl), then 700 past the capacity
    logged = router.feedback_store.logged()
    assert [entry.id for entry in logged] == [first, crowded[-1]] and logged[0].model == "m0"


def test_experiments_shadows_and_user_features_take_the_general_path_and_timing_counts_once() -> None:
    router = make_router()
    x = INPUTS[0]
    router.register("m0", lambda x: "m0 v2", modality="tabular", version="2")
    router.models.set_experiment("m0", Split({"1": 0.0, "2": 1.0}))
    assert "split 'split' -> version '2'" in router.route(x).reason
    assert router.infer(x) == "m0 v2"
    router.models.set_experiment("m0", None)
    assert router.infer(x) == "m0 v2"  # the latest version, on the native path again
    shadow = Shadow("1")
    router.models.set_shadow("m0", shadow)
    assert router.infer(x) == "m0 v2"
    assert shadow.wait_idle(timeout=10) and [record.status for record in shadow.records()] == ["ok"]
    router.models.set_shadow("m0", None)
    shadow.close()
    router.add_features(["length_hint"], lambda x: [1.0])
    with pytest.raises(fastroute.InvalidInput, match="unknown user feature"):
        router.route(x, features={"length_hint": 2.0})  # the policy reads no user feature
    router.route_stages = fastroute._core.RouteStages()  # a server's: timed on either path, once
    router.route(x)
    assert sum(router.route_stages.snapshot()["decide"][0]) == 1
    router.models.set_experiment("m0", Split({"1": 0.0, "2": 1.0}))
    router.route(x)
    assert sum(router.route_stages.snapshot()["decide"][0]) == 2


def test_unservable_inputs_fall_back_and_raise_as_before() -> None:
    router = make_router(fitted_tree())
    with pytest.raises(NoRoute, match="modality 'image'"):
        router.route(np.ones((64, 64, 3), dtype=np.uint8))  # no model serves images
    with pytest.raises(fastroute.UnsupportedInput, match="dict"):
        router.infer({"not": "an input"})
    with pytest.raises(fastroute.InvalidInput, match="hint"):
        router.route(INPUTS[0], hint="video")


def test_a_failing_model_ends_its_hold_and_reaches_the_caller() -> None:
    router = Router()
    router.register("bad", lambda x: 1 / 0, modality="tabular")
    with pytest.raises(ModelError, match="bad"):
        router.infer(INPUTS[0])
    assert router.models.in_flight(router.models.get("bad")) == 0


def test_a_refit_policy_and_a_swapped_version_are_seen_at_once() -> None:
    policy = ByModality()
    router = make_router(policy)
    x = INPUTS[0]
    assert router.route(x).model == "m0"
    router.policy = ByModality({"tabular": "m2"})
    assert router.route(x).model == "m2"
    router.models.swap(fastroute.ModelSpec("m2", "2", lambda x: "m2 v2", "tabular"))
    assert router.route(x).version == "2" and router.infer(x) == "m2 v2"
    with pytest.raises(TypeError):
        policy.preferred["tabular"] = "m1"  # read-only: a change is a new policy


def test_hot_swaps_under_native_load_lose_no_request() -> None:
    """Threads call router.infer (the native path) while m0 is swapped v1 -> v2 -> ... -> v7, each
    swap once the version it replaces has served the load (no timing assumed): every request gets
    its result, never from an older version than its thread's previous request, and no version
    serves after its swap returned."""
    router = make_router()
    x, stop, progress = INPUTS[0], threading.Event(), threading.Condition()
    seen: set[object] = set()  # every version that served a request, and every error
    per_thread: list[list[object]] = []
    retired: set[str] = set()
    late: list[str] = []

    def version(name: str) -> Callable[[object], str]:
        def model(x: object) -> str:
            time.sleep(0)  # lets a swap run meanwhile: it must wait for this request
            if name in retired:
                late.append(name)
            return name

        return model

    def load() -> None:
        results: list[object] = []
        per_thread.append(results)
        while not stop.is_set():
            try:
                result = router.infer(x)
            except Exception as error:  # noqa: BLE001 - any failure fails the test below
                result = error
            results.append(result)
            with progress:
                seen.add(result)
                progress.notify_all()

    def served_or_failed(name: str) -> None:
        with progress:
            progress.wait_for(lambda: name in seen or any(isinstance(r, Exception) for r in seen))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    current = "m0"  # what version "1" (registered by make_router) returns
    for number in range(2, 8):
        served_or_failed(current)
        replaced = router.models.swap(fastroute.ModelSpec("m0", str(number), version(f"v{number}"), "tabular"),
                                      timeout=10)
        assert replaced is not None and replaced.version == str(number - 1)
        retired.add(current)
        current = f"v{number}"
    served_or_failed(current)
    stop.set()
    for thread in threads:
        thread.join()

    def age(result: object) -> int:
        return 1 if result == "m0" else int(str(result).removeprefix("v"))

    assert [r for results in per_thread for r in results if isinstance(r, Exception)] == []
    assert seen == {"m0", *(f"v{number}" for number in range(2, 8))}
    assert all([age(r) for r in results] == sorted(age(r) for r in results) for results in per_thread)
    assert late == []
    assert router.models.versions("m0") == ["7"] and router.models.in_flight(router.models.get("m0")) == 0


class PublishesDuringHold(Registry):
    """A registry whose catalog, read by the native path right after its hold on m0, is
    replaced by a new one (an alias set) first: the race the hold's check guards against."""

    armed = False

    @property
    def _catalog(self):
        catalog = self.__dict__["published"]
        if self.armed and catalog.resolved["m0"].in_flight.count:
            self.armed = False
            self.set_alias("m0", "stable", "1")  # publishes
            return self.__dict__["published"]
        return catalog

    @_catalog.setter
    def _catalog(self, catalog):
        self.__dict__["published"] = catalog


def test_a_native_hold_racing_a_publish_is_dropped() -> None:
    router = make_router()
    registry = router.models
    registry.__dict__["published"] = registry.__dict__.pop("_catalog")
    registry.__class__ = PublishesDuringHold
    fast, x = router._fast_path, INPUTS[0]
    registry.armed = True
    assert fast.hold(router.policy, router.feedback_store, x, None, None) is None  # declined: general path
    assert not registry.armed and registry.in_flight(registry.get("m0")) == 0
    decision, resolved = fast.hold(router.policy, router.feedback_store, x, None, None)  # the new catalog's
    assert resolved.reason == "alias 'stable' -> version '1'" and registry.in_flight(resolved.spec) == 1
    assert resolved.run_held(x) == "m0" and registry.in_flight(resolved.spec) == 0
    assert decision.reason == "registered for modality 'tabular'; alias 'stable' -> version '1'"


def test_the_native_decision_joins_its_reason_only_when_read_and_follows_a_new_store() -> None:
    router = make_router(fitted_tree())
    decision = router.route(INPUTS[0])
    assert isinstance(decision.__dict__["_reason"], tuple)  # not joined yet
    assert decision.reason.endswith("; latest version '1'") and decision.__dict__["_reason"] == decision.reason
    router.feedback_store = FeedbackStore(token="fresh")
    assert router.route(INPUTS[0]).id == "fresh-0"
    assert router.feedback(router.route(INPUTS[0]).id, reward=1.0) == "joined"


def test_the_native_path_refuses_bad_arguments_with_clear_errors() -> None:
    router = make_router()
    fast = router._fast_path
    resolved = fast.hold_only(router.policy, router.feedback_store, INPUTS[0], None, None)
    assert resolved.spec.name == "m0" and resolved.run_held(INPUTS[0]) == "m0"
    assert router.feedback_stats().get("open", 0) == 0  # nothing recorded: no one can read its id
    with pytest.raises(TypeError, match="take 5 arguments"):
        fast.route(router.policy, router.feedback_store, INPUTS[0])
    router.route_stages = "not stages"
    with pytest.raises(TypeError, match="RouteStages"):
        router.route(INPUTS[0])
    router.route_stages = None
    with pytest.raises(fastroute.InvalidInput, match="modality 0 routes to model 3"):
        fastroute._core.RoutePlan.by_modality([3], 2)
    with pytest.raises(fastroute.InvalidInput, match="covers 2 models"):
        fastroute._core.RoutePlan(fitted_tree()._state.scorer, fastroute._core.ModelMask(np.ones((1, 2), np.uint8)))
    plan = fastroute._core.RoutePlan.by_modality([0], 1)
    with pytest.raises(fastroute.InvalidInput, match="one resolved version and one cost per model"):
        fastroute._core.FastRoutePlan(None, None, False, None, None, plan, ["m0"], [], [], True, None,
                                      router.feedback_store.plain_ring())
    stand_in = fastroute._core.FastRoute(router.models, fastroute.Decision, lambda *args: None,
                                         lambda x, hint: "not an analysis")
    with pytest.raises(TypeError, match="FastRoutePlan"):
        stand_in.route(router.policy, router.feedback_store, INPUTS[0], None, None)


def test_a_stand_in_analyzer_routes_plain_values_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    row = np.full(len(FEATURE_NAMES), np.nan, dtype=np.float32)
    row[0] = fastroute.MODALITIES.index("text")
    monkeypatch.setattr(fastroute.decision.fast_path, "analyze", lambda x, hint=None: fastroute.Analysis(row))
    router = make_router()
    assert router._fast_path.route(router.policy, router.feedback_store, 42, None, None).model == "reader"
    bad = fastroute._core.FastRoute(router.models, fastroute.Decision, fastroute.decision.fast_path._plan,
                                    lambda x, hint: "not an analysis")
    with pytest.raises(TypeError, match="must return a fastroute.Analysis"):
        bad.route(router.policy, router.feedback_store, 42, None, None)
    assert native_path(router.models) is not router._fast_path
