"""kill -9 runs: `tagger serve` (webhooks and its worker) is killed with SIGKILL again and again while webhooks
arrive and a flaky helpdesk fails some of the tag writes; then every accepted webhook's tags must be on its
ticket. Prints accepted, written, lost and written-twice counts.

    .venv/bin/python benchmarks/kill9.py                    # 2,000 webhooks, 5 kills, SQLite
    .venv/bin/python benchmarks/kill9.py --webhooks 400 --kills 2
    .venv/bin/python benchmarks/kill9.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test

Each round starts `tagger serve`, sends its share of the webhooks (one new ticket each) from a thread pool
and kills the process with SIGKILL halfway through, while writes are in flight; a delivery that got no answer
is sent again in the next round, as a helpdesk retries a webhook that failed. After the last kill a final
`tagger serve` drains the outbox. Then, from the helpdesk stand-in's own record of the writes it applied:

- accepted: tickets whose webhook got a 202 (classified and queued);
- written: accepted tickets whose tags the helpdesk received;
- lost: accepted tickets that never got their tags (must be 0);
- written twice: extra applications of the same write (idempotent: the tags on the ticket are the same).

Only 127.0.0.1 is contacted. Exit status 1 when a tag is lost or a ticket's final tags are wrong.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from harness import Serve, corpus_messages, machine, pg_schema  # noqa: E402

from tests.standin import StandinHelpdesk  # noqa: E402

OWN_PREFIXES = ("mot_", "sentiment_")


def deliver(url: str, payloads: list[dict], kill_after: int, pid: int, workers: int = 8) -> tuple[set[str], list]:
    """Post `payloads`; SIGKILL `pid` once `kill_after` answers came back. (accepted ticket ids, unanswered)."""
    accepted: set[str] = set()
    unanswered: list[dict] = []
    lock = threading.Lock()
    answered = [0]
    local = threading.local()

    def post(payload: dict) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=10, trust_env=False)
        try:
            response = client.post("/webhooks/standin", json=payload)
            ok = response.status_code == 202 or (response.status_code == 200
                                                 and response.json().get("status") == "duplicate")
        except (httpx.HTTPError, ValueError):
            ok = False
        with lock:
            if ok:
                accepted.add(payload["ticket"]["id"])
            else:
                unanswered.append(payload)
            answered[0] += 1
            if answered[0] == kill_after:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, payloads))
    return accepted, unanswered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--fail-rate", type=float, default=0.1, help="share of tag writes the helpdesk fails")
    parser.add_argument("--db", help="PostgreSQL URL (a fresh schema is used); default: a SQLite file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    texts = corpus_messages()
    helpdesk = StandinHelpdesk(fail_rate=args.fail_rate, fail_with=((500, None), (429, "1")), seed=args.seed)
    run_id = uuid.uuid4().hex[:6]
    payloads = [{"event_id": f"{run_id}-{i}", "type": "message.created",
                 "ticket": {"id": f"K{run_id}-{i}", "text": texts[(i * 7919) % len(texts)]["text"],
                            "channel": texts[(i * 7919) % len(texts)]["channel"], "tags": [],
                            "url": f"https://helpdesk.example/tickets/{i}"}} for i in range(args.webhooks)]
    print(f"kill -9 run: {args.webhooks} webhooks, {args.kills} kills, helpdesk failing {args.fail_rate:.0%} "
          f"of writes; {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        db_url = stack.enter_context(pg_schema(args.db)) if args.db else f"sqlite:///{Path(tmp) / 'kill9.db'}"
        env = {"TAGGER_STANDIN_URL": helpdesk.url, "TAGGER_OUTBOX_BASE_DELAY_S": "0.05",
               "TAGGER_OUTBOX_MAX_DELAY_S": "0.5", "TAGGER_WORKER_POLL_S": "0.02", "TAGGER_HTTP_TIMEOUT_S": "2"}
        accepted: set[str] = set()
        pending = list(payloads)
        per_round = -(-len(pending) // args.kills)
        started = time.time()
        for round_no in range(args.kills):
            batch, pending = pending[:per_round], pending[per_round:]
            serve = Serve(db_url, Path(tmp) / f"serve-{round_no}.log", env=env, adapters=("tests.standin:make_adapter",))
            got, unanswered = deliver(serve.url, batch, max(1, len(batch) // 2), serve.pid)
            serve.proc.wait(10)
            serve.stop()
            accepted |= got
            pending = unanswered + pending
            with helpdesk.lock:
                writes = len(helpdesk.writes)
            print(f"  round {round_no + 1}: sent {len(batch)}, accepted {len(got)}, unanswered {len(unanswered)} "
                  f"(re-sent next round); killed with SIGKILL; helpdesk has {writes} writes", flush=True)
        final = Serve(db_url, Path(tmp) / "serve-final.log", env=env, adapters=("tests.standin:make_adapter",))
        try:
            got, unanswered = deliver(final.url, pending, -1, final.pid)
            accepted |= got
            deadline = time.time() + 120
            while time.time() < deadline and (final.health().get("queue_depth") or 0) > 0:
                time.sleep(0.2)
            time.sleep(1.0)  # room for a (wrong) late write
            depth = final.health().get("queue_depth")
        finally:
            final.stop()
        helpdesk.down()

    with helpdesk.lock:
        per_ticket = collections.Counter(w["ticket_id"] for w in helpdesk.writes)
        tags = {t: set(v) for t, v in helpdesk.tags.items()}
    written = {t for t in accepted if per_ticket[t] > 0}
    lost = accepted - written
    twice = sum(n - 1 for t, n in per_ticket.items() if n > 1)
    wrong = [t for t in written if not any(tag.startswith(OWN_PREFIXES) for tag in tags.get(t, ()))]
    print(f"\naccepted {len(accepted)}  written {len(written)}  lost {len(lost)}  written twice {twice} "
          f"({twice / max(1, args.kills):.1f} per kill; {sum(1 for n in per_ticket.values() if n > 1)} tickets)  "
          f"unanswered at the end {len(unanswered)}  queue left {depth}  in {time.time() - started:.0f} s")
    if lost or wrong or len(accepted) != args.webhooks:
        print(f"FAILED: lost {sorted(lost)[:10]}, wrong tags on {sorted(wrong)[:10]}, "
              f"{args.webhooks - len(accepted)} never accepted")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
