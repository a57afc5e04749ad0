"""Hashed n-gram text features, computed in C++: what a prompt is about.

:class:`HashedNgrams` gives exactly the sparse rows of scikit-learn's
``HashingVectorizer`` for the same settings (analyzer ``"word"`` with the
default token pattern ``(?u)\\b\\w\\w+\\b``, or ``"char_wb"``; ``ngram_range``,
``n_features``, ``lowercase``, ``alternate_sign``, ``binary``, ``norm``), so a
model trained on scikit-learn's features serves on these. Lower-casing and
tokenisation follow Python's ``str.lower()``, ``str.split()`` and ``re``'s
``\\w`` over all of Unicode (tables generated from ``unicodedata``).

Sparse output, for policies and online learners:

- ``hash(text) -> (indices, values)``: one row, ``indices`` int32 strictly
  increasing column numbers in ``[0, n_features)``, ``values`` float64.
- ``hash_batch(texts) -> (indptr, indices, values)``: CSR rows, row ``i`` is
  ``indices[indptr[i]:indptr[i+1]]`` (indptr int64), GIL released, split over
  threads for large batches.
- ``transform(texts) -> scipy.sparse.csr_matrix`` (needs scipy), as
  ``HashingVectorizer.transform``.

Texts are ``str`` or UTF-8 ``bytes``/``bytearray``/``memoryview``. Invalid
UTF-8, lone surrogates and non-text items raise :class:`InvalidInput` /
:class:`UnsupportedInput` naming the item; an empty text is an empty row.

``sublinear_tf`` (not a HashingVectorizer setting) replaces each count ``v``
by ``sign(v) * (1 + log|v|)`` before the norm: with ``alternate_sign=False``
that is ``TfidfTransformer(use_idf=False, sublinear_tf=True)`` applied to
``HashingVectorizer(norm=None)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from ..errors import InvalidInput

__all__ = ["HASH_FEATURES_MAX", "HASH_FEATURES_MIN", "NGRAM_MAX_N", "HashedNgrams"]

HASH_FEATURES_MIN: int = _core.HASH_FEATURES_MIN
HASH_FEATURES_MAX: int = _core.HASH_FEATURES_MAX
NGRAM_MAX_N: int = _core.NGRAM_MAX_N
_ANALYZERS = ("word", "char_wb")
_NORMS = ("l2", "l1", None)


class HashedNgrams:
    """Hashed word or character n-gram counts of text, as scikit-learn's HashingVectorizer.

    ``analyzer``: ``"word"`` (n consecutive words of two or more word
    characters, joined by a space) or ``"char_wb"`` (n characters within a
    space-padded word). ``ngram_range``: (min_n, max_n), 1 <= min_n <= max_n
    <= ``NGRAM_MAX_N``. ``n_features``: a power of two from 2^10 to 2^22.
    ``threads``: the most threads ``hash_batch`` uses (0 = one per core).

    Immutable and thread-safe: any number of threads may hash at once.
    """

    __slots__ = ("_hasher", "_settings", "threads")

    def __init__(
        self,
        analyzer: str = "word",
        ngram_range: tuple[int, int] = (1, 1),
        n_features: int = 2**20,
        *,
        lowercase: bool = True,
        alternate_sign: bool = True,
        binary: bool = False,
        sublinear_tf: bool = False,
        norm: str | None = "l2",
        threads: int = 0,
    ) -> None:
        if analyzer not in _ANALYZERS:
            raise InvalidInput(f"analyzer must be one of {_ANALYZERS}, got {analyzer!r}")
        if norm not in _NORMS:
            raise InvalidInput(f"norm must be one of {_NORMS}, got {norm!r}")
        if not (isinstance(ngram_range, Sequence) and len(ngram_range) == 2):
            raise InvalidInput(f"ngram_range must be (min_n, max_n), got {ngram_range!r}")
        min_n, max_n = (int(n) for n in ngram_range)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise InvalidInput(f"threads must be an int >= 0 (0 = one per core), got {threads!r}")
        self._settings = {
            "analyzer": analyzer,
            "ngram_range": (min_n, max_n),
            "n_features": int(n_features),
            "lowercase": bool(lowercase),
            "alternate_sign": bool(alternate_sign),
            "binary": bool(binary),
            "sublinear_tf": bool(sublinear_tf),
            "norm": norm,
        }
        self._hasher = _core.NgramHasher(
            analyzer, min_n, max_n, int(n_features), bool(lowercase), bool(alternate_sign), bool(binary),
            bool(sublinear_tf), norm)
        self.threads = threads

    @property
    def n_features(self) -> int:
        """The number of columns (a power of two)."""
        return int(self._settings["n_features"])

    def settings(self) -> dict[str, Any]:
        """The constructor's settings (without ``threads``), JSON-ready: ``HashedNgrams(**s)`` rebuilds it."""
        settings = dict(self._settings)
        settings["ngram_range"] = list(settings["ngram_range"])
        return settings

    def hash(self, text: str | bytes) -> tuple[np.ndarray, np.ndarray]:
        """One text -> ``(indices, values)``: int32 columns, strictly increasing, and float64 values."""
        return self._hasher.hash(text)

    def hash_batch(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Texts -> CSR ``(indptr, indices, values)`` (int64, int32, float64), GIL released."""
        return self._hasher.hash_batch(texts, self.threads)

    def transform(self, texts: Sequence[str | bytes]) -> Any:
        """Texts -> ``scipy.sparse.csr_matrix`` of shape (len(texts), n_features), as HashingVectorizer."""
        from scipy import sparse  # scipy comes with scikit-learn; hash_batch needs neither

        indptr, indices, values = self.hash_batch(texts)
        return sparse.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, self.n_features))

    def to_sklearn(self) -> Any:
        """The equivalent ``sklearn.feature_extraction.text.HashingVectorizer`` (for training pipelines).

        Raises InvalidInput for ``sublinear_tf=True``, which HashingVectorizer lacks.
        """
        from sklearn.feature_extraction.text import HashingVectorizer

        settings = self.settings()
        if settings.pop("sublinear_tf"):
            raise InvalidInput("HashingVectorizer has no sublinear_tf: follow it with TfidfTransformer(use_idf=False, "
                               "sublinear_tf=True)")
        settings["ngram_range"] = tuple(settings["ngram_range"])
        return HashingVectorizer(**settings)

    @classmethod
    def from_sklearn(cls, vectorizer: Any, *, threads: int = 0) -> HashedNgrams:
        """The same features as a ``HashingVectorizer`` with default tokenising.

        Raises InvalidInput naming any setting fastroute does not reproduce
        (a custom tokenizer, preprocessor, token_pattern, stop words,
        strip_accents, non-UTF-8 input, another analyzer or dtype).
        """
        params = vectorizer.get_params()
        defaults = {"input": "content", "encoding": "utf-8", "decode_error": "strict", "strip_accents": None,
                    "preprocessor": None, "tokenizer": None, "stop_words": None,
                    "token_pattern": r"(?u)\b\w\w+\b", "dtype": np.float64}
        for name, expected in defaults.items():
            if params.get(name, expected) != expected:
                raise InvalidInput(f"HashingVectorizer({name}={params[name]!r}) is not reproduced by HashedNgrams; "
                                   f"use {name}={expected!r}")
        return cls(params["analyzer"], tuple(params["ngram_range"]), params["n_features"],
                   lowercase=params["lowercase"], alternate_sign=params["alternate_sign"], binary=params["binary"],
                   norm=params["norm"], threads=threads)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashedNgrams) and self._settings == other._settings

    def __hash__(self) -> int:
        return hash(tuple(self._settings.items()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._settings.items())
        return f"HashedNgrams({shown})"

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings(), "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        settings = dict(state["settings"])
        self.__init__(settings.pop("analyzer"), tuple(settings.pop("ngram_range")), settings.pop("n_features"),
                      threads=state["threads"], **settings)
