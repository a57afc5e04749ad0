"""A policy built on an older analyzer schema (before nan_share and inf_share) is refused with the reason."""

from __future__ import annotations

import json

import pytest

from fastroute import FEATURE_NAMES, PolicyError, Router, Rule, Rules
from fastroute.decision import load

OLD_FEATURE_NAMES = tuple(name for name in FEATURE_NAMES if name not in ("nan_share", "inf_share"))


def test_schema_holds_the_missing_value_shares():
    assert FEATURE_NAMES.index("nan_share") == FEATURE_NAMES.index("zero_share") + 1
    assert FEATURE_NAMES.index("inf_share") == FEATURE_NAMES.index("nan_share") + 1


def test_a_saved_policy_from_the_older_schema_loads_but_is_not_served(tmp_path):
    path = tmp_path / "rules.json"
    Rules([Rule("tabular", "mean > 1", model="a")], default="b", models=["a", "b"]).save(path)
    document = json.loads(path.read_text())
    document["feature_names"] = list(OLD_FEATURE_NAMES)
    path.write_text(json.dumps(document))
    old = load(path)  # still readable, e.g. to inspect or evaluate on old feature rows
    assert old.feature_names == OLD_FEATURE_NAMES
    router = Router()
    router.register("a", lambda x: "a", modality="tabular")
    router.register("b", lambda x: "b", modality="tabular")
    with pytest.raises(PolicyError, match=r"lacks \['nan_share', 'inf_share'\]: built on an older FEATURE_NAMES, refit it"):
        router.policy = old
    router.close()


def test_policies_on_other_features_get_no_schema_hint():
    router = Router()
    with pytest.raises(PolicyError, match=r"got \['x0', 'x1'\]\.\.\.$"):
        router.policy = Rules([], default="a", models=["a"], feature_names=("x0", "x1"))
    router.close()
