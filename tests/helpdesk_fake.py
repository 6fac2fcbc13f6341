"""A real HTTP server on 127.0.0.1 standing in for a helpdesk API in the adapter tests.

It records every request (method, path, query, headers, JSON body) and answers from a small route table:
each route is a list of scripted responses served in order (the last one repeats), so a test can say
"the first PUT gets 429 with Retry-After: 7". Unrouted requests get 404. Nothing but 127.0.0.1 is contacted:
the tests' httpx clients are built with `trust_env=False`, so no proxy variable can redirect them.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]          # lower-case names
    body: bytes
    json: Any = None


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None


class FakeHelpdesk:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], list[Reply]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                rec = Recorded(self.command, parts.path, dict(parse_qsl(parts.query)),
                               {k.lower(): v for k, v in self.headers.items()}, body, parsed)
                reply = fake._next(self.command, parts.path)
                with fake._lock:
                    fake.requests.append(rec)
                payload = (reply.text.encode() if reply.text is not None else
                           b"" if reply.json is None else json.dumps(reply.json).encode())
                self.send_response(reply.status)
                if reply.text is None and reply.json is not None:
                    self.send_header("Content-Type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, *args: Any) -> None:   # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # -- scripting ------------------------------------------------------------------------------------
    def route(self, method: str, path: str, *replies: Reply, **one: Any) -> FakeHelpdesk:
        """Script the answers to `method path` (served in order, the last repeats)."""
        self._routes[(method.upper(), path)] = list(replies) or [Reply(**one)]
        return self

    def _next(self, method: str, path: str) -> Reply:
        with self._lock:
            queue = self._routes.get((method, path))
            if not queue:
                return Reply(404, {"error": f"no route {method} {path}"})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=5.0, trust_env=False)

    def __enter__(self) -> FakeHelpdesk:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- assertions -----------------------------------------------------------------------------------
    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]
