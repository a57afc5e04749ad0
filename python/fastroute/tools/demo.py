"""The built-in demo behind ``fastroute demo``: the case for a router, in a few seconds.

Trains two small real models per modality at start-up, a cheap one and a
stronger, costlier one, on data that ships with scikit-learn (digits images,
some of them noisy scans; breast-cancer measurements; sentences of the
datasets' own descriptions) plus synthetic tones. It then runs every model on
a log of held-out inputs, fits a decision tree on the analyzer's features to
choose the model per input (trading accuracy against cost), and routes a
mixed stream of further held-out inputs - numpy arrays, strings and real PNG,
WAV and gzip file bytes - through a Router with that policy. It reports the
tree's reasons, where each kind of input went and how well it was served,
the learned policy against always-cheap and always-strong routing, and what
micro-batching gains over calling the models one input at a time.
"""

from __future__ import annotations

import gzip
import io
import re
import time
import wave
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..analyzer import analyze_batch
from ..decision import ByModality, Tree
from ..errors import NoRoute
from ..library.spec import stack_if_possible
from ..router import Router

TONE_RATE_HZ = 16_000
TONE_SAMPLES = 8_000  # half a second: the analyzer's audio threshold
#: Objective of the learned policy: accuracy - COST_WEIGHT * cost.
COST_WEIGHT = 0.07


@dataclass(frozen=True)
class Sample:
    """One input of the demo, with the label its model should predict."""

    kind: str
    x: Any
    label: Any


@dataclass(frozen=True)
class Model:
    """A trained model: a batched predict function and what a call costs (arbitrary units)."""

    name: str
    cost: float
    predict: Callable[[Any], list]


@dataclass(frozen=True)
class Task:
    """The models of one modality and their held-out samples: a log to learn from, a stream to route."""

    name: str
    modality: str
    about: str  # what the label is, and the chance level
    models: list[Model]
    log: list[Sample]
    stream: list[Sample]


def run_demo(seed: int = 0, repeat: int = 3) -> None:
    """Train, learn a policy, route and report; prints a summary to stdout."""
    _require_demo_extra()
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    tasks = [_digits_task(rng), _tabular_task(rng), _text_task(rng), _tone_task(rng)]
    trained_s = time.perf_counter() - started

    router = Router()
    for task in tasks:
        for model in task.models:
            router.register(model.name, model.predict, modality=task.modality, batched=True, cost=model.cost)
    print(f"fastroute demo: trained {sum(len(t.models) for t in tasks)} models for {len(tasks)} modalities "
          f"in {trained_s:.1f} s")
    for task in tasks:
        names = ", ".join(f"{m.name} (cost {m.cost:g})" for m in task.models)
        print(f"  {task.modality:<8} {names}\n           task: {task.about}")

    models = [model for task in tasks for model in task.models]
    router.policy = _learn_policy(tasks, models)
    stream = [s for task in tasks for s in task.stream] + _archives(rng)
    stream = [stream[i] for i in rng.permutation(len(stream))] * repeat
    print(f"\nrouting a held-out stream of {len(stream)} inputs with the learned tree")
    _show_reasons(router, tasks)
    routed, unrouted = _route_all(router, stream)
    _report(router, routed, unrouted)
    _compare_policies(router, tasks, routed)
    _batching_gain(router, routed)


def _learn_policy(tasks: list[Task], models: list[Model]) -> Tree:
    """Run every model of each modality on the log; fit a tree choosing the best model per input."""
    names = [model.name for model in models]
    log = [sample for task in tasks for sample in task.log]
    outcomes = np.full((len(log), len(models)), np.nan)
    row = 0
    for task in tasks:
        inputs = [sample.x for sample in task.log]
        for model in task.models:
            predictions = model.predict(stack_if_possible(inputs))
            hits = [p == s.label for p, s in zip(predictions, task.log)]
            outcomes[row:row + len(task.log), names.index(model.name)] = hits
        row += len(task.log)
    features = analyze_batch([sample.x for sample in log]).features
    costs = [model.cost for model in models]
    policy = Tree(max_depth=5, method="classification")
    policy.fit(features, outcomes, models=names, cost=costs, cost_weight=COST_WEIGHT)
    print(f"\nlearned policy: a depth-5 tree on the analyzer's features, fitted on {len(log)} logged inputs "
          f"(each run by every model of its modality), objective accuracy - {COST_WEIGHT} x cost")
    return policy


def _show_reasons(router: Router, tasks: list[Task]) -> None:
    shown = set()
    for sample in (s for task in tasks for s in task.stream):
        if sample.kind in shown:
            continue
        shown.add(sample.kind)
        decision = router.route(sample.x)
        print(f"  {sample.kind:<24} -> {decision.model:<16} {decision.reason.split(';')[0]}")
    example = next(s for s in tasks[0].stream if "noisy" in s.kind)
    row = analyze_batch([example.x]).features[0]
    print(f"  why, for a noisy scan: {router.policy.explain(row)}")


def _route_all(router: Router, stream: list[Sample]):
    routed: list[tuple[Sample, str]] = []
    unrouted: Counter[str] = Counter()
    started = time.perf_counter()
    for sample in stream:
        try:
            routed.append((sample, router.route(sample.x).model))
        except NoRoute:
            unrouted[sample.kind] += 1
    elapsed = time.perf_counter() - started
    print(f"\nrouting: {len(stream)} decisions in {elapsed * 1e3:.1f} ms "
          f"({elapsed / len(stream) * 1e6:.2f} us per input, "
          f"{len(stream) / elapsed:,.0f} inputs/s, analyzer + policy, one by one)")
    return routed, unrouted


def _report(router: Router, routed: list[tuple[Sample, str]], unrouted: Counter[str]) -> None:
    predictions = router.infer_batch([sample.x for sample, _ in routed])
    rows: dict[tuple[str, str], list[bool]] = defaultdict(list)
    modality_of = {spec.name: spec.modality for spec in router.models.list()}
    for (sample, model), prediction in zip(routed, predictions):
        rows[(sample.kind, model)].append(prediction == sample.label)
    print(f"\n{'input kind':<26}{'count':>7}  {'modality':<10}{'model':<17}{'accuracy':>9}")
    for (kind, model), hits in sorted(rows.items()):
        print(f"{kind:<26}{len(hits):>7}  {modality_of[model]:<10}{model:<17}{np.mean(hits):>9.3f}")
    for kind, count in sorted(unrouted.items()):
        print(f"{kind:<26}{count:>7}  {'-':<10}{'NoRoute':<17}{'-':>9}")


def _compare_policies(router: Router, tasks: list[Task], routed: list[tuple[Sample, str]]) -> None:
    """The learned tree against sending each modality always to its cheapest or its strongest model."""
    learned = router.policy
    contenders = {
        "learned tree": learned,
        "always cheapest": ByModality({t.modality: min(t.models, key=lambda m: m.cost).name for t in tasks}),
        "always strongest": ByModality({t.modality: max(t.models, key=lambda m: m.cost).name for t in tasks}),
    }
    samples = [sample for sample, _ in routed]
    cost = {spec.name: spec.cost for spec in router.models.list()}
    print(f"\n{'policy':<18}{'accuracy':>9}{'mean cost':>11}   (same {len(samples)} inputs)")
    for name, policy in contenders.items():
        router.policy = policy
        chosen = [router.route(sample.x).model for sample in samples]
        predictions = router.infer_batch([sample.x for sample in samples])
        accuracy = np.mean([p == s.label for p, s in zip(predictions, samples)])
        print(f"{name:<18}{accuracy:>9.3f}{np.mean([cost[m] for m in chosen]):>11.2f}")
    router.policy = learned


#: Inputs timed one by one against infer_batch (one by one is slow: keep the demo short).
BATCHING_SAMPLE = 300


def _batching_gain(router: Router, routed: list[tuple[Sample, str]]) -> None:
    inputs = [sample.x for sample, _ in routed[:BATCHING_SAMPLE]]
    started = time.perf_counter()
    router.infer_batch(inputs)
    batched = time.perf_counter() - started
    started = time.perf_counter()
    for x in inputs:
        router.infer(x)
    one_by_one = time.perf_counter() - started
    print(f"\nbatching: infer_batch ran {len(inputs)} inputs in {batched * 1e3:.0f} ms (each model called once "
          f"on its group); infer one by one took {one_by_one * 1e3:.0f} ms: {one_by_one / batched:.1f}x faster batched")


def _require_demo_extra() -> None:
    try:
        import PIL  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as missing:
        raise SystemExit(
            f"the demo needs the 'demo' extra ({missing.name} is missing): "
            "pip install 'fastroute[demo]'"
        ) from None


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half to train the models, a quarter for the log the policy learns from, a quarter to route."""
    order = rng.permutation(n)
    return order[: n // 2], order[n // 2: 3 * n // 4], order[3 * n // 4:]


def _as_items(batch: Any) -> list:
    """A batched model may receive a stacked array or a list: iterate either."""
    return list(batch)


def _digits_task(rng: np.random.Generator) -> Task:
    """Clean 8x8 scans (arrays and PNG bytes) and noisy ones: the cheap model (a ridge
    classifier on a 4x4 thumbnail) only learned clean scans; the strong one (an RBF SVM on every pixel)
    learned both."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import RidgeClassifier
    from sklearn.svm import SVC

    digits = load_digits()
    train, log, stream = _split(len(digits.images), rng)
    images = digits.images / 16.0
    noisy = np.clip(images + rng.normal(0, 0.35, images.shape), 0, 1) * rng.uniform(0.4, 1.0, (len(images), 1, 1))
    thumbnails = images[train].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(len(train), -1)
    small = RidgeClassifier().fit(thumbnails, digits.target[train])
    large = SVC().fit(
        np.concatenate([images[train], noisy[train]]).reshape(2 * len(train), -1),
        np.concatenate([digits.target[train]] * 2))

    def pixels(batch: Any) -> np.ndarray:
        return np.stack([_digit_pixels(item) for item in _as_items(batch)])

    def predict_small(batch: Any) -> list:
        scans = pixels(batch)
        return list(small.predict(scans.reshape(len(scans), 4, 2, 4, 2).mean(axis=(2, 4)).reshape(len(scans), -1)))

    def predict_large(batch: Any) -> list:
        scans = pixels(batch)
        return list(large.predict(scans.reshape(len(scans), -1)))

    def samples(indices: np.ndarray) -> list[Sample]:
        found = []
        for n, index in enumerate(indices):
            label = digits.target[index]
            if n % 3 == 0:
                found.append(Sample("digit PNG bytes", _png_bytes(images[index]), label))
            # H x W x 1: the channel axis marks it an image; a bare 8 x 8 of strokes is as much a table.
            elif n % 3 == 1:
                found.append(Sample("digit array 8x8x1", images[index][:, :, None], label))
            else:
                found.append(Sample("digit array 8x8x1, noisy", noisy[index][:, :, None], label))
        return found

    return Task("digits", "image", "which digit an 8x8 scan shows (10 classes, chance 0.10)",
                [Model("digits-thumb", 1.0, predict_small), Model("digits-full", 4.0, predict_large)],
                samples(log), samples(stream))


def _digit_pixels(item: Any) -> np.ndarray:
    """8x8 pixels in [0, 1] from an 8x8x1 array or PNG bytes (0..255)."""
    if isinstance(item, bytes):
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(item)), dtype=np.float64) / 255.0
    return np.asarray(item, dtype=np.float64).reshape(8, 8)


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tabular_task(rng: np.random.Generator) -> Task:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    train, log, stream = _split(len(data.data), rng)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(data.data[train], data.target[train])
    forest = RandomForestClassifier(n_estimators=60, random_state=0).fit(data.data[train], data.target[train])

    def predictor(estimator: Any) -> Callable[[Any], list]:
        return lambda batch: list(estimator.predict(np.asarray(batch, dtype=np.float64)))

    def samples(indices: np.ndarray) -> list[Sample]:
        return [Sample("tumour measurements", data.data[i], data.target[i]) for i in indices]

    return Task("tumour", "tabular", "malignant or benign from 30 measurements of a breast mass "
                "(2 classes, majority share 0.63)",
                [Model("tumour-linear", 1.0, predictor(linear)), Model("tumour-forest", 3.0, predictor(forest))],
                samples(log), samples(stream))


def _text_task(rng: np.random.Generator) -> Task:
    """Which bundled dataset does a sentence of documentation describe?"""
    from sklearn import datasets
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    names = ("iris", "wine", "breast_cancer", "diabetes", "digits", "linnerud")
    texts, labels = [], []
    for name in names:
        description = getattr(datasets, f"load_{name}")().DESCR
        for sentence in re.split(r"(?<=[.:])\s+|\n\s*\n", description):
            sentence = " ".join(sentence.split())
            if len(sentence.split()) >= 4:
                texts.append(sentence)
                labels.append(name)
    train, log, stream = _split(len(texts), rng)
    svm = make_pipeline(TfidfVectorizer(sublinear_tf=True), LinearSVC()).fit([texts[i] for i in train],
                                                                            [labels[i] for i in train])
    bayes = make_pipeline(CountVectorizer(), MultinomialNB()).fit([texts[i] for i in train], [labels[i] for i in train])

    def predictor(estimator: Any) -> Callable[[Any], list]:
        return lambda batch: list(estimator.predict(_as_items(batch)))

    def samples(indices: np.ndarray) -> list[Sample]:
        return [Sample("dataset doc sentence", texts[i], labels[i]) for i in indices]

    return Task("docs", "text", "which of six scikit-learn datasets (iris, wine, breast_cancer, diabetes, digits, "
                "linnerud) a sentence of its own description describes (6 classes, chance 0.17; many sentences, "
                "e.g. 'Missing Attribute Values: None', fit several: no model comes near 1)",
                [Model("docs-bayes", 1.0, predictor(bayes)), Model("docs-svm", 2.0, predictor(svm))],
                samples(log), samples(stream))


def _tone_task(rng: np.random.Generator) -> Task:
    """Low or high pitch of a noisy synthetic tone: from its dominant frequency (strong) or
    its zero-crossing rate (cheap, fooled by loud noise)."""
    from sklearn.linear_model import LogisticRegression

    def tone(high: bool) -> np.ndarray:
        frequency = rng.uniform(1200, 3000) if high else rng.uniform(100, 700)
        t = np.arange(TONE_SAMPLES) / TONE_RATE_HZ
        noise = rng.normal(0, rng.uniform(0.05, 0.6), TONE_SAMPLES)
        # float audio lies in [-1, 1]
        return np.clip(0.6 * np.sin(2 * np.pi * frequency * t) + noise, -1.0, 1.0).astype(np.float32)

    labels = rng.integers(0, 2, 240)
    waves = [tone(bool(label)) for label in labels]
    train, log, stream = _split(len(waves), rng)

    def fitted(measure: Callable[[np.ndarray], float]) -> Callable[[Any], list]:
        classifier = LogisticRegression().fit([[measure(waves[i])] for i in train], labels[train])
        return lambda batch: list(classifier.predict([[measure(_waveform(item))] for item in _as_items(batch)]))

    def samples(indices: np.ndarray) -> list[Sample]:
        found = []
        for n, index in enumerate(indices):
            if n % 2:
                found.append(Sample("tone WAV bytes", _wav_bytes(waves[index]), labels[index]))
            else:
                found.append(Sample("tone waveform", waves[index], labels[index]))
        return found

    return Task("pitch", "audio", "low (100-700 Hz) or high (1.2-3 kHz) pitch of a noisy tone (2 classes, chance 0.5)",
                [Model("pitch-crossings", 1.0, fitted(_zero_crossing_rate)),
                 Model("pitch-fft", 2.0, fitted(_log_dominant_frequency))],
                samples(log), samples(stream))


def _zero_crossing_rate(waveform: np.ndarray) -> float:
    return float(np.mean(np.signbit(waveform[1:]) != np.signbit(waveform[:-1])))


def _log_dominant_frequency(waveform: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.log(np.argmax(spectrum[1:]) + 1.0))


def _waveform(item: Any) -> np.ndarray:
    if isinstance(item, bytes):
        with wave.open(io.BytesIO(item)) as reader:
            frames = reader.readframes(reader.getnframes())
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767.0
    return np.asarray(item, dtype=np.float32)


def _wav_bytes(waveform: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(TONE_RATE_HZ)
        pcm = np.clip(waveform, -1, 1) * 32767
        writer.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def _archives(rng: np.random.Generator) -> list[Sample]:
    """gzip files: no model serves archives, so these end in NoRoute."""
    return [
        Sample("gzip archive bytes", gzip.compress(rng.bytes(256)), None) for _ in range(10)
    ]
