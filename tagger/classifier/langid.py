"""Language detection with py3langid, whose model ships inside the package (no network at run time).

`detect_many` runs py3langid's byte-level automaton for a whole batch in lockstep with numpy, instead
of one Python loop iteration per byte per message; it gives the same answers as `py3langid.classify`
(tests/test_langid.py checks this) at a fraction of the cost.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from tagger.classifier.text import has_letters, without_placeholders

UNKNOWN = "und"       # ISO 639-2 "undetermined": empty, emoji-only or junk input
# py3langid's label -> the code we use: its "no" is written Norwegian (Bokmål, what customers write)
CODES = {"no": "nb"}
LANGID_BYTES = 200    # enough to tell a language (corpus accuracy 0.9924 at 200 and at 400); costs time per byte
SMALL_BATCH = 16      # below this, py3langid's own per-message walk is faster


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import _load_identifier

    return _load_identifier(norm_probs=False)


@lru_cache(maxsize=1)
def _tables():
    ident = _identifier()
    # views and small arrays only: the automaton (~40 MB) and the weights (~28 MB) are not copied
    nextmove = np.frombuffer(ident.tk_nextmove, dtype=np.dtype(ident.tk_nextmove.typecode))
    rowbase = np.asarray(ident._rowbase, dtype=np.int64)
    output = np.asarray(ident.tk_output, dtype=np.int32)
    return ident, nextmove, rowbase, output, ident.nb_ptc


def _encode(text: str) -> bytes:
    import unicodedata

    if text.isupper():
        text = text.lower()
    data = unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")
    if len(data) > LANGID_BYTES:  # cut on a character boundary
        data = data[:LANGID_BYTES].decode("utf8", errors="ignore").encode("utf8")
    return data


@lru_cache(maxsize=8)
def _prior_vector(prior: float, langs: tuple[str, ...]) -> np.ndarray:
    ident = _identifier()
    return np.array([prior if CODES.get(c, c) in langs else 0.0 for c in ident.nb_classes], dtype=np.float32)


def detect_many(texts: list[str], *, prior: float = 0.0, prior_langs: tuple[str, ...] = ()) -> list[str]:
    """ISO 639-1 code of each text's language (`und` when there is nothing to tell from).

    `prior` adds that much log-likelihood to each language of `prior_langs`: where a text is about as
    likely one of them as a close relative (Danish or Norwegian, Spanish or Aragonese, Latvian or
    Latgalian), the one customers actually write wins. With `prior_langs`, codes follow `CODES` (Norwegian is
    `nb`) and, when Arabic is among them, Arabic typed in Latin letters and digits (Arabizi: "3ayez a3mel
    refund", which py3langid reads as Hausa or Nigerian Pidgin) is `ar`. With the default 0 and no
    `prior_langs` the answers are py3langid's."""
    _tables()  # loads py3langid's model up front, even for a batch with nothing to detect
    todo = [i for i, t in enumerate(texts) if t and has_letters(t)]
    result = [UNKNOWN] * len(texts)
    if not todo:
        return result
    encoded = [_encode(without_placeholders(texts[i])) for i in todo]
    one_by_one = len(encoded) < SMALL_BATCH and not prior  # lockstep pays off only across many messages
    labels = _classify_each(encoded) if one_by_one else _classify_lockstep(encoded, prior, prior_langs)
    for i, lang in zip(todo, labels, strict=True):
        result[i] = lang
    if prior_langs and not one_by_one:  # py3langid's own walk answers in its own labels (no CODES, no Arabizi)
        result = _our_codes(texts, result, prior_langs)
    return result


def _classify_each(encoded: list[bytes]) -> list[str]:
    """py3langid's label of each encoded text, by its own walk through the automaton, one text at a time."""
    from py3langid.langid import RAW_FLOOR

    ident = _identifier()
    labels = []
    for data in encoded:
        lang, score = ident.classify(data)
        labels.append(UNKNOWN if score == RAW_FLOOR else lang)
    return labels


def _classify_lockstep(encoded: list[bytes], prior: float, prior_langs: tuple[str, ...]) -> list[str]:
    """py3langid's label of each encoded text, the automaton run for the whole batch at once."""
    ident, _nextmove, _rowbase, _output, ptc = _tables()
    counts = _feature_counts(encoded)
    np.log1p(counts.data, out=counts.data)
    scores = _sparse_dense(counts, ptc) + ident.nb_pc
    if prior:
        scores += _prior_vector(float(prior), tuple(prior_langs))
    for i, j in ident._alias_pairs:  # script aliases (srl -> sr) share one label
        scores[:, i] = np.maximum(scores[:, i], scores[:, j])
        scores[:, j] = -np.inf
    best = scores.argmax(axis=1)
    featureless = np.diff(counts.indptr) == 0
    return [UNKNOWN if featureless[k] else ident.nb_classes[best[k]] for k in range(len(encoded))]


def _feature_counts(encoded: list[bytes]) -> sp.csr_matrix:
    """How often each of py3langid's features occurs in each text (texts x features): every text's state
    in the byte automaton advances one column at a time, in lockstep, instead of byte by byte in Python."""
    _ident, nextmove, rowbase, output, ptc = _tables()
    lengths = np.array([len(b) for b in encoded])
    width = int(lengths.max())
    grid = np.zeros((len(encoded), width), dtype=np.int64)
    for r, b in enumerate(encoded):
        grid[r, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    state = np.zeros(len(encoded), dtype=np.int64)  # rowbase indexes are int64; nextmove entries fit uint32
    rows, feats = [], []
    for col in range(width):
        live = np.flatnonzero(lengths > col)
        state[live] = nextmove[rowbase[state[live]] + grid[live, col]]
        f = output[state[live]]
        hit = f >= 0
        rows.append(live[hit])
        feats.append(f[hit])
    r, f = np.concatenate(rows), np.concatenate(feats)
    counts = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, f)), shape=(len(encoded), ptc.shape[0]))
    counts.sum_duplicates()
    return counts


def _our_codes(texts: list[str], result: list[str], prior_langs: tuple[str, ...]) -> list[str]:
    """py3langid's labels in our codes (`CODES`), and Arabizi as `ar` when Arabic is one of `prior_langs`."""
    result = [CODES.get(r, r) for r in result]
    if "ar" in prior_langs:
        result = ["ar" if r != UNKNOWN and is_arabizi(t) else r for t, r in zip(texts, result, strict=True)]
    return result


# -- Arabizi --------------------------------------------------------------------------------------------------
# Arabic chat alphabet: digits stand for the letters Latin lacks (3 ع, 7 ح, 2 ء, 5 خ, 6 ط, 8 ق/غ, 9 ص/ق), inside
# or at the start of words; plus frequent words of Egyptian, Gulf and Levantine chat. On the corpus it finds 82 of
# the 88 Arabizi messages and 3 of 22,000 others (tech names like "id3v2").
_TOKEN = re.compile(r"[a-z0-9]+")
_DIGIT_START = re.compile(r"[235679][a-z]{2,}[a-z0-9]*")        # 3ayez, 7elw, 5alas (not 2nd, 3rd: _UNIT)
_DIGIT_INSIDE = re.compile(r"[a-z]+[235679]+[a-z]+[a-z0-9]*")   # ma3a, y2ol, ta2ira, s7aby
_UNIT = re.compile(r"\d+(st|nd|rd|th|am|pm|mins?|hrs?|yrs?|kg|km|gb|mb|tb|fps|hz|ml|cm|mm|px|stars?|days?)")
_DIGIT_END = frozenset({"bta3", "ta3", "la2", "ma3", "wa2"})
_ARABIZI_WORDS = frozenset("""ana enta enti inta inti mesh msh mish mush ya3ni wallah inshallah insha2allah
mashallah habibi yalla keda kda ezay ezzay izzay fein feen wain wein shukran shokran salam ahlan marhaba mumkin
momken abi abgha 3ayez 3ayza 3awez tamam khalas 5alas gedan gidan awy zain wayed shino shlon lesh laish mafi mafish
mafeesh ma3a 3shan 3ashan lazem lazim bta3 bta3i bta3y bta3et elly illi e7na i7na ehna akeed""".split())


def is_arabizi(text: str) -> bool:
    """Whether `text` is Arabic typed in Latin letters and digits."""
    t = text.lower()
    letters = sum(c.isalpha() for c in t)
    if not letters or sum("a" <= c <= "z" for c in t) / letters < 0.8:
        return False
    tokens = _TOKEN.findall(t)
    digit_words = sum(1 for w in tokens if w in _DIGIT_END or (
        (_DIGIT_START.fullmatch(w) or (len(w) >= 4 and _DIGIT_INSIDE.fullmatch(w))) and not _UNIT.fullmatch(w)))
    words = sum(1 for w in tokens if w in _ARABIZI_WORDS)
    return digit_words >= 2 or (digit_words >= 1 and words >= 1) or words >= 3


def _sparse_dense(counts: sp.csr_matrix, weights: np.ndarray) -> np.ndarray:
    """counts (n x features, sparse) @ weights (features x languages, float16) in float32, gathering only
    the rows the batch uses instead of converting the whole table."""
    used = np.unique(counts.indices)
    sub = weights[used].astype(np.float32)
    remap = np.searchsorted(used, counts.indices)
    compact = sp.csr_matrix((counts.data, remap, counts.indptr), shape=(counts.shape[0], len(used)))
    return np.asarray(compact @ sub)


def detect(text: str) -> str:
    """ISO 639-1 code of one text's language."""
    return detect_many([text])[0]
