"""The built-in demo behind ``fastroute demo``.

Trains four small real models at start-up on data that ships with
scikit-learn (digits images, breast-cancer measurements, the datasets' own
description texts) plus synthetic tones, then routes a mixed stream of held-out
inputs - numpy arrays, strings and real PNG, WAV and gzip file bytes - through
a Router and reports where each kind of input went and how well it was served.
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

from ..errors import NoRoute
from ..router import Router

TONE_RATE_HZ = 16_000
TONE_SAMPLES = 8_000  # half a second: the analyzer's audio threshold


@dataclass(frozen=True)
class Sample:
    """One input of the demo stream, with the label its model should predict."""

    kind: str
    x: Any
    label: Any


@dataclass(frozen=True)
class Task:
    """A trained model, the modality it serves, and its held-out samples."""

    name: str
    modality: str
    model: Callable[[Any], list]
    samples: list[Sample]


def run_demo(seed: int = 0, repeat: int = 3) -> None:
    """Train, route and report; prints a summary to stdout."""
    _require_demo_extra()
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    tasks = [_digits_task(rng), _tabular_task(rng), _text_task(rng), _tone_task(rng)]
    trained_s = time.perf_counter() - started

    router = Router()
    for task in tasks:
        router.register(task.name, task.model, modality=task.modality, batched=True)

    stream = [s for task in tasks for s in task.samples] + _archives(rng)
    stream = [stream[i] for i in rng.permutation(len(stream))] * repeat
    print(f"fastroute demo: trained {len(tasks)} models in {trained_s:.1f} s; "
          f"routing a stream of {len(stream)} inputs\n")
    routed, unrouted = _route_all(router, stream)
    _report(router, routed, unrouted)


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
    print(f"routing: {len(stream)} decisions in {elapsed * 1e3:.1f} ms "
          f"({elapsed / len(stream) * 1e6:.2f} us per input, "
          f"{len(stream) / elapsed:,.0f} inputs/s, analyzer + policy, one by one)")
    return routed, unrouted


def _report(router: Router, routed: list[tuple[Sample, str]], unrouted: Counter[str]) -> None:
    samples = [sample for sample, _ in routed]
    started = time.perf_counter()
    predictions = router.infer_batch([sample.x for sample in samples])
    elapsed = time.perf_counter() - started
    print(f"inference: infer_batch on {len(samples)} inputs in {elapsed * 1e3:.1f} ms "
          f"(each model called once on its group)\n")

    rows: dict[tuple[str, str], list[bool]] = defaultdict(list)
    modality_of = {spec.name: spec.modality for spec in router.models.list()}
    for (sample, model), prediction in zip(routed, predictions):
        rows[(sample.kind, model)].append(prediction == sample.label)
    print(f"{'input kind':<22}{'count':>7}  {'modality':<10}{'model':<12}{'accuracy':>9}")
    for (kind, model), hits in sorted(rows.items()):
        print(f"{kind:<22}{len(hits):>7}  {modality_of[model]:<10}{model:<12}"
              f"{np.mean(hits):>9.3f}")
    for kind, count in sorted(unrouted.items()):
        print(f"{kind:<22}{count:>7}  {'-':<10}{'NoRoute':<12}{'-':>9}")


def _require_demo_extra() -> None:
    try:
        import PIL  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as missing:
        raise SystemExit(
            f"the demo needs the 'demo' extra ({missing.name} is missing): "
            "pip install 'fastroute[demo]'"
        ) from None


def _split(n: int, rng: np.random.Generator, test_share: float = 0.3):
    order = rng.permutation(n)
    cut = int(n * (1 - test_share))
    return order[:cut], order[cut:]


def _as_items(batch: Any) -> list:
    """A batched model may receive a stacked array or a list: iterate either."""
    return list(batch)


def _digits_task(rng: np.random.Generator) -> Task:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    train, test = _split(len(digits.images), rng)
    classifier = LogisticRegression(max_iter=3000).fit(digits.data[train] / 16.0, digits.target[train])

    def predict(batch: Any) -> list:
        pixels = np.stack([_digit_pixels(item) for item in _as_items(batch)])
        return list(classifier.predict(pixels.reshape(len(pixels), -1)))

    samples = []
    for n, index in enumerate(test):
        image, label = digits.images[index], digits.target[index]
        if n % 2:
            samples.append(Sample("digit PNG bytes", _png_bytes(image), label))
        else:
            # H x W x 1: the channel axis marks it an image; a bare 8 x 8 of strokes is as much a table.
            samples.append(Sample("digit array 8x8x1", image[:, :, None], label))
    return Task("digits", "image", predict, samples)


def _digit_pixels(item: Any) -> np.ndarray:
    """8x8 pixels scaled to [0, 1] from an 8x8x1 array (0..16) or PNG bytes (0..255)."""
    if isinstance(item, bytes):
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(item)), dtype=np.float64) / 255.0
    return np.asarray(item, dtype=np.float64).reshape(8, 8) / 16.0


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255.0 / 16.0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tabular_task(rng: np.random.Generator) -> Task:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    train, test = _split(len(data.data), rng)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(data.data[train], data.target[train])

    def predict(batch: Any) -> list:
        return list(pipeline.predict(np.asarray(batch, dtype=np.float64)))

    samples = [Sample("tumour measurements", data.data[i], data.target[i]) for i in test]
    return Task("tumour", "tabular", predict, samples)


def _text_task(rng: np.random.Generator) -> Task:
    """Which bundled dataset does a sentence of documentation describe?"""
    from sklearn import datasets
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    texts, labels = [], []
    for name in ("iris", "wine", "breast_cancer", "diabetes", "digits", "linnerud"):
        description = getattr(datasets, f"load_{name}")().DESCR
        for sentence in re.split(r"(?<=[.:])\s+|\n\s*\n", description):
            sentence = " ".join(sentence.split())
            if len(sentence.split()) >= 4:
                texts.append(sentence)
                labels.append(name)
    train, test = _split(len(texts), rng)
    pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True), LinearSVC())
    pipeline.fit([texts[i] for i in train], [labels[i] for i in train])

    def predict(batch: Any) -> list:
        return list(pipeline.predict(_as_items(batch)))

    samples = [Sample("dataset doc sentence", texts[i], labels[i]) for i in test]
    return Task("docs", "text", predict, samples)


def _tone_task(rng: np.random.Generator) -> Task:
    """Low or high pitch of a noisy synthetic tone, from its dominant frequency."""
    from sklearn.linear_model import LogisticRegression

    def tone(high: bool) -> np.ndarray:
        frequency = rng.uniform(1200, 3000) if high else rng.uniform(100, 700)
        t = np.arange(TONE_SAMPLES) / TONE_RATE_HZ
        noise = rng.normal(0, 0.3, TONE_SAMPLES)
        return np.clip(0.6 * np.sin(2 * np.pi * frequency * t) + noise, -1.0, 1.0).astype(np.float32)  # float audio lies in [-1, 1]

    labels = rng.integers(0, 2, 160)
    waves = [tone(bool(label)) for label in labels]
    train, test = _split(len(waves), rng)
    pitch = np.array([[_log_dominant_frequency(w)] for w in waves])
    classifier = LogisticRegression().fit(pitch[train], labels[train])

    def predict(batch: Any) -> list:
        features = [[_log_dominant_frequency(_waveform(item))] for item in _as_items(batch)]
        return list(classifier.predict(np.array(features)))

    samples = []
    for n, index in enumerate(test):
        if n % 2:
            samples.append(Sample("tone WAV bytes", _wav_bytes(waves[index]), labels[index]))
        else:
            samples.append(Sample("tone waveform", waves[index], labels[index]))
    return Task("pitch", "audio", predict, samples)


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
