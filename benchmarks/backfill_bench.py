"""Backfill benchmark: `tagger backfill` on a 1,000,000-message export, with 1 and with 2 worker processes.

    .venv/bin/python benchmarks/backfill_bench.py                    # 1,000,000 messages, -j 1 and -j 2
    .venv/bin/python benchmarks/backfill_bench.py -n 100000 -j 1 -j 2 -j 4
    .venv/bin/python benchmarks/backfill_bench.py --json benchmarks/out/backfill.json

The export is generated once into a temporary folder (deleted afterwards) by cycling through the messages
of training_data/, each line with its own id: {"id": 17, "text": ..., "channel": ..., "lang": ...}.
Each run is the real CLI in a child process; the figures are wall time, messages per second, CPU time
(user + system of the whole process tree) and peak resident memory: of the `tagger` process itself
(VmHWM) and of the whole tree (the largest sum over its processes, sampled every 0.25 s; shared pages
count once per process, so it is an upper bound). The output is checked: one line per input line, in
input order, every line labelled.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from harness import (  # noqa: E402
    ROOT,
    TreeMemory,
    child_env,
    corpus_messages,
    load_average,
    machine,
    tagger_command,
)

MAX_N = 5_000_000


def generate(path: Path, n: int) -> float:
    """Write n JSONL messages (the corpus, cycled, with ids); returns seconds taken."""
    started = time.perf_counter()
    tails = [json.dumps(m, ensure_ascii=False)[1:].encode("utf-8") + b"\n" for m in corpus_messages()]
    k = len(tails)
    with path.open("wb", buffering=1 << 22) as fh:
        for block in range(0, n, 50_000):
            fh.write(b"".join(b'{"id": %d, ' % i + tails[i % k] for i in range(block, min(n, block + 50_000))))
    return time.perf_counter() - started


def check_output(path: Path, n: int) -> str | None:
    """None when the output has n lines, in input order, each with labels; else what is wrong."""
    i = -1
    with path.open("rb") as fh:
        for i, line in enumerate(fh):
            if i >= n:
                return f"more than {n} lines"
            if not line.startswith(b'{"id": %d, ' % i):
                return f"line {i + 1} is out of order: {line[:60]!r}"
            if b'"stage": ' not in line or b'"sentiment": ' not in line:
                return f"line {i + 1} has no labels: {line[:120]!r}"
    return None if i == n - 1 else f"{i + 1} lines for {n} messages"


def run_backfill(source: Path, output: Path, jobs: int, chunk_size: int, env: dict | None = None) -> dict:
    args = [*tagger_command(), "backfill", str(source), "-o", str(output), "-j", str(jobs),
            "--chunk-size", str(chunk_size)]
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with TreeMemory(proc.pid) as memory:
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    counts = proc.stdout.read().decode().strip().splitlines()
    proc.stdout.close()
    if proc.returncode != 0:
        raise SystemExit(f"tagger backfill -j {jobs} exited with {proc.returncode}")
    return {"jobs": jobs, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_main_mib": memory.peak_root, "peak_rss_tree_mib": memory.peak_tree,
            "peak_rss_largest_process_mib": memory.peak_single, "processes": memory.max_processes,
            "maxrss_wait4_mib": usage.ru_maxrss / 1024, "counts": json.loads(counts[-1]) if counts else None}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="messages in the export (default 1,000,000)")
    parser.add_argument("-j", "--jobs", type=int, action="append", help="worker processes; repeatable "
                                                                         "(default: 1 and 2)")
    parser.add_argument("--chunk-size", type=int, default=2000, help="messages per unit of work (default 2000)")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    parser.add_argument("--child-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in the tagger's environment (TAGGER_* are not inherited), e.g. "
                             "TAGGER_FAST_MODEL=1 or TAGGER_EMBEDDING_CACHE= (encode every message)")
    args = parser.parse_args(argv)
    n = max(1, min(args.n, MAX_N))
    jobs = args.jobs or [1, 2]

    extra_env = dict(kv.split("=", 1) for kv in args.child_env)
    print(f"machine: {machine()}; tagger env {extra_env}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp:
        source = Path(tmp) / "export.jsonl"
        seconds = generate(source, n)
        print(f"generated {n:,} messages ({source.stat().st_size / 1e6:.0f} MB) in {seconds:.1f} s", flush=True)
        for j in jobs:
            output = Path(tmp) / f"tagged-j{j}.jsonl"
            r = run_backfill(source, output, j, args.chunk_size, extra_env)
            problem = check_output(output, n)
            r.update(messages=n, messages_per_s=n / r["wall_s"], output_mb=output.stat().st_size / 1e6,
                     output_ok=problem is None, problem=problem)
            results.append(r)
            print(f"-j {j}: {n:,} messages in {r['wall_s']:.1f} s = {r['messages_per_s']:,.0f} messages/s; "
                  f"CPU {r['cpu_s']:.0f} s ({r['cpu_s'] / r['wall_s']:.2f} cores); peak RSS: tagger process "
                  f"{r['peak_rss_main_mib']:.0f} MiB, largest process {r['peak_rss_largest_process_mib']:.0f} MiB, "
                  f"whole tree {r['peak_rss_tree_mib']:.0f} MiB ({r['processes']} processes); "
                  f"output {'ok' if problem is None else 'WRONG: ' + problem}; {load_average()}", flush=True)
            output.unlink()
            Path(str(output) + ".progress.json").unlink(missing_ok=True)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "runs": results}, indent=2))
    if any(not r["output_ok"] for r in results):
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
