# Type stubs of fastroute._core, the private C++ extension (csrc/bind_*.cpp,
# csrc/module.cpp). tests/test_core_stub.py checks that the names here and the
# module's stay the same.
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatRows = npt.NDArray[np.float32]

# ---- shared names (module.cpp) ----
FEATURE_NAMES: tuple[str, ...]
MODALITIES: tuple[str, ...]
SCRIPTS: tuple[str, ...]

def noop(x: object) -> None: ...

# ---- analyzer (bind_analyzer.cpp) ----
MIMES: tuple[str, ...]
SOURCES: tuple[str, ...]
DTYPE_KINDS: tuple[str, ...]

class Analysis:
    def __init__(self, features: Any) -> None: ...
    @property
    def modality(self) -> str: ...
    @property
    def modality_code(self) -> int: ...
    @property
    def mime(self) -> str | None: ...
    @property
    def features(self) -> FloatRows: ...
    def __getitem__(self, name: str) -> float: ...
    def explain(self) -> str: ...

def analyze(x: Any, hint: str | None = None) -> Analysis: ...
def analyze_batch(xs: Any, out: FloatRows | None = None) -> tuple[FloatRows, npt.NDArray[np.uint8]]: ...

# ---- scorer (bind_scorer.cpp) ----
NO_MODEL: int
COMPARE_OPS: dict[str, int]

class ModelMask:
    def __init__(self, flags: npt.ArrayLike) -> None: ...
    @property
    def num_models(self) -> int: ...

class Scorer:
    @property
    def num_features(self) -> int: ...
    @property
    def num_models(self) -> int: ...
    def score(self, row: FloatRows, mask: ModelMask | None = None) -> tuple[int, float, float, int]: ...
    def score_batch(
        self, rows: FloatRows, threads: int = 0, mask: ModelMask | None = None
    ) -> tuple[npt.NDArray[np.int32], FloatRows, FloatRows, npt.NDArray[np.int32]]: ...
    def predict(self, rows: FloatRows, threads: int = 0, mask: ModelMask | None = None) -> npt.NDArray[np.int32]: ...

class RuleScorer(Scorer):
    def __init__(
        self,
        num_features: int,
        num_models: int,
        feature: npt.ArrayLike,
        op: npt.ArrayLike,
        value: npt.ArrayLike,
        rule_begin: npt.ArrayLike,
        rule_model: npt.ArrayLike,
        default_model: int,
    ) -> None: ...

class ForestScorer(Scorer):
    def __init__(
        self,
        num_features: int,
        feature: npt.ArrayLike,
        threshold: npt.ArrayLike,
        left: npt.ArrayLike,
        right: npt.ArrayLike,
        missing_left: npt.ArrayLike,
        values: npt.ArrayLike,
        tree_begin: npt.ArrayLike,
        divisor: npt.ArrayLike,
    ) -> None: ...
    @property
    def num_trees(self) -> int: ...
    def predict_scores(self, rows: FloatRows) -> npt.NDArray[np.float64]: ...
    def path(self, row: FloatRows, tree: int = 0) -> list[int]: ...

class ThresholdScorer(Scorer):
    def __init__(self, num_features: int, feature: int, cuts: npt.ArrayLike, missing_model: int) -> None: ...

# ---- dispatch (bind_dispatch.cpp) ----
NO_DEADLINE: int
NO_DEADLINE_FROM_S: float
PUSH_ACCEPTED: int
PUSH_FULL: int
PUSH_CLOSED: int
#: (name, default, lowest, highest) of every dispatcher setting.
DISPATCH_SETTINGS: tuple[tuple[str, int, int, int], ...]
EWMA_WEIGHT: float
CHOICE_REASONS: tuple[str, ...]

def monotonic_ns() -> int: ...

class Dispatcher:
    def __init__(
        self,
        threads: int,
        max_batch: int,
        max_delay_us: int,
        queue_capacity: int,
        max_lanes: int,
        spin_us: int,
        sink: Callable[[int, list[Any], list[Any], list[Any]], int | None],
    ) -> None: ...
    def add_lane(self) -> int: ...
    def push(self, lane: int, payload: object, high: bool, deadline_ns: int, timeout_s: float) -> int: ...
    def stats(self, lane: int) -> tuple[Any, ...]: ...
    def stages(self, lane: int) -> dict[str, HistogramSnapshot]: ...
    def expected_ns(self, lane: int, high: bool) -> int: ...
    def choose(
        self,
        lanes: Sequence[Sequence[int]],
        quality: Sequence[float],
        cost: Sequence[float],
        available: Sequence[bool],
        preferred: int,
        high: bool,
        time_weight: float,
        cost_weight: float,
        budget_ns: int,
        late_fastest: bool,
        random: int,
    ) -> tuple[int, int]: ...
    @property
    def closed(self) -> bool: ...
    def retire(self, lane: int, drain: bool) -> None: ...
    def begin_close(self, drain: bool) -> Any: ...
    def on_worker_thread(self) -> bool: ...
    def close(self, drain: bool, timeout_s: float) -> bool: ...

# ---- stage histograms (bind_stage_histogram.cpp) ----
#: (counts per bucket, the last above every bound; sum of the values recorded).
HistogramSnapshot = tuple[tuple[int, ...], int]
LATENCY_BOUNDS_NS: tuple[int, ...]
BATCH_SIZE_BOUNDS: tuple[int, ...]
#: ((stage, bounds), ...) of what Dispatcher.stages returns.
LANE_STAGE_BOUNDS: tuple[tuple[str, tuple[int, ...]], ...]

class LatencyHistogram:
    def __init__(self) -> None: ...
    def record(self, ns: int) -> None: ...
    def snapshot(self) -> HistogramSnapshot: ...

class RouteStages:
    def __init__(self) -> None: ...
    def record(self, started_ns: int, analyzed_ns: int, decided_ns: int) -> None: ...
    def snapshot(self) -> dict[str, HistogramSnapshot]: ...

# ---- model state: breakers and retry budgets (bind_model_state.cpp) ----
BREAKER_STATES: tuple[str, ...]
SERVICE_STALE_S: float

class CircuitBreaker:
    def __init__(self, failure_rate: float, min_calls: int, window_s: float, cooldown_s: float, probes: int) -> None: ...
    def admit(self, now_ns: int) -> Any: ...
    def would_admit(self, now_ns: int) -> bool: ...
    def record(self, ok: bool, probe: bool, now_ns: int) -> None: ...
    def cancel_probe(self) -> None: ...
    @property
    def state(self) -> str: ...
    def snapshot(self) -> Any: ...

class RetryBudget:
    def __init__(self, ratio: float, burst: float) -> None: ...
    def on_request(self) -> None: ...
    def try_spend(self) -> bool: ...
    @property
    def balance(self) -> float: ...

# ---- bandits (bind_bandit.cpp) ----
BANDIT_ALGORITHMS: tuple[str, ...]

class Bandit:
    def __init__(
        self,
        algorithm: str,
        num_arms: int,
        num_features: int,
        explore: float,
        alpha: float,
        decay: float,
        ridge: float,
        seed: int,
        log_features: Any,
        clip: Any,
        center: Any,
        scale: Any,
    ) -> None: ...
    @property
    def num_arms(self) -> int: ...
    @property
    def num_features(self) -> int: ...
    @property
    def contextual(self) -> bool: ...
    @property
    def stats_width(self) -> int: ...
    def decide(self, row: Any, allowed: Any) -> tuple[int, float, float]: ...
    def decide_batch(self, rows: Any, n: int, allowed: Any) -> Any: ...
    def update(self, arm: int, row: Any, reward: float, weight: float) -> None: ...
    def add_prior(self, arms: npt.ArrayLike, rows: Any, rewards: npt.ArrayLike, weights: npt.ArrayLike) -> None: ...
    def estimate(self, row: Any) -> Any: ...
    def merge(self, other: Bandit) -> None: ...
    def export_stats(self, prior: bool) -> npt.NDArray[np.float64]: ...
    def import_stats(self, stats: npt.ArrayLike, prior: bool) -> None: ...

# ---- hashed n-gram text features (bind_ngrams.cpp) ----
NGRAM_MAX_N: int
HASH_FEATURES_MIN: int
HASH_FEATURES_MAX: int

class NgramHasher:
    def __init__(
        self,
        analyzer: str,
        min_n: int,
        max_n: int,
        n_features: int,
        lowercase: bool,
        alternate_sign: bool,
        binary: bool,
        sublinear_tf: bool,
        norm: str | None,
    ) -> None: ...
    def hash(self, text: Any) -> Any: ...
    def hash_batch(self, texts: Sequence[Any], threads: int = 0, data: Any = None) -> Any: ...

def murmurhash3(data: bytes) -> int: ...

# ---- linear text routers (bind_linear.cpp) ----
class LinearScorer:
    def __init__(
        self,
        models: int,
        dense: int,
        sparse: int,
        dense_weights: npt.ArrayLike,
        dense_mean: npt.ArrayLike,
        dense_scale: npt.ArrayLike,
        sparse_weights: npt.ArrayLike,
        bias: npt.ArrayLike,
    ) -> None: ...
    @property
    def models(self) -> int: ...
    @property
    def dense(self) -> int: ...
    @property
    def sparse(self) -> int: ...
    def route_text(self, hasher: NgramHasher, text: Any, dense: Any = None) -> Any: ...
    def score_csr(self, indptr: npt.ArrayLike, indices: npt.ArrayLike, values: npt.ArrayLike, dense: Any = None) -> Any: ...
