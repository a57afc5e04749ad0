"""Property-based: random and mutated bytes, random text and arrays never crash the analyzer."""

from __future__ import annotations

import numpy as np
from analyzer_samples import samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastroute as fr

SAMPLES = [sample.data for sample in samples().values()]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def analyze_or_clear_error(x) -> None:
    """An Analysis with a valid modality and a float32 vector, or a FastrouteError: never a crash."""
    try:
        analysis = fr.analyze(x)
    except fr.FastrouteError as error:
        assert str(error)
        return
    assert analysis.modality in fr.MODALITIES
    assert analysis.features.shape == (len(fr.FEATURE_NAMES),)
    repr(analysis)
    analysis.explain()


@FUZZ
@given(st.binary(min_size=0, max_size=512))
def test_random_bytes(data):
    analyze_or_clear_error(data)


@st.composite
def mutated_files(draw):
    """A real file with some header bytes replaced, inserted or removed, or truncated."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, min(len(data), 96)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        value = draw(st.integers(0, 255))
        if action == "replace" and position < len(data):
            data[position] = value
        elif action == "insert":
            data.insert(position, value)
        elif position < len(data):
            del data[position]
    return bytes(data[: draw(st.integers(0, len(data)))])


@FUZZ
@given(mutated_files())
def test_mutated_file_headers(data):
    analyze_or_clear_error(data)


@FUZZ
@given(mutated_files())
def test_mutated_files_in_a_batch_match_single_results(data):
    try:
        single = fr.analyze(data)
    except fr.FastrouteError as error:
        try:
            fr.analyze_batch([data])
        except type(error) as batch_error:
            assert str(batch_error) == f"item 0: {error}"
        return
    np.testing.assert_array_equal(fr.analyze_batch([data]).features[0], single.features)


@FUZZ
@given(st.text(min_size=0, max_size=200))
def test_random_text(text):
    analyze_or_clear_error(text)


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        dtype=st.one_of(hnp.integer_dtypes(endianness="?"), hnp.floating_dtypes(endianness="?"), hnp.boolean_dtypes()),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
    )
)
def test_random_arrays_match_numpy_or_fail_cleanly(array):
    values = array.astype(np.float64)
    try:
        analysis = fr.analyze(array)
    except fr.InvalidInput as error:
        assert array.size == 0, error
        return
    assert analysis["nan_share"] == np.float32(np.isnan(values).mean())
    assert analysis["inf_share"] == np.float32(np.isinf(values).mean())
    values = values[np.isfinite(values)]
    if values.size == 0:
        assert np.isnan(analysis["mean"]) and np.isnan(analysis["max"])
        return
    with np.errstate(over="ignore"):  # features are float32: huge float64 values saturate to inf
        np.testing.assert_allclose(analysis["max"], np.float32(values.max()))
        np.testing.assert_allclose(analysis["min"], np.float32(values.min()))
    scale = float(np.abs(values).max())
    if scale < 1e30:
        np.testing.assert_allclose(analysis["mean"], values.mean(), rtol=1e-5, atol=1e-6 * scale + 1e-30)
