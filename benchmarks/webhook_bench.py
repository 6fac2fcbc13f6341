"""Webhook-to-tag benchmark: how long from a helpdesk's webhook to the tags landing on its ticket, and how
many events per second the service sustains.

It starts `tagger serve` (a child process, SQLite in a temporary folder, the shipped model) and a helpdesk
stand-in (an HTTP server in this process that timestamps every tag write), then a *second process* sends
N webhooks with C concurrent connections. Only 127.0.0.1 is ever contacted (proxy variables are ignored).

    .venv/bin/python benchmarks/webhook_bench.py                 # 500 webhooks, 8 connections, flat out
    .venv/bin/python benchmarks/webhook_bench.py --rate 20       # latency at a steady 20 webhooks/s
    .venv/bin/python benchmarks/webhook_bench.py -n 2000 -c 16 --json benchmarks/out/webhook.json

Latency is measured from the moment the sender starts a webhook request to the moment the stand-in
receives the tag write for that ticket (one clock: both timestamps are taken on this machine).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
MAX_N = 100_000
TEXTS = [
    "My order #{n} hasn't arrived after two weeks, where is my parcel?",
    "Coupon code doesn't work at checkout, order {n}",
    "5 stars, best support ever, thanks for ticket {n}!",
    "Does the Pro plan include SSO? Asking for team {n}",
    "Mans pasūtījums {n} vēl nav atnācis, kur tas ir?",
    "我的订单{n}还没到，怎么回事？",
    "Jeg har fået jeres nyhedsbrev {n} igen, afmeld mig venligst",
    "Ik wil mijn bestelling {n} retourneren, hoe werkt dat?",
]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


# -- the adapter the service uses for the stand-in (loaded with --adapter webhook_bench:make_adapter) --------
class BenchAdapter:
    """Payload: {"event_id", "ticket_id", "text", "channel"}; tags go to POST {url}/tickets/{id}/tags."""

    name: ClassVar[str] = "bench"

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, query: Mapping[str, str] | None = None):
        return None

    def parse(self, payload: Any, headers: Mapping[str, str]):
        from tagger.helpdesks.contract import Message
        from tagger.helpdesks.payload import require

        return Message(helpdesk=self.name, ticket_id=str(require(payload, "ticket_id")),
                       text=str(require(payload, "text")), event_id=str(require(payload, "event_id")),
                       channel=str(payload.get("channel") or "ticket"))

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        from tagger.helpdesks.contract import raise_for_response

        response = client.post(f"{self.base_url}/tickets/{ticket_id}/tags", json={"add": add, "remove": remove})
        raise_for_response(response, f"bench ticket {ticket_id}")


def make_adapter(env: Mapping[str, str]) -> BenchAdapter:
    return BenchAdapter(env["TAGGER_BENCH_URL"])


# -- the helpdesk stand-in -----------------------------------------------------------------------------------
class Standin:
    """Timestamps the first tag write per ticket. With `slow_every=k`, every k-th write is answered only
    after `slow_s` seconds (a helpdesk API with a latency tail)."""

    def __init__(self, slow_every: int = 0, slow_s: float = 0.0):
        self.arrivals: dict[str, float] = {}
        self.writes = 0
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                now = time.time()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ticket = self.path.strip("/").split("/")[1]
                with standin.lock:
                    standin.arrivals.setdefault(ticket, now)
                    standin.writes += 1
                    slow = slow_every and standin.writes % slow_every == 0
                if slow:
                    time.sleep(slow_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# -- the sender (a second process) ---------------------------------------------------------------------------
def send(url: str, n: int, concurrency: int, deadline: float, out_path: str, rate: float | None = None) -> None:
    """POST n webhooks with `concurrency` connections, as fast as they are answered or (with `rate`) the
    i-th at i/rate seconds; write [(ticket, t_sent, seconds, status), ...]."""
    local = threading.local()
    start = time.time() + 0.2

    def one(i: int):
        if rate:
            time.sleep(max(0.0, start + i / rate - time.time()))
        if time.time() > deadline:
            return (f"t{i}", None, None, "skipped")
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30, trust_env=False)
        payload = {"event_id": f"e{i}", "ticket_id": f"t{i}", "text": TEXTS[i % len(TEXTS)].format(n=1000 + i),
                   "channel": ("ticket", "chat", "social")[i % 3]}
        started = time.time()
        try:
            status = client.post("/webhooks/bench", json=payload).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        return (f"t{i}", started, time.time() - started, status)

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(n)))
    Path(out_path).write_text(json.dumps(results))


# -- orchestration -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tagger serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"tagger serve did not become healthy within {timeout}s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500, help=f"webhooks to send (at most {MAX_N}; default 500)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--rate", type=float, help="send at this many webhooks per second (default: as fast as "
                                                   "the service answers, which measures saturation)")
    parser.add_argument("--time-limit", type=float, default=180.0, help="give up after this many seconds")
    parser.add_argument("--models", default=str(ROOT / "models"), help="model folder (default: the shipped one)")
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary folder)")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    n = max(1, min(args.n, MAX_N))

    standin = Standin()
    port = free_port()
    service_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env.update({"TAGGER_BENCH_URL": standin.url, "NO_PROXY": "127.0.0.1,localhost",
                    "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])})
        log = open(Path(tmp) / "serve.log", "wb")  # closed in the finally below
        proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--host", "127.0.0.1",
                                 "--port", str(port), "--db", db, "--models", args.models,
                                 "--adapter", "webhook_bench:make_adapter", "--log-level", "warning"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(service_url, proc, 60)
            deadline = time.time() + args.time_limit
            out_path = str(Path(tmp) / "sent.json")
            sender = mp.get_context("spawn").Process(target=send, args=(service_url, n, args.concurrency,
                                                                        deadline, out_path, args.rate))
            sender.start()
            sender.join(max(1.0, deadline - time.time()) + 30)
            if sender.is_alive():
                sender.terminate()
                raise SystemExit("the sender did not finish in time")
            sent = json.loads(Path(out_path).read_text())
            accepted = {t: (t0, secs) for t, t0, secs, status in sent if status == 202}
            while time.time() < deadline and not set(accepted) <= set(standin.arrivals):
                time.sleep(0.05)
            metrics = httpx.get(f"{service_url}/metrics", timeout=5, trust_env=False).text
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    standin.server.shutdown()

    arrived = {t: standin.arrivals[t] for t in accepted if t in standin.arrivals}
    latencies = [arrived[t] - accepted[t][0] for t in arrived]
    answers = [secs for _t0, secs in accepted.values()]
    first_send = min(t0 for t0, _ in accepted.values()) if accepted else 0.0
    last_tag = max(arrived.values()) if arrived else first_send
    statuses: dict[str, int] = {}
    for _t, _t0, _secs, status in sent:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    classify = [line for line in metrics.splitlines() if line.startswith("tagger_classification_seconds_")]
    result = {
        "webhooks": n, "concurrency": args.concurrency, "rate": args.rate, "answers": statuses, "tagged": len(arrived),
        "tag_writes": standin.writes,
        "webhook_to_tag_s": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                             "max": max(latencies)} if latencies else None,
        "webhook_answer_s": {"p50": percentile(answers, 50), "p99": percentile(answers, 99)} if answers else None,
        "events_per_s": len(arrived) / (last_tag - first_send) if arrived and last_tag > first_send else None,
        "mean_classification_s": _mean_from_metrics(classify),
        "cpu_count": os.cpu_count(),
    }
    pace = f"{args.rate:g}/s" if args.rate else "as fast as answered"
    print(f"{n} webhooks ({pace}), {args.concurrency} connections, {os.cpu_count()} CPUs: answers {statuses}, "
          f"{len(arrived)} tagged, {standin.writes} tag writes")
    if latencies:
        lat = result["webhook_to_tag_s"]
        print(f"webhook -> tag latency   p50 {lat['p50'] * 1000:7.1f} ms   p99 {lat['p99'] * 1000:7.1f} ms   "
              f"max {lat['max'] * 1000:7.1f} ms")
        ans = result["webhook_answer_s"]
        print(f"webhook answer (202)     p50 {ans['p50'] * 1000:7.1f} ms   p99 {ans['p99'] * 1000:7.1f} ms")
        print(f"sustained                {result['events_per_s']:.1f} events/s "
              f"(first webhook sent -> last tag written)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return result


def _mean_from_metrics(lines: list[str]) -> float | None:
    values = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in lines if " " in line}
    total, count = values.get("tagger_classification_seconds_sum"), values.get("tagger_classification_seconds_count")
    return total / count if total is not None and count else None


if __name__ == "__main__":
    main()
