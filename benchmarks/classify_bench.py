"""Classifier benchmark: throughput, single-message latency, training time, model size, peak memory,
side by side with fastText supervised trained on the same split. Prints figures; asserts nothing.

    python benchmarks/classify_bench.py [--n 100000] [--no-fasttext]

Runs on one core (thread pools pinned to 1). The `tagger classify` figure is the real CLI in a
subprocess: JSONL in, JSONL out, model loading included.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.metrics import f1_score  # noqa: E402

from tagger.data import load_corpus  # noqa: E402
from tagger.model import Tagger, train  # noqa: E402
from tagger.registry import Registry  # noqa: E402
from tagger.text import clean  # noqa: E402


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


def bench_cli(n: int, test) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for i in range(n):
                e = test[i % len(test)]
                fh.write(json.dumps({"id": i, "text": e.text, "channel": e.channel}, ensure_ascii=False) + "\n")
        cmd = [sys.executable, "-m", "tagger.cli", "classify", "--input", str(src)]
        started = time.perf_counter()
        with open(os.devnull, "w") as sink:
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=sink, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT) if Path("/usr/bin/time").exists() else \
                subprocess.run(cmd, stdout=sink, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        rss_kb = proc.stderr.strip().splitlines()[-1] if Path("/usr/bin/time").exists() else "?"
    return {"messages": n, "seconds": round(wall, 2), "msg_per_s": round(n / wall), "peak_rss_mb":
            round(int(rss_kb) / 1024, 1) if str(rss_kb).isdigit() else None}


def bench_tagger(tagger: Tagger, test, n: int) -> dict:
    texts = [test[i % len(test)].text for i in range(n)]
    channels = [test[i % len(test)].channel for i in range(n)]
    started = time.perf_counter()
    for s in range(0, n, 1000):
        tagger.predict_many(texts[s:s + 1000], channels[s:s + 1000])
    batch_s = time.perf_counter() - started
    lat = []
    for e in test[:1000]:
        t = time.perf_counter()
        tagger.predict(e.text, e.channel)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return {"batch_msg_per_s": round(n / batch_s), "single_ms_p50": round(statistics.median(lat), 3),
            "single_ms_p99": round(lat[int(len(lat) * 0.99) - 1], 3)}


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
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--no-fasttext", action="store_true")
    args = ap.parse_args()
    train_set, test = load_corpus(ROOT / "training_data")
    print(f"machine: {machine()}")
    print(f"corpus: {len(train_set)} train, {len(test)} held-out")

    started = time.perf_counter()
    fresh = train(train_set, random_state=0)
    print(f"training time (both tasks): {time.perf_counter() - started:.1f}s")

    registry = Registry(ROOT / "models")
    version = registry.current()
    meta = registry.metadata(version)
    tagger = registry.load(version)
    print(f"shipped model {version}: file {meta['size_bytes'] / 1e6:.1f} MB")
    y = {t: [getattr(e, t) for e in test] for t in ("stage", "sentiment")}
    preds = tagger.predict_many([e.text for e in test], [e.channel for e in test])
    for task in ("stage", "sentiment"):
        print(f"tagger {task} macro-F1 (held-out): "
              f"{f1_score(y[task], [getattr(p, task) for p in preds], average='macro'):.4f}")
    del fresh
    print("tagger in-process:", json.dumps(bench_tagger(tagger, test, args.n)))
    print(f"tagger classify CLI on {args.n} messages:", json.dumps(bench_cli(args.n, test)))
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if not args.no_fasttext:
        print("fastText supervised (same train split, same held-out):", json.dumps(bench_fasttext(train_set, test, args.n)))


if __name__ == "__main__":
    main()
