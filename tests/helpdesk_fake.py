"""The one helpdesk test double: a real HTTP server on 127.0.0.1 standing in for a helpdesk API.

It records every request (method, path, query, headers, JSON body) and answers from a route table:
- `route(method, path, *replies)`: scripted responses served in order (the last one repeats), so a test can say
  "the first PUT gets 429 with Retry-After: 7" (the adapter contract tests);
- `handle(method, pattern, fn)`: a handler `fn(request, match) -> Reply` for paths matching a regular expression,
  for a stateful stand-in (tests/standin.py's `StandinHelpdesk`, which applies tag writes and injects faults).
Unrouted requests get 404. `up()` / `down()` open and close the port (the same port again after `down()`), so a
test can take the helpdesk down and bring it back. Nothing but 127.0.0.1 is contacted: the tests' httpx clients
are built with `trust_env=False`, so no proxy variable can redirect them.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
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


Handler = Callable[[Recorded, re.Match], Reply]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHelpdesk:
    #: HTTP/1.0 closes every connection after its answer (each adapter call stands alone); the stateful
    #: stand-in keeps connections alive, as the worker's pooled client expects of a real helpdesk
    protocol_version = "HTTP/1.0"

    def __init__(self, port: int | None = None, *, start: bool = False) -> None:
        self.port = port or _free_port()
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], list[Reply]] = {}
        self._handlers: list[tuple[str, re.Pattern, Handler]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        if start:
            self.up()

    # -- scripting ------------------------------------------------------------------------------------
    def route(self, method: str, path: str, *replies: Reply, **one: Any) -> FakeHelpdesk:
        """Script the answers to `method path` (served in order, the last repeats)."""
        self._routes[(method.upper(), path)] = list(replies) or [Reply(**one)]
        return self

    def handle(self, method: str, pattern: str, fn: Handler) -> FakeHelpdesk:
        """Answer `method` requests whose path fully matches `pattern` with `fn(request, match)`."""
        self._handlers.append((method.upper(), re.compile(pattern), fn))
        return self

    def _answer(self, rec: Recorded) -> Reply:
        with self._lock:
            queue = self._routes.get((rec.method, rec.path))
            if queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
        for method, pattern, fn in self._handlers:
            match = pattern.fullmatch(rec.path)
            if method == rec.method and match:
                return fn(rec, match)
        return Reply(404, {"error": f"no route {rec.method} {rec.path}"})

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        parts = urlsplit(req.path)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Recorded(req.command, parts.path, dict(parse_qsl(parts.query)),
                       {k.lower(): v for k, v in req.headers.items()}, body, parsed)
        with self._lock:
            self.requests.append(rec)
        reply = self._answer(rec)
        payload = (reply.text.encode() if reply.text is not None else
                   b"" if reply.json is None else json.dumps(reply.json).encode())
        try:
            req.send_response(reply.status)
            if reply.text is None and reply.json is not None:
                req.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                req.send_header(name, value)
            req.send_header("Content-Length", str(len(payload)))
            req.end_headers()
            req.wfile.write(payload)
        except OSError:  # the client gave up (timeout) or the double went down
            pass

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=5.0, trust_env=False)

    def up(self) -> None:
        """Open the port (again) and serve."""
        if self._server is not None:
            return
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = fake.protocol_version

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

            def log_message(self, *args: Any) -> None:   # keep pytest output clean
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True

            def handle_error(self, request, client_address) -> None:  # a client killed mid-request (kill -9 runs)
                import sys

                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self.port), RequestHandler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def down(self) -> None:
        """Close the port: connections are refused until `up()`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> FakeHelpdesk:
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # -- assertions -----------------------------------------------------------------------------------
    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]
