"""HashedNgrams gives scikit-learn's HashingVectorizer rows exactly, for any text and settings."""

from __future__ import annotations

import copy
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastroute.analyzer import HASH_FEATURES_MAX, HASH_FEATURES_MIN, NGRAM_MAX_N, HashedNgrams
from fastroute.errors import InvalidInput, UnsupportedInput

text_module = pytest.importorskip("sklearn.feature_extraction.text", reason="needs the 'learn' extra")
HashingVectorizer = text_module.HashingVectorizer
TfidfTransformer = text_module.TfidfTransformer
ROOT = Path(__file__).resolve().parents[2]

# Letters of many scripts, their capitals (final sigma, dotted I), combining
# marks, digits of other systems, white space of every kind, punctuation.
SPECIAL = "ΣσςİIıiẞßǅǄǆΑΒΓΔΟΣ́̈‿_·:'.-\u00a0\u2028\u3000\u200b\u0300\u0345\u02b0ªЖжΩ中文字한국어١٢३"
alphabet = st.one_of(
    st.characters(codec="utf-8"),  # any code point but lone surrogates
    st.sampled_from(SPECIAL),
    st.sampled_from("abcXYZ  \t\n"),
)
texts = st.text(alphabet=alphabet, max_size=60)
hash_settings = st.fixed_dictionaries({
    "analyzer": st.sampled_from(["word", "char_wb"]),
    "ngram_range": st.tuples(st.integers(1, 3), st.integers(0, 2)).map(lambda r: (r[0], r[0] + r[1])),
    "n_features": st.sampled_from([2**10, 2**14, 2**18, 2**22]),
    "lowercase": st.booleans(),
    "alternate_sign": st.booleans(),
    "binary": st.booleans(),
    "norm": st.sampled_from(["l2", "l1", None]),
})


def assert_same_rows(ours, reference) -> None:
    reference = reference.tocsr()
    assert ours.shape == reference.shape
    np.testing.assert_array_equal(ours.indptr, reference.indptr)
    np.testing.assert_array_equal(ours.indices, reference.indices)
    np.testing.assert_allclose(ours.data, reference.data, rtol=1e-12, atol=0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(texts, min_size=1, max_size=6), setting=hash_settings)
def test_rows_equal_hashing_vectorizer(batch: list[str], setting: dict) -> None:
    ours = HashedNgrams(**setting).transform(batch)
    assert_same_rows(ours, HashingVectorizer(**setting).transform(batch))


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(texts, min_size=1, max_size=4), analyzer=st.sampled_from(["word", "char_wb"]))
def test_sublinear_tf_equals_tfidf_transformer_without_idf(batch: list[str], analyzer: str) -> None:
    counts = HashingVectorizer(analyzer=analyzer, ngram_range=(1, 3), alternate_sign=False, norm=None).transform(batch)
    reference = TfidfTransformer(use_idf=False, sublinear_tf=True, norm="l2").fit_transform(counts)
    ours = HashedNgrams(analyzer, (1, 3), alternate_sign=False, sublinear_tf=True).transform(batch)
    assert_same_rows(ours, reference)


def test_sublinear_tf_keeps_the_sign_of_alternate_sign_counts() -> None:
    indices, values = HashedNgrams("word", norm=None, sublinear_tf=True).hash("spam " * 5 + "ham")
    counts = HashedNgrams("word", norm=None).hash("spam " * 5 + "ham")[1]
    np.testing.assert_allclose(values, np.sign(counts) * (1 + np.log(np.abs(counts))))


@pytest.mark.parametrize(
    "text",
    [
        "ΟΔΟΣ ΣΑΣ. Σ aΣ ΑΣ' xΣ·y",  # final sigma, its context across case-ignorable characters
        "İstanbul İİ Iİ",  # U+0130 lowers to two code points
        "ǅungla ẞtraße ﬀ Ωmega ᾈ",  # title case, sharp s, ligatures
        "naïve café — 東京で会いましょう 한국어 مرحبا بالعالم हिन्दी",  # mixed scripts
        "a\u00a0b\u2028c\u3000d\u200be\u0085f",  # white space Python splits on, and one it does not
        "x__y 12 ١٢٣ 3 _a",  # \w digits and underscores
        "",
        "   \n\t ",
        "🙂🙂 emoji🙂 🙂x",
    ],
)
@pytest.mark.parametrize("analyzer, ngram_range", [("word", (1, 3)), ("char_wb", (1, 5)), ("char_wb", (4, 6))])
def test_hard_texts_equal_hashing_vectorizer(text: str, analyzer: str, ngram_range: tuple[int, int]) -> None:
    ours = HashedNgrams(analyzer, ngram_range).transform([text])
    assert_same_rows(ours, HashingVectorizer(analyzer=analyzer, ngram_range=ngram_range, n_features=2**20).transform([text]))


def test_single_hash_bytes_and_batches_agree() -> None:
    hasher = HashedNgrams("char_wb", (2, 4), 2**16)
    batch = ["Which planet is largest?", "Résous 3x + 5 = 20", "", "写一首关于秋天的诗"] * 50
    indptr, indices, values = hasher.hash_batch(batch)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and values.dtype == np.float64
    for i, text in enumerate(batch):
        row = slice(indptr[i], indptr[i + 1])
        for form in (text, text.encode(), bytearray(text.encode()), memoryview(text.encode())):
            one_indices, one_values = hasher.hash(form)
            np.testing.assert_array_equal(one_indices, indices[row])
            np.testing.assert_array_equal(one_values, values[row])
    assert np.all(np.diff(indices[indptr[0]:indptr[1]]) > 0)


def test_threads_give_the_rows_of_one_thread() -> None:
    batch = [f"prompt {i}: " + "solve the equation and explain " * (i % 40) for i in range(4000)]
    one = HashedNgrams("word", (1, 2), threads=1).hash_batch(batch)
    many = HashedNgrams("word", (1, 2), threads=4).hash_batch(batch)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_a_ten_megabyte_prompt_hashes_like_its_paragraph() -> None:
    paragraph = "Route every prompt to the model best suited for it, Σίσυφος. "
    huge = paragraph * (10_000_000 // len(paragraph.encode()) + 1)
    assert len(huge.encode()) >= 10_000_000
    hasher = HashedNgrams("word")
    indices, values = hasher.hash(huge)
    expected_indices, expected_values = hasher.hash(paragraph)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(values, expected_values, rtol=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (b"caf\xe9", "invalid UTF-8 at byte 3"),
        (b"ok \xed\xa0\x80", "invalid UTF-8 at byte 3"),  # an encoded surrogate
        (b"\xc0\xaf", "invalid UTF-8 at byte 0"),  # overlong
        (b"trunc\xe2\x82", "invalid UTF-8 at byte 5"),
        ("lone \ud800 surrogate", "not encodable as UTF-8"),
    ],
)
def test_invalid_text_raises_invalid_input(bad: str | bytes, message: str) -> None:
    hasher = HashedNgrams("char_wb", (1, 3))
    with pytest.raises(InvalidInput, match=message):
        hasher.hash(bad)
    with pytest.raises(InvalidInput, match=f"item 1: .*{message}"):
        hasher.hash_batch(["fine", bad])


@pytest.mark.parametrize("item", [None, 3, np.zeros(3, dtype=np.float32), np.zeros((2, 2)), ["nested"]])
def test_other_modalities_in_a_batch_raise_unsupported_input(item: object) -> None:
    with pytest.raises(UnsupportedInput, match=r"item 2: expected a str or UTF-8 bytes, got \w+"):
        HashedNgrams().hash_batch(["a prompt", b"another", item])


def test_a_single_text_given_as_a_batch_is_refused() -> None:
    with pytest.raises(UnsupportedInput, match="use hash"):
        HashedNgrams().hash_batch("one prompt")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_features": 3000}, "power of two"),
        ({"n_features": HASH_FEATURES_MIN // 2}, "power of two"),
        ({"n_features": HASH_FEATURES_MAX * 2}, "power of two"),
        ({"ngram_range": (0, 1)}, "ngram_range"),
        ({"ngram_range": (2, 1)}, "ngram_range"),
        ({"ngram_range": (1, NGRAM_MAX_N + 1)}, "ngram_range"),
        ({"ngram_range": 3}, "ngram_range"),
        ({"analyzer": "char"}, "analyzer"),
        ({"norm": "max"}, "norm"),
        ({"threads": -1}, "threads"),
    ],
)
def test_settings_out_of_range_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        HashedNgrams(**kwargs)


def test_sklearn_round_trip_and_copies() -> None:
    hasher = HashedNgrams("char_wb", (2, 5), 2**18, alternate_sign=False, norm="l1")
    vectorizer = hasher.to_sklearn()
    assert HashedNgrams.from_sklearn(vectorizer) == hasher
    assert_same_rows(hasher.transform(["Hello there"]), vectorizer.transform(["Hello there"]))
    for copied in (copy.deepcopy(hasher), pickle.loads(pickle.dumps(hasher))):
        assert copied == hasher
        np.testing.assert_array_equal(copied.hash("abc def")[1], hasher.hash("abc def")[1])
    assert HashedNgrams(**hasher.settings()) == hasher
    with pytest.raises(InvalidInput, match="stop_words"):
        HashedNgrams.from_sklearn(HashingVectorizer(stop_words="english"))
    with pytest.raises(InvalidInput, match="sublinear_tf"):
        HashedNgrams(sublinear_tf=True).to_sklearn()


@pytest.mark.slow
def test_unicode_tables_are_what_the_generator_writes() -> None:
    sys.path.insert(0, str(ROOT / "csrc"))
    try:
        import gen_unicode_tables
    finally:
        sys.path.pop(0)
    committed = (ROOT / "csrc" / "unicode_tables.hpp").read_text(encoding="utf-8")
    import unicodedata

    if f'kUnicodeVersion[] = "{unicodedata.unidata_version}"' not in committed:
        pytest.skip(f"the tables are for another Unicode version than this Python's {unicodedata.unidata_version}")
    assert gen_unicode_tables.render() == committed
