"""Analyzer benchmarks, each beside the baseline it must beat (same run, same group).

- file-type: analyze(bytes) over one real buffer of every supported kind vs
  libmagic (python-magic ``from_buffer(mime=True)``); target >= 20x, same mime.
- small-array: analyze(16 float32) vs numpy computing the same features
  (target >= 10x) and vs a no-op pybind11 call (target <= 3x its cost).
- batch: analyze_batch(1,000,000 x 16 float32) vs numpy.sum on the same array
  (target >= 0.5x its bandwidth).

Run: python -m pytest benchmarks/bench_analyzer.py --benchmark-only -p no:randomly
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fastroute as fr
from fastroute import _core

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analyzer"))
from analyzer_samples import samples  # noqa: E402  (the tests' real file builders)

magic = pytest.importorskip("magic")

FILES = samples()
# libmagic has no NPY type (it says application/octet-stream): compared for speed, not mime.
SAME_MIME = [name for name, sample in FILES.items() if sample.mime != "application/x-npy"]


@pytest.mark.benchmark(group="file-type: every kind once")
def test_fastroute_file_types(benchmark):
    buffers = [sample.data for sample in FILES.values()]
    benchmark(lambda: [fr.analyze(b) for b in buffers])
    for name in SAME_MIME:  # same answers as libmagic on every kind it names
        assert fr.analyze(FILES[name].data).mime == magic.from_buffer(FILES[name].data, mime=True), name


@pytest.mark.benchmark(group="file-type: every kind once")
def test_libmagic_file_types(benchmark):
    benchmark.extra_info["baseline"] = True
    buffers = [sample.data for sample in FILES.values()]
    benchmark(lambda: [magic.from_buffer(b, mime=True) for b in buffers])


@pytest.mark.parametrize("kind", ["png_rgb", "jpeg_rgb", "wav", "pdf", "zip", "json", "text"])
@pytest.mark.benchmark(group="file-type: per kind")
def test_fastroute_per_kind(benchmark, kind):
    benchmark.group = f"file-type: {kind}"
    data = FILES[kind].data
    benchmark(fr.analyze, data)


@pytest.mark.parametrize("kind", ["png_rgb", "jpeg_rgb", "wav", "pdf", "zip", "json", "text"])
@pytest.mark.benchmark(group="file-type: per kind")
def test_libmagic_per_kind(benchmark, kind):
    benchmark.group = f"file-type: {kind}"
    benchmark.extra_info["baseline"] = True
    data = FILES[kind].data
    benchmark(magic.from_buffer, data, mime=True)


def numpy_features(x: np.ndarray) -> np.ndarray:
    """The features analyze() gives a small 1-D float array (tabular), computed with numpy."""
    features = np.full(len(fr.FEATURE_NAMES), np.nan, np.float32)
    values = x.astype(np.float64)
    finite = values[np.isfinite(values)]
    columns = {
        "modality": fr.MODALITIES.index("tabular"),
        "source": 0,
        "size_bytes": x.nbytes,
        "ndim": x.ndim,
        "length": x.size,
        "dtype_kind": "biuf".index(x.dtype.kind),
        "itemsize": x.dtype.itemsize,
        "mean": finite.mean(),
        "std": finite.std(),
        "min": finite.min(),
        "max": finite.max(),
        "zero_share": np.count_nonzero(values == 0) / x.size,
        "nan_share": np.count_nonzero(np.isnan(values)) / x.size,
        "inf_share": np.count_nonzero(np.isinf(values)) / x.size,
    }
    for name, value in columns.items():
        features[fr.FEATURE_NAMES.index(name)] = value
    return features


SMALL = np.random.default_rng(0).random(16, dtype=np.float32)


def many_calls(benchmark, function, iterations=20_000, quick=False):
    """Sub-microsecond calls: time many per round so the timer's resolution does not matter."""
    rounds, warmup = (2, 0) if quick else (30, 2)
    return benchmark.pedantic(function, args=(SMALL,), iterations=iterations, rounds=rounds, warmup_rounds=warmup)


@pytest.mark.benchmark(group="small-array: 16 float32")
def test_fastroute_small_array(benchmark, quick):
    many_calls(benchmark, fr.analyze, quick=quick)


@pytest.mark.benchmark(group="small-array: 16 float32")
def test_numpy_small_array(benchmark, quick):
    benchmark.extra_info["baseline"] = True
    features = many_calls(benchmark, numpy_features, iterations=200, quick=quick)
    np.testing.assert_allclose(features, fr.analyze(SMALL).features, rtol=1e-6)  # the same work


@pytest.mark.benchmark(group="small-array: 16 float32")
def test_noop_call_small_array(benchmark, quick):
    many_calls(benchmark, _core.noop, quick=quick)


@pytest.fixture(scope="module")
def matrix(quick) -> np.ndarray:
    return np.random.default_rng(1).random((20_000 if quick else 1_000_000, 16), dtype=np.float32)


@pytest.mark.benchmark(group="batch: 1,000,000 x 16 float32", min_rounds=5)
def test_fastroute_batch(benchmark, matrix):
    benchmark(fr.analyze_batch, matrix)


@pytest.mark.benchmark(group="batch: 1,000,000 x 16 float32", min_rounds=5)
def test_fastroute_batch_reused_out(benchmark, matrix):
    out = np.empty((len(matrix), len(fr.FEATURE_NAMES)), np.float32)
    fr.analyze_batch(matrix, out=out)  # fault the pages in once, as a serving loop would
    benchmark(fr.analyze_batch, matrix, out=out)


@pytest.mark.benchmark(group="batch: 1,000,000 x 16 float32", min_rounds=5)
def test_numpy_sum_batch(benchmark, matrix):
    benchmark.extra_info["baseline"] = True
    benchmark(np.sum, matrix)


@pytest.mark.benchmark(group="batch: 1,000,000 x 16 float32", min_rounds=5)
def test_floor_new_output_matrix(benchmark, matrix):
    """Not a baseline: the cost of merely allocating and writing a fresh (n, len(FEATURE_NAMES)) float32 result."""
    benchmark(np.ones, (len(matrix), len(fr.FEATURE_NAMES)), np.float32)
