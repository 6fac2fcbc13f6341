"""Test helpers for the service side: a helpdesk stand-in (a real HTTP server on 127.0.0.1 that records
tag writes and can be told to fail), the `standin` adapter that talks to it, a live uvicorn server,
and the model the tests classify with.

The `standin` webhook payload:

    {"event_id": "e1", "type": "message.created" | "ticket.updated" | "ping",
     "ticket": {"id": "42", "text": "...", "subject": "...", "channel": "chat", "tags": ["vip"], "url": "..."}}

`ping` is a known event with nothing to classify (ignored); any other type is unknown (422).
"""
from __future__ import annotations

import collections
import json
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import uvicorn

from tagger.config import PACKAGE_ROOT
from tagger.errors import WebhookError
from tagger.helpdesks.contract import Message, raise_for_response
from tagger.helpdesks.payload import require
from tagger.helpdesks.signing import constant_time_equal, hmac_hex
from tests.helpdesk_fake import FakeHelpdesk, Recorded, Reply

SHIPPED_MODELS = PACKAGE_ROOT / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def local_client(timeout: float = 10.0, **kw) -> httpx.Client:
    """An httpx client that ignores proxy variables: the tests only ever talk to 127.0.0.1."""
    return httpx.Client(timeout=timeout, trust_env=False, **kw)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


# -- the helpdesk stand-in -----------------------------------------------------------------------------------
class StandinHelpdesk(FakeHelpdesk):
    """The helpdesk double of the service tests, as a stateful profile of `FakeHelpdesk` (one HTTP double):
    POST /tickets/{id}/tags {"add": [...], "remove": [...]} applies the change and answers 200.

    `fail_next(n, status=500, retry_after=None)` answers the next n writes with an error,
    `hang_next(n, seconds)` answers them late (with 504, after the client gave up, without applying),
    `slow_next(n, seconds)` applies them normally but only after a delay,
    `down()`/`up()` close and reopen the port (connection refused in between).

    `fail_rate` fails that share of the writes that have no scripted fault, at random (seeded by `seed`),
    answering with a (status, Retry-After or None) drawn from `fail_with`: a flaky helpdesk for load and
    soak runs. A write may also be sent to `/<via>/tickets/{id}/tags` (a base URL with a path, one per
    replica or worker): `via` is recorded, so a test can tell who wrote.
    """

    protocol_version = "HTTP/1.1"

    def __init__(self, port: int | None = None, *, start: bool = True, fail_rate: float = 0.0,
                 fail_with: Sequence[tuple[int, str | None]] = ((500, None),), seed: int | None = None):
        super().__init__(port)
        self.fail_rate, self.fail_with = fail_rate, tuple(fail_with)
        self._rng = random.Random(seed)
        self.lock = threading.Lock()
        self.tags: dict[str, set[str]] = collections.defaultdict(set)
        self.writes: list[dict[str, Any]] = []        # applied writes, in order
        self.attempts: list[dict[str, Any]] = []      # every request, with what we answered
        self.faults: collections.deque = collections.deque()
        self.handle("POST", r"/(?:(?P<via>[^/]+)/)?tickets/(?P<ticket>[^/]+)/tags", self._write)
        self.handle("GET", r"/(?:(?P<via>[^/]+)/)?tickets/(?P<ticket>[^/]+)/tags", self._read)
        if start:
            self.up()

    # control
    def fail_next(self, n: int = 1, status: int = 500, retry_after: str | None = None) -> None:
        with self.lock:
            self.faults.extend([("status", status, retry_after)] * n)

    def hang_next(self, n: int = 1, seconds: float = 2.0) -> None:
        with self.lock:
            self.faults.extend([("hang", seconds, None)] * n)

    def slow_next(self, n: int = 1, seconds: float = 0.2) -> None:
        """Answer the next n writes normally, but only after `seconds`."""
        with self.lock:
            self.faults.extend([("slow", seconds, None)] * n)

    # queries
    def writes_for(self, ticket_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [w for w in self.writes if w["ticket_id"] == ticket_id]

    def write_counts(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(w["ticket_id"] for w in self.writes)

    def _read(self, _request: Recorded, match: re.Match) -> Reply:
        with self.lock:
            return Reply(200, {"ticket_id": match["ticket"], "tags": sorted(self.tags[match["ticket"]])})

    def _write(self, request: Recorded, match: re.Match) -> Reply:
        ticket_id, via = match["ticket"], match["via"]
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
            if fault is None and self.fail_rate and self._rng.random() < self.fail_rate:
                fault = ("status", *self._rng.choice(self.fail_with))
            self.attempts.append({"ticket_id": ticket_id, "at": time.time(), "fault": fault, "via": via})
        if fault and fault[0] == "hang":
            time.sleep(fault[1])
            return Reply(504, {"error": "too late"})
        if fault and fault[0] == "slow":
            time.sleep(fault[1])
        if fault and fault[0] == "status":
            return Reply(fault[1], {"error": "scripted failure"},
                         {"Retry-After": fault[2]} if fault[2] is not None else {})
        try:
            add, remove = list(request.json["add"]), list(request.json["remove"])
        except (KeyError, TypeError):
            return Reply(400, {"error": "bad body"})
        with self.lock:
            self.tags[ticket_id] -= set(remove)
            self.tags[ticket_id] |= set(add)
            self.writes.append({"ticket_id": ticket_id, "add": add, "remove": remove, "at": time.time(),
                                "via": via})
            tags = sorted(self.tags[ticket_id])
        return Reply(200, {"ticket_id": ticket_id, "tags": tags})


# -- the adapter ---------------------------------------------------------------------------------------------
class StandinAdapter:
    """A minimal `tagger.helpdesks.contract.Adapter` for the stand-in (HMAC-SHA256 hex in X-Standin-Signature)."""

    name: ClassVar[str] = "standin"
    EVENTS: ClassVar[tuple[str, ...]] = ("message.created", "ticket.updated")

    def __init__(self, base_url: str, secret: str | None = None):
        self.base_url, self.secret = base_url.rstrip("/"), secret

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        if not self.secret:
            return
        signature = headers.get("x-standin-signature", "")
        if not signature or not constant_time_equal(signature, hmac_hex(self.secret, body)):
            raise WebhookError(401, "signature missing or wrong (X-Standin-Signature)")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        kind = require(payload, "type")
        if kind == "ping":
            return None
        if kind not in self.EVENTS:
            raise WebhookError(422, f"unknown event type {kind!r}")
        ticket = require(payload, "ticket")
        text = require(payload, "ticket", "text")
        if not isinstance(text, str):
            raise WebhookError(422, "field ticket.text must be a string")
        tags = ticket.get("tags") or []
        return Message(helpdesk=self.name, ticket_id=str(require(payload, "ticket", "id")), text=text,
                       event_id=str(require(payload, "event_id")), channel=str(ticket.get("channel") or "ticket"),
                       subject=str(ticket.get("subject") or ""), event_type=kind,
                       tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (), url=ticket.get("url"))

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        response = client.post(f"{self.base_url}/tickets/{ticket_id}/tags", json={"add": add, "remove": remove})
        raise_for_response(response, f"standin ticket {ticket_id}")

    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        response = client.get(f"{self.base_url}/tickets/{ticket_id}/tags")
        raise_for_response(response, f"standin ticket {ticket_id}")
        return tuple(response.json()["tags"])


def make_adapter(env: Mapping[str, str]) -> StandinAdapter:
    """Factory for `--adapter standin:make_adapter` (TAGGER_STANDIN_URL, TAGGER_STANDIN_SECRET)."""
    return StandinAdapter(env["TAGGER_STANDIN_URL"], env.get("TAGGER_STANDIN_SECRET") or None)


def event(ticket_id: str, text: str, *, event_id: str | None = None, kind: str = "message.created",
          tags: list[str] | None = None, channel: str = "ticket", subject: str = "") -> dict[str, Any]:
    return {"event_id": event_id or uuid.uuid4().hex, "type": kind,
            "ticket": {"id": ticket_id, "text": text, "subject": subject, "channel": channel, "tags": tags or [],
                       "url": f"https://helpdesk.example/tickets/{ticket_id}"}}


# -- live server ---------------------------------------------------------------------------------------------
class LiveServer:
    """A real uvicorn server for an ASGI app, on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=15, what="uvicorn to start")
        sock = self.server.servers[0].sockets[0]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.client = local_client(base_url=self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def service(self):
        return self.app.state.service

    def post(self, payload: Any, *, helpdesk: str = "standin", **kwargs) -> httpx.Response:
        if isinstance(payload, (bytes, str)):
            kwargs.setdefault("headers", {"Content-Type": "application/json"})
            return self.client.post(f"/webhooks/{helpdesk}", content=payload, **kwargs)
        return self.client.post(f"/webhooks/{helpdesk}", json=payload, **kwargs)


# -- the model -----------------------------------------------------------------------------------------------
def model_versions(root: Path, versions: int = 2) -> list[str]:
    """A registry in `root` with `versions` distinct versions (copies of the shipped active model, renamed);
    the first is active. For tests of activation and hot reload that must not touch models/."""
    import shutil

    from tagger.classifier.registry import META_FILE, Registry

    source = SHIPPED_MODELS / Registry(SHIPPED_MODELS).current()
    names = []
    for i in range(versions):
        name = f"v2000010{i + 1}-000000-copy{i + 1}"
        shutil.copytree(source, root / name)
        meta = json.loads((root / name / META_FILE).read_text(encoding="utf-8"))
        meta["version"] = name
        (root / name / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        names.append(name)
    Registry(root).activate(names[0])
    return names
