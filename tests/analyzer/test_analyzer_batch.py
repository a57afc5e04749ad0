"""analyze_batch: equals per-item analysis, threads, errors carry the item index."""

from __future__ import annotations

import numpy as np
import pytest
from analyzer_samples import samples

import fastroute as fr


def assert_rows_equal_items(batch: fr.BatchAnalysis, items) -> None:
    assert len(batch) == len(items)
    assert batch.features.dtype == np.float32 and batch.features.shape == (len(items), len(fr.FEATURE_NAMES))
    assert batch.modality_codes.dtype == np.uint8
    for i, item in enumerate(items):
        single = fr.analyze(item)
        np.testing.assert_array_equal(batch.features[i], single.features)
        assert batch.modalities[i] == single.modality == batch[i].modality
        assert batch[i].mime == single.mime


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8, np.bool_])
def test_matrix_rows_equal_single_rows(dtype):
    matrix = (np.random.default_rng(0).normal(0, 50, (40, 16))).astype(dtype)
    assert_rows_equal_items(fr.analyze_batch(matrix), list(matrix))


@pytest.mark.parametrize(
    "layout", [np.asfortranarray, lambda m: m[::-2, ::3], lambda m: m.astype(m.dtype.newbyteorder()), lambda m: m.T.copy().T]
)
def test_matrix_layouts(layout):
    matrix = layout(np.random.default_rng(1).random((30, 24)).astype(np.float32))
    assert_rows_equal_items(fr.analyze_batch(matrix), list(matrix))


def test_large_matrix_uses_threads_and_matches_numpy():
    matrix = np.random.default_rng(2).random((200_000, 8), dtype=np.float32)
    batch = fr.analyze_batch(matrix)
    names = list(fr.FEATURE_NAMES)
    np.testing.assert_allclose(batch.features[:, names.index("mean")], matrix.mean(axis=1, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(batch.features[:, names.index("std")], matrix.std(axis=1, dtype=np.float64), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(batch.features[:, names.index("max")], matrix.max(axis=1))
    assert set(batch.modalities) == {"tabular"}
    for i in (0, 99_999, 100_000, 199_999):  # both sides of the threads' split
        np.testing.assert_array_equal(batch.features[i], fr.analyze(matrix[i]).features)


def test_rows_that_are_waveforms():
    wave = 0.5 * np.sin(np.arange(8000) / 5)
    rows = np.stack([wave, np.zeros(8000), 3 * wave, wave]).astype(np.float32)
    batch = fr.analyze_batch(rows)
    assert batch.modalities == ["audio", "tabular", "tabular", "audio"]  # zeros: one sign; 3 * wave: beyond [-1, 1]
    assert_rows_equal_items(batch, list(rows))
    assert fr.analyze_batch(rows[:, :7999]).modalities == ["tabular"] * 4


def test_rows_with_nan_and_inf():
    matrix = np.zeros((300_000, 4), np.float32)
    matrix[250_001, 2] = np.nan
    matrix[200_000, 1:] = np.inf
    batch = fr.analyze_batch(matrix)
    names = list(fr.FEATURE_NAMES)
    assert batch.features[250_001, names.index("nan_share")] == 0.25
    assert batch.features[200_000, names.index("inf_share")] == 0.75
    assert batch.features[200_000, names.index("mean")] == 0.0
    assert batch.features[:, names.index("nan_share")].sum() == 0.25
    for i in (0, 200_000, 250_001):
        np.testing.assert_array_equal(batch.features[i], fr.analyze(matrix[i]).features)


def test_mixed_sequence_equals_single_analyses():
    files = samples()
    items = [
        "a short prompt",
        files["png_rgb"].data,
        bytearray(files["wav"].data),
        memoryview(files["pdf"].data),
        np.ones((28, 28), np.uint8),
        np.arange(10.0)[::-1],
        files["npy"].data,
        "Привет",
    ]
    batch = fr.analyze_batch(items)
    assert_rows_equal_items(batch, items)
    assert batch.modalities == ["text", "image", "audio", "document", "image", "tabular", "tabular", "text"]
    assert_rows_equal_items(fr.analyze_batch(["", b"", bytearray()]), ["", b"", bytearray()])
    assert [a.modality for a in batch] == batch.modalities
    assert repr(batch) == "BatchAnalysis(n=8, audio=1, document=1, image=2, tabular=2, text=2)"


def test_large_mixed_sequence_uses_threads():
    items = ["text number %d " % i * 20 for i in range(3000)] + [np.arange(100.0)] * 3000
    batch = fr.analyze_batch(items)
    assert batch.modalities[:3000] == ["text"] * 3000 and batch.modalities[3000:] == ["tabular"] * 3000
    for i in range(0, len(items), 499):  # a spread of rows across the threads' chunks
        np.testing.assert_array_equal(batch.features[i], fr.analyze(items[i]).features)


def test_tuple_and_generator_free_sequences():
    assert len(fr.analyze_batch(("a", "b"))) == 2
    with pytest.raises(fr.UnsupportedInput, match="not 'generator'"):
        fr.analyze_batch(x for x in ["a"])


def test_empty_batches():
    assert len(fr.analyze_batch([])) == 0
    assert fr.analyze_batch(np.zeros((0, 16), np.float32)).features.shape == (0, len(fr.FEATURE_NAMES))
    assert repr(fr.analyze_batch([])) == "BatchAnalysis(n=0)"


def test_errors_carry_the_first_failing_index():
    with pytest.raises(fr.UnsupportedInput, match=r"^item 2: cannot analyse an object of type 'dict'"):
        fr.analyze_batch(["a", b"b", {}, None])
    with pytest.raises(fr.InvalidInput, match=r"^item 2: empty array"):
        fr.analyze_batch(["", b"", np.ones(0), np.ones(0)])
    with pytest.raises(fr.CorruptFile, match=r"^item 0: PNG header"):
        fr.analyze_batch([b"\x89PNG\r\n\x1a\n" + bytes(4)])


@pytest.mark.parametrize(
    ("xs", "error", "message"),
    [
        (np.zeros(5), fr.InvalidInput, r"needs a 2-D array .* shape \(5,\)"),
        (np.zeros((2, 3, 4)), fr.InvalidInput, r"needs a 2-D array"),
        (np.zeros((3, 0)), fr.InvalidInput, r"empty array of shape \(0,\)"),
        (np.zeros((2, 2), complex), fr.UnsupportedInput, r"dtype complex128"),
        ("text", fr.UnsupportedInput, r"not a single str"),
        (b"bytes", fr.UnsupportedInput, r"not a single bytes"),
        (None, fr.UnsupportedInput, r"not 'NoneType'"),
    ],
)
def test_bad_batches(xs, error, message):
    with pytest.raises(error, match=message):
        fr.analyze_batch(xs)


def test_analysis_from_a_bad_row():
    with pytest.raises(fr.InvalidInput, match=f"feature row has {len(fr.FEATURE_NAMES)} values"):
        fr.Analysis(np.zeros(3, np.float32))
    row = np.full(len(fr.FEATURE_NAMES), np.nan, np.float32)
    with pytest.raises(fr.InvalidInput, match="modality code nan"):
        fr.Analysis(row)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e30, "1e+30"), (-1e30, "-1e+30"), (-1.0, "-1"), (0.5, "0.5"), (np.inf, "inf"), (1e10, "10000000000"), (99.0, "99")],
)
def test_out_of_range_codes_print_as_numbers(value, text):
    """Converting such a float to an index was undefined behaviour (UBSan float-cast-overflow, issue 9)."""
    row = fr.analyze("some text").features.copy()
    for name in ("source", "mime", "dtype_kind", "script"):
        row[fr.FEATURE_NAMES.index(name)] = value
    analysis = fr.Analysis(row)
    for name in ("source", "mime", "dtype_kind", "script"):
        assert f"  {name}: {text}\n" in analysis.explain()
    assert repr(analysis).endswith(f"script={text}, dtype_kind={text})")


def test_out_receives_the_features():
    matrix = np.random.default_rng(3).random((50, 16), dtype=np.float32)
    out = np.full((50, len(fr.FEATURE_NAMES)), -1.0, np.float32)
    batch = fr.analyze_batch(matrix, out=out)
    assert batch.features is out
    np.testing.assert_array_equal(out, fr.analyze_batch(matrix).features)
    items = ["a", b"%PDF-1.4"]
    out2 = np.zeros((2, len(fr.FEATURE_NAMES)), np.float32)
    np.testing.assert_array_equal(fr.analyze_batch(items, out=out2).features, fr.analyze_batch(items).features)


WIDTH = len(fr.FEATURE_NAMES)


@pytest.mark.parametrize(
    "out",
    [
        np.zeros((50, WIDTH - 1), np.float32),
        np.zeros((49, WIDTH), np.float32),
        np.zeros((50, WIDTH), np.float64),
        np.zeros((WIDTH, 50), np.float32).T,
        np.zeros(50 * WIDTH, np.float32),
        [[0.0] * WIDTH] * 50,
    ],
)
def test_bad_out(out):
    with pytest.raises(fr.InvalidInput, match=rf"out must be a writeable C-contiguous float32 array of shape \(50, {WIDTH}\)"):
        fr.analyze_batch(np.zeros((50, 16), np.float32), out=out)


def test_read_only_out():
    out = np.zeros((2, len(fr.FEATURE_NAMES)), np.float32)
    out.flags.writeable = False
    with pytest.raises(fr.InvalidInput, match="out must be a writeable"):
        fr.analyze_batch(["a", "b"], out=out)
