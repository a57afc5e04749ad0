"""Router integration of the decision engine: policy swap, user features, batch routing.

The analyzer is stood in by a small fake (a dict of feature values -> vector)
so these tests exercise the decision side alone; with the real analyzer the
same calls route real inputs.
"""

import threading
from dataclasses import dataclass

import numpy as np
import pytest

import fastroute.router as router_module
from fastroute import FEATURE_NAMES, MODALITIES, InvalidInput, NoRoute, PolicyError, Router, Rule, Rules, Threshold
from helpers import GeneralPathOnly


@dataclass
class FakeAnalysis:
    modality: str
    features: np.ndarray


@dataclass
class FakeBatch:
    features: np.ndarray
    modality_codes: np.ndarray

    @property
    def modalities(self) -> list[str]:
        return [MODALITIES[code] for code in self.modality_codes]


def fake_analyze(x, hint=None):
    vector = np.full(len(FEATURE_NAMES), np.nan, dtype=np.float32)
    for name, value in x.items():
        vector[FEATURE_NAMES.index(name)] = MODALITIES.index(value) if name == "modality" else value
    return FakeAnalysis(x["modality"], vector)


def fake_analyze_batch(xs):
    rows = [fake_analyze(x) for x in xs]
    codes = np.array([MODALITIES.index(r.modality) for r in rows], dtype=np.uint8)
    return FakeBatch(np.stack([r.features for r in rows]), codes)


@pytest.fixture
def router(monkeypatch):
    monkeypatch.setattr(router_module, "analyze", fake_analyze)
    monkeypatch.setattr(router_module, "analyze_batch", fake_analyze_batch)
    router = Router()
    router._fast_path = GeneralPathOnly()  # the native path analyses in C++, where no fake reaches
    for name in ("small", "big", "fallback"):
        router.register(name, lambda x, name=name: name, modality="image")
    return router


def size_rules():
    return Rules([Rule("image", "height > 512", model="big"), Rule("image", "", model="small")], default="fallback")


def test_route_uses_the_assigned_policy_and_carries_the_reason(router):
    router.policy = size_rules()
    decision = router.route({"modality": "image", "height": 1024})
    assert decision.model == "big"
    assert decision.reason == "rule 0: image: height > 512; latest version '1'"
    assert router.route({"modality": "image", "height": 64}).model == "small"
    assert router.infer({"modality": "image", "height": 64}) == "small"


def test_route_batch_goes_through_the_batch_scorer(router):
    router.policy = size_rules()
    xs = [{"modality": "image", "height": h} for h in (10, 600, 512, 2000)]
    batch = router.route_batch(xs)
    assert batch.names() == ["small", "big", "small", "big"]
    assert batch.index.dtype == np.int32
    # Text once went to the image model "fallback" through the default: no model here takes it.
    with pytest.raises(NoRoute, match="input 4: .*modality 'text'"):
        router.route_batch(xs + [{"modality": "text"}])


def test_user_features_from_requests_and_extractors(router):
    names = FEATURE_NAMES + ("tenant_tier", "risk")
    policy = Rules(
        [Rule(None, "tenant_tier >= 2", model="big"), Rule(None, "risk > 0.5", model="small")],
        default="fallback",
        feature_names=names,
    )
    router.add_features(["risk"], lambda x: [x.get("height", 0) / 1000])
    router.policy = policy
    assert router.route({"modality": "image", "height": 900}).model == "small"
    assert router.route({"modality": "image", "height": 900}, features={"tenant_tier": 3}).model == "big"
    assert router.route({"modality": "image", "height": 100}).model == "fallback"  # tier missing
    xs = [{"modality": "image", "height": 900}, {"modality": "image", "height": 100}]
    assert router.route_batch(xs, features={"tenant_tier": [0, 5]}).names() == ["small", "big"]
    assert router.route_batch(xs, features=np.array([[5.0, 0.0], [0.0, 0.9]])).names() == ["big", "small"]
    with pytest.raises(InvalidInput, match="unknown user feature 'tier'"):
        router.route({"modality": "image"}, features={"tier": 1})
    seen = router.route({"modality": "image", "height": 900}, features={"tenant_tier": 3}).features
    assert seen.names == names and seen.features[-2:].tolist() == [3.0, pytest.approx(0.9)]  # the row the policy read


def test_decisions_carry_their_analysis_and_time_analyze_and_decide_when_asked(router):
    from fastroute import _core

    x = {"modality": "image", "height": 900}
    decision = router.route(x)
    assert decision.features.modality == "image" and len(decision.features.features) == len(FEATURE_NAMES)
    assert router.route_stages is None  # off by default: nothing recorded
    router.route_stages = _core.RouteStages()
    for _ in range(5):
        router.route(x)
    router.infer(x)
    router.submit(x).result(5)
    stages = router.route_stages.snapshot()
    for stage in ("analyze", "decide"):
        counts, total_ns = stages[stage]
        assert sum(counts) == 7 and total_ns > 0


def test_feature_names_are_checked_once_at_registration(router):
    router.add_features(["risk"], lambda x: [0.0])
    with pytest.raises(PolicyError, match="'risk' is already defined"):
        router.add_features(["risk"], lambda x: [1.0])
    with pytest.raises(PolicyError, match="'height' is already defined"):
        router.add_features(["height"], lambda x: [1.0])
    with pytest.raises(PolicyError, match="must be an identifier"):
        router.add_features(["not a name"], lambda x: [1.0])


def test_extractor_returning_the_wrong_count_is_named(router):
    router.add_features(["a", "b"], lambda x: [1.0])
    router.policy = Threshold("a", ["small", "big"], [0.5], feature_names=FEATURE_NAMES + ("a", "b"))
    with pytest.raises(InvalidInput, match=r"extractor for \['a', 'b'\] returned 1 values"):
        router.route({"modality": "image"})


def test_policy_assignment_is_validated(router):
    with pytest.raises(PolicyError, match="must be a fastroute Policy"):
        router.policy = "big"
    with pytest.raises(PolicyError, match="not fitted"):
        router.policy = Threshold("height", ["small", "big"])
    with pytest.raises(PolicyError, match="must start with fastroute.FEATURE_NAMES"):
        router.policy = Threshold("x1", ["small", "big"], [0.0], feature_names=("x0", "x1"))


def test_policy_swap_under_concurrent_routing_is_atomic(router):
    to_small = Rules([], default="small")
    to_big = Rules([], default="big")
    router.policy = to_small
    seen, errors, stop = set(), [], threading.Event()

    def route_forever():
        while not stop.is_set():
            try:
                decision = router.route({"modality": "image"})
                seen.add((decision.model, decision.reason))
            except Exception as error:  # collected: a torn policy would surface here
                errors.append(error)

    threads = [threading.Thread(target=route_forever) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(2000):
        router.policy = to_big if i % 2 else to_small
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    version = "; latest version '1'"
    assert seen <= {("small", "default: no rule matched -> small" + version), ("big", "default: no rule matched -> big" + version)}


def test_real_inputs_route_through_the_analyzer_and_the_compiled_rules():
    router = Router()
    for name, modality in (("vision_big", "image"), ("vision_small", "image"), ("reader", "text"), ("table", "tabular")):
        router.register(name, lambda x, name=name: name, modality=modality)
    router.policy = Rules(
        [
            Rule("image", "height > 512 and channels == 3", model="vision_big"),
            Rule("image", "", model="vision_small"),
            Rule("text", "words >= 1", model="reader"),
        ],
        default="table",
    )
    inputs = [np.zeros((600, 800, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), "two words", np.ones(16)]
    expected = ["vision_big", "vision_small", "reader", "table"]
    assert [router.route(x).model for x in inputs] == expected
    assert router.route_batch(inputs).names() == expected
    assert router.route(inputs[0]).reason == "rule 0: image: height > 512 and channels == 3; latest version '1'"
