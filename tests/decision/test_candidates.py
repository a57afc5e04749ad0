"""The policy contract: a policy is given the candidates for its input, never the registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastroute
from fastroute import Candidates, Choice, NoRoute, Policy, Router
from fastroute.library import ModelSpec, Registry


class Recording(Policy):
    """Remembers what it was given; picks the cheapest candidate."""

    def __init__(self) -> None:
        self.seen: list[Candidates] = []

    def select(self, analysis, candidates):
        self.seen.append(candidates)
        cheapest = min(candidates, key=lambda candidate: candidate.cost)
        return Choice(cheapest.name, f"cheapest of {len(candidates)}")


@pytest.fixture
def router():
    router = Router()
    router.register("big", lambda x: "big", modality="tabular", cost=5.0, tags=["gpu"])
    router.register("small", lambda x: "small", modality="tabular", cost=1.0)
    router.register("words", lambda x: "words", modality="text", cost=0.5)
    yield router
    router.close()


def test_a_policy_sees_only_the_models_serving_the_input_modality(router: Router) -> None:
    policy = Recording()
    router.policy = policy
    assert router.infer(np.ones(3)) == "small"
    assert router.infer("some text") == "words"
    tabular, text = policy.seen
    assert not isinstance(tabular, Registry)
    assert (tabular.modality, tabular.names) == ("tabular", ("big", "small"))
    assert tabular["big"].cost == 5.0 and tabular["big"].tags == frozenset({"gpu"})
    assert (text.modality, text.names) == ("text", ("words",))
    assert "words" not in tabular and len(tabular) == 2


def test_batch_paths_give_each_row_its_own_candidates(router: Router) -> None:
    policy = Recording()
    router.policy = policy
    assert router.route_batch([np.ones(3), "text", np.ones(2)]).names() == ["small", "words", "small"]
    assert [c.modality for c in policy.seen] == ["tabular", "text", "tabular"]


def test_candidates_are_an_immutable_snapshot(router: Router) -> None:
    before = router.models.catalog.for_modality("tabular")
    with pytest.raises(AttributeError):
        before.names = ("other",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before["big"].cost = 0.0  # type: ignore[misc]
    router.register("tiny", lambda x: "tiny", modality="tabular", cost=0.1)
    assert before.names == ("big", "small")
    assert router.models.catalog.for_modality("tabular").names == ("big", "small", "tiny")
    assert router.models.catalog.for_modality("tabular") is router.models.catalog.for_modality("tabular")


def test_the_catalog_follows_the_default_version() -> None:
    registry = Registry()
    registry.register(ModelSpec("m", "1", lambda x: x, "tabular", cost=1.0))
    registry.register(ModelSpec("m", "2", lambda x: x, "tabular", cost=2.0))
    assert registry.catalog.for_modality("tabular")["m"].cost == 2.0  # the latest version
    registry.set_alias("m", "stable", "1")
    assert registry.catalog.for_modality("tabular")["m"].cost == 1.0
    registry.remove_alias("m", "stable")
    assert registry.catalog.for_modality("tabular")["m"].cost == 2.0
    registry.unregister("m", "2")
    registry.unregister("m", "1")
    assert "m" not in registry.catalog.for_modality("tabular")
    assert registry.catalog.registered == {}


def test_by_modality_names_what_is_registered_when_nothing_serves_the_input(router: Router) -> None:
    with pytest.raises(NoRoute, match=r"no model serves modality 'image'; registered: .*'words': 'text'"):
        router.route(np.ones((32, 32, 3), np.uint8))


def test_by_modality_takes_a_preferred_model_only_when_it_serves_the_modality(router: Router) -> None:
    router.policy = fastroute.ByModality(preferred={"tabular": "words", "text": "words"})
    assert router.route(np.ones(3)).model == "big"  # 'words' serves text, not tabular
    assert router.route("hello").model == "words"
