"""Hyper-parameter selection by grouped cross-validation *inside the training split* (folds are whole
writing batches), so the held-out figures in the README stay untouched by the choice. Prints figures.

    python benchmarks/select_params.py
"""
from __future__ import annotations

import itertools
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402

from tagger.data import load_corpus  # noqa: E402
from tagger.model import train  # noqa: E402

GRID = {
    "C": [0.5, 1.0, 2.0],
    "char_ngrams": [(2, 4), (2, 5)],
    "n_bits": [18, 20],
}


def main() -> None:
    train_set, _heldout = load_corpus(ROOT / "training_data")
    groups = [e.batch for e in train_set]
    folds = list(GroupKFold(n_splits=4).split(train_set, groups=groups))
    print(f"{len(train_set)} training messages, {len(set(groups))} batches, 4 grouped folds")
    results = []
    for C, char, bits in itertools.product(*GRID.values()):
        started = time.perf_counter()
        scores = {"stage": [], "sentiment": []}
        for fit_idx, val_idx in folds:
            model = train([train_set[i] for i in fit_idx], C={"stage": C, "sentiment": C}, char_ngrams=char,
                          n_bits=bits)
            val = [train_set[i] for i in val_idx]
            pred = model.predict_many([e.text for e in val], [e.channel for e in val])
            for task in scores:
                scores[task].append(f1_score([getattr(e, task) for e in val], [getattr(p, task) for p in pred],
                                             average="macro"))
        mean = {t: sum(v) / len(v) for t, v in scores.items()}
        results.append(((mean["stage"] + mean["sentiment"]) / 2, C, char, bits, mean))
        print(f"C={C:<4} char={char} bits={bits}: stage {mean['stage']:.3f}  sentiment {mean['sentiment']:.3f}"
              f"  ({time.perf_counter() - started:.0f}s)", flush=True)
    best = max(results, key=lambda r: r[0])
    print(f"best: C={best[1]} char_ngrams={best[2]} n_bits={best[3]} (mean macro-F1 {best[0]:.3f})")


if __name__ == "__main__":
    main()
