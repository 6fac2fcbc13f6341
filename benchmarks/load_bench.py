"""Sustained-load benchmark: `tagger serve` under a fixed webhook rate from a second process for 60 s, on
SQLite and on PostgreSQL; throughput, p99 latencies, queue depth, CPU and resident memory of the replica.

    .venv/bin/python benchmarks/load_bench.py --rate 50                  # SQLite and PostgreSQL, 60 s each
    .venv/bin/python benchmarks/load_bench.py --rate 40 --rate 80 --backend sqlite
    .venv/bin/python benchmarks/load_bench.py --rate 50 --seconds 20 --json benchmarks/out/load.json
    .venv/bin/python benchmarks/load_bench.py --rate 50 --serve-env TAGGER_WORKER_CONCURRENCY=32
    .venv/bin/python benchmarks/load_bench.py --rate 70 --backend postgresql --separate-worker
    .venv/bin/python benchmarks/load_bench.py --rate 40 --backend sqlite --slow-writes 50:2

For each backend and rate: a fresh `tagger serve` (the shipped model, the `bench` adapter of webhook_bench.py,
a fresh SQLite file or PostgreSQL schema) and a helpdesk stand-in in this process that answers every tag
write at once; a warm-up of 50 webhooks; then the sender process posts the i-th webhook at i/rate seconds
(up to `--concurrency` in flight). Latency is timed on one clock: webhook sent -> answer, and webhook sent ->
its tag write arriving at the stand-in. A rate is *sustained* when every webhook was accepted, the sender
kept its schedule (p99 lag under 100 ms), the outbox queue stayed under one second's worth of webhooks
(at least 10) and drained within 2 s of the last webhook. Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from harness import (  # noqa: E402
    DEFAULT_PG_URL,
    ROOT,
    Serve,
    child_env,
    load_average,
    machine,
    metric_sum,
    ms,
    percentile,
    pg_schema,
    rss_mib,
    tagger_command,
)
from webhook_bench import TEXTS, Standin  # noqa: E402

MAX_EVENTS = 100_000


def send(url: str, rate: float, seconds: float, concurrency: int, prefix: str, out_path: str) -> None:
    """Post `rate` webhooks per second for `seconds` (the i-th at i/rate s); write one record per webhook:
    [ticket, scheduled, sent, answer seconds, status]."""
    local = threading.local()
    records = []
    lock = threading.Lock()

    def post(i: int, scheduled: float) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30, trust_env=False)
        payload = {"event_id": f"{prefix}e{i}", "ticket_id": f"{prefix}t{i}",
                   "text": TEXTS[i % len(TEXTS)].format(n=1000 + i), "channel": ("ticket", "chat", "social")[i % 3]}
        sent = time.time()
        try:
            status = client.post("/webhooks/bench", json=payload).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        with lock:
            records.append((payload["ticket_id"], scheduled, sent, time.time() - sent, status))

    n = min(MAX_EVENTS, int(rate * seconds))
    start = time.time() + 0.2
    with ThreadPoolExecutor(concurrency) as pool:
        for i in range(n):
            scheduled = start + i / rate
            time.sleep(max(0.0, scheduled - time.time()))
            pool.submit(post, i, scheduled)
    Path(out_path).write_text(json.dumps(records))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(backend: str, db_url: str, rate: float, seconds: float, concurrency: int, tmp: Path,
            serve_env: dict[str, str], slow_every: int = 0, slow_s: float = 0.0,
            separate_worker: bool = False) -> dict:
    standin = Standin(slow_every, slow_s)
    env = {"TAGGER_BENCH_URL": standin.url, **serve_env}
    serve = Serve(db_url, tmp / f"serve-{backend}-{rate:g}.log", adapters=("webhook_bench:make_adapter",),
                  env=env, extra_args=("--no-worker",) if separate_worker else ())
    worker = None
    if separate_worker:                                              # `tagger worker`, a process of its own
        worker_log = open(tmp / f"worker-{backend}-{rate:g}.log", "wb")  # noqa: SIM115 - closed below
        worker = subprocess.Popen([*tagger_command(), "worker", "--db", db_url, "--adapter",
                                   "webhook_bench:make_adapter", "--log-level", "warning"], cwd=ROOT,
                                  env=child_env(env), stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        out_path = tmp / "warm.json"                                  # warm-up: 50 webhooks, not measured
        send(serve.url, 50, 1.0, 8, "warm-", str(out_path))
        deadline = time.time() + 30
        while standin.writes < 50 and time.time() < deadline:
            time.sleep(0.05)
        rss_before, cpu_before = rss_mib(serve.pid), cpu_seconds(serve.pid)
        worker_cpu_before = cpu_seconds(worker.pid) if worker else 0.0
        out_path = tmp / "sent.json"
        sender = mp.get_context("spawn").Process(target=send, args=(serve.url, rate, seconds, concurrency, "",
                                                                    str(out_path)))
        t0 = time.time()
        sender.start()
        depths: list[tuple[float, int]] = []
        while sender.is_alive() and time.time() < t0 + seconds + 120:
            time.sleep(1.0)
            try:
                depths.append((time.time() - t0, serve.health()["queue_depth"] or 0))
            except (httpx.HTTPError, ValueError, KeyError):
                depths.append((time.time() - t0, -1))
        sender.join(30)
        if sender.is_alive():
            sender.terminate()
            raise SystemExit("the sender did not finish in time")
        stream_end = time.time()
        cpu_stream = cpu_seconds(serve.pid) - cpu_before
        worker_cpu = cpu_seconds(worker.pid) - worker_cpu_before if worker else None
        records = json.loads(out_path.read_text())
        accepted = {t: sent for t, _sch, sent, _s, status in records if status == 202}
        drain_deadline = time.time() + 120
        while time.time() < drain_deadline and not set(accepted) <= set(standin.arrivals):
            time.sleep(0.02)
        drain_s = time.time() - stream_end
        metrics = serve.metrics()
        rss_after = rss_mib(serve.pid)
        worker_rss = rss_mib(worker.pid) if worker else None
    finally:
        serve.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(30)
            worker_log.close()
        standin.server.shutdown()
    lat = [standin.arrivals[t] - sent for t, sent in accepted.items() if t in standin.arrivals]
    answers = [s for _t, _sch, _sent, s, status in records if status == 202]
    lags = [sent - sch for _t, sch, sent, _s, _st in records]
    first = min(sent for _t, _sch, sent, _s, _st in records)
    last_answer = max(sent + s for _t, _sch, sent, s, _st in records)
    last_tag = max((standin.arrivals[t] for t in accepted if t in standin.arrivals), default=first)
    in_stream = [d for t, d in depths if t <= seconds]
    tail = in_stream[len(in_stream) // 2:] or [0]
    statuses: dict[str, int] = {}
    for *_x, status in records:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    result = {
        "backend": backend, "rate": rate, "seconds": seconds, "sent": len(records), "answers": statuses,
        "accepted_per_s": len(accepted) / (last_answer - first), "tagged": len(lat),
        "tags_per_s": len(lat) / (last_tag - first) if last_tag > first else None,
        "answer_s": {"p50": percentile(answers, 50), "p99": percentile(answers, 99), "max": max(answers, default=None)},
        "webhook_to_tag_s": {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat, default=None)},
        "send_lag_p99_s": percentile(lags, 99), "queue_depth_max": max(in_stream, default=0),
        "queue_depth_second_half_mean": sum(tail) / len(tail), "drain_s": drain_s,
        "serve_cpu_cores": cpu_stream / (stream_end - t0), "rss_before_mib": rss_before, "rss_after_mib": rss_after,
        "separate_worker": separate_worker, "worker_rss_mib": worker_rss,
        "worker_cpu_cores": worker_cpu / (stream_end - t0) if worker_cpu is not None else None,
        "tag_writes": standin.writes, "classifications": metric_sum(metrics, "tagger_classification_seconds_count"),
    }
    result["sustained"] = (statuses == {"202": len(records)} and (result["send_lag_p99_s"] or 0) < 0.1
                           and drain_s < 2.0 and result["queue_depth_max"] < max(10, rate))
    return result


def report(r: dict) -> None:
    a, w = r["answer_s"], r["webhook_to_tag_s"]
    print(f"[{r['backend']:>10} {r['rate']:>5g}/s x {r['seconds']:g}s] sent {r['sent']}, answers {r['answers']}; "
          f"accepted {r['accepted_per_s']:.1f}/s, tags written {r['tags_per_s'] or 0:.1f}/s; "
          f"{'SUSTAINED' if r['sustained'] else 'NOT sustained'}", flush=True)
    print(f"    answer        p50 {ms(a['p50'])}  p99 {ms(a['p99'])}  max {ms(a['max'])}", flush=True)
    print(f"    webhook->tag  p50 {ms(w['p50'])}  p99 {ms(w['p99'])}  max {ms(w['max'])}", flush=True)
    print(f"    sender lag p99 {ms(r['send_lag_p99_s'])}; queue depth max {r['queue_depth_max']}, mean over the "
          f"second half {r['queue_depth_second_half_mean']:.1f}; drained {r['drain_s']:.2f} s after the stream; "
          f"serve CPU {r['serve_cpu_cores']:.2f} cores; RSS {r['rss_before_mib']:.0f} MiB before, "
          f"{r['rss_after_mib']:.0f} MiB after; {load_average()}", flush=True)
    if r["separate_worker"]:
        print(f"    (serve --no-worker) + tagger worker: worker CPU {r['worker_cpu_cores']:.2f} cores, "
              f"worker RSS {r['worker_rss_mib']:.0f} MiB", flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, action="append", help="webhooks per second; repeatable (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run (default 60)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (a fresh schema is used)")
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="most webhooks in flight (default 32)")
    parser.add_argument("--serve-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for `tagger serve` (e.g. TAGGER_WORKER_CONCURRENCY=16)")
    parser.add_argument("--separate-worker", action="store_true",
                        help="run `tagger serve --no-worker` and a `tagger worker` process beside it")
    parser.add_argument("--slow-writes", metavar="K:SECONDS", help="answer every K-th tag write only after "
                                                                    "SECONDS (a helpdesk latency tail), e.g. 50:2")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    rates = args.rate or [50.0]
    slow_every, slow_s = (int(args.slow_writes.split(":")[0]), float(args.slow_writes.split(":")[1])) \
        if args.slow_writes else (0, 0.0)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    serve_env = dict(item.split("=", 1) for item in args.serve_env)
    print(f"machine: {machine()}; serve env {serve_env or '{}'}"
          + (f"; every {slow_every}th tag write answered after {slow_s:g} s" if slow_every else ""), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        for backend in backends:
            for rate in rates:
                if backend == "sqlite":
                    r = one_run(backend, f"sqlite:///{Path(tmp) / f'load-{rate:g}.db'}", rate, args.seconds,
                                args.concurrency, Path(tmp), serve_env, slow_every, slow_s, args.separate_worker)
                else:
                    with pg_schema(args.pg_url) as url:
                        r = one_run(backend, url, rate, args.seconds, args.concurrency, Path(tmp), serve_env,
                                    slow_every, slow_s, args.separate_worker)
                results.append(r)
                report(r)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "serve_env": serve_env,
                                                   "slow_writes": args.slow_writes, "runs": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
