"""Policies choose only among models able to take the input (issue 9: wrong routes).

Before the fix, rule tables, trees, forests and thresholds returned whatever
model their arrays named, whatever modality it was registered for: the
README's Rules example sent a 1-D array, audio and PDF bytes to an image model.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastroute
from fastroute import FEATURE_NAMES, Forest, Rule, Rules, Threshold, Tree
from fastroute.errors import NoRoute

MODALITY = FEATURE_NAMES.index("modality")
IMAGE = np.zeros((1024, 768, 3), np.uint8)
PDF = b"%PDF-1.7\n" + b"x" * 200


def _named(name):
    return lambda x: name


def _router(models: dict[str, str]) -> fastroute.Router:
    router = fastroute.Router()
    for name, modality in models.items():
        router.register(name, _named(name), modality=modality)
    return router


def readme_rules_router() -> fastroute.Router:
    router = _router({"big": "image", "small": "image", "reader": "text"})
    router.policy = Rules(
        [Rule("image", "height > 512 and channels == 3", model="big"), Rule("text", "", model="reader")],
        default="small",
    )
    return router


@pytest.mark.parametrize(
    ("x", "modality"),
    [(np.ones(8), "tabular"), (np.sin(np.linspace(0, 100, 16000)).astype(np.float32), "audio"), (PDF, "document")],
    ids=["tabular", "audio", "document"],
)
def test_rules_default_never_sends_an_input_to_a_model_of_another_modality(x, modality):
    router = readme_rules_router()
    assert fastroute.analyze(x).modality == modality
    served = "{'big': 'image', 'reader': 'text', 'small': 'image'}"
    with pytest.raises(NoRoute, match=re.escape(f"modality '{modality}': its models serve {served}")):
        router.route(x)
    with pytest.raises(NoRoute, match=modality):
        router.infer(x)


def test_rules_still_route_what_their_models_take():
    router = readme_rules_router()
    assert router.infer(IMAGE) == "big"
    assert router.infer(np.zeros((64, 64), np.uint8)) == "small"
    assert router.infer("some words") == "reader"


def test_a_rule_naming_a_model_of_another_modality_is_skipped():
    router = _router({"table": "tabular", "picture": "image"})
    # Rule 0 matches every input but names the image model: a table goes on to rule 1.
    router.policy = Rules([Rule(None, "", model="picture"), Rule(None, "", model="table")], default="picture")
    assert router.route(np.ones(8)).model == "table"
    assert router.route(IMAGE).model == "picture"
    assert "rule 1" in router.route(np.ones(8)).reason


def _forest_over(models: list[str], best: str) -> Forest:
    """A forest whose scores always rank ``best`` first, then the others in order."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, len(FEATURE_NAMES))).astype(np.float32)
    outcomes = np.tile(np.linspace(0.9, 0.1, len(models)), (200, 1))
    order = [best] + [m for m in models if m != best]
    outcomes = outcomes[:, [order.index(m) for m in models]]
    return Forest(n_trees=3, max_depth=2).fit(features, outcomes, models=models)


@pytest.mark.parametrize("policy_class", [Tree, Forest])
def test_a_learned_policy_picks_the_best_model_that_takes_the_input(policy_class):
    models = ["img_a", "img_b", "img_c", "words"]
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, len(FEATURE_NAMES))).astype(np.float32)
    outcomes = np.tile([0.9, 0.6, 0.5, 0.1], (200, 1))  # the text model is always predicted worst
    kwargs = {"n_trees": 3} if policy_class is Forest else {}
    policy = policy_class(max_depth=2, **kwargs).fit(features, outcomes, models=models)
    router = _router({"img_a": "image", "img_b": "image", "img_c": "image", "words": "text"})
    router.policy = policy
    assert router.route(IMAGE).model == "img_a"
    decision = router.route("a text input")
    assert decision.model == "words"
    with pytest.raises(NoRoute, match="modality 'tabular'"):
        router.route(np.ones(4))


def test_a_forest_over_image_models_refuses_text():
    router = _router({"img_a": "image", "img_b": "image", "img_c": "image", "words": "text"})
    router.policy = _forest_over(["img_a", "img_b", "img_c"], best="img_b")
    assert router.route(IMAGE).model == "img_b"
    with pytest.raises(NoRoute, match=r"modality 'text'.*img_a.*img_b.*img_c"):
        router.route("a text input")


def test_threshold_gives_way_to_a_model_that_takes_the_input():
    names = FEATURE_NAMES + ("difficulty",)
    router = _router({"cheap": "text", "vision": "image", "strong": "text"})
    router.policy = Threshold("difficulty", ["cheap", "vision", "strong"], [0.3, 0.6], feature_names=names)
    assert router.route("q", features={"difficulty": 0.1}).model == "cheap"
    assert router.route("q", features={"difficulty": 0.5}).model == "strong"  # vision cannot read text
    assert router.route(IMAGE, features={"difficulty": 0.1}).model == "vision"


def test_batches_are_masked_like_single_routes():
    router = _router({"img_a": "image", "img_b": "image", "words": "text", "table": "tabular"})
    router.policy = _forest_over(["img_a", "img_b", "words", "table"], best="img_b")
    inputs = [IMAGE, "some text", np.ones(4), IMAGE]
    assert router.route_batch(inputs).names() == ["img_b", "words", "table", "img_b"]
    assert [router.route(x).model for x in inputs] == ["img_b", "words", "table", "img_b"]
    assert router.infer_batch(inputs) == ["img_b", "words", "table", "img_b"]


def test_a_batch_holding_an_input_no_model_takes_raises_no_route():
    router = readme_rules_router()
    with pytest.raises(NoRoute, match=r"input 1: .*modality 'tabular'"):
        router.route_batch([IMAGE, np.ones(8)])
    with pytest.raises(NoRoute, match="modality 'tabular'"):
        router.infer_batch([IMAGE, np.ones(8)])


def test_masking_follows_registrations():
    router = _router({"img_a": "image", "words": "text"})
    router.policy = _forest_over(["img_a", "words", "late"], best="late")
    assert router.route(IMAGE).model == "img_a"  # "late", the best, is not registered yet: it takes nothing
    assert router.route("text").model == "words"
    router.register("late", _named("late"), modality="image")
    assert router.route(IMAGE).model == "late"
    assert router.route("text").model == "words"


def test_a_policy_used_alone_is_not_masked():
    """Without a router there are no candidates: predict and explain see every model."""
    policy = _forest_over(["img_a", "words"], best="words")
    row = fastroute.analyze(IMAGE).features
    assert policy.models[policy.predict(row[None, :])[0]] == "words"
    assert "words" in policy.explain(row)
