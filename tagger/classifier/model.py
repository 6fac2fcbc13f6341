"""The classifier: two kinds of evidence, one calibrated linear head per task (stage, sentiment).

- what the language means: the pretrained multilingual sentence encoder (tagger.classifier.encoder), its embedding
  standardised and weighted into one dense block;
- what this domain says: hashed character n-grams, word n-grams and the channel (tagger.classifier.features),
  learned from the corpus.

The full heads read both blocks side by side; the fast heads (`fast=True`) read the n-grams alone, for
bulk work at thousands of messages a second. The sentiment heads also learn from human-rated real text
(sentiment-only examples, `Example.stage is None`); the stage heads learn from the corpus.
Nothing here knows about HTTP or files.

    tagger = train(examples)              # -> Tagger
    tagger.predict("Where is my parcel?", channel="chat").stage
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GroupKFold
from sklearn.svm import LinearSVC

from tagger.classifier import langid
from tagger.classifier.data import Example
from tagger.classifier.encoder import Encoder, check_identity
from tagger.classifier.features import Featurizer
from tagger.classifier.text import clean, has_letters, is_content_free
from tagger.errors import DataError
from tagger.labels import CORE_LANGS, DEFAULT_SENTIMENT_PREFIX, DEFAULT_STAGE_PREFIX, TASKS, tags_for

# langid is reliable from about this many letters on; below it, a short message's "foreign" language is
# more often a misreading ("Very bad Experience!" -> some other language) than a fact.
OFF_DOMAIN_MIN_LETTERS = 25
# Log-likelihood added to the core languages in language detection (tagger.classifier.langid): chosen on the training
# split, it turns 1.8% of corpus messages read as a close relative (da -> no, es -> an/ext, lv -> ltg) into
# 0.25%, while whole sentences in Swedish, Norwegian, Finnish, Czech, Turkish, Japanese... stay foreign.
LANG_PRIOR = 10.0
# Languages langid tells apart that the corpus covers under a core language: its Chinese batches include
# written Hong Kong Cantonese (training_data/README.md, decision 14). `lang` still says `yue`.
TRAINED_VARIETIES = {"yue": "zh", "nn": "nb"}  # Cantonese is read as Chinese, Nynorsk as Norwegian


def build_featurizer(**params) -> Featurizer:
    """Character n-grams inside word boundaries carry morphology across languages (and Chinese, which has
    no spaces); word n-grams carry phrases; the channel is one small one-hot block (tagger.classifier.features)."""
    return Featurizer(**params)


def build_head(C: float, random_state: int, cv) -> CalibratedClassifierCV:
    """A linear SVM (liblinear: seconds on hundreds of thousands of sparse features, where lbfgs
    logistic regression took minutes for no better F1) whose scores are calibrated into probabilities
    (sigmoid, fitted on out-of-fold predictions), so a confidence threshold means something.
    `ensemble=False` keeps one model, not one per fold."""
    base = LinearSVC(C=C, class_weight="balanced", random_state=random_state)
    return CalibratedClassifierCV(base, method="sigmoid", cv=cv, ensemble=False)


@dataclass
class LinearHead:
    """A trained, calibrated head reduced to its arrays: scores = X @ coef.T + intercept, then one
    sigmoid per class (a, b from the calibration), normalised, exactly as scikit-learn's
    `CalibratedClassifierCV.predict_proba` computes them, without its per-call validation (which
    cost ~1 ms a message). `from_calibrated` checks the equality on the training matrix."""

    classes_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray
    a_: np.ndarray
    b_: np.ndarray

    @classmethod
    def from_calibrated(cls, calibrated: CalibratedClassifierCV, X_check=None) -> LinearHead:
        inner = calibrated.calibrated_classifiers_[0]
        est = inner.estimator
        head = cls(classes_=np.asarray(calibrated.classes_), coef_=np.asarray(est.coef_, dtype=np.float32),
                   intercept_=np.asarray(est.intercept_, dtype=np.float32),
                   a_=np.array([c.a_ for c in inner.calibrators], dtype=np.float64),
                   b_=np.array([c.b_ for c in inner.calibrators], dtype=np.float64))
        if X_check is not None:
            np.testing.assert_allclose(head.predict_proba(X_check), calibrated.predict_proba(X_check), atol=1e-4)
        return head

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X @ self.coef_.T, dtype=np.float64) + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        proba = 1.0 / (1.0 + np.exp(self.a_ * self.decision_function(X) + self.b_))
        total = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1.0 / proba.shape[1])
        return np.divide(proba, total, out=uniform, where=total != 0)


@dataclass
class EmbeddingBlock:
    """How an embedding becomes features: standardised per dimension (e5's raw vectors all point the same
    way, cosines 0.8-0.9, so the information is in the deviations), scaled so the block weighs `weight`
    against the n-gram block (whose rows have norm ~1.7)."""

    mean_: np.ndarray
    scale_: np.ndarray
    weight: float

    @classmethod
    def fit(cls, E: np.ndarray, weight: float) -> EmbeddingBlock:
        std = E.std(axis=0)
        return cls(mean_=E.mean(axis=0).astype(np.float32),
                   scale_=(weight / np.sqrt(E.shape[1]) / np.where(std > 1e-6, std, 1.0)).astype(np.float32),
                   weight=weight)

    def transform(self, E: np.ndarray) -> np.ndarray:
        return (E - self.mean_) * self.scale_


@dataclass
class Prediction:
    stage: str
    stage_confidence: float
    sentiment: str
    sentiment_confidence: float
    lang: str
    review: bool
    tags: list[str]
    confidence: float = 0.0   # the calibrated chance that both labels are right (stage x sentiment)
    review_reason: str | None = None
    explain: dict[str, list[list[Any]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["explain"] is None:
            del data["explain"]
        if data["review_reason"] is None:
            del data["review_reason"]
        return data


def _letter_weight(text: str) -> int:
    """Letters, counting a CJK ideograph, kana or hangul syllable as 3 (each carries about a word)."""
    return sum(3 if ("\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
               else 1 for ch in text if ch.isalpha())


def review_reason(text: str, lang: str, confidence: float, threshold: float) -> str | None:
    """Why a prediction needs an agent's look, or None. Off-domain input is low confidence whatever the
    heads say: no letters, a content-free opener, a language the model was not trained on."""
    if not has_letters(text):
        return "no letters"
    if is_content_free(text):
        return "no content"
    trained = lang in CORE_LANGS or lang in TRAINED_VARIETIES
    if not trained and _letter_weight(text) >= OFF_DOMAIN_MIN_LETTERS:
        return f"language {lang} is outside the trained set"
    if confidence < threshold:
        return "low confidence"
    return None


@dataclass
class Tagger:
    """A trained tagger: featurizer, embedding block, full and fast heads per task, tag settings."""

    featurizer: Featurizer
    heads: dict[str, LinearHead]
    metadata: dict[str, Any] = field(default_factory=dict)
    review_threshold: float = 0.5
    stage_prefix: str = DEFAULT_STAGE_PREFIX
    sentiment_prefix: str = DEFAULT_SENTIMENT_PREFIX
    fast_heads: dict[str, LinearHead] = field(default_factory=dict)
    embedding: EmbeddingBlock | None = None
    encoder_identity: dict[str, Any] | None = None
    fast: bool = False
    encoder: Encoder | None = field(default=None, repr=False)

    def __getstate__(self):  # the encoder holds a C engine: never persisted, re-created on demand
        state = dict(self.__dict__)
        state["encoder"] = None
        return state

    def __setstate__(self, state):  # versions saved before the encoder (n-grams only) load as such
        defaults = {"fast_heads": {}, "embedding": None, "encoder_identity": None, "fast": False, "encoder": None}
        self.__dict__.update({**defaults, **state})

    # loading and saving are the registry's (tagger.classifier.registry.load_tagger, tagger.classifier.modelfile): a Tagger is data
    @property
    def uses_encoder(self) -> bool:
        return not self.fast and self.embedding is not None

    def _encoder(self) -> Encoder:
        if self.encoder is None:
            check_identity(self.encoder_identity)
            self.encoder = Encoder()
        return self.encoder

    def features(self, cleaned: Sequence[str], channels: Sequence[str]) -> tuple[Any, dict[str, LinearHead]]:
        """The feature matrix and the heads that read it (full or fast)."""
        X = self.featurizer.transform(list(zip(cleaned, channels, strict=True)))
        if not self.uses_encoder:
            return X, (self.fast_heads or self.heads)
        E = self.embedding.transform(self._encoder().encode(cleaned))
        return sp.hstack([X, sp.csr_matrix(E)], format="csr"), self.heads

    # -- prediction --------------------------------------------------------------------------------------
    def predict(self, text: str | bytes | None, channel: str | None = None, *, explain: bool = False) -> Prediction:
        """Stage and sentiment of one message. Never raises on odd text: junk gets a review tag."""
        return self.predict_many([text], [channel], explain=explain)[0]

    def predict_many(self, texts: Sequence[str | bytes | None], channels: Sequence[str | None] | None = None,
                     *, explain: bool = False) -> list[Prediction]:
        """Stage and sentiment of many messages at once (vectorised: much faster than one by one)."""
        channels = channels if channels is not None else [None] * len(texts)
        cleaned = [clean(t) for t in texts]
        chans = [ch or "ticket" for ch in channels]
        if len(cleaned) != len(chans):
            raise ValueError(f"{len(cleaned)} texts but {len(chans)} channels")
        if not cleaned:
            return []
        X, heads = self.features(cleaned, chans)
        probs = {task: head.predict_proba(X) for task, head in heads.items()}
        langs = langid.detect_many(cleaned, prior=LANG_PRIOR, prior_langs=CORE_LANGS)
        out = []
        for i, text in enumerate(cleaned):
            labels: dict[str, tuple[str, float]] = {}
            for task, p in probs.items():
                j = int(np.argmax(p[i]))
                labels[task] = (str(heads[task].classes_[j]), float(p[i, j]))
            (stage, s_conf), (sentiment, m_conf) = labels["stage"], labels["sentiment"]
            confidence = round(s_conf * m_conf, 4)  # the rule compares the figure users see (and evaluate tables)
            reason = review_reason(text, langs[i], confidence, self.review_threshold)
            pred = Prediction(
                stage=stage, stage_confidence=round(s_conf, 4), sentiment=sentiment,
                sentiment_confidence=round(m_conf, 4), lang=langs[i], review=reason is not None,
                tags=tags_for(stage, sentiment, reason is not None, stage_prefix=self.stage_prefix,
                              sentiment_prefix=self.sentiment_prefix),
                confidence=confidence, review_reason=reason,
            )
            if explain:
                pred.explain = {task: self._top_terms(text, X[i], heads[task], labels[task][0]) for task in heads}
            out.append(pred)
        return out

    def _top_terms(self, text: str, x, head: LinearHead, label: str, k: int = 6) -> list[list[Any]]:
        """The terms of this message that pushed hardest towards `label` (feature value x weight); the
        encoder's dense block, which has no terms, is summed into one entry, `(encoder)`."""
        row = list(head.classes_).index(label)
        x = x.tocsr()
        contrib = x.data * head.coef_[row, x.indices]
        n_sparse = self.featurizer.n_features_
        sparse_mask = x.indices < n_sparse
        terms: list[list[Any]] = []
        dense = float(contrib[~sparse_mask].sum())
        idx, contrib = x.indices[sparse_mask], contrib[sparse_mask]
        order = [o for o in np.argsort(-contrib)[: k * 3] if contrib[o] > 0]
        names = self.featurizer.names(text, idx[order])
        for name, o in zip(names, order, strict=True):
            bare = name.strip("'").strip()
            if any(bare in t[0] for t in terms):  # ' vēl', 'vēl ' add nothing once 'vēl' is listed
                continue
            terms.append([name, round(float(contrib[o]), 4)])
            if len(terms) == k:
                break
        if (~sparse_mask).any() and dense > 0:
            terms.append(["(encoder)", round(dense, 4)])
            terms.sort(key=lambda t: -t[1])
        return terms


def _fit_head(X, y, groups, weights, C: float, random_state: int) -> LinearHead:
    n_splits = max(2, min(3, len(set(groups))))
    cv = list(GroupKFold(n_splits=n_splits).split(X, y, groups))
    fitted = build_head(C, random_state, cv).fit(X, y, sample_weight=weights)
    return LinearHead.from_calibrated(fitted, X[:500])


def _silent(_msg: str) -> None:
    pass


def _require_labelled(examples: Sequence[Example]) -> None:
    """The stage heads learn from corpus examples only; with fewer than 20 the calibration folds are
    too thin to mean anything."""
    labelled = [e for e in examples if e.stage is not None]
    if len(labelled) < 20:
        raise DataError("training data", None,
                        f"need at least 20 messages labelled with stage and sentiment to train, got {len(labelled)}")


def _fit_featurizer(examples: Sequence[Example], cleaned: list[str], featurizer_args: dict,
                    say: Callable[[str], None]) -> tuple[Featurizer, Any]:
    """The fitted featurizer and the n-gram block of every example (what the fast heads read)."""
    say(f"featurizing {len(examples)} messages")
    featurizer = build_featurizer(**featurizer_args)
    Xs = featurizer.fit_transform(list(zip(cleaned, [e.channel for e in examples], strict=True)))
    return featurizer, Xs


def _fit_embedding(encoder: Encoder, cleaned: list[str], Xs, embed_weight: float,
                   say: Callable[[str], None]) -> tuple[EmbeddingBlock, Any]:
    """The fitted embedding block and the full block (n-grams beside the weighted embedding)."""
    say(f"encoding {len(cleaned)} messages with {encoder.identity()['package']} (cached by text)")
    E = encoder.encode(cleaned)
    embedding = EmbeddingBlock.fit(E, embed_weight)
    return embedding, sp.hstack([Xs, sp.csr_matrix(embedding.transform(E))], format="csr")


def _fit_heads(examples: Sequence[Example], blocks: dict[str, Any], C: dict[str, float], random_state: int,
               rated_weight: float, say: Callable[[str], None]) -> dict[str, dict[str, LinearHead]]:
    """One head per task and block, each on the examples labelled for that task. Sentiment-only examples
    weigh `rated_weight`; calibration folds are grouped by writing batch (an example without one is its
    own group), so near-duplicates never calibrate each other."""
    groups = np.array([e.batch or str(i) for i, e in enumerate(examples)])
    weights = np.array([1.0 if e.stage is not None else rated_weight for e in examples])
    fitted: dict[str, dict[str, LinearHead]] = {"fast": {}, "full": {}}
    for task in TASKS:
        rows = np.array([i for i, e in enumerate(examples) if getattr(e, task) is not None])
        y = np.array([getattr(examples[i], task) for i in rows])
        for kind, X in blocks.items():
            say(f"training {task} ({kind}: {X.shape[1]} features, {len(rows)} messages)")
            fitted[kind][task] = _fit_head(X[rows], y, groups[rows], weights[rows], C[task], random_state)
    return fitted


def train(examples: Sequence[Example], *, C: dict[str, float] | None = None, random_state: int = 0,
          progress: Callable[[str], None] | None = None, encoder: Encoder | None = None,
          embed_weight: float = 0.7, rated_weight: float = 0.3, with_encoder: bool = True,
          **featurizer_args) -> Tagger:
    """Fit the featurizer, the embedding block and both kinds of heads on `examples`. Sentiment-only
    examples (human-rated real text) train the sentiment heads only, weighted by `rated_weight`.
    Calibration folds are grouped by writing batch, so near-duplicates never calibrate each other."""
    _require_labelled(examples)
    C = {"stage": 0.5, "sentiment": 0.5, **(C or {})}  # chosen by benchmarks/select_params.py
    featurizer_args = {"word_ngrams": (1, 3), **featurizer_args}  # likewise (trigrams: +0.2 stage F1 on dev)
    say = progress or _silent
    started = time.perf_counter()
    cleaned = [clean(e.text) for e in examples]
    featurizer, Xs = _fit_featurizer(examples, cleaned, featurizer_args, say)
    blocks = {"fast": Xs}
    embedding = None
    encoder = (encoder or Encoder()) if with_encoder else None
    if encoder is not None:
        embedding, blocks["full"] = _fit_embedding(encoder, cleaned, Xs, embed_weight, say)
    fitted = _fit_heads(examples, blocks, C, random_state, rated_weight, say)
    say(f"trained in {time.perf_counter() - started:.1f}s")
    params = {"C": C, "random_state": random_state, "n_features": int(Xs.shape[1]),
              "embed_weight": embed_weight if with_encoder else None, "rated_weight": rated_weight}
    return Tagger(featurizer=featurizer, heads=fitted["full"] or fitted["fast"], fast_heads=fitted["fast"],
                  embedding=embedding, encoder_identity=encoder.identity() if encoder is not None else None,
                  encoder=encoder, metadata=params)
