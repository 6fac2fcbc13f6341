"""Measuring a tagger on labelled messages: per-class precision/recall/F1, macro-F1, accuracy and
macro-F1 per language, confusion matrices; and comparing two models."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from tagger.data import Example
from tagger.labels import TASKS


def evaluate(tagger, examples: Sequence[Example], *, batch_size: int = 2000) -> dict[str, Any]:
    """All metrics of `tagger` on `examples` (which must not have been used to train it)."""
    preds = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        preds.extend(tagger.predict_many([e.text for e in chunk], [e.channel for e in chunk]))
    report: dict[str, Any] = {"n": len(examples)}
    for task, classes in TASKS.items():
        y_true = [getattr(e, task) for e in examples]
        y_pred = [getattr(p, task) for p in preds]
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(classes), zero_division=0)
        per_lang: dict[str, dict[str, float]] = {}
        by_lang: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(examples):
            by_lang[e.lang or "?"].append(i)
        for lang, idx in sorted(by_lang.items()):
            t = [y_true[i] for i in idx]
            q = [y_pred[i] for i in idx]
            per_lang[lang] = {"n": len(idx), "accuracy": round(accuracy_score(t, q), 4),
                              "macro_f1": round(f1_score(t, q, labels=sorted(set(t)), average="macro",
                                                         zero_division=0), 4)}
        report[task] = {
            "accuracy": round(accuracy_score(y_true, y_pred), 4),
            "macro_f1": round(f1_score(y_true, y_pred, labels=list(classes), average="macro", zero_division=0), 4),
            "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                              "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(classes)},
            "per_lang": per_lang,
            "labels": list(classes),
            "confusion": confusion_matrix(y_true, y_pred, labels=list(classes)).tolist(),
        }
    report["review_share"] = round(sum(p.review for p in preds) / max(1, len(preds)), 4)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The human-readable text `tagger evaluate` prints."""
    lines = [f"{report['n']} labelled messages"]
    for task in TASKS:
        m = report[task]
        lines.append("")
        lines.append(f"== {task}: macro-F1 {m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}")
        lines.append(f"{'class':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
        for c, v in m["per_class"].items():
            lines.append(f"{c:<10}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['f1']:>8.3f}{v['support']:>9}")
        lines.append("")
        lines.append(f"{'lang':<6}{'n':>6}{'accuracy':>10}{'macro-F1':>10}")
        for lang, v in m["per_lang"].items():
            lines.append(f"{lang:<6}{v['n']:>6}{v['accuracy']:>10.3f}{v['macro_f1']:>10.3f}")
        lines.append("")
        lines.append("confusion (rows = true, columns = predicted)")
        labels = m["labels"]
        lines.append(" " * 10 + "".join(f"{lab[:9]:>10}" for lab in labels))
        for lab, row in zip(labels, m["confusion"], strict=True):
            lines.append(f"{lab:<10}" + "".join(f"{v:>10}" for v in row))
    lines.append("")
    lines.append(f"low-confidence (review) share: {report['review_share']:.1%}")
    return "\n".join(lines)


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Side-by-side per-class and per-language differences of two evaluation reports."""
    lines = []
    for task in TASKS:
        o, n = old[task], new[task]
        lines.append(f"== {task}: macro-F1 {o['macro_f1']:.3f} -> {n['macro_f1']:.3f} "
                     f"({n['macro_f1'] - o['macro_f1']:+.3f})")
        for c in n["per_class"]:
            a, b = o["per_class"][c]["f1"], n["per_class"][c]["f1"]
            lines.append(f"  {c:<10} f1 {a:.3f} -> {b:.3f} ({b - a:+.3f})")
        for lang in sorted(set(o["per_lang"]) | set(n["per_lang"])):
            a = o["per_lang"].get(lang, {}).get("macro_f1", float("nan"))
            b = n["per_lang"].get(lang, {}).get("macro_f1", float("nan"))
            lines.append(f"  {lang:<10} macro-F1 {a:.3f} -> {b:.3f} ({b - a:+.3f})")
    return "\n".join(lines)


def plot_confusion(report: dict[str, Any], path: str) -> None:
    """Draw both confusion matrices into one PNG (needs matplotlib: `pip install mot-tagger[plot]`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, task in zip(axes, TASKS, strict=True):
        m = report[task]
        cm = m["confusion"]
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(m["labels"])), m["labels"], rotation=30)
        ax.set_yticks(range(len(m["labels"])), m["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{task} (macro-F1 {m['macro_f1']:.3f})")
        peak = max(max(r) for r in cm) or 1
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
