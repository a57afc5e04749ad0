"""Real arrays of known kind, and the analyzer's confusion table over them.

The corpus: scikit-learn's bundled tables (whole, heads, standardised and
min-max scaled, and every row as a 1-D array), its two sample photos (as
H x W x C uint8, float in [0, 1], C x H x W normalised float, grayscale, and
64 x 64 grayscale tiles), its 8 x 8 digit images, the WAV files scipy ships
for its tests read with ``scipy.io.wavfile`` (as read, scaled to float in
[-1, 1], and channels-first), and synthetic edge cases. Each entry is
(group, true modality, array). No hint is given: this measures the
heuristics.

``python tests/analyzer/modality_corpus.py`` prints the table in the README's format
(``--update-readme`` writes it there); ``tests/analyzer/test_analyzer_modality.py``
checks that the README holds exactly that table and asserts the accuracy
properties that must hold.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import fastroute as fr

Entry = tuple[str, str, np.ndarray]
TABLE_LOADERS = ("load_iris", "load_wine", "load_breast_cancer", "load_diabetes", "load_digits", "load_linnerud")
# ImageNet channel means and standard deviations, as torchvision normalises photos.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def tables() -> Iterator[Entry]:
    from sklearn import datasets

    for name in TABLE_LOADERS:
        x = getattr(datasets, name)().data.astype(np.float64)
        scaled = {
            "as loaded": x,
            "standardised": (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0),
            "min-max scaled": (x - x.min(0)) / np.where(np.ptp(x, 0) > 0, np.ptp(x, 0), 1.0),
        }
        for table in scaled.values():
            for rows in (20, 50, 200, len(table)):
                if rows <= len(table):
                    yield "tabular: tables (2-D)", "tabular", table[:rows]
            yield "tabular: tables (2-D)", "tabular", table[:200].astype(np.float32)
        for row in x:
            yield "tabular: rows (1-D)", "tabular", row


def photos() -> Iterator[Entry]:
    from sklearn import datasets

    for photo in datasets.load_sample_images().images:
        unit = photo.astype(np.float32) / 255
        gray = unit.mean(axis=2)
        yield "image: photos", "image", photo
        yield "image: photos", "image", unit
        yield "image: photos", "image", ((unit - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
        yield "image: photos", "image", gray
        yield "image: photos", "image", (gray * 255).astype(np.uint8)
        for top in range(0, gray.shape[0] - 63, 64):
            for left in range(0, gray.shape[1] - 63, 64):
                yield "image: 64x64 grayscale tiles", "image", gray[top : top + 64, left : left + 64]


def digits() -> Iterator[Entry]:
    from sklearn import datasets

    for image in datasets.load_digits().images:
        yield "image: 8x8 digits", "image", image


def wav_files() -> list[Path]:
    import scipy

    return sorted((Path(scipy.__file__).parent / "io" / "tests" / "data").glob("*.wav"))


def waveforms() -> Iterator[Entry]:
    from scipy.io import wavfile

    for path in wav_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns about the chunks it skips
                _, samples = wavfile.read(path)
        except ValueError:
            continue  # the files scipy itself cannot read (its tests of broken headers)
        if len(samples) < 1024:
            group = "audio: WAV under 1,024 samples (any form)"
            as_read = as_float = group
        else:
            as_read, as_float = "audio: WAV as read (PCM int)", "audio: WAV scaled to float in [-1, 1]"
        yield as_read, "audio", samples
        if samples.ndim == 2:
            yield as_read, "audio", samples.T  # channels first, as torchaudio loads
        if samples.dtype.kind in "iu":
            info = np.iinfo(samples.dtype)
            middle = (int(info.max) + int(info.min) + 1) / 2
            yield as_float, "audio", ((samples - middle) / (info.max - middle)).astype(np.float32)


def synthetic() -> Iterator[Entry]:
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    tables, waves = "synthetic: tables, columns, embedding", "synthetic: 440 Hz tone"
    yield tables, "tabular", rng.normal(size=(200, 30))
    yield tables, "tabular", rng.uniform(size=(200, 30)).astype(np.float32)
    yield tables, "tabular", rng.normal(size=10_000)
    yield tables, "tabular", rng.uniform(size=10_000)
    yield tables, "tabular", np.arange(20_000, dtype=np.int64)
    embedding = rng.normal(size=4096).astype(np.float32)
    yield tables, "tabular", embedding / np.linalg.norm(embedding)
    yield waves, "audio", tone.astype(np.float32)
    yield waves, "audio", (tone * 32767).astype(np.int16)
    yield waves, "audio", np.stack([tone, tone]).astype(np.float32)
    yield "synthetic: gradient image", "image", np.add.outer(np.arange(100.0), np.arange(120.0))


def corpus() -> Iterator[Entry]:
    yield from tables()
    yield from photos()
    yield from digits()
    yield from waveforms()
    yield from synthetic()


def confusion() -> dict[tuple[str, str], Counter[str]]:
    """(group, true modality) -> Counter of detected modalities, in corpus order."""
    table: dict[tuple[str, str], Counter[str]] = {}
    for group, truth, array in corpus():
        table.setdefault((group, truth), Counter())[fr.analyze(array).modality] += 1
    return table


def markdown(table: dict[tuple[str, str], Counter[str]]) -> str:
    """The README's confusion table: one line per group, detected modality counts and accuracy."""
    kinds = ("tabular", "image", "audio")
    lines = [
        "| true kind (group) | n | " + " | ".join(f"-> {kind}" for kind in kinds) + " | correct |",
        "|---|---:|" + "---:|" * len(kinds) + "---:|",
    ]
    for (group, truth), counts in table.items():
        n = sum(counts.values())
        cells = " | ".join(str(counts[kind]) for kind in kinds)
        lines.append(f"| {group} | {n} | {cells} | {100 * counts[truth] / n:.0f}% |")
    return "\n".join(lines)


README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- modality-confusion:start -->\n", "<!-- modality-confusion:end -->"


def readme_table() -> str:
    """The table between the README's markers."""
    text = README.read_text(encoding="utf-8")
    return text[text.index(START) + len(START) : text.index(END)].strip()


def update_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    head, tail = text[: text.index(START) + len(START)], text[text.index(END) :]
    README.write_text(head + table + "\n" + tail, encoding="utf-8")


if __name__ == "__main__":
    table = markdown(confusion())
    if sys.argv[1:] == ["--update-readme"]:
        update_readme(table)
    sys.stdout.write(table + "\n")
