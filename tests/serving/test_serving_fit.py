"""`fastroute fit` and `fastroute evaluate` on a decision log written by DecisionLog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="fit needs the 'learn' extra")
pytest.importorskip("tqdm", reason="fit and evaluate need the 'learn' extra")

from fastroute import FEATURE_NAMES  # noqa: E402
from fastroute.cli import main  # noqa: E402
from fastroute.decision import load  # noqa: E402
from fastroute.serving.decision_log import DecisionLog, read_log  # noqa: E402
from fastroute.serving.replay import replay  # noqa: E402

WIDTH = FEATURE_NAMES.index("width")


def write_log(path: Path, n: int, seed: int = 0) -> None:
    """A uniformly random logging policy over two models: "narrow" earns 1 on inputs narrower
    than 50, "wide" on the others; every decision gets its reward as feedback."""
    rng = np.random.default_rng(seed)
    log = DecisionLog(path)
    for i in range(n):
        features = np.full(len(FEATURE_NAMES), np.nan)
        features[WIDTH] = rng.uniform(0, 100)
        model = ["narrow", "wide"][rng.integers(2)]
        reward = float((features[WIDTH] < 50) == (model == "narrow"))
        log.record({"kind": "decision", "id": f"d{i}", "time": float(i), "model": model, "version": "1",
                    "modality": "image", "reason": "random", "score": None, "propensity": 0.5,
                    "candidates": ["narrow", "wide"], "features": features, "latency_s": 0.001, "outcome": "ok"})
        log.record({"kind": "feedback", "id": f"d{i}", "time": float(i), "reward": reward})
    log.record({"kind": "decision", "id": "no-feedback", "time": 0.0, "model": "wide", "version": "1",
                "modality": "image", "reason": "random", "propensity": 0.5, "candidates": ["narrow", "wide"],
                "features": [None] * len(FEATURE_NAMES), "outcome": "ok"})
    log.close()


def test_fit_learns_the_better_model_per_input_and_evaluate_estimates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "decisions.jsonl"
    write_log(log, 600)
    policy_path = tmp_path / "policy.npz"
    assert main(["fit", str(log), "--policy", "tree", "--max-depth", "3", "-o", str(policy_path)]) == 0
    assert "600 rewarded decisions (1 without reward)" in capsys.readouterr().err
    policy = load(policy_path)
    probe = np.full((2, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    probe[:, WIDTH] = [10, 90]
    assert policy.decide_batch(probe).names() == ["narrow", "wide"]

    assert main(["evaluate", str(log), str(policy_path)]) == 0
    report = capsys.readouterr().out
    logging_mean = float(report.split("mean reward ")[1].split()[0])
    snips = float(report.split("SNIPS")[1].split()[0])
    assert abs(logging_mean - 0.5) < 0.1  # random logging earns about half
    assert snips > 0.9  # the learned policy would have earned about all of it


def test_user_features_in_the_log_are_fitted_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "premium" earns 1 for tier-1 users and "basic" for the others: only the logged user feature tells.
    rng = np.random.default_rng(1)
    log_path = tmp_path / "decisions.jsonl"
    log = DecisionLog(log_path)
    names = [*FEATURE_NAMES, "tier"]
    for i in range(400):
        tier = int(rng.integers(2))
        model = ["basic", "premium"][rng.integers(2)]
        record = {"kind": "decision", "id": f"d{i}", "model": model, "propensity": 0.5, "candidates": ["basic", "premium"]}
        if i < 20:  # logged before the policy read the user feature: analyzer features only
            record["features"] = [None] * len(FEATURE_NAMES)
        else:
            record["features"], record["feature_names"] = [None] * len(FEATURE_NAMES) + [tier], names
        log.record(record)
        log.record({"kind": "feedback", "id": f"d{i}", "reward": float((tier == 1) == (model == "premium"))})
    log.close()

    data = replay(read_log([log_path]))
    assert data.feature_names == tuple(names) and data.features.shape == (400, len(names))
    assert np.isnan(data.features[:20, -1]).all() and not np.isnan(data.features[20:, -1]).any()
    assert np.isnan(data.columns(("tier", "other"))[:, 1]).all()  # a column no decision logged

    policy_path = tmp_path / "policy.npz"
    assert main(["fit", str(log_path), "--policy", "tree", "--max-depth", "2", "-o", str(policy_path)]) == 0
    assert "with the user features ['tier']" in capsys.readouterr().err
    policy = load(policy_path)
    assert tuple(policy.feature_names) == tuple(names)
    probe = np.full((2, len(names)), np.nan, dtype=np.float32)
    probe[:, -1] = [0, 1]
    assert policy.decide_batch(probe).names() == ["basic", "premium"]
    assert main(["evaluate", str(log_path), str(policy_path)]) == 0
    assert float(capsys.readouterr().out.split("SNIPS")[1].split()[0]) > 0.9


def test_a_log_without_rewards_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "decisions.jsonl"
    DecisionLog(log).close()
    assert main(["fit", str(log), "-o", str(tmp_path / "p.npz")]) == 1
    assert "has feedback with a reward" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "p.npz")]) == 1
    assert "cannot read decision log" in capsys.readouterr().err
    assert main(["fit", str(log), "-o", str(tmp_path / "policy.json")]) == 1
    assert "name the output policy.npz" in capsys.readouterr().err
