"""Fast featurization: character n-grams hashed in numpy over a whole batch at once.

scikit-learn's `TfidfVectorizer(analyzer="char_wb")` builds every n-gram as a Python string, about
1 µs each, ~800 per message: too slow for thousands of messages a second on one core. Here the batch
becomes one array of code points, every n-gram is hashed with vectorised arithmetic, and the counts
land in a sparse matrix in one step. Same idea as char_wb (n-grams inside space-padded words), same
TF-IDF weighting (sublinear tf, smoothed idf, L2 rows). Hashing means no vocabulary to store; the
n-gram behind a feature is recovered for explanations by `ngrams_of` on the message itself.
"""
from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import normalize

from tagger.errors import ConfigError
from tagger.labels import CHANNELS

CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}

_WS = re.compile(r"\s+")
MAX_FEATURE_CHARS = 1500  # the opening of a long mail says what it is about
_PRIME = np.uint64(0x100000001B3)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def _prepare(text: str) -> str:
    return " " + _WS.sub(" ", text.lower()).strip() + " "


class HashedCharNgrams(TransformerMixin, BaseEstimator):
    """TF-IDF weighted, hashed character n-grams within word boundaries."""

    def __init__(self, ngram_range: tuple[int, int] = (2, 4), n_bits: int = 20, min_df: int = 2):
        if not 2 <= ngram_range[0] <= ngram_range[1]:
            raise ValueError(f"ngram_range must start at 2 or more (single characters carry no signal), got {ngram_range}")
        self.ngram_range = ngram_range
        self.n_bits = n_bits
        self.min_df = min_df

    # -- hashing ---------------------------------------------------------------------------------------
    def _bucket(self, h: np.ndarray, n: int) -> np.ndarray:
        h = h ^ np.uint64(n * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)
        h = h ^ (h >> np.uint64(31))
        h = h * _MIX
        return (h >> np.uint64(64 - self.n_bits)).astype(np.int32)

    def _counts(self, texts) -> sp.csr_matrix:
        prepared = [_prepare(t[:MAX_FEATURE_CHARS]) for t in texts]
        joined = "\x00".join(prepared)
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        length = len(codes)
        doc = np.cumsum(codes == 0, dtype=np.int32)                    # document of each position
        is_space = codes == 32
        is_sep = codes == 0
        lo, hi = self.ngram_range
        h = codes.astype(np.uint64)
        bad_inner = np.zeros(length, dtype=bool)  # window [i, i+n) has a space strictly inside
        bad_sep = is_sep.copy()                   # window [i, i+n) has a document separator
        rows, cols = [], []
        for n in range(2, hi + 1):
            m = length - n + 1
            if m <= 0:
                break
            # extend every window by one character: contiguous slices, no gathers
            h = h[:m] * _PRIME + codes[n - 1:].astype(np.uint64)
            bad_sep = bad_sep[:m] | is_sep[n - 1:]
            if n > 2:
                bad_inner = bad_inner[:m] | is_space[n - 2:n - 2 + m]
            else:
                bad_inner = bad_inner[:m]
            if n < lo:
                continue
            valid = ~(bad_sep | bad_inner)
            if n == 2:
                valid &= ~(is_space[:m] & is_space[1:1 + m])
            rows.append(doc[:m][valid])
            cols.append(self._bucket(h[valid], n))
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
        else:
            r = c = np.zeros(0, dtype=np.int32)
        counts = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)),
                               shape=(len(prepared), 1 << self.n_bits), dtype=np.float32)
        counts.sum_duplicates()
        return counts

    # -- sklearn API -----------------------------------------------------------------------------------
    def fit(self, texts, y=None):
        counts = self._counts(texts)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        n = counts.shape[0]
        idf = np.log((1 + n) / (1 + df)) + 1.0
        idf[df < self.min_df] = 0.0  # rare n-grams (and empty buckets) carry no weight: like min_df
        self.idf_ = idf.astype(np.float32)
        return self

    def transform(self, texts) -> sp.csr_matrix:
        X = self._counts(texts)
        np.log(X.data, out=X.data)
        X.data += 1.0
        X.data *= self.idf_[X.indices]
        X.eliminate_zeros()
        return normalize(X, copy=False)

    def ngrams_of(self, text: str) -> dict[int, str]:
        """Feature index -> the n-gram of `text` that hashes to it (for explanations)."""
        out: dict[int, str] = {}
        prepared = _prepare(text)
        codes = np.frombuffer(prepared.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lo, hi = self.ngram_range
        for n in range(lo, hi + 1):
            for i in range(len(prepared) - n + 1):
                gram = prepared[i:i + n]
                if (n > 2 and " " in gram[1:-1]) or gram.strip() == "":
                    continue
                h = codes[i]
                with np.errstate(over="ignore"):
                    for k in range(1, n):
                        h = h * _PRIME + codes[i + k]
                out.setdefault(int(self._bucket(np.array([h], dtype=np.uint64), n)[0]), gram)
        return out


class Featurizer(TransformerMixin, BaseEstimator):
    """Everything the linear heads see, as one sparse row per message: hashed char n-grams (morphology,
    any script, Chinese included), word uni/bigrams (phrases) and a one-hot channel block. Rows are
    (cleaned text, channel) pairs. A plain class rather than a FeatureUnion: one call, no per-call
    parallel machinery, which keeps single-message latency low."""

    def __init__(self, char_ngrams: tuple[int, int] = (2, 4), n_bits: int = 20, word_ngrams: tuple[int, int] = (1, 2),
                 max_word_features: int = 80_000, min_df: int = 2):
        self.char_ngrams = char_ngrams
        self.n_bits = n_bits
        self.word_ngrams = word_ngrams
        self.max_word_features = max_word_features
        self.min_df = min_df

    def _char_vectorizer(self) -> HashedCharNgrams:
        """The char n-gram block to fit. A bad `char_ngrams` here is the trainer's setting (ConfigError, which
        the CLI reports in one line); in a model file it stays a ValueError, which loading reports as a
        broken model (tagger.classifier.modelfile)."""
        try:
            return HashedCharNgrams(self.char_ngrams, self.n_bits, self.min_df)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def _word_vectorizer(self, vocabulary: dict[str, int] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\b\w+\b", ngram_range=self.word_ngrams,
                               min_df=self.min_df, sublinear_tf=True, max_features=self.max_word_features,
                               dtype=np.float32, vocabulary=vocabulary)

    def fit(self, rows, y=None):
        texts = [r[0] for r in rows]
        self.char_ = self._char_vectorizer().fit(texts)
        self.word_ = self._word_vectorizer().fit(texts)
        self.n_word_ = len(self.word_.vocabulary_)
        return self

    # -- persistence without pickle (tagger.classifier.modelfile) -----------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able parameters and vocabulary, and the arrays, from which `from_state` rebuilds this."""
        vocab = sorted(self.word_.vocabulary_, key=self.word_.vocabulary_.__getitem__)
        spec = {"char_ngrams": list(self.char_ngrams), "n_bits": self.n_bits, "word_ngrams": list(self.word_ngrams),
                "max_word_features": self.max_word_features, "min_df": self.min_df, "word_vocabulary": vocab}
        return spec, {"char_idf": np.asarray(self.char_.idf_), "word_idf": np.asarray(self.word_.idf_)}

    @classmethod
    def from_state(cls, spec: dict, arrays: dict[str, np.ndarray]) -> Featurizer:
        """The fitted featurizer of `to_state`'s output; ValueError when the parts do not fit together."""
        self = cls(tuple(spec["char_ngrams"]), int(spec["n_bits"]), tuple(spec["word_ngrams"]),
                   int(spec["max_word_features"]), int(spec["min_df"]))
        vocab = spec["word_vocabulary"]
        char_idf, word_idf = arrays["char_idf"], arrays["word_idf"]
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab) or len(set(vocab)) != len(vocab):
            raise ValueError("word_vocabulary must be a list of distinct strings")
        if char_idf.shape != (1 << self.n_bits,) or word_idf.shape != (len(vocab),):
            raise ValueError(f"idf arrays {char_idf.shape}, {word_idf.shape} do not fit n_bits {self.n_bits} "
                             f"and a vocabulary of {len(vocab)}")
        self.char_ = HashedCharNgrams(self.char_ngrams, self.n_bits, self.min_df)
        self.char_.idf_ = char_idf.astype(np.float32)
        word = self._word_vectorizer({w: i for i, w in enumerate(vocab)})
        word._validate_vocabulary()
        word.idf_ = word_idf
        self.word_ = word
        self.n_word_ = len(vocab)
        return self

    @property
    def n_features_(self) -> int:
        """Width of the sparse block: hashed char n-grams, word n-grams, channel one-hot."""
        return (1 << self.n_bits) + self.n_word_ + len(CHANNELS)

    def transform(self, rows) -> sp.csr_matrix:
        texts = [r[0] for r in rows]
        chan = np.array([CHANNEL_INDEX.get(r[1], 0) for r in rows])
        onehot = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (np.arange(len(rows)), chan)),
                               shape=(len(rows), len(CHANNELS)))
        return sp.hstack([self.char_.transform(texts), self.word_.transform(texts), onehot], format="csr")

    def names(self, text: str, indices) -> list[str]:
        """Readable names of the given feature indices of `text`'s row: char n-grams quoted (they may
        hold spaces), words plain, the channel as `channel=chat`."""
        n_char = 1 << self.n_bits
        char_names = self.char_.ngrams_of(text)
        vocab = getattr(self, "_inverse_vocab", None)
        if vocab is None:
            vocab = self._inverse_vocab = {i: w for w, i in self.word_.vocabulary_.items()}
        out = []
        for i in indices:
            i = int(i)
            if i < n_char:
                out.append(repr(char_names.get(i, "?")))
            elif i < n_char + self.n_word_:
                out.append(vocab[i - n_char])
            else:
                out.append(f"channel={CHANNELS[i - n_char - self.n_word_]}")
        return out
