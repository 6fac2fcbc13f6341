"""`make demo`: the product working on sample traffic against a local helpdesk stand-in, in a minute.

Starts `tagger serve` (generic webhook adapter) on 127.0.0.1 with its own SQLite file under `.demo/`
(never your real store), a helpdesk stand-in on 127.0.0.1 that accepts the tag writes, and posts signed
webhooks carrying held-out corpus messages in all twelve core languages plus a few plain reviews and
openers. Then prints what a team lead sees (`tagger tickets`, `tagger report`) and keeps the service up
for the dashboard until Ctrl-C.

    python docs/demo.py [--messages 48] [--no-wait]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_examples import ROOT, TAGGER, Desk, free_port, run  # noqa: E402

EXTRA = [("Very bad Experience!", "social"), ("Fantastic service here.", "social"), ("hello??", "chat"),
         ("Super Hotel, sehr sauber, gerne wieder!", "social"), ("物流很快，包装也很好，非常满意", "social")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=48)
    parser.add_argument("--no-wait", action="store_true", help="Stop after printing (no dashboard).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tagger.data import load_corpus

    heldout = [e for e in load_corpus(ROOT / "training_data")[1] if e.stage is not None]
    by_lang: dict[str, list] = {}
    for e in heldout[::5]:
        by_lang.setdefault(e.lang, []).append(e)
    sample = [(e.text, e.channel) for group in zip(*by_lang.values(), strict=False) for e in group]
    sample = sample[:args.messages] + EXTRA
    folder = ROOT / ".demo"
    folder.mkdir(exist_ok=True)
    db_file = folder / "demo.db"
    for leftover in folder.glob("demo.db*"):
        leftover.unlink()
    db = f"sqlite:///{db_file}"
    desk_port, port = free_port(), free_port()
    desk = ThreadingHTTPServer(("127.0.0.1", desk_port), Desk)
    threading.Thread(target=desk.serve_forever, daemon=True).start()
    env = {"TAGGER_DB_URL": db, "TAGGER_GENERIC_SECRET": "demo-secret",
           "TAGGER_GENERIC_WRITEBACK_URL": f"http://127.0.0.1:{desk_port}/tickets/{{ticket_id}}/tags",
           "TAGGER_GENERIC_URL": "https://desk.example.com",
           "TAGGER_GENERIC_FIELDS": json.dumps({"ticket_id": "ticket.id", "text": "comment.body",
                                                "channel": "ticket.channel", "event_id": "delivery_id",
                                                "url": "ticket.url"})}
    print(f"demo store: {db_file} (separate from your real data); helpdesk stand-in on 127.0.0.1:{desk_port}")
    server = subprocess.Popen([*TAGGER, "serve", "--port", str(port)], cwd=ROOT, env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        started = time.perf_counter()
        for i, (text, channel) in enumerate(sample, 1):
            body = json.dumps({"delivery_id": f"demo-{i}", "ticket": {"id": str(1000 + i), "channel": channel,
                               "url": f"https://desk.example.com/tickets/{1000 + i}"},
                               "comment": {"body": text}}).encode()
            ts = str(int(time.time()))
            sig = hmac.new(b"demo-secret", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            httpx.post(f"http://127.0.0.1:{port}/webhooks/generic", content=body, timeout=30,
                       headers={"Content-Type": "application/json", "X-Tagger-Timestamp": ts,
                                "X-Tagger-Signature": f"sha256={sig}"})
        for _ in range(300):
            if len(Desk.writes) >= len(sample):
                break
            time.sleep(0.1)
        print(f"{len(sample)} webhooks posted, {len(Desk.writes)} tag writes reached the helpdesk stand-in "
              f"in {time.perf_counter() - started:.1f}s\n")
        print("$ tagger tickets --limit 15")
        print(run("tickets", "--limit", "15", env=env))
        print("$ tagger report --period 1d")
        print(run("report", "--period", "1d", env=env))
        if args.no_wait:
            return
        print(f"dashboard: http://127.0.0.1:{port}/dashboard   (Ctrl-C stops the demo)")
        print(f"try: TAGGER_DB_URL={db} tagger tickets --sentiment negative")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        server.wait(10)
        desk.shutdown()


if __name__ == "__main__":
    main()
