"""Training a model version: corpus + human-rated real text + optional extra files and agents' corrections,
the held-out split, metrics, the review threshold chosen from held-out data, and guarded activation.
The CLI only calls `train_version` and prints what it returns.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.classifier import data as data_mod
from tagger.classifier.data import Example
from tagger.classifier.evaluate import evaluate
from tagger.classifier.model import train
from tagger.classifier.registry import Registry
from tagger.errors import TaggerError

if TYPE_CHECKING:
    from tagger.config import Settings

# The review threshold is the lowest one at which the messages without a review tag have both labels right
# at least this often on the held-out split, so that an untagged label can be trusted (README, "Review tag").
TARGET_ACCURACY_NO_REVIEW = 0.90


@dataclass
class TrainResult:
    version: str
    activated: bool
    metrics: dict[str, Any]
    n_train: int
    n_test: int
    activation_error: str | None = None
    review_threshold: float | None = None


def choose_threshold(coverage: list[dict[str, float]], target: float = TARGET_ACCURACY_NO_REVIEW) -> float | None:
    """The lowest threshold whose untagged messages are right at least `target` of the time (most
    coverage for that accuracy); None when no threshold reaches it."""
    for row in sorted(coverage, key=lambda r: r["threshold"]):
        if row["accuracy_no_review"] >= target:
            return row["threshold"]
    return None


def train_version(settings: Settings, *, extra: Iterable[str | Path] = (), data_dir: str | None = None,
                  models_dir: str | None = None, no_holdout: bool = False, feedback: Iterable[Example] = (),
                  activate: bool = True, force: bool = False, seed: int = 0,
                  progress: Callable[[str], None] | None = None, **train_args) -> TrainResult:
    """Train both tasks (full and fast heads), evaluate on the held-out batches, save a new version and
    (unless told not to) activate it behind the quality guard. `feedback`: agents' corrections as examples
    (the caller reads them from the store: tagger.service.feedback), added to the training split."""

    started = time.perf_counter()
    say = progress or (lambda _m: None)
    data_dir = data_dir or settings.data_dir
    say(f"reading {data_dir}")
    train_set, test_set = data_mod.load_corpus(data_dir, extra)
    if no_holdout:
        train_set, test_set = train_set + test_set, []
    fb = list(feedback)
    if fb:
        say(f"adding {len(fb)} agent corrections from the store")
        train_set += fb
    n_rated = sum(e.stage is None for e in train_set)
    say(f"{len(train_set)} training messages ({n_rated} human-rated, sentiment only) and {len(test_set)} held-out "
        f"({len({e.batch for e in test_set})} held-out batches)")
    tagger = train(train_set, random_state=seed, progress=say, **train_args)
    metrics: dict[str, Any] = {}
    threshold = None
    if test_set:
        say("evaluating on the held-out split (full model)")
        metrics = evaluate(tagger, test_set)
        threshold = choose_threshold(metrics.get("coverage", []))
        if threshold is not None:  # only the review figures depend on it: read them off its coverage row
            tagger.review_threshold = threshold
            row = next(r for r in metrics["coverage"] if r["threshold"] == threshold)
            metrics.update(review_threshold=threshold, review_share=round(1 - row["no_review"], 4))
        say("evaluating on the held-out split (fast path)")
        tagger.fast = True
        metrics["fast_path"] = evaluate(tagger, test_set)
        tagger.fast = False
    meta = {
        "data_hash": data_mod.data_hash(train_set),
        "test_hash": data_mod.data_hash(test_set),
        "n_train": len(train_set),
        "n_test": len(test_set),
        "holdout": "none" if no_holdout else f"files whose batch number is a multiple of {data_mod.HOLDOUT_EVERY}",
        "metrics": metrics,
        "review_threshold": tagger.review_threshold,
        "encoder": tagger.encoder_identity,
        "train_seconds": round(time.perf_counter() - started, 1),
        "params": tagger.metadata,
    }
    registry = Registry(models_dir or settings.models_dir)
    version = registry.save(tagger, meta)
    say(f"saved {registry.root / version}")
    result = TrainResult(version=version, activated=False, metrics=metrics, n_train=len(train_set),
                         n_test=len(test_set), review_threshold=threshold)
    if activate:
        try:
            activate_version(registry, version, force=force, max_drop=settings.activation_max_drop,
                             heldout=test_set or None)
            result.activated = True
            say(f"activated {version}")
        except TaggerError as exc:
            result.activation_error = str(exc)
    return result


def activate_version(registry: Registry, version: str, *, force: bool = False, max_drop: float | None = None,
                     heldout: list | None = None) -> str:
    """Activate `version` behind the quality guard: with `heldout`, the current and the new model are both
    evaluated on those messages and compared (`Registry.activate` refuses a drop beyond `max_drop`); `force`
    skips the comparison, never the registry's path and hash checks."""
    measured = None
    current = registry.current() if registry.versions() else None
    if heldout and not force and max_drop is not None and current and current != version:
        measured = (evaluate(registry.load(current), heldout), evaluate(registry.load(version), heldout))
    return registry.activate(version, force=force, max_drop=max_drop, measured=measured)
