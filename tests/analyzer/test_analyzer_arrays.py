"""numpy arrays: modality heuristics, every dtype and layout against a numpy reference, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastroute as fr

F = {name: i for i, name in enumerate(fr.FEATURE_NAMES)}

NUMERIC_DTYPES = [
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64, np.longdouble,
]  # fmt: skip


def reference_stats(x: np.ndarray) -> dict[str, float]:
    """The value features computed by numpy in float64: statistics of the finite values, shares of all."""
    values = np.asarray(x, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return {
        "mean": finite.mean() if finite.size else math.nan,
        "std": finite.std() if finite.size else math.nan,
        "min": finite.min() if finite.size else math.nan,
        "max": finite.max() if finite.size else math.nan,
        "zero_share": np.count_nonzero(values == 0) / values.size,
        "nan_share": np.count_nonzero(np.isnan(values)) / values.size,
        "inf_share": np.count_nonzero(np.isinf(values)) / values.size,
        "size_bytes": x.size * x.dtype.itemsize,
        "itemsize": x.dtype.itemsize,
        "dtype_kind": fr.DTYPE_KINDS.index({"b": "bool", "i": "int", "u": "uint", "f": "float"}[x.dtype.kind]),
        "ndim": x.ndim,
    }


def assert_matches_reference(x: np.ndarray) -> fr.Analysis:
    analysis = fr.analyze(x)
    expected = reference_stats(x)
    scale = max(1.0, *(abs(float(expected[name])) for name in ("max", "min") if not math.isnan(expected[name])))
    for name, value in expected.items():
        np.testing.assert_allclose(analysis[name], value, rtol=1e-5, atol=1e-6 * scale, err_msg=name)
    assert analysis["source"] == fr.SOURCES.index("array")
    assert math.isnan(analysis["mime"]) and analysis.mime is None
    return analysis


def sample(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) < 0.3
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        low, high = max(info.min, -1000), min(info.max, 1000)
        values = rng.integers(low, high, shape, endpoint=True)
        values.flat[::7] = 0
        return values.astype(dtype)
    values = rng.normal(3.0, 2.0, shape)
    values.flat[::5] = 0.0
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_matches_numpy(dtype):
    assert_matches_reference(sample(dtype, (7, 9)))


LAYOUTS = {
    "c_contiguous": lambda a: a,
    "fortran": np.asfortranarray,
    "transposed": lambda a: a.T,
    "reversed_rows": lambda a: a[::-1],
    "negative_step_columns": lambda a: a[:, ::-2],
    "strided_view": lambda a: a[1::2, ::3],
    "broadcast_zero_stride": lambda a: np.broadcast_to(a[0], (5, a.shape[1])),
    "byteswapped": lambda a: a.astype(a.dtype.newbyteorder()),
    "byteswapped_fortran_reversed": lambda a: np.asfortranarray(a.astype(a.dtype.newbyteorder()))[::-1, ::-1],
    "unaligned": lambda a: np.frombuffer(b"\0" + a.tobytes(), dtype=a.dtype, offset=1).reshape(a.shape),
    "three_d_permuted": lambda a: a.reshape(3, 4, -1).transpose(2, 0, 1)[::-1],
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.int16, np.uint32, np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_every_layout_matches_numpy(layout, dtype):
    base = sample(dtype, (12, 10), seed=1)
    view = LAYOUTS[layout](base)
    if layout == "byteswapped":
        assert not view.dtype.isnative
    assert_matches_reference(view)


def test_views_are_read_in_place_not_copied():
    big = np.zeros((2000, 3000), np.float32)
    big[::2, ::3] = 1.0
    analysis = fr.analyze(big[::2, ::3])
    assert analysis["mean"] == 1.0 and analysis["zero_share"] == 0.0


def test_bool_counts_as_zero_one():
    analysis = fr.analyze(np.array([True, False, True, True]))
    assert (analysis["mean"], analysis["min"], analysis["max"], analysis["zero_share"]) == (0.75, 0.0, 1.0, 0.25)
    assert analysis["dtype_kind"] == fr.DTYPE_KINDS.index("bool")


def test_zero_dim_array_is_one_tabular_value():
    analysis = fr.analyze(np.array(2.5))
    assert analysis.modality == "tabular"
    assert (analysis["ndim"], analysis["length"], analysis["mean"]) == (0, 1, 2.5)


def test_large_offsets_keep_variance_accurate():
    x = 1e9 + np.array([1.0, 2.0, 3.0, 4.0])
    assert fr.analyze(x)["std"] == pytest.approx(np.std(x), rel=1e-6)


def tone(samples: int, dtype=np.float32, channels: int = 0) -> np.ndarray:
    """A 440 Hz tone at 16 kHz, half of full scale (PCM integers span their dtype), channels first if any."""
    wave = 0.5 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16_000)
    if np.dtype(dtype).kind in "iu":
        wave = wave * np.iinfo(dtype).max
    return (np.stack([wave] * channels) if channels else wave).astype(dtype)


def gradient(height: int, width: int, dtype=np.float32) -> np.ndarray:
    """A smooth grayscale picture: neighbouring pixels are alike."""
    return np.add.outer(np.arange(height), np.arange(width)).astype(dtype)


RNG = np.random.default_rng(5)


@pytest.mark.parametrize(
    ("x", "modality", "dims"),
    [
        (np.ones(16, np.float32), "tabular", {}),
        (tone(8000), "audio", {"channels": 1, "length": 8000}),
        (tone(1024, np.int16), "audio", {"channels": 1}),
        (tone(1024, np.int32), "audio", {"channels": 1}),
        (tone(1023, np.int16), "tabular", {}),  # under kMinPcmSamples
        (tone(8000, np.int64), "tabular", {}),  # not a PCM dtype
        (np.ones(8000, np.uint8), "tabular", {}),
        (tone(7999, np.float64), "tabular", {}),  # float audio needs 8,000 samples
        (np.abs(tone(8000)), "tabular", {}),  # one sign: not a waveform
        (RNG.normal(size=10_000), "tabular", {}),  # beyond [-1, 1]: not float audio
        (tone(8000, channels=2), "audio", {"channels": 2, "length": 8000}),
        (tone(9000, np.int16, channels=1), "audio", {"channels": 1, "length": 9000}),
        (tone(9000, np.int16, channels=2).T, "audio", {"channels": 2, "length": 9000}),  # scipy.io.wavfile's layout
        (tone(8000, channels=3), "tabular", {}),
        (gradient(28, 28, np.uint8), "image", {"height": 28, "width": 28, "channels": 1}),
        (gradient(8, 40), "image", {"height": 8, "width": 40, "channels": 1, "aspect_ratio": 5.0}),
        (np.zeros((32, 32)), "image", {"height": 32}),  # constant: smooth
        (gradient(7, 40), "tabular", {}),
        (RNG.normal(size=(100, 5)), "tabular", {}),
        (RNG.normal(size=(200, 30)), "tabular", {}),  # a table is not an image
        (RNG.uniform(size=(30, 30)), "tabular", {}),  # square, in [0, 1], but neighbours unalike
        (np.ones((32, 24, 3), np.uint8), "image", {"height": 32, "width": 24, "channels": 3, "aspect_ratio": 0.75}),
        (np.ones((32, 24, 4), np.uint8), "image", {"channels": 4}),
        (np.ones((32, 24, 1), np.uint8), "image", {"channels": 1}),
        (np.ones((3, 32, 24), np.float32), "image", {"height": 32, "width": 24, "channels": 3}),
        (np.ones((32, 24, 5), np.uint8), "tabular", {}),
        (np.ones((3, 4, 3), np.uint8), "tabular", {}),
        (np.ones((2, 8, 8, 3), np.uint8), "tabular", {}),
    ],
    ids=lambda v: "x".join(map(str, v.shape)) + "-" + v.dtype.name if isinstance(v, np.ndarray) else None,
)
def test_modality_heuristics(x, modality, dims):
    analysis = fr.analyze(x)
    assert analysis.modality == modality, x.shape
    expected_length = dims.get("length", x.size)
    assert analysis["length"] == expected_length
    for name, value in dims.items():
        assert analysis[name] == pytest.approx(value), name
    if modality == "tabular":
        assert all(math.isnan(analysis[n]) for n in ("height", "width", "channels", "aspect_ratio"))
    if modality != "image":
        assert math.isnan(analysis["height"])
    for name in ("sample_rate", "duration_s", "words", "script", "byte_entropy"):
        assert math.isnan(analysis[name]), name


@pytest.mark.parametrize(
    ("shape", "hint", "modality", "dims"),
    [
        ((28, 28), "tabular", "tabular", {}),
        ((4, 5), "image", "image", {"height": 4, "width": 5, "channels": 1}),
        ((4, 5, 3), "image", "image", {"height": 4, "width": 5, "channels": 3}),
        ((3, 4, 5), "image", "image", {"height": 4, "width": 5, "channels": 3}),
        ((100,), "audio", "audio", {"channels": 1, "length": 100}),
        ((300, 2), "audio", "audio", {"channels": 2, "length": 300}),
        ((2, 300), "audio", "audio", {"channels": 2, "length": 300}),
    ],
)
def test_hint_overrides_heuristics(shape, hint, modality, dims):
    analysis = fr.analyze(np.ones(shape, np.float32), hint=hint)
    assert analysis.modality == modality
    for name, value in dims.items():
        assert analysis[name] == value, name


@pytest.mark.parametrize(("shape", "hint"), [((5,), "image"), ((5, 6, 7), "image"), ((2, 3, 4, 5), "image"), ((2, 3, 4), "audio")])
def test_hint_that_does_not_fit_the_shape(shape, hint):
    with pytest.raises(fr.InvalidInput, match=rf"hint '{hint}' does not fit an array of shape \("):
        fr.analyze(np.ones(shape, np.float32), hint=hint)


def test_unknown_hint_is_named():
    with pytest.raises(fr.InvalidInput, match="hint 'video'"):
        fr.analyze(np.ones(3), hint="video")
    with pytest.raises(fr.InvalidInput, match="hint must be a str"):
        fr.analyze(np.ones(3), hint=3)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble], ids=lambda d: np.dtype(d).name)
def test_nan_and_inf_are_features_not_errors(layout, dtype):
    """Missing values are normal in tables: counted, and left out of mean/std/min/max (issue 9)."""
    x = sample(dtype, (12, 10), seed=2)
    x[2, 3] = x[7, 1] = x[11, 9] = np.nan
    x[4, 4] = np.inf
    x[0, 5] = -np.inf
    analysis = assert_matches_reference(LAYOUTS[layout](x))
    if layout == "c_contiguous":
        assert (analysis["nan_share"], analysis["inf_share"]) == (pytest.approx(3 / 120), pytest.approx(2 / 120))
        assert analysis.modality == "tabular"


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
def test_no_finite_value_leaves_the_statistics_missing(fill):
    analysis = fr.analyze(np.full((3, 4), fill))
    assert all(math.isnan(analysis[name]) for name in ("mean", "std", "min", "max"))
    assert analysis["nan_share"] + analysis["inf_share"] == 1.0 and analysis["zero_share"] == 0.0


def test_integer_arrays_have_no_nan_or_inf():
    analysis = fr.analyze(np.arange(10))
    assert (analysis["nan_share"], analysis["inf_share"]) == (0.0, 0.0)


def test_missing_values_do_not_change_the_modality():
    wave, picture = tone(8000), gradient(40, 50)
    wave[::100] = np.nan
    picture[3:5, 10:30] = np.nan
    assert fr.analyze(wave).modality == "audio" and fr.analyze(picture).modality == "image"


def test_broadcast_axes_cost_nothing():
    """10^14 logical elements, one distinct value: analysed at once, not in ~15 hours (issue 9)."""
    analysis = fr.analyze(np.broadcast_to(np.float32(1), (10**7, 10**7)))
    assert (analysis["mean"], analysis["std"]) == (1.0, 0.0)
    assert (analysis["length"], analysis["size_bytes"]) == (np.float32(1e14), np.float32(4e14))  # float32 features
    row = np.array([1.0, np.nan, 3.0, 0.0])
    analysis = fr.analyze(np.broadcast_to(row, (10**6, 10**6, 4)))
    assert (analysis["mean"], analysis["nan_share"], analysis["zero_share"]) == (pytest.approx(4 / 3), 0.25, 0.25)
    batch = fr.analyze_batch(np.broadcast_to(row, (10**6, 4)))
    np.testing.assert_array_equal(batch.features[999_999], fr.analyze(row).features)
    batch = fr.analyze_batch(np.broadcast_to(np.float32(2), (3, 10**12)))
    assert batch.modalities == ["tabular"] * 3 and set(batch.features[:, F["mean"]]) == {2.0}


def test_huge_finite_values_are_not_mistaken_for_inf():
    analysis = fr.analyze(np.array([1e300, -1e300, 0.0]))
    assert analysis["max"] == np.inf  # float32 features saturate; the input itself was valid
    assert analysis["zero_share"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("array", "name"),
    [
        (np.ones(3, np.complex128), "complex128"),
        (np.array([1, "a"], dtype=object), "object"),
        (np.array(["ab", "c"]), "<U2"),
        (np.array([b"ab"]), "|S2"),
        (np.zeros(2, dtype=[("a", "i4")]), r"\[\('a', '<i4'\)\]"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "datetime64"),
    ],
)
def test_unsupported_dtypes_are_named(array, name):
    with pytest.raises(fr.UnsupportedInput, match=f"arrays of dtype {name}"):
        fr.analyze(array)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 28, 28)])
def test_empty_arrays(shape):
    with pytest.raises(fr.InvalidInput, match=r"empty array of shape \("):
        fr.analyze(np.ones(shape))


@pytest.mark.parametrize(("value", "type_name"), [(None, "NoneType"), ({"a": 1}, "dict"), ([1, 2], "list"), (3.5, "float"), (object(), "object")])
def test_unsupported_objects_name_their_type(value, type_name):
    with pytest.raises(fr.UnsupportedInput, match=f"type '{type_name}'"):
        fr.analyze(value)


def test_errors_are_fastroute_errors_and_builtin_kinds():
    with pytest.raises(ValueError):
        fr.analyze(np.ones(0))
    with pytest.raises(TypeError):
        fr.analyze(None)
    with pytest.raises(fr.FastrouteError):
        fr.analyze(np.ones(3, complex))


def test_analysis_object():
    analysis = fr.analyze(np.ones((32, 24, 3), np.uint8))
    features = analysis.features
    assert features.dtype == np.float32 and features.shape == (len(fr.FEATURE_NAMES),)
    assert not features.flags.writeable
    assert features[F["modality"]] == fr.MODALITIES.index("image") == analysis.modality_code
    assert repr(analysis) == "Analysis(modality='image', height=32, width=24, channels=3, length=2304, dtype_kind=uint)"
    explained = analysis.explain()
    assert "  height: 32\n" in explained and "  dtype_kind: uint\n" in explained
    assert "words" not in explained  # missing features are not listed
    with pytest.raises(KeyError, match="no feature named 'colour'"):
        analysis["colour"]
    rebuilt = fr.Analysis(features)
    assert rebuilt.modality == "image" and repr(rebuilt) == repr(analysis)


def test_analyze_arguments():
    x = np.ones((28, 28), np.float32)
    assert fr.analyze(x=x, hint="tabular").modality == "tabular"
    assert fr.analyze(x, "tabular").modality == "tabular"
    assert fr.analyze(x, None).modality == "image"
    with pytest.raises(TypeError, match="missing required argument 'x'"):
        fr.analyze()
    with pytest.raises(TypeError, match="at most 2 positional arguments"):
        fr.analyze(x, None, None)
    with pytest.raises(TypeError, match="unexpected or repeated keyword argument 'colour'"):
        fr.analyze(x, colour=1)
    with pytest.raises(TypeError, match="unexpected or repeated keyword argument 'hint'"):
        fr.analyze(x, None, hint="image")


def test_hint_is_ignored_for_str_and_bytes():
    assert fr.analyze("some text", hint="image").modality == "text"
    assert fr.analyze(b"%PDF-1.4", hint="audio").modality == "document"
