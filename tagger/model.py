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
from sklearn.model_selection import GroupKFold
from sklearn.svm import LinearSVC

from tagger import langid
from tagger.data import Example
from tagger.features import Featurizer
from tagger.labels import DEFAULT_SENTIMENT_PREFIX, DEFAULT_STAGE_PREFIX, TASKS, tags_for
from tagger.text import clean, has_letters


def build_featurizer(**params) -> Featurizer:
    """Character n-grams inside word boundaries carry morphology across languages (and Chinese, which has
    no spaces); word n-grams carry phrases; the channel is one small one-hot block (tagger.features)."""
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

    featurizer: Featurizer
    heads: dict[str, LinearHead]
    metadata: dict[str, Any] = field(default_factory=dict)
    review_threshold: float = 0.5
    stage_prefix: str = DEFAULT_STAGE_PREFIX
    sentiment_prefix: str = DEFAULT_SENTIMENT_PREFIX

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
        langs = langid.detect_many(cleaned)
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
                sentiment_confidence=round(m_conf, 4), lang=langs[i], review=review,
                tags=tags_for(stage, sentiment, review, stage_prefix=self.stage_prefix,
                              sentiment_prefix=self.sentiment_prefix),
            )
            if explain:
                pred.explain = {task: self._top_terms(text, X[i], task, labels[task][0]) for task in self.heads}
            out.append(pred)
        return out

    def _top_terms(self, text: str, x, task: str, label: str, k: int = 6) -> list[list[Any]]:
        """The terms of this message that pushed hardest towards `label` (feature value x weight)."""
        base = self.heads[task]
        row = list(base.classes_).index(label)
        x = x.tocsr()
        contrib = x.data * base.coef_[row, x.indices]
        order = [o for o in np.argsort(-contrib)[: k * 3] if contrib[o] > 0]
        names = self.featurizer.names(text, x.indices[order])
        terms: list[list[Any]] = []
        for name, o in zip(names, order, strict=True):
            bare = name.strip("'").strip()
            if any(bare in t[0] for t in terms):  # ' vēl', 'vēl ' add nothing once 'vēl' is listed
                continue
            terms.append([name, round(float(contrib[o]), 4)])
            if len(terms) == k:
                break
        return terms


def _rows(examples: Sequence[Example]) -> list[tuple[str, str]]:
    return [(clean(e.text), e.channel) for e in examples]


def train(examples: Sequence[Example], *, C: dict[str, float] | None = None, random_state: int = 0,
          progress: Callable[[str], None] | None = None, **featurizer_args) -> Tagger:
    """Fit the featurizer and both heads on `examples`. Calibration folds are grouped by writing batch,
    so near-duplicates never calibrate each other."""
    if len(examples) < 20:
        raise ValueError(f"need at least 20 labelled examples to train, got {len(examples)}")
    C = {"stage": 1.0, "sentiment": 1.0, **(C or {})}  # chosen by benchmarks/select_params.py
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    say(f"featurizing {len(examples)} messages")
    featurizer = build_featurizer(**featurizer_args)
    X = featurizer.fit_transform(_rows(examples))
    groups = [e.batch or str(i) for i, e in enumerate(examples)]
    n_splits = max(2, min(3, len(set(groups))))
    heads: dict[str, LinearHead] = {}
    for task in TASKS:
        y = [getattr(e, task) for e in examples]
        cv = list(GroupKFold(n_splits=n_splits).split(X, y, groups))
        say(f"training {task} ({X.shape[1]} features, {n_splits} calibration folds)")
        heads[task] = LinearHead.from_calibrated(build_head(C[task], random_state, cv).fit(X, y), X[:500])
    say(f"trained in {time.perf_counter() - started:.1f}s")
    return Tagger(featurizer=featurizer, heads=heads,
                  metadata={"C": C, "random_state": random_state, "n_features": int(X.shape[1])})
