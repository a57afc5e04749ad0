"""Analyzer: detect an input's modality and extract its feature vector.

The work happens in C++ (``fastroute._core``); this module documents the
contract and adds the batch container.

``analyze(x, hint=None) -> Analysis``: ``.modality`` (str, one of
``MODALITIES``), ``.modality_code``, ``.mime`` (str for bytes inputs, else
None), ``.features`` (read-only float32 vector in ``FEATURE_NAMES`` order,
NaN = missing), ``analysis["height"]`` (one feature by name), ``.explain()``
(every present feature, codes decoded) and a short repr.
``Analysis(row)`` rebuilds one from a feature row.
``analyze_batch(xs, *, out=None) -> BatchAnalysis``: see its docstring.

Inputs
------
- **numpy arrays** of any bool, integer or float dtype (float16 to long
  double) and any layout: non-contiguous views, negative strides, Fortran
  order, non-native byte order are read in place, never copied. Complex,
  object, string, void and datetime arrays raise ``UnsupportedInput``; empty
  arrays raise ``InvalidInput``. NaN and Inf are values like any other
  (missing values are normal in tables): counted as ``nan_share`` and
  ``inf_share`` and left out of mean/std/min/max. Broadcast (0-stride) axes
  cost nothing: they repeat values without changing the statistics.
- **str**: text statistics. An empty str is a text of length 0.
- **bytes / bytearray / memoryview** (read in place through the buffer
  protocol): a file, identified by its magic numbers. Empty bytes are a text
  of length 0 (mime text/plain); a recognised but truncated or absurd header
  raises ``CorruptFile`` naming the format and field.
- Anything else (None, dict, list, numbers...) raises ``UnsupportedInput``
  naming the type.

The GIL is released while inputs of 16 Ki elements or bytes and more are
analysed (below that, releasing it costs more than the work), and always by
``analyze_batch``, which splits batches of over 2^17 elements or bytes
across up to one thread per core.

Array modality heuristics
-------------------------
``hint=`` ("tabular", "image" or "audio") overrides them; a hint the shape
cannot fit raises ``InvalidInput``.

- Audio: 1-D samples, or 2-D with 1 or 2 channels (``(c, n)`` channels x
  samples, or ``(n, c)`` samples x channels as ``scipy.io.wavfile`` reads),
  whose values take both signs (a waveform is centred on zero): int16 or
  int32 PCM of ``n >= 1024`` samples, or floats within [-1, 1] of
  ``n >= 8000`` samples (floats are the tabular dtype too: a normalised
  embedding of a few thousand values also lies within [-1, 1]).
- 2-D image (grayscale H x W): both dims >= 8 and neighbouring values alike:
  on a grid of up to 32 x 32 points, the mean absolute difference to the
  right and to the lower neighbour are each at most 0.6 times that between
  points half the grid apart (NaN/Inf skipped; a constant array counts as
  smooth). Photos and scans are smooth; a table's neighbouring cells are
  different samples and features, so a (200, 30) table is tabular.
- 3-D: last dim in {1, 3, 4} and H, W >= 8 -> image (H x W x C); else first
  dim in {1, 3, 4} and H, W >= 8 -> image (C x H x W); else tabular.
- 0-D and >= 4-D: tabular. bool arrays count as 0/1.
- ``hint="image"``: 2-D is H x W, 3-D is H x W x C or C x H x W (C in 1, 3,
  4). ``hint="audio"``: 1-D is mono; 2-D is channels x samples with the
  smaller dimension as channels. ``hint`` is ignored for str and bytes.

Feature schema (``FEATURE_NAMES``; NaN = does not apply)
--------------------------------------------------------
Coded features are indices: ``modality`` into ``MODALITIES``, ``source``
into ``SOURCES`` (array, str, bytes), ``mime`` into ``MIMES``,
``dtype_kind`` into ``DTYPE_KINDS``, ``script`` into ``SCRIPTS``.

- Arrays: size_bytes, ndim, length (element count, or samples per channel for
  audio), height/width/channels/aspect_ratio (images; aspect = width/height),
  channels (audio), dtype_kind, itemsize, mean/std (population)/min/max over
  the finite values (NaN when there are none), and zero_share, nan_share,
  inf_share as shares of all values (0 for integer and bool arrays).
- Text (str, and bytes detected as text or JSON): size_bytes (UTF-8),
  length (characters), words (``len(s.split())``), lines (newlines, plus one
  if the text does not end with one), mean_word_length (non-space characters
  per word), the shares of ASCII / non-ASCII / digit / uppercase /
  punctuation / whitespace characters, script (the Unicode block most letters
  fall in; "none" without letters), byte_entropy (bits per byte of the UTF-8).
  Digits: ASCII, Arabic-Indic, Devanagari and fullwidth; uppercase: A-Z,
  Latin-1, Greek and Cyrillic capitals; punctuation: Python's
  ``string.punctuation`` plus the Latin-1, general, CJK and fullwidth
  punctuation blocks; whitespace: Python's ``str.isspace`` set.
- Files: mime, size_bytes, byte_entropy (of the first 1 KiB), and what the
  header states without decoding: height/width/channels/aspect_ratio for PNG,
  JPEG, GIF, BMP, WebP and TIFF; sample_rate/channels/duration_s for WAV and
  FLAC (WAV duration counts the data bytes present), sample_rate/channels for
  Ogg Vorbis/Opus and MP3; ndim/length/shape features/dtype for NPY (modality
  from the header's shape by the array heuristics with the values unread, so
  audio and 2-D images, which need them, stay tabular; value statistics NaN).

File kinds and mime types (as libmagic names them, except NPY, which libmagic
calls application/octet-stream): PNG, JPEG, GIF, WebP, BMP, TIFF -> image;
WAV (audio/x-wav), FLAC, Ogg (always audio/ogg), MP3 (ID3 tag or a valid
MPEG audio frame header) -> audio; PDF -> document; ZIP (also for zip-based
formats such as docx or jar, which libmagic names separately), GZIP ->
archive; JSON (structurally checked object or array), UTF-8 text (no binary
control characters; UTF-16 is not recognised) -> text; anything else ->
application/octet-stream, binary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _core
from .._core import DTYPE_KINDS, FEATURE_NAMES, MIMES, MODALITIES, SCRIPTS, SOURCES, Analysis, analyze

__all__ = [
    "DTYPE_KINDS",
    "FEATURE_NAMES",
    "MIMES",
    "MODALITIES",
    "SCRIPTS",
    "SOURCES",
    "Analysis",
    "BatchAnalysis",
    "analyze",
    "analyze_batch",
]


class BatchAnalysis:
    """The analyses of a batch: an (n, F) float32 feature matrix and modality codes.

    ``batch[i]`` rebuilds the i-th :class:`Analysis` from its row.
    """

    __slots__ = ("features", "modality_codes")

    def __init__(self, features: np.ndarray, modality_codes: np.ndarray) -> None:
        self.features = features
        self.modality_codes = modality_codes

    @property
    def modalities(self) -> list[str]:
        """The modality name of each input, in order."""
        return [MODALITIES[code] for code in self.modality_codes.tolist()]

    def __len__(self) -> int:
        return len(self.modality_codes)

    def __getitem__(self, index: int) -> Analysis:
        return Analysis(self.features[index])

    def __iter__(self) -> Iterator[Analysis]:
        return (Analysis(row) for row in self.features)

    def __repr__(self) -> str:
        counts = dict(zip(*np.unique(self.modalities, return_counts=True))) if len(self) else {}
        summary = ", ".join(f"{name}={int(count)}" for name, count in counts.items())
        return f"BatchAnalysis(n={len(self)}{', ' + summary if summary else ''})"


def analyze_batch(xs: np.ndarray | Sequence[Any], *, out: np.ndarray | None = None) -> BatchAnalysis:
    """Analyse many inputs at once, with the GIL released and several threads on large batches.

    ``xs`` is a 2-D numeric array (each row analysed as a 1-D array: a
    sample of tabular features, or a waveform if rows are long enough), or a
    sequence of numpy arrays, str and bytes-like objects (heuristics as in
    :func:`analyze`, no hint). The first failing input raises its error with
    its index ("row 3: ..." / "item 3: ...").

    ``out``: a writeable C-contiguous float32 array of shape (n, F) to write
    the features into (it becomes ``.features``). Serving loops that reuse
    one avoid allocating, and the kernel zeroing, a fresh matrix per batch:
    for many small rows that costs more than the analysis itself.
    """
    features, codes = _core.analyze_batch(xs, out)
    return BatchAnalysis(features, codes)
