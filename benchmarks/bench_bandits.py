"""Online learning: fastroute's bandits vs Vowpal Wabbit and MABWiser on real routing logs.

Online replay (scenario records): requests of a log arrive one at a time in a
random order; each learner decides, sees only the chosen model's outcome and
updates. Logs: ASlib QBF-2011 and MAXSAT12-PMS (reward 1 - PAR10 / (10 x
cutoff), in [0, 1]), RouteLLM GSM8K (correct or not; the prompt features of
fastroute.tools.datasets) and RouterDC 7-LLM (score in [0, 1]; a random 2,000
of the 9,408 test prompts per order; fastroute's analyzer features of the
prompt text plus word 1-2 gram hashes from fastroute.analyzer.ngrams folded
to 32 columns). Every learner reads the same standardised matrix (sign(x) log1p|x|,
then z-scored over the log, missing = 0). Reported per log, averaged over the
stream orders: mean reward per request and regret (the per-input oracle's
reward minus the learner's, per request and in total). Baselines: the best
single model in hindsight, uniform random, the oracle, an offline Forest fitted
on the first 10% of the stream with every model's outcome (that 10% is served
at random's expected reward while it is collected), Vowpal Wabbit
(--cb_explore_adf -q sa; epsilon-greedy 0.05 / 0.1 and SquareCB) and MABWiser
LinUCB / LinTS (alpha 0.1 / 0.3 / 1); fastroute LinUCB (alpha 0.1 / 0.3 / 1),
LinThompson (0.05 / 0.1 / 0.3), Gaussian Thompson (context-free). Fair tuning: every learner's settings are
chosen on one separate tuning order, then evaluated on the others.

Drift: on QBF-2011, the best solver's outcomes are replaced by the worst
solver's for the middle third of the stream; reported: requests until the
degraded solver's share of the last 100 decisions falls below 10% of that window, and
after recovery until it is back to 90% of its share before the drift.

Cost (timings, one row per call, single thread, QBF's 46 features, 5 models):
decide + update against MABWiser LinUCB and VW's Python API; decide alone
against the compiled Tree's ``route()`` (both through a Router) and the Tree
policy's ``select``.

Run: python -m pytest benchmarks/bench_bandits.py --benchmark-only
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastroute import FEATURE_NAMES, Forest, LinThompson, LinUCB, Router, ThompsonSampling, Tree, analyze_batch
from fastroute.tools.datasets import load_aslib, load_gsm8k, prompt_features

pytest.importorskip("vowpalwabbit", reason="needs the 'bench' extra (Vowpal Wabbit)")
pytest.importorskip("mabwiser", reason="needs the 'bench' extra (MABWiser)")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROUTERDC_SETS = ("mmlu_test", "gsm8k-test", "cmmlu_test", "arc_challenge_test", "humaneval_test")


def shared_data() -> Path:
    import os

    path = Path(os.environ.get("FASTROUTE_SHARED_DATA", SHARED))
    if not path.is_dir():
        pytest.skip(f"needs the real routing logs in {path} (see ../shared/data/README.md)")
    return path


def standardised(features: np.ndarray) -> np.ndarray:
    values = features.astype(np.float64)
    values = np.sign(values) * np.log1p(np.abs(values))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        center, scale = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    center = np.nan_to_num(center)
    scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
    return np.nan_to_num((values - center) / scale).clip(-10, 10).astype(np.float32)


def load_log(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(standardised features (n, F), rewards (n, k), model names) of one log."""
    data = shared_data()
    if name in ("QBF-2011", "MAXSAT12-PMS"):
        scenario = load_aslib(data / "aslib" / name)
        return standardised(scenario.features), 1.0 - scenario.outcomes / (10 * scenario.cutoff), scenario.models
    if name == "GSM8K":
        responses = load_gsm8k(data / "routellm-gsm8k" / "gsm8k_responses.csv")
        return standardised(prompt_features(responses.prompts)), responses.outcomes, responses.models
    rows = [row for part in ROUTERDC_SETS for row in json.loads((data / "routerdc-7llm" / f"{part}.json").read_text())]
    models = tuple(rows[0]["scores"])
    rewards = np.array([[row["scores"][m] for m in models] for row in rows], dtype=np.float64)
    prompts = [row["question"] for row in rows]
    return standardised(np.hstack([analyze_batch(prompts).features, folded_ngrams(prompts)])), rewards, models


def folded_ngrams(texts, columns=32):
    """Word 1-2 gram hashes (fastroute's HashedNgrams, 2^10 columns) folded to ``columns``:
    column mod ``columns`` is itself a hash, narrow enough for a dense linear bandit."""
    from fastroute.analyzer.ngrams import HashedNgrams

    hashed = HashedNgrams("word", (1, 2), 2**10, alternate_sign=False).transform(texts).tocoo()
    dense = np.zeros((len(texts), columns))
    np.add.at(dense, (hashed.row, hashed.col % columns), hashed.data)
    return dense


# -- learners: decide(row) -> arm, update(row, arm, reward) ----------------------------


class FastrouteLearner:
    def __init__(self, make, k, width):
        self.policy = make(tuple(f"m{i}" for i in range(k)), width)

    def decide(self, row):
        return self.policy.decide(row)[0]

    def update(self, row, arm, reward):
        self.policy.update(row, arm, reward)


def fastroute_linear(kind, alpha):
    def make(models, width):
        names = tuple(f"x{i}" for i in range(width))
        return kind(models, feature_names=names, alpha=alpha, log_features=False, explore=0.0, seed=7)

    return lambda k, width: FastrouteLearner(make, k, width)


def fastroute_thompson(k, width):
    return FastrouteLearner(lambda models, _: ThompsonSampling(models, rewards="gaussian", seed=7), k, width)


class VWLearner:
    def __init__(self, arguments, k, width, seed):
        import vowpalwabbit

        self.k, self.rng = k, np.random.default_rng(seed)
        self.vw = vowpalwabbit.Workspace(f"--cb_explore_adf -q sa --quiet --random_seed {seed} {arguments}")
        self.actions = [f"|a arm{a}" for a in range(k)]
        self.probability = 1.0

    def _shared(self, row):
        return "shared |s " + " ".join(f"f{j}:{v:.5g}" for j, v in enumerate(row.tolist()) if v != 0.0)

    def decide(self, row):
        pmf = np.asarray(self.vw.predict([self._shared(row), *self.actions]), dtype=np.float64)
        arm = int(self.rng.choice(self.k, p=pmf / pmf.sum()))
        self.probability = float(pmf[arm] / pmf.sum())
        return arm

    def update(self, row, arm, reward):
        lines = [self._shared(row), *self.actions]
        lines[1 + arm] = f"0:{-reward:.6g}:{self.probability:.6g} {self.actions[arm]}"  # VW minimises cost
        self.vw.learn(lines)


def vw(arguments):
    return lambda k, width, seed=7: VWLearner(arguments, k, width, seed)


class MABWiserLearner:
    """MABWiser needs a fit before its first prediction: each model is tried once, round robin."""

    def __init__(self, policy, k, width, seed):
        from mabwiser.mab import MAB

        self.mab, self.k, self.fitted, self.warmup = MAB(arms=list(range(k)), learning_policy=policy, seed=seed), k, False, []

    def decide(self, row):
        if not self.fitted:
            return len(self.warmup)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(self.mab.predict(contexts=row[None, :].astype(np.float64)))

    def update(self, row, arm, reward):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.fitted:
                self.mab.partial_fit([arm], [reward], contexts=row[None, :].astype(np.float64))
                return
            self.warmup.append((row, arm, reward))
            if len(self.warmup) == self.k:
                rows, arms, rewards = zip(*self.warmup)
                self.mab.fit(list(arms), list(rewards), contexts=np.array(rows, dtype=np.float64))
                self.fitted = True


def mabwiser(name, alpha):
    def make(k, width, seed=7):
        from mabwiser.mab import LearningPolicy

        return MABWiserLearner(getattr(LearningPolicy, name)(alpha=alpha), k, width, seed)

    return make


FASTROUTE = {
    "fastroute LinUCB": [fastroute_linear(LinUCB, a) for a in (0.1, 0.3, 1.0)],
    "fastroute LinThompson": [fastroute_linear(LinThompson, a) for a in (0.05, 0.1, 0.3)],
    "fastroute Thompson (context-free)": [fastroute_thompson],
}
OTHERS = {
    "VW cb_explore_adf": [vw("--epsilon 0.05"), vw("--epsilon 0.1"), vw("--squarecb")],
    "MABWiser LinUCB": [mabwiser("LinUCB", a) for a in (0.1, 0.3, 1.0)],
    "MABWiser LinTS": [mabwiser("LinTS", a) for a in (0.1, 0.3, 1.0)],
}


def replay(make, features, rewards, order):
    learner = make(rewards.shape[1], features.shape[1])
    total = 0.0
    for row in order:
        x = features[row]
        arm = learner.decide(x)
        reward = float(rewards[row, arm])
        learner.update(x, arm, reward)
        total += reward
    return total


def offline_forest(features, rewards, order):
    head = order[: max(len(order) // 10, 2)]
    forest = Forest(n_trees=100, min_samples_leaf=2).fit(features[head], rewards[head], models=[f"m{i}" for i in range(rewards.shape[1])])
    rest = order[len(head):]
    chosen = forest.predict(features[rest])
    return rewards[head].mean(axis=1).sum() + rewards[rest, chosen].sum()


LOG_NAMES = ("QBF-2011", "MAXSAT12-PMS", "GSM8K", "RouterDC-7LLM")


@pytest.mark.timeout(3600)  # ten orders of a real log against MABWiser take minutes on a loaded machine
@pytest.mark.parametrize("log", LOG_NAMES)
def test_online_replay(benchmark, record, quick, log) -> None:
    features, rewards, models = load_log(log)
    n = len(rewards)
    length = min(n, 60 if quick else 2000)
    orders_count = 1 if quick else 10
    rng = np.random.default_rng(2024)
    tuning_order = rng.permutation(n)[:length]
    orders = [rng.permutation(n)[:length] for _ in range(orders_count)]
    group = f"online replay: {log} ({length} requests, {len(models)} models, {features.shape[1]} features)"

    def run():
        results = {}
        for name, candidates in {**FASTROUTE, **OTHERS}.items():
            tuned = candidates[0] if quick else max(candidates, key=lambda c: replay(c, features, rewards, tuning_order))
            results[name] = [replay(tuned, features, rewards, order) for order in orders]
        results["offline Forest on first 10%"] = [offline_forest(features, rewards, o) for o in orders]
        results["best single model (hindsight)"] = [rewards[o].mean(axis=0).max() * len(o) for o in orders]
        results["uniform random"] = [rewards[o].mean() * len(o) for o in orders]
        return results

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    oracle = np.array([rewards[o].max(axis=1).sum() for o in orders])
    best_regret = {}
    for name, totals in results.items():
        regret = oracle - np.array(totals)
        record(group, name, reward=float(np.mean(totals)) / length, regret_per_request=float(regret.mean()) / length,
               regret_total=float(regret.mean()), regret_sd=float(regret.std()))
        best_regret[name] = regret.mean()
    record(group, "oracle (per input)", reward=float(oracle.mean()) / length, regret_per_request=0.0, regret_total=0.0)
    ours = min(best_regret[name] for name in FASTROUTE)
    theirs = min(best_regret[name] for name in OTHERS)
    record("online replay: best fastroute vs best of VW and MABWiser (regret, lower is better)", log,
           fastroute=float(ours), vw_mabwiser=float(theirs), target_met=bool(ours <= theirs))


@pytest.mark.timeout(3600)
def test_drift(benchmark, record, quick) -> None:
    features, rewards, models = load_log("QBF-2011")
    n = len(rewards)
    rng = np.random.default_rng(7)
    best, worst = int(np.argmax(rewards.mean(axis=0))), int(np.argmin(rewards.mean(axis=0)))
    phase = 150 if quick else n
    stream = np.concatenate([rng.permutation(n)[:phase] for _ in range(3)])
    drifted = rewards.copy()
    drifted[:, best] = rewards[:, worst]
    policies = {
        "Thompson gaussian, decay 0.98": lambda: ThompsonSampling(models, rewards="gaussian", decay=0.98, explore=0.05, seed=1),
        "LinUCB, decay 0.99": lambda: LinUCB(models, feature_names=[f"x{i}" for i in range(features.shape[1])],
                                             decay=0.99, explore=0.05, log_features=False, alpha=0.3),
    }

    def run():
        out = {}
        for name, make in policies.items():
            policy = make()
            chosen = np.empty(len(stream), dtype=np.int64)
            for step, row in enumerate(stream):
                table = drifted if phase <= step < 2 * phase else rewards
                arm = policy.decide(features[row])[0]
                policy.update(features[row], arm, table[row, arm])
                chosen[step] = arm
            out[name] = chosen
        return out

    window = 100
    for name, chosen in benchmark.pedantic(run, rounds=1, iterations=1).items():
        share = np.convolve(chosen == best, np.ones(window), "valid") / window  # share[i]: decisions i..i+99
        before = share[phase - window]
        away = next((i + window - phase for i in range(phase - window + 1, 2 * phase - window) if share[i] < 0.1), None)
        back = next((i + window - 2 * phase for i in range(2 * phase - window + 1, len(share))
                     if share[i] >= 0.9 * before), None)
        record(f"drift on QBF-2011 ({phase} requests per phase, best solver {models[best]} degraded in phase 2)", name,
               share_before=float(before), requests_to_move_away=away, requests_to_come_back=back)


# -- cost per request ---------------------------------------------------------------


@pytest.fixture(scope="module")
def qbf():
    features, rewards, models = load_log("QBF-2011")
    return features, rewards, models


def stepper(learner, features, rewards):
    rows = itertools.cycle(range(len(rewards)))

    def step():
        row = next(rows)
        arm = learner.decide(features[row])
        learner.update(features[row], arm, float(rewards[row, arm]))

    return step


def warmed(make, features, rewards, steps=50):
    learner = make(rewards.shape[1], features.shape[1])
    step = stepper(learner, features, rewards)
    for _ in range(steps):
        step()
    return learner


@pytest.mark.benchmark(group="decide + update, one request: fastroute LinUCB vs MABWiser LinUCB")
def test_cost_mabwiser_linucb(benchmark, qbf) -> None:
    features, rewards, _ = qbf
    benchmark.extra_info["baseline"] = True
    benchmark(stepper(warmed(mabwiser("LinUCB", 1.0), features, rewards), features, rewards))


@pytest.mark.benchmark(group="decide + update, one request: fastroute LinUCB vs MABWiser LinUCB")
def test_cost_fastroute_linucb_vs_mabwiser(benchmark, qbf) -> None:
    features, rewards, _ = qbf
    benchmark(stepper(warmed(fastroute_linear(LinUCB, 1.0), features, rewards), features, rewards))


@pytest.mark.benchmark(group="decide + update, one request: fastroute LinUCB vs VW cb_explore_adf")
def test_cost_vw(benchmark, qbf) -> None:
    features, rewards, _ = qbf
    benchmark.extra_info["baseline"] = True
    benchmark(stepper(warmed(vw("--epsilon 0.05"), features, rewards), features, rewards))


@pytest.mark.benchmark(group="decide + update, one request: fastroute LinUCB vs VW cb_explore_adf")
def test_cost_fastroute_linucb_vs_vw(benchmark, qbf) -> None:
    features, rewards, _ = qbf
    benchmark(stepper(warmed(fastroute_linear(LinUCB, 1.0), features, rewards), features, rewards))


def analyzer_inputs(n=512, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(4, 64)),)).astype(np.float32) for _ in range(n)]


def routers(features_rows):
    """A Router with a compiled Tree and one with LinUCB, over the analyzer's features."""
    models = ("m0", "m1", "m2", "m3")
    rng = np.random.default_rng(4)
    outcomes = rng.random((len(features_rows), len(models)))
    tree = Tree(max_depth=8).fit(features_rows, outcomes, models=models)
    bandit = LinUCB(models).fit(features_rows, outcomes, models=models)
    built = {}
    for name, policy in (("tree", tree), ("linucb", bandit)):
        router = Router(policy)
        for model in models:
            router.register(model, lambda x: x, modality="tabular")
        built[name] = router
    return built


@pytest.fixture(scope="module")
def route_setup():
    inputs = analyzer_inputs()
    rows = analyze_batch(inputs).features
    assert rows.shape[1] == len(FEATURE_NAMES)
    return inputs, routers(rows)


@pytest.mark.benchmark(group="decide only, Router.route(): LinUCB vs compiled Tree")
def test_route_tree(benchmark, route_setup) -> None:
    inputs, built = route_setup
    cycle = itertools.cycle(inputs)
    benchmark.extra_info["baseline"] = True
    benchmark(lambda: built["tree"].route(next(cycle)))


@pytest.mark.benchmark(group="decide only, Router.route(): LinUCB vs compiled Tree")
def test_route_linucb(benchmark, route_setup) -> None:
    inputs, built = route_setup
    cycle = itertools.cycle(inputs)
    benchmark(lambda: built["linucb"].route(next(cycle)))


@pytest.mark.benchmark(group="decide only, policy.select(analysis): LinUCB vs compiled Tree")
def test_select_tree(benchmark, route_setup) -> None:
    inputs, built = route_setup
    analyses = itertools.cycle([__import__("fastroute").analyze(x) for x in inputs])
    policy = built["tree"].policy
    benchmark.extra_info["baseline"] = True
    benchmark(lambda: policy.select(next(analyses)))


@pytest.mark.benchmark(group="decide only, policy.select(analysis): LinUCB vs compiled Tree")
def test_select_linucb(benchmark, route_setup) -> None:
    inputs, built = route_setup
    analyses = itertools.cycle([__import__("fastroute").analyze(x) for x in inputs])
    policy = built["linucb"].policy
    benchmark(lambda: policy.select(next(analyses)))
