"""Produce the example outputs shown in the README from real runs: a `tagger serve` with the generic
adapter and a helpdesk stand-in on 127.0.0.1, real webhooks carrying held-out corpus messages, then
the CLI commands against the store it filled. Prints Markdown-ready blocks.

    python docs/make_examples.py
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TAGGER = [sys.executable, "-m", "tagger.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Desk(BaseHTTPRequestHandler):
    writes: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Desk.writes.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def run(*args: str, env: dict | None = None, stdin: str | None = None) -> str:
    proc = subprocess.run([*TAGGER, *args], capture_output=True, text=True, cwd=ROOT, input=stdin,
                          env={**os.environ, **(env or {})})
    return proc.stdout


class Stack:
    """`tagger serve` (generic adapter, its own SQLite store `db`) and the helpdesk stand-in, on 127.0.0.1."""

    def __init__(self, db: str):
        desk_port, self.port = free_port(), free_port()
        self.desk = ThreadingHTTPServer(("127.0.0.1", desk_port), Desk)
        threading.Thread(target=self.desk.serve_forever, daemon=True).start()
        self.desk_port = desk_port
        self.env = {"TAGGER_DB_URL": db, "TAGGER_GENERIC_SECRET": "demo-secret",
                    "TAGGER_GENERIC_WRITEBACK_URL": f"http://127.0.0.1:{desk_port}/tickets/{{ticket_id}}/tags",
                    "TAGGER_GENERIC_URL": "https://desk.example.com",
                    "TAGGER_GENERIC_FIELDS": json.dumps({"ticket_id": "ticket.id", "text": "comment.body",
                                                         "channel": "ticket.channel", "event_id": "delivery_id",
                                                         "url": "ticket.url"})}
        self.server = subprocess.Popen([*TAGGER, "serve", "--port", str(self.port)], cwd=ROOT,
                                       env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

    def post(self, messages: list[tuple[str, str]], prefix: str = "d") -> int:
        """Post one signed webhook per (text, channel); wait for the tag writes; return how many arrived."""
        for i, (text, channel) in enumerate(messages, 1):
            body = json.dumps({"delivery_id": f"{prefix}{i}", "ticket": {"id": str(1000 + i), "channel": channel,
                               "url": f"https://desk.example.com/tickets/{1000 + i}"},
                               "comment": {"body": text}}).encode()
            ts = str(int(time.time()))
            sig = hmac.new(b"demo-secret", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            httpx.post(f"http://127.0.0.1:{self.port}/webhooks/generic", content=body, timeout=30,
                       headers={"Content-Type": "application/json", "X-Tagger-Timestamp": ts,
                                "X-Tagger-Signature": f"sha256={sig}"})
        for _ in range(300):
            if len(Desk.writes) >= len(messages):
                break
            time.sleep(0.1)
        return len(Desk.writes)

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(10)
        self.desk.shutdown()


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tagger.classifier.data import load_corpus

    heldout = [e for e in load_corpus(ROOT / "training_data")[1] if e.stage is not None]  # the corpus
    tmp = Path(tempfile.mkdtemp())
    stack = Stack(f"sqlite:///{tmp / 'tagger.db'}")
    env = stack.env
    try:
        sample = heldout[::7][:60]
        stack.post([(e.text, e.channel) for e in sample])
        print(f"<!-- {len(sample)} webhooks, {len(Desk.writes)} tag writes -->")
        print("### classify --explain\n```")
        print(run("classify", "--explain", stdin=json.dumps({"id": 7, "text": "Il codice sconto non funziona al "
                                                                        "checkout", "channel": "chat"}) + "\n"))
        print("```\n### classify (Latvian)\n```")
        print(run("classify", stdin=json.dumps({"text": "Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!"},
                                                 ensure_ascii=False) + "\n"))
        print("```\n### tickets\n```")
        print(run("tickets", "--sentiment", "negative", "--since", "7d", "--limit", "8", env=env))
        print("```\n### report\n```")
        print(run("report", "--period", "7d", env=env))
        print("```\n### models list\n```")
        print(run("models", "list"))
        print("```")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
