"""The array heuristics on real arrays: the README's confusion table and the accuracy that must hold."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("sklearn", reason="the corpus needs scikit-learn (the 'test' extra)")
pytest.importorskip("scipy", reason="the corpus needs scipy (the 'test' extra)")
pytest.importorskip("PIL", reason="scikit-learn's sample images need pillow (the 'test' extra)")

import modality_corpus  # noqa: E402


@pytest.fixture(scope="module")
def confusion() -> dict[tuple[str, str], Counter[str]]:
    return modality_corpus.confusion()


def detected(confusion, prefix: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for (group, _), counts in confusion.items():
        if group.startswith(prefix):
            total += counts
    assert total, f"no corpus group starts with {prefix!r}"
    return total


def test_readme_holds_the_measured_table(confusion):
    assert modality_corpus.readme_table() == modality_corpus.markdown(confusion), (
        "README's confusion table is stale: run python tests/analyzer/modality_corpus.py --update-readme"
    )


def test_tables_and_rows_are_never_images_or_audio(confusion):
    """The silent wrong route of issue 9: a (200, 30) float table read as an image."""
    for prefix in ("tabular:", "synthetic: tables"):
        counts = detected(confusion, prefix)
        assert counts["tabular"] == sum(counts.values()) > 0, (prefix, counts)


def test_photos_are_images_in_every_form(confusion):
    counts = detected(confusion, "image: photos")
    assert counts == Counter(image=10)  # HWC uint8, float, normalised CHW, grayscale float and uint8, of 2 photos


def test_most_photo_tiles_are_images(confusion):
    counts = detected(confusion, "image: 64x64 grayscale tiles")
    assert counts["image"] >= 0.9 * sum(counts.values()) and counts["audio"] == 0


def test_pcm_waveforms_are_audio_and_no_recording_is_an_image(confusion):
    assert set(detected(confusion, "audio: WAV as read")) == {"audio"}
    assert detected(confusion, "synthetic: 440 Hz tone") == Counter(audio=3)
    assert detected(confusion, "audio:")["image"] == 0


def test_no_image_is_audio(confusion):
    assert detected(confusion, "image:")["audio"] == 0
