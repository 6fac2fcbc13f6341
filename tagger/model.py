"""The classifier: one shared sparse featurizer (character and word n-grams plus the channel) and one
calibrated linear model per task (stage, sentiment). Nothing here knows about HTTP or files.

    tagger = train(examples)              # -> Tagger
    tagger.predict("Where is my parcel?", channel="chat").stage
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from tagger import langid
from tagger.data import Example
from tagger.labels import CHANNELS, DEFAULT_SENTIMENT_PREFIX, DEFAULT_STAGE_PREFIX, TASKS, tags_for
from tagger.text import clean, has_letters

WORD_PATTERN = r"(?u)\b\w+\b"


def _text_column(X):
    return [row[0] for row in X]


def _channel_column(X):
    return np.array([[row[1] if row[1] in CHANNELS else "ticket"] for row in X], dtype=object)


def build_featurizer(*, char_ngrams: tuple[int, int] = (2, 5), word_ngrams: tuple[int, int] = (1, 2),
                     max_char_features: int = 150_000, max_word_features: int = 60_000) -> FeatureUnion:
    """Character n-grams inside word boundaries carry morphology across languages (and Chinese, which has
    no spaces); word n-grams carry phrases; the channel is one small one-hot block."""
    return FeatureUnion([
        ("char", Pipeline([
            ("text", FunctionTransformer(_text_column)),
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=char_ngrams, min_df=2, sublinear_tf=True,
                                      max_features=max_char_features, dtype=np.float32)),
        ])),
        ("word", Pipeline([
            ("text", FunctionTransformer(_text_column)),
            ("tfidf", TfidfVectorizer(analyzer="word", token_pattern=WORD_PATTERN, ngram_range=word_ngrams,
                                      min_df=2, sublinear_tf=True, max_features=max_word_features,
                                      dtype=np.float32)),
        ])),
        ("channel", Pipeline([
            ("column", FunctionTransformer(_channel_column)),
            ("onehot", OneHotEncoder(categories=[list(CHANNELS)], handle_unknown="ignore")),
        ])),
    ])


def build_head(C: float, random_state: int, cv) -> CalibratedClassifierCV:
    """A linear model whose probabilities are calibrated (sigmoid, on out-of-fold predictions), so a
    confidence threshold means something. `ensemble=False` keeps one model, not one per fold."""
    base = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=random_state)
    return CalibratedClassifierCV(base, method="sigmoid", cv=cv, ensemble=False)


@dataclass
class Prediction:
    stage: str
    stage_confidence: float
    sentiment: str
    sentiment_confidence: float
    lang: str
    review: bool
    tags: list[str]
    explain: dict[str, list[list[Any]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["explain"] is None:
            del data["explain"]
        return data


@dataclass
class Tagger:
    """A trained tagger: featurizer + one calibrated head per task, and the settings for its tags."""

    featurizer: FeatureUnion
    heads: dict[str, CalibratedClassifierCV]
    metadata: dict[str, Any] = field(default_factory=dict)
    review_threshold: float = 0.5
    stage_prefix: str = DEFAULT_STAGE_PREFIX
    sentiment_prefix: str = DEFAULT_SENTIMENT_PREFIX
    _feature_names: np.ndarray | None = field(default=None, repr=False)

    # -- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str = "models/current", **settings) -> Tagger:
        """Load a model version from the registry, verifying its SHA-256 first (see tagger.registry)."""
        from tagger.registry import load_tagger

        return load_tagger(path, **settings)

    # -- prediction --------------------------------------------------------------------------------------
    def predict(self, text: str | bytes | None, channel: str | None = None, *, explain: bool = False) -> Prediction:
        """Stage and sentiment of one message. Never raises on odd text: junk gets a review tag."""
        return self.predict_many([text], [channel], explain=explain)[0]

    def predict_many(self, texts: Sequence[str | bytes | None], channels: Sequence[str | None] | None = None,
                     *, explain: bool = False) -> list[Prediction]:
        """Stage and sentiment of many messages at once (vectorised: much faster than one by one)."""
        channels = channels if channels is not None else [None] * len(texts)
        cleaned = [clean(t) for t in texts]
        rows = [(c, ch or "ticket") for c, ch in zip(cleaned, channels, strict=True)]
        if not rows:
            return []
        X = self.featurizer.transform(rows)
        probs = {task: head.predict_proba(X) for task, head in self.heads.items()}
        out = []
        for i, text in enumerate(cleaned):
            labels: dict[str, tuple[str, float]] = {}
            for task, p in probs.items():
                j = int(np.argmax(p[i]))
                labels[task] = (str(self.heads[task].classes_[j]), float(p[i, j]))
            (stage, s_conf), (sentiment, m_conf) = labels["stage"], labels["sentiment"]
            review = min(s_conf, m_conf) < self.review_threshold or not has_letters(text)
            pred = Prediction(
                stage=stage, stage_confidence=round(s_conf, 4), sentiment=sentiment,
                sentiment_confidence=round(m_conf, 4), lang=langid.detect(text), review=review,
                tags=tags_for(stage, sentiment, review, stage_prefix=self.stage_prefix,
                              sentiment_prefix=self.sentiment_prefix),
            )
            if explain:
                pred.explain = {task: self._top_terms(X[i], task, labels[task][0]) for task in self.heads}
            out.append(pred)
        return out

    def _top_terms(self, x, task: str, label: str, k: int = 6) -> list[list[Any]]:
        """The terms of this message that pushed hardest towards `label` (feature value x weight)."""
        if self._feature_names is None:
            self._feature_names = feature_names(self.featurizer)
        head = self.heads[task]
        base = head.calibrated_classifiers_[0].estimator
        row = list(base.classes_).index(label)
        x = x.tocsr()
        contrib = x.data * base.coef_[row, x.indices]
        order = np.argsort(-contrib)[:k]
        terms = []
        for o in order:
            if contrib[o] <= 0:
                break
            terms.append([str(self._feature_names[x.indices[o]]), round(float(contrib[o]), 4)])
        return terms


def feature_names(featurizer: FeatureUnion) -> np.ndarray:
    """Readable names of every feature: char n-grams quoted (they may hold spaces), words plain,
    the channel as `channel=chat`."""
    names: list[str] = []
    for kind, pipe in featurizer.transformer_list:
        last = pipe.steps[-1][1]
        if kind == "channel":
            names += [f"channel={c}" for c in last.categories_[0]]
        elif kind == "char":
            names += [repr(n) for n in last.get_feature_names_out()]
        else:
            names += list(last.get_feature_names_out())
    return np.asarray(names, dtype=object)


def _rows(examples: Sequence[Example]) -> list[tuple[str, str]]:
    return [(clean(e.text), e.channel) for e in examples]


def train(examples: Sequence[Example], *, C: dict[str, float] | None = None, random_state: int = 0,
          progress: Callable[[str], None] | None = None, **featurizer_args) -> Tagger:
    """Fit the featurizer and both heads on `examples`. Calibration folds are grouped by writing batch,
    so near-duplicates never calibrate each other."""
    if len(examples) < 20:
        raise ValueError(f"need at least 20 labelled examples to train, got {len(examples)}")
    C = {"stage": 8.0, "sentiment": 8.0, **(C or {})}
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    say(f"featurizing {len(examples)} messages")
    featurizer = build_featurizer(**featurizer_args)
    X = featurizer.fit_transform(_rows(examples))
    groups = [e.batch or str(i) for i, e in enumerate(examples)]
    n_splits = max(2, min(5, len(set(groups))))
    heads: dict[str, CalibratedClassifierCV] = {}
    for task in TASKS:
        y = [getattr(e, task) for e in examples]
        cv = list(GroupKFold(n_splits=n_splits).split(X, y, groups))
        say(f"training {task} ({X.shape[1]} features, {n_splits} calibration folds)")
        heads[task] = build_head(C[task], random_state, cv).fit(X, y)
    say(f"trained in {time.perf_counter() - started:.1f}s")
    return Tagger(featurizer=featurizer, heads=heads,
                  metadata={"C": C, "random_state": random_state, "n_features": int(X.shape[1])})
