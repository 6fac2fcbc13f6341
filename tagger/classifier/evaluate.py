"""Measuring a tagger on labelled messages: per-class precision/recall/F1, macro-F1, accuracy and
macro-F1 per language, confusion matrices; real-text sentiment (human-rated, sentiment-only examples)
by source; the review tag's coverage/accuracy trade-off; and comparing two models."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from tagger.classifier.data import Example
from tagger.labels import TASKS

if TYPE_CHECKING:
    from tagger.classifier.model import Tagger

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def predict_all(tagger: Tagger, examples: Sequence[Example], *, batch_size: int = 2000) -> list:
    preds = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        preds.extend(tagger.predict_many([e.text for e in chunk], [e.channel for e in chunk]))
    return preds


def coverage_table(examples: Sequence[Example], preds: Sequence, thresholds=THRESHOLDS) -> list[dict[str, float]]:
    """For each review threshold: the share of messages that get no review tag, and how often both labels
    are right on them (and on the reviewed rest). Off-domain reasons (no letters, no content, another
    language) apply at every threshold, as in production."""
    rows = []
    right = [p.stage == e.stage and p.sentiment == e.sentiment for e, p in zip(examples, preds, strict=True)]
    off = [p.review_reason not in (None, "low confidence") for p in preds]
    for t in thresholds:
        kept = [not o and p.confidence >= t for p, o in zip(preds, off, strict=True)]
        n_kept = sum(kept)
        n_rev = len(kept) - n_kept
        rows.append({"threshold": t, "no_review": round(n_kept / max(1, len(kept)), 4),
                     "accuracy_no_review": round(sum(r for r, k in zip(right, kept, strict=True) if k) / max(1, n_kept), 4),
                     "accuracy_reviewed": round(sum(r for r, k in zip(right, kept, strict=True) if not k) / max(1, n_rev), 4)})
    return rows


def real_text_report(examples: Sequence[Example], preds: Sequence) -> dict[str, Any]:
    """Sentiment on human-rated real text: 3-class accuracy and macro-F1, and polarity accuracy (on the
    clearly positive or negative ones, the share given exactly that label), per source."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by[e.origin].append(i)
    by["all"] = list(range(len(examples)))
    out = {}
    for src, idx in sorted(by.items()):
        t = [examples[i].sentiment for i in idx]
        q = [preds[i].sentiment for i in idx]
        polar = [i for i in idx if examples[i].sentiment != "neutral"]
        out[src] = {"n": len(idx), "accuracy": round(accuracy_score(t, q), 4),
                    "macro_f1": round(f1_score(t, q, labels=sorted(set(t)), average="macro", zero_division=0), 4),
                    "n_polar": len(polar),
                    "polarity_accuracy": round(sum(preds[i].sentiment == examples[i].sentiment for i in polar)
                                               / max(1, len(polar)), 4)}
    return out


def evaluate(tagger: Tagger, examples: Sequence[Example], *, batch_size: int = 2000) -> dict[str, Any]:
    """All metrics of `tagger` on `examples` (which must not have been used to train it). Messages with
    both labels give the per-task figures and the coverage table; sentiment-only (human-rated real text)
    ones give the `real_text` block."""
    rated = [e for e in examples if e.stage is None]
    examples = [e for e in examples if e.stage is not None]
    preds = predict_all(tagger, examples, batch_size=batch_size)
    report: dict[str, Any] = {"n": len(examples), "fast": bool(getattr(tagger, "fast", False))}
    if rated:
        report["real_text"] = real_text_report(rated, predict_all(tagger, rated, batch_size=batch_size))
    if not examples:
        return report
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
    report["both_right"] = round(sum(p.stage == e.stage and p.sentiment == e.sentiment
                                     for e, p in zip(examples, preds, strict=True)) / max(1, len(preds)), 4)
    report["review_threshold"] = getattr(tagger, "review_threshold", None)
    report["coverage"] = coverage_table(examples, preds)
    return report


def format_coverage(rows: list[dict[str, float]], current: float | None = None) -> str:
    lines = [f"{'threshold':>9}{'no review':>11}{'right (no review)':>19}{'right (reviewed)':>18}"]
    for r in rows:
        mark = "  <- default" if current is not None and abs(r["threshold"] - current) < 1e-9 else ""
        lines.append(f"{r['threshold']:>9.2f}{r['no_review']:>11.1%}{r['accuracy_no_review']:>19.1%}"
                     f"{r['accuracy_reviewed']:>18.1%}{mark}")
    return "\n".join(lines)


def format_real_text(block: dict[str, Any]) -> str:
    lines = [f"{'source':<16}{'n':>6}{'accuracy':>10}{'macro-F1':>10}{'polar n':>9}{'polarity acc.':>15}"]
    for src, v in block.items():
        lines.append(f"{src:<16}{v['n']:>6}{v['accuracy']:>10.3f}{v['macro_f1']:>10.3f}{v['n_polar']:>9}"
                     f"{v['polarity_accuracy']:>15.3f}")
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """The human-readable text `tagger evaluate` prints."""
    lines = [f"{report['n']} labelled messages" + (" (fast path: n-grams only)" if report.get("fast") else "")]
    if "real_text" in report:
        lines += ["", "== real text (human-rated, sentiment only)", format_real_text(report["real_text"])]
    if not report["n"]:
        return "\n".join(lines)
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
    lines.append(f"review share: {report['review_share']:.1%}; both labels right: {report['both_right']:.1%}")
    lines += ["", "== review tag: coverage and accuracy by threshold (confidence = stage x sentiment)",
              format_coverage(report["coverage"], report.get("review_threshold"))]
    return "\n".join(lines)


def plot_coverage(report: dict[str, Any], path: str) -> None:
    """Coverage (share without review) against accuracy on those, one point per threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["coverage"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([r["no_review"] for r in rows], [r["accuracy_no_review"] for r in rows], marker="o")
    for r in rows:
        ax.annotate(f"{r['threshold']:.2f}", (r["no_review"], r["accuracy_no_review"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("share of messages without review tag")
    ax.set_ylabel("both labels right on them")
    ax.set_title("review threshold: coverage vs accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
