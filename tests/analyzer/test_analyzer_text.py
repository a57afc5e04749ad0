"""str inputs: text statistics against pure-Python references, script guesses, bad strings."""

from __future__ import annotations

import math
import string

import numpy as np
import pytest

import fastroute as fr


# The documented punctuation: string.punctuation plus these blocks.
PUNCT_RANGES = [(0xA1, 0xBF), (0x2010, 0x2027), (0x2030, 0x205E), (0x3001, 0x303F), (0xFF01, 0xFF0F),
                (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65)]  # fmt: skip


def is_punct(c: str) -> bool:
    return c in string.punctuation or any(lo <= ord(c) <= hi for lo, hi in PUNCT_RANGES)


def reference_text_features(text: str) -> dict[str, float]:
    """The documented definitions, in plain Python (valid for ASCII, Latin-1, Greek, Cyrillic text)."""
    n = len(text)
    encoded = text.encode()
    counts = np.bincount(np.frombuffer(encoded, np.uint8), minlength=256)
    p = counts[counts > 0] / len(encoded)
    words = text.split()
    return {
        "length": n,
        "size_bytes": len(encoded),
        "words": len(words),
        "lines": text.count("\n") + (not text.endswith("\n")),
        "mean_word_length": sum(map(len, words)) / len(words) if words else math.nan,
        "ascii_share": sum(c.isascii() for c in text) / n,
        "non_ascii_share": sum(not c.isascii() for c in text) / n,
        "digit_share": sum(c in string.digits for c in text) / n,
        "upper_share": sum(c.isupper() for c in text) / n,
        "punct_share": sum(map(is_punct, text)) / n,
        "space_share": sum(c.isspace() for c in text) / n,
        "byte_entropy": float(-(p * np.log2(p)).sum()),
    }


TEXTS = {
    "english": "Route every request to the model best suited for it.\nIt takes 12 microseconds!",
    "no_final_newline": "one\ntwo\nthree",
    "final_newline": "one\ntwo\n",
    "whitespace_kinds": "tab\there\x0bvertical\x0cform\x1cfile  two  spaces\r\nend",
    "digits_and_punct": "3.14159, 2.71828; (42) [7] {x}: #1 @home ~ok?",
    "cyrillic": "Привет, мир! Маршрутизация ЗАПРОСОВ к моделям.",
    "greek": "Καλημέρα ΚΌΣΜΕ, δρομολόγηση αιτημάτων.",
    "latin1": "Ça coûte 5 € — très CHER, naïve façade.",
    "only_spaces": "   \n\t ",
    "single_char": "x",
}


@pytest.mark.parametrize("name", TEXTS)
def test_text_features_match_reference(name):
    text = TEXTS[name]
    analysis = fr.analyze(text)
    assert analysis.modality == "text" and analysis.mime is None
    assert analysis["source"] == fr.SOURCES.index("str")
    for feature, value in reference_text_features(text).items():
        np.testing.assert_allclose(analysis[feature], value, rtol=1e-6, atol=1e-6, err_msg=feature)
    for feature in ("height", "mean", "ndim", "sample_rate", "mime"):
        assert math.isnan(analysis[feature]), feature


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("The quick brown fox", "latin"),
        ("Съешь же ещё этих мягких французских булок", "cyrillic"),
        ("Γειά σου Κόσμε", "greek"),
        ("مرحبا بالعالم", "arabic"),
        ("שלום עולם", "hebrew"),
        ("नमस्ते दुनिया", "devanagari"),
        ("สวัสดีชาวโลก", "thai"),
        ("안녕하세요 세계", "hangul"),
        ("你好，世界。机器学习路由", "cjk"),
        ("こんにちは世界", "cjk"),
        ("Hello мир мир мир", "cyrillic"),  # the majority of letters wins
        ("12345 !!! ... 678", "none"),
        ("ሰላም ዓለም", "other"),  # Ethiopic: no named script
    ],
)
def test_script_guess(text, script):
    assert fr.SCRIPTS[int(fr.analyze(text)["script"])] == script


def test_non_ascii_digits_and_fullwidth_punctuation():
    analysis = fr.analyze("٣٤ ४२ １２！")
    assert analysis["digit_share"] == pytest.approx(6 / 9)
    assert analysis["punct_share"] == pytest.approx(1 / 9)


def test_empty_str_is_a_text_of_length_zero():
    analysis = fr.analyze("")
    assert analysis.modality == "text" and analysis.mime is None
    assert (analysis["length"], analysis["size_bytes"], analysis["words"], analysis["lines"]) == (0, 0, 0, 0)
    assert analysis["script"] == fr.SCRIPTS.index("none") and math.isnan(analysis["mean_word_length"])


def test_lone_surrogate_is_invalid_input():
    with pytest.raises(fr.InvalidInput, match="lone surrogate"):
        fr.analyze("abc\ud800def")


def test_long_text_releases_the_gil_and_counts_everything():
    text = "word " * 50_000 + "zz\n" * 20_000  # over 2^18 bytes: the wide byte counters
    analysis = fr.analyze(text)
    assert (analysis["words"], analysis["length"], analysis["lines"]) == (70_000, 310_000, 20_000)
    expected = reference_text_features(text)
    assert analysis["byte_entropy"] == pytest.approx(expected["byte_entropy"], rel=1e-6)


def test_repr_and_explain():
    analysis = fr.analyze("Hi there\nfriend")
    assert repr(analysis) == "Analysis(modality='text', length=15, words=3, script=latin)"
    assert "  lines: 2\n" in analysis.explain()
