"""Rules and Threshold policies: parsing, scoring, reasons, persistence, bad input."""

import json

import numpy as np
import pytest

import fastroute
from fastroute import FEATURE_NAMES, MODALITIES, InvalidInput, PolicyError, Rule, Rules, Threshold
from fastroute.decision import load


def row(**values):
    vector = np.full(len(FEATURE_NAMES), np.nan, dtype=np.float32)
    for name, value in values.items():
        vector[FEATURE_NAMES.index(name)] = MODALITIES.index(value) if name == "modality" else value
    return vector


@pytest.fixture
def rules():
    return Rules(
        [
            Rule("image", "height > 512 and channels == 3", model="big"),
            Rule("image", "", model="small"),
            Rule(None, "100 <= width < 2000", model="wide"),
            Rule("text", "words != 0 and length >= 1e3", model="long_text"),
        ],
        default="fallback",
    )


@pytest.mark.parametrize(
    ("values", "model", "rule"),
    [
        ({"modality": "image", "height": 600, "channels": 3}, "big", 0),
        ({"modality": "image", "height": 512, "channels": 3}, "small", 1),
        ({"modality": "image", "height": 600, "channels": 1}, "small", 1),
        ({"modality": "audio", "width": 100}, "wide", 2),
        ({"modality": "audio", "width": 2000}, "fallback", -1),
        ({"modality": "text", "words": 5, "length": 1000}, "long_text", 3),
        ({"modality": "text", "words": 0, "length": 5000}, "fallback", -1),
        ({"modality": "text", "length": 5000}, "fallback", -1),  # missing words fails !=
    ],
)
def test_rules_first_match_wins(rules, values, model, rule):
    choice = rules.select(_Analysis(row(**values)))
    assert choice.model == model
    assert choice.reason.startswith(f"rule {rule}:" if rule >= 0 else "default")


def test_rules_batch_matches_single_rows(rules):
    rng = np.random.default_rng(1)
    batch = np.stack([
        row(modality=MODALITIES[m], height=h, channels=c, width=w, words=wd, length=ln)
        for m, h, c, w, wd, ln in zip(rng.integers(0, 4, 300), rng.integers(0, 1024, 300), rng.integers(1, 4, 300),
                                     rng.integers(0, 3000, 300), rng.integers(0, 3, 300), rng.integers(0, 2000, 300))
    ])
    batched = rules.decide_batch(batch).names()
    assert batched == [rules.select(_Analysis(r)).model for r in batch]
    assert len(set(batched)) == 5


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("height > 512 and chanels == 3", "unknown feature 'chanels' at position 17"),
        ("height >> 512", "at position 0"),
        ("height > 512 and", "at position 16"),
        ("height > 5 $ 3", "unexpected character '\\$' at position 11"),
        ("512 < 3", "at position 0"),
    ],
)
def test_rules_malformed_fail_at_construction_with_position(when, message):
    with pytest.raises(PolicyError, match=message):
        Rules([Rule(None, when, model="a")], default="a")


def test_rules_unknown_model_and_modality():
    with pytest.raises(PolicyError, match="rule 0 routes to unknown model 'c'"):
        Rules([Rule(None, "", model="c")], default="a", models=["a", "b"])
    with pytest.raises(PolicyError, match="unknown modality 'video'"):
        Rules([Rule("video", "", model="a")], default="a")


def test_rules_save_load_roundtrip(rules, tmp_path):
    path = tmp_path / "rules.json"
    rules.save(path)
    loaded = load(path)
    probe = row(modality="image", height=900, channels=3)
    assert loaded.select(_Analysis(probe)) == rules.select(_Analysis(probe))
    assert loaded.models == rules.models


def test_corrupt_policy_files_are_rejected(rules, tmp_path):
    path = tmp_path / "rules.json"
    rules.save(path)
    document = json.loads(path.read_text())
    document["rules"][0][1] = "height >"
    path.write_text(json.dumps(document))
    with pytest.raises(PolicyError, match="rule 0"):
        load(path)
    path.write_text("{not json")
    with pytest.raises(PolicyError, match="not a readable policy file"):
        load(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(PolicyError, match="not a fastroute policy file"):
        load(path)


def test_threshold_routes_above_cuts_and_missing():
    names = FEATURE_NAMES + ("difficulty",)
    policy = Threshold("difficulty", ["cheap", "mid", "strong"], [0.3, 0.7], feature_names=names)
    scores = np.array([0.1, 0.3, 0.31, 0.7, 0.9, np.nan], dtype=np.float32)
    matrix = np.full((len(scores), len(names)), np.nan, dtype=np.float32)
    matrix[:, -1] = scores
    assert policy.decide_batch(matrix).names() == ["cheap", "cheap", "mid", "mid", "strong", "cheap"]
    assert "difficulty missing" in policy.select(_Analysis(matrix[-1])).reason


def test_threshold_calibrate_share_and_budget():
    names = FEATURE_NAMES + ("difficulty",)
    scores = np.random.default_rng(0).random(10_000)
    policy = Threshold("difficulty", ["weak", "strong"], feature_names=names).calibrate(scores, share=0.25)
    matrix = np.zeros((len(scores), len(names)), dtype=np.float32)
    matrix[:, -1] = scores
    assert policy.predict(matrix).mean() == pytest.approx(0.25, abs=0.002)
    by_budget = Threshold("difficulty", ["weak", "strong"], feature_names=names)
    by_budget.calibrate(scores, budget=4.0, costs=[1.0, 11.0])  # share 0.3 fits the budget
    assert by_budget.predict(matrix).mean() == pytest.approx(0.3, abs=0.002)


def test_threshold_bad_configuration():
    with pytest.raises(PolicyError, match="unknown score feature 'nope'"):
        Threshold("nope", ["a", "b"])
    with pytest.raises(PolicyError, match="2 models need 1 cuts, got 2"):
        Threshold("length", ["a", "b"], [1.0, 2.0])
    with pytest.raises(PolicyError, match="strictly ascending"):
        Threshold("length", ["a", "b", "c"], [2.0, 1.0])
    with pytest.raises(PolicyError, match="not fitted"):
        Threshold("length", ["a", "b"]).predict(np.zeros((1, len(FEATURE_NAMES))))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((3, 5)), rf"shape \(n, {len(FEATURE_NAMES)}\), got \(3, 5\)"),
        (np.zeros((3, len(FEATURE_NAMES)), dtype=complex), "must be numeric, got dtype complex128"),
        (np.array([["a"] * len(FEATURE_NAMES)]), "must be numeric"),
    ],
)
def test_feature_matrices_of_wrong_width_or_dtype(rules, matrix, message):
    with pytest.raises(InvalidInput, match=message):
        rules.decide_batch(matrix)


def test_scorer_boundary_checks_dtype_and_layout(rules):
    scorer = rules._state.scorer
    with pytest.raises(InvalidInput, match="float32"):
        scorer.score_batch(np.zeros((2, len(FEATURE_NAMES))), 1)
    with pytest.raises(InvalidInput, match="C-contiguous"):
        scorer.score_batch(np.zeros((len(FEATURE_NAMES), 2), dtype=np.float32).T, 1)
    with pytest.raises(InvalidInput, match=f"{len(FEATURE_NAMES) + 1} columns"):
        scorer.score(np.zeros(len(FEATURE_NAMES) + 1, dtype=np.float32))


def test_policy_types_are_exported():
    for name in ("Rules", "Rule", "Tree", "Forest", "Threshold", "evaluate", "cross_validate"):
        assert name in fastroute.__all__


class _Analysis:
    def __init__(self, features):
        self.features = features
        self.modality = "tabular"


def test_recalibrating_a_policy_in_use_never_mixes_old_and_new_state():
    import threading

    names = FEATURE_NAMES + ("risk",)
    policy = Threshold("risk", ["weak", "strong"], feature_names=names).calibrate([0.0, 1.0], share=0.5)
    probe = np.zeros(len(names), dtype=np.float32)
    probe[-1] = 0.5
    seen, stop = [], threading.Event()

    def select_forever():
        while not stop.is_set():
            seen.append(policy.select(_Analysis(probe)))

    worker = threading.Thread(target=select_forever)
    worker.start()
    for i in range(300):
        policy.calibrate(np.linspace(0, 1, 11), share=0.2 if i % 2 else 0.8)
    stop.set()
    worker.join()
    for choice in seen:  # the model must follow from the cut the same state reports
        cut = float(choice.reason.split("cuts [")[1].split("]")[0])
        assert choice.model == ("strong" if 0.5 > cut else "weak")
