"""Soak run: `tagger serve` under a steady webhook stream for many minutes against a flaky helpdesk, then a
full audit: nothing lost, nothing written twice, duplicates not classified again, memory steady.

    .venv/bin/python benchmarks/soak.py                      # 10 minutes, 20 webhooks/s, SQLite
    .venv/bin/python benchmarks/soak.py --minutes 1          # a quick check
    .venv/bin/python benchmarks/soak.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    nohup .venv/bin/python benchmarks/soak.py > soak.log 2>&1 &

What runs:
- `tagger serve` (a child process, the shipped model, the service's default retry settings) with the
  `standin` adapter of tests/standin.py;
- the helpdesk stand-in (tests/standin.py, in this process), failing `--fail-rate` of the tag writes at
  random: mostly HTTP 500, one in four a 429 with `Retry-After: 1`;
- a *second process* sending `--rate` webhooks per second for `--minutes`: new tickets, plus
  `--dup-share` repeated deliveries of an event already answered (a helpdesk retrying) and
  `--followup-share` new messages on a ticket seen before (the newer classification wins).

At the end it waits (bounded) until the outbox is drained and checks, from the database and the stand-in:
every accepted event has its message row; the tags on every ticket are those of its last classification;
every outbox row that was not superseded was written exactly once, superseded ones never; no extra
classification for the duplicates; no dead letters; every injected failure was retried. Exit status 1 when
a check fails. Every loop is bounded in count and time; only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from harness import (  # noqa: E402
    DEFAULT_PG_URL,
    Serve,
    corpus_messages,
    load_average,
    machine,
    metric_sum,
    ms,
    percentile,
    pg_schema,
    rss_mib,
)

MAX_EVENTS = 200_000
OWN_PREFIXES = ("mot_", "sentiment_")


# -- the sender (a second process) ---------------------------------------------------------------------------
def send(url: str, rate: float, seconds: float, dup_share: float, followup_share: float, seed: int,
         out_path: str) -> None:
    """Send webhooks at `rate`/s for `seconds`; write every delivery with its answer to `out_path`."""
    rng = random.Random(seed)
    texts = corpus_messages()
    local = threading.local()
    lock = threading.Lock()
    results: list[dict[str, Any]] = []
    answered: list[dict[str, Any]] = []          # first deliveries that got a 202 (candidates to repeat)

    def post(delivery: dict[str, Any]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30, trust_env=False)
        delivery["sent_at"] = time.time()
        try:
            response = client.post("/webhooks/standin", json=delivery.pop("payload"))
            delivery["status"] = response.status_code
            delivery["answer"] = response.json().get("status")
        except (httpx.HTTPError, ValueError) as exc:
            delivery["status"], delivery["answer"] = type(exc).__name__, None
        delivery["seconds"] = time.time() - delivery["sent_at"]
        with lock:
            results.append(delivery)
            if delivery["status"] == 202:
                answered.append(delivery)

    total = min(MAX_EVENTS, int(rate * seconds))
    start = time.time() + 0.2
    with ThreadPoolExecutor(16) as pool:
        for i in range(total):
            time.sleep(max(0.0, start + i / rate - time.time()))
            roll = rng.random()
            with lock:
                recent = answered[-400:]
            if roll < dup_share and recent:            # the helpdesk delivers an answered event again
                original = rng.choice(recent)
                kind, ticket, event_id, text = "duplicate", original["ticket"], original["event_id"], original["text"]
                channel = original["channel"]
            else:
                kind = "followup" if roll < dup_share + followup_share and recent else "new"
                ticket = rng.choice(recent)["ticket"] if kind == "followup" else f"s{i}"
                message = texts[rng.randrange(len(texts))]
                event_id, text, channel = f"ev{i}", message["text"], message["channel"]
            payload = {"event_id": event_id, "type": "message.created",
                       "ticket": {"id": ticket, "text": text, "channel": channel, "tags": []}}
            pool.submit(post, {"i": i, "kind": kind, "ticket": ticket, "event_id": event_id, "text": text,
                               "channel": channel, "payload": payload})
    Path(out_path).write_text(json.dumps([{k: v for k, v in r.items() if k != "text"} for r in results]))


# -- the audit -----------------------------------------------------------------------------------------------
def audit(db_url: str, deliveries: list[dict], helpdesk, metrics: dict[str, float]) -> tuple[dict, list[str]]:
    """Compare what was sent, what the database holds and what the stand-in received."""
    import sqlalchemy as sa

    from tagger.service.store import Store, messages, outbox

    problems: list[str] = []
    store = Store(db_url, create=False)
    with store.engine.connect() as conn:
        msg_rows = conn.execute(sa.select(messages.c.id, messages.c.ticket_id, messages.c.event_id,
                                          messages.c.tags)).all()
        box_rows = conn.execute(sa.select(outbox.c.id, outbox.c.message_id, outbox.c.ticket_id, outbox.c.status,
                                          outbox.c.last_error, outbox.c.attempts)).all()
    store.close()

    accepted = [d for d in deliveries if d["status"] == 202]
    events_stored = collections.Counter(r.event_id for r in msg_rows)
    lost = [d["event_id"] for d in accepted if events_stored[d["event_id"]] != 1]
    if lost:
        problems.append(f"{len(lost)} accepted events without exactly one message row, e.g. {lost[:5]}")
    if len(msg_rows) != len(accepted):
        problems.append(f"{len(msg_rows)} message rows for {len(accepted)} accepted events")
    dup_answers = collections.Counter(d["answer"] for d in deliveries if d["kind"] == "duplicate")
    if set(dup_answers) - {"duplicate"}:
        problems.append(f"repeated deliveries answered {dict(dup_answers)} (expected only 'duplicate')")
    not_ok = collections.Counter(str(d["status"]) for d in deliveries if d["status"] not in (200, 202))
    if not_ok:
        problems.append(f"deliveries refused or failed: {dict(not_ok)}")
    classified = metric_sum(metrics, "tagger_classification_seconds_count")
    if classified != len(accepted):
        problems.append(f"{classified:.0f} classifications for {len(accepted)} accepted events")

    status = collections.Counter(r.status for r in box_rows)
    superseded = [r for r in box_rows if r.status == "done" and (r.last_error or "").startswith("superseded")]
    to_write = collections.Counter(r.ticket_id for r in box_rows
                                   if r.status == "done" and not (r.last_error or "").startswith("superseded"))
    if status.get("pending") or status.get("dead"):
        problems.append(f"outbox not drained: {dict(status)}")
    written = helpdesk.write_counts()
    wrong_counts = {t: (written.get(t, 0), to_write.get(t, 0)) for t in set(to_write) | set(written)
                    if written.get(t, 0) != to_write.get(t, 0)}
    if wrong_counts:
        problems.append(f"{len(wrong_counts)} tickets written a wrong number of times (written, expected), "
                        f"e.g. {dict(list(wrong_counts.items())[:5])}")
    last_tags = {}
    for r in sorted(msg_rows, key=lambda r: r.id):
        last_tags[r.ticket_id] = set(r.tags)
    wrong_tags = [t for t, tags in last_tags.items()
                  if {x for x in helpdesk.tags.get(t, set()) if x.startswith(OWN_PREFIXES)} != tags]
    if wrong_tags:
        problems.append(f"{len(wrong_tags)} tickets whose final tags differ from their last classification, "
                        f"e.g. {wrong_tags[:5]}")
    injected = collections.Counter(a["fault"][1] for a in helpdesk.attempts if a["fault"])
    retries = metric_sum(metrics, 'tagger_tag_writes_failed_total{helpdesk="standin",outcome="retry"}')
    if retries != sum(injected.values()):
        problems.append(f"{retries:.0f} retries recorded for {sum(injected.values())} injected failures")
    figures = {"accepted": len(accepted), "messages": len(msg_rows), "tickets": len(last_tags),
               "outbox": dict(status), "superseded": len(superseded), "writes": sum(written.values()),
               "write_attempts": len(helpdesk.attempts), "failures_injected": dict(injected),
               "retries": retries, "classifications": classified,
               "duplicate_answers": dict(dup_answers)}
    return figures, problems


def latencies(deliveries: list[dict], helpdesk) -> list[float]:
    """Webhook sent -> tags written, for tickets classified once (a follow-up's write may supersede)."""
    firsts: dict[str, float] = {}
    per_ticket = collections.Counter(d["ticket"] for d in deliveries if d["status"] == 202)
    for d in deliveries:
        if d["status"] == 202 and per_ticket[d["ticket"]] == 1:
            firsts[d["ticket"]] = d["sent_at"]
    landed: dict[str, float] = {}
    with helpdesk.lock:
        for w in helpdesk.writes:
            landed.setdefault(w["ticket_id"], w["at"])
    return [landed[t] - t0 for t, t0 in firsts.items() if t in landed]


# -- orchestration -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the webhook stream (default 10)")
    parser.add_argument("--rate", type=float, default=20.0, help="webhooks per second (default 20)")
    parser.add_argument("--dup-share", type=float, default=0.08, help="share of repeated deliveries (0.08)")
    parser.add_argument("--followup-share", type=float, default=0.05,
                        help="share of new messages on an earlier ticket (0.05)")
    parser.add_argument("--fail-rate", type=float, default=0.10, help="share of tag writes that fail (0.10)")
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary folder); a PostgreSQL URL "
                                     "gets a fresh schema, dropped afterwards")
    parser.add_argument("--postgres", action="store_true", help=f"use PostgreSQL at {DEFAULT_PG_URL}")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the outbox")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    seconds = max(1.0, args.minutes * 60)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.standin import StandinHelpdesk

    helpdesk = StandinHelpdesk(fail_rate=args.fail_rate, fail_with=[(500, None)] * 3 + [(429, "1")], seed=args.seed)
    print(f"machine: {machine()}", flush=True)
    print(f"soak: {args.minutes:g} min at {args.rate:g} webhooks/s, {args.dup_share:.0%} repeated deliveries, "
          f"{args.followup_share:.0%} follow-ups, {args.fail_rate:.0%} of tag writes fail", flush=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        pg_url = args.db or (DEFAULT_PG_URL if args.postgres else None)
        if pg_url and not pg_url.startswith("sqlite"):
            with pg_schema(pg_url) as url:
                return run(args, url, "postgresql", Path(tmp), helpdesk, seconds)
        return run(args, args.db or f"sqlite:///{Path(tmp) / 'soak.db'}", "sqlite", Path(tmp), helpdesk, seconds)


def run(args, db_url: str, backend: str, tmp: Path, helpdesk, seconds: float) -> int:
    serve = Serve(db_url, tmp / "serve.log", adapters=("tests.standin:make_adapter",),
                  env={"TAGGER_STANDIN_URL": helpdesk.url})
    exit_status = None
    try:
        rss_start = rss_mib(serve.pid)
        print(f"tagger serve pid {serve.pid} on {backend}, healthy; RSS {rss_start:.1f} MiB", flush=True)
        out_path = tmp / "sent.json"
        sender = mp.get_context("spawn").Process(
            target=send, args=(serve.url, args.rate, seconds, args.dup_share, args.followup_share, args.seed,
                               str(out_path)))
        started = time.time()
        sender.start()
        timeline = []
        next_report = started + 60
        max_depth = 0
        while sender.is_alive() and time.time() < started + seconds + 120:
            time.sleep(1.0)
            try:
                depth = serve.health().get("queue_depth") or 0
            except (httpx.HTTPError, ValueError):
                depth = -1                                        # unanswered health check: shown as -1

            max_depth = max(max_depth, depth)
            if time.time() >= next_report:
                next_report += 60
                rss = rss_mib(serve.pid)
                with helpdesk.lock:
                    writes, attempts = len(helpdesk.writes), len(helpdesk.attempts)
                timeline.append({"minute": round((time.time() - started) / 60), "rss_mib": rss,
                                 "queue_depth": depth, "writes": writes, "attempts": attempts})
                print(f"  t={timeline[-1]['minute']:>3} min  RSS {rss:7.1f} MiB  queue {depth:>4}  "
                      f"writes {writes:>6}  attempts {attempts:>6}", flush=True)
        sender.join(30)
        if sender.is_alive():
            sender.terminate()
            raise SystemExit("the sender did not finish in time")
        stream_s = time.time() - started
        deliveries = json.loads(out_path.read_text())
        drain_started = time.time()
        while time.time() < drain_started + args.drain_timeout:
            try:
                if serve.health().get("queue_depth") == 0:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        drain_s = time.time() - drain_started
        time.sleep(1.0)                                           # room for a (wrong) second write
        metrics = serve.metrics()
        rss_end = rss_mib(serve.pid)
    finally:
        exit_status = serve.stop()
    figures, problems = audit(db_url, deliveries, helpdesk, metrics)
    helpdesk.down()
    if exit_status not in (0, -15):   # uvicorn shuts down gracefully, then re-raises SIGTERM (-15)
        problems.append(f"tagger serve exited with {exit_status} on SIGTERM")
    lat = latencies(deliveries, helpdesk)
    answers = [d["seconds"] for d in deliveries if isinstance(d["status"], int)]
    kinds = collections.Counter(d["kind"] for d in deliveries)
    statuses = collections.Counter(f"{d['status']} {d['answer']}" for d in deliveries)
    errors_in_log = sum(1 for line in serve.log_tail(10**8).splitlines() if " ERROR " in line)

    print(f"\nevents sent {len(deliveries)} in {stream_s:.0f} s ({len(deliveries) / stream_s:.1f}/s): "
          f"{dict(kinds)}")
    print(f"answers: {dict(statuses)}")
    print(f"classified {figures['classifications']:.0f} (accepted {figures['accepted']}), messages stored "
          f"{figures['messages']}, tickets {figures['tickets']}")
    print(f"tag writes {figures['writes']} successful of {figures['write_attempts']} attempts; failures injected "
          f"{figures['failures_injected']}; retries {figures['retries']:.0f}; superseded before writing "
          f"{figures['superseded']}; outbox {figures['outbox']}")
    print(f"webhook -> tag (tickets classified once, n={len(lat)}): p50 {ms(percentile(lat, 50))}  "
          f"p99 {ms(percentile(lat, 99))}  max {ms(max(lat) if lat else None)}")
    print(f"webhook answer: p50 {ms(percentile(answers, 50))}  p99 {ms(percentile(answers, 99))}  "
          f"max {ms(max(answers) if answers else None)}")
    print(f"queue depth max {max_depth}; drained {drain_s:.1f} s after the stream ended")
    print(f"RSS of tagger serve: start {rss_start:.1f} MiB, end {rss_end:.1f} MiB "
          f"({rss_end - rss_start:+.1f} MiB); per minute: {[round(t['rss_mib'], 1) for t in timeline]}")
    print(f"ERROR lines in the service log: {errors_in_log}; at the end: {load_average()}")
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
    else:
        print("\nOK: nothing lost, nothing written twice, duplicates not classified again, no dead letters")
    if args.json_out:
        result = {**figures, "backend": backend, "minutes": args.minutes, "rate": args.rate,
                  "kinds": dict(kinds), "answers": dict(statuses), "stream_s": stream_s, "drain_s": drain_s,
                  "webhook_to_tag_s": {"p50": percentile(lat, 50), "p99": percentile(lat, 99)},
                  "answer_s": {"p50": percentile(answers, 50), "p99": percentile(answers, 99)},
                  "rss_mib": {"start": rss_start, "end": rss_end, "timeline": timeline},
                  "max_queue_depth": max_depth, "problems": problems, "machine": machine()}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
