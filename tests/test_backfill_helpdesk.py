"""`tagger backfill --helpdesk NAME`: a helpdesk's ticket history paged through its listing API, classified,
written to JSONL in order, resumable, and (with --write-back) queued for the worker without touching tickets
that already carry labels.

Each helpdesk is a real HTTP server on 127.0.0.1 that serves its documented listing contract:
- Zendesk, cursor-based Incremental Ticket Export:
  https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/
  (`/api/v2/incremental/tickets/cursor.json`, `start_time` then `cursor`, `after_cursor`, `end_of_stream`,
  10 requests a minute: 429 with Retry-After), then each ticket's comments with their authors side-loaded,
  https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/ (`GET
  /api/v2/tickets/{id}/comments?include=users`, `meta.has_more`; every end user's comment is classified);
- Freshdesk, List All Tickets: https://developers.freshdesk.com/api/#list_all_tickets (`updated_since`,
  `order_by`, `order_type`, `per_page` up to 100, `page` up to 300, `include=description`, `link: <...>;
  rel="next"`);
- Help Scout, List Conversations: https://developer.helpscout.com/mailbox-api/endpoints/conversations/list/
  (HAL: `_embedded.conversations`, `page.number`, `page.totalPages`, `embed=threads`, Bearer token).
The model is the real shipped one; labels are compared with what it predicts, never hard-coded.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tagger.cli import cli
from tagger.config import Settings
from tagger.errors import ConfigError, TaggerError
from tagger.helpdesks import FreshdeskAdapter, GenericAdapter, HelpScoutAdapter, ZendeskAdapter
from tagger.service.backfill import backfill_helpdesk
from tagger.service.store import Store, outbox
from tagger.service.worker import Worker

from .conftest import MODELS
from .helpdesk_fake import FakeHelpdesk, Recorded, Reply
from .standin import local_client

MODEL = str(MODELS / "current")

TEXTS = [  # customer messages in several languages (the corpus's style, not its lines)
    "Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!",
    "Do you ship the espresso grinder to Norway, and how long does it take?",
    "Jeg har lige modtaget sofaen, og et ben er knækket. Hvad gør jeg nu?",
    "这款耳机支持降噪吗？我在考虑买两副。",
    "Ho comprato la bici elettrica un anno fa e la uso ogni giorno: fantastica, la consiglio a tutti!",
    "Подскажите, чем отличается тариф «Стандарт» от «Премиум»?",
    "Die Rechnung stimmt nicht, mir wurden zwei Lizenzen berechnet statt einer.",
    "¿Tenéis tallas grandes de estas botas? Las vi en Instagram.",
]


class ApiStandin(FakeHelpdesk):
    """The helpdesk double (tests/helpdesk_fake.py) answering every request through one function:
    `route(method, path, query, headers, body)` -> (status, headers, json body); `gets(path)` lists the query
    of every GET of `path`."""

    def __init__(self, route):
        super().__init__()
        self._route = route
        for method in ("GET", "PUT", "DELETE", "POST"):
            self.handle(method, r"/.*", self._any)
        self.up()

    def _any(self, request: Recorded, _match) -> Reply:
        status, headers, payload = self._route(request.method, request.path, request.query,
                                               httpx.Headers(request.headers), request.json)
        return Reply(status, payload, dict(headers or {}))

    def gets(self, path: str) -> list[dict[str, str]]:
        return [r.query for r in self.requests if r.method == "GET" and r.path == path]

    def close(self) -> None:
        self.down()


@pytest.fixture
def serve():
    servers = []

    def start(route) -> ApiStandin:
        servers.append(ApiStandin(route))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _expected(tagger, subject: str, text: str, channel: str):
    return tagger.predict(f"{subject}\n{text}".strip() if subject else text, channel=channel)


# -- Zendesk ------------------------------------------------------------------------------------------------
def zendesk_tickets(n: int) -> list[dict[str, Any]]:
    tickets = []
    for i in range(1, n + 1):
        status = "closed" if i % 10 == 0 else "deleted" if i % 97 == 0 else "open"
        tickets.append({"id": i, "subject": f"Order {i}", "description": TEXTS[i % len(TEXTS)],
                        "via": {"channel": "chat" if i % 3 == 0 else "email"}, "status": status,
                        "tags": ["vip"] + (["mot_fmot", "sentiment_neutral"] if i % 7 == 0 else []),
                        "updated_at": f"2025-01-01T00:00:{i % 60:02d}Z",
                        "url": f"https://example.zendesk.com/api/v2/tickets/{i}.json"})
    return tickets


ZENDESK_AGENT_REPLY = "Thanks for writing, we are looking into it."


def zendesk_customer_text(i: int) -> str:
    """What the customer (end user) wrote on ticket i: every fifth ticket has a second customer comment."""
    first = TEXTS[i % len(TEXTS)]
    return f"{first}\n\n{TEXTS[(i + 3) % len(TEXTS)]}" if i % 5 == 0 else first


def zendesk_comments(i: int) -> dict[str, Any]:
    """List Comments of ticket i with `include=users`: the customer's comments and an agent's reply between."""
    customer, agent = {"id": 10_000 + i, "role": "end-user"}, {"id": 7, "role": "agent"}
    texts = zendesk_customer_text(i).split("\n\n")
    comments = [{"id": i * 10, "author_id": customer["id"], "plain_body": texts[0], "public": True},
                {"id": i * 10 + 1, "author_id": agent["id"], "plain_body": ZENDESK_AGENT_REPLY, "public": True}]
    comments += [{"id": i * 10 + 2, "author_id": customer["id"], "plain_body": t, "public": True} for t in texts[1:]]
    return {"comments": comments, "users": [customer, agent], "meta": {"has_more": False, "after_cursor": None}}


def zendesk_route(tickets, *, page_size=100, throttle_once=True, tags=None):
    """The export's first request has `start_time`, the rest `cursor`; the second request is throttled."""
    state = {"calls": 0}

    def route(method, path, query, headers, body):
        if method == "GET" and path.startswith("/api/v2/tickets/") and path.endswith("/comments"):
            assert query == {"include": "users", "page[size]": "100"}, query
            return 200, {}, zendesk_comments(int(path.split("/")[4]))
        if method == "PUT" and path.startswith("/api/v2/tickets/") and path.endswith("/tags"):
            ticket = path.split("/")[4]
            tags.setdefault(ticket, ["vip"])
            tags[ticket] = list(dict.fromkeys(tags[ticket] + body["tags"]))
            return 200, {}, {"tags": tags[ticket]}
        assert path == "/api/v2/incremental/tickets/cursor.json", path
        state["calls"] += 1
        if throttle_once and state["calls"] == 2:
            return 429, {"Retry-After": "7"}, {"error": "APIRateLimitExceeded"}
        start = int(query["cursor"]) if "cursor" in query else 0
        assert ("cursor" in query) != ("start_time" in query)
        page = tickets[start:start + page_size]
        end = start + page_size >= len(tickets)
        after = str(start + page_size)
        return 200, {}, {"tickets": page, "after_cursor": after, "end_of_stream": end,
                         "after_url": f"https://example.zendesk.com/api/v2/incremental/tickets/cursor.json?"
                                      f"cursor={after}", "before_cursor": None, "before_url": None}

    return route


def zendesk_adapter(url: str) -> ZendeskAdapter:
    return ZendeskAdapter(base_url=url, token="tok123", email="admin@example.com")


def test_zendesk_history_is_paged_by_cursor_and_classified_in_order(serve, tmp_path, shipped_model):
    tickets = zendesk_tickets(250)
    api = serve(zendesk_route(tickets))
    slept = []
    out = tmp_path / "zendesk.jsonl"
    with local_client() as client:
        counts = backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client, sleep=slept.append)
    kept = [t for t in tickets if t["status"] != "deleted"]
    rows = _read(out)
    assert [r["ticket_id"] for r in rows] == [str(t["id"]) for t in kept]
    assert counts == {"tickets": len(kept), "skipped": len(tickets) - len(kept), "pages": 3, "queued": 0,
                      "kept": 0}
    assert slept == [7.0]                                     # the 429's Retry-After, honoured once
    assert all(ZENDESK_AGENT_REPLY not in r["text"] for r in rows)  # an agent's words are never classified
    assert sum("\n\n" in r["text"] for r in rows) == sum(t["id"] % 5 == 0 for t in kept)  # nor only the first
    calls = api.gets("/api/v2/incremental/tickets/cursor.json")
    assert calls[0] == {"start_time": "0", "exclude_deleted": "true"}
    assert [c.get("cursor") for c in calls[2:]] == ["100", "200"]
    auth = [r.headers for r in api.requests if r.method == "GET"][0]["authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == "admin@example.com/token:tok123"
    for row, ticket in zip(rows[::37], kept[::37], strict=True):
        channel = "chat" if ticket["via"]["channel"] == "chat" else "ticket"
        text = zendesk_customer_text(ticket["id"])
        want = _expected(shipped_model, ticket["subject"], text, channel)
        assert (row["stage"], row["sentiment"], row["channel"], row["text"]) == (want.stage, want.sentiment,
                                                                               channel, text)
        assert row["url"] == f"{api.url}/agent/tickets/{ticket['id']}" and row["tags"] == want.tags


def test_since_is_sent_as_start_time(serve, tmp_path):
    api = serve(zendesk_route(zendesk_tickets(5), throttle_once=False))
    with local_client() as client:
        backfill_helpdesk(zendesk_adapter(api.url), tmp_path / "o.jsonl", MODEL, client=client, since=1735689600)
    assert api.gets("/api/v2/incremental/tickets/cursor.json")[0]["start_time"] == "1735689600"


def test_an_interrupted_backfill_resumes_without_loss_or_repeats(serve, tmp_path):
    tickets = zendesk_tickets(430)
    api = serve(zendesk_route(tickets, throttle_once=False))
    whole = tmp_path / "whole.jsonl"
    with local_client() as client:
        backfill_helpdesk(zendesk_adapter(api.url), whole, MODEL, client=client)

    class Stop(Exception):
        pass

    def stop_after_two(state):
        if state["pages"] == 2:
            raise Stop

    out = tmp_path / "part.jsonl"
    with local_client() as client:
        with pytest.raises(Stop):
            backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client, progress=stop_after_two)
        with out.open("ab") as fh:                     # a torn line written after the last checkpoint
            fh.write(b'{"ticket_id": "half')
        with pytest.raises(TaggerError, match="--resume"):
            backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client)
        with pytest.raises(TaggerError, match="another backfill"):
            backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client, resume=True, since=5)
        exports_before = len(api.gets("/api/v2/incremental/tickets/cursor.json"))
        counts = backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client, resume=True)
        resumed = api.gets("/api/v2/incremental/tickets/cursor.json")[exports_before:]
    assert out.read_bytes() == whole.read_bytes()
    assert resumed[0] == {"cursor": "200", "exclude_deleted": "true"}     # from the page after the last one
    assert counts["pages"] == 5 and counts["tickets"] == len(_read(whole))


def test_a_refused_listing_names_the_helpdesk_and_can_be_resumed(serve, tmp_path):
    state = {"refuse": True}
    good = zendesk_route(zendesk_tickets(150), throttle_once=False)

    def route(method, path, query, headers, body):
        if state["refuse"] and "cursor" in query:
            return 403, {}, {"error": "Forbidden", "description": "You do not have access to this page"}
        return good(method, path, query, headers, body)

    api = serve(route)
    out = tmp_path / "o.jsonl"
    with local_client() as client:
        with pytest.raises(TaggerError, match=r"zendesk incremental ticket export: HTTP 403.*--resume"):
            backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client, sleep=lambda s: None)
        assert len(_read(out)) == 99                   # the first page is kept (ticket 97 is deleted)
        state["refuse"] = False
        counts = backfill_helpdesk(zendesk_adapter(api.url), out, MODEL, client=client, resume=True)
    assert counts["tickets"] == len(_read(out)) == 149


def test_write_back_queues_only_unlabelled_open_tickets_and_the_worker_writes_them(serve, tmp_path):
    tickets = zendesk_tickets(60)
    written: dict[str, list[str]] = {}
    api = serve(zendesk_route(tickets, throttle_once=False, tags=written))
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'store.db'}")
    store = Store(settings.db_url)
    adapter = zendesk_adapter(api.url)
    # ticket 1 was classified by the live service before the backfill: its labels stay as they are
    store.record_classification(helpdesk="zendesk", ticket_id="1", event_id="zendesk:live-1", text_hash="x",
                                prediction={"stage": "zmot", "sentiment": "neutral", "stage_confidence": 0.9,
                                            "sentiment_confidence": 0.9, "lang": "lv", "review": False},
                                channel="ticket", model_version="v", add=["mot_zmot", "sentiment_neutral"],
                                remove=[])
    out = tmp_path / "o.jsonl"
    with local_client() as client:
        counts = backfill_helpdesk(adapter, out, MODEL, client=client, store=store, settings=settings)
        again = backfill_helpdesk(adapter, tmp_path / "again.jsonl", MODEL, client=client, store=store,
                                  settings=settings)
    labelled = {str(t["id"]) for t in tickets if "mot_fmot" in t["tags"]}
    closed = {str(t["id"]) for t in tickets if t["status"] == "closed"}
    rows = {r["ticket_id"]: r for r in _read(out)}
    want = set(rows) - labelled - closed - {"1"}
    with store.engine.connect() as conn:
        queued = {r.ticket_id: list(r.add_tags) for r in conn.execute(
            sa.select(outbox.c.ticket_id, outbox.c.add_tags).where(outbox.c.ticket_id != "1"))}
    assert set(queued) == want and counts["queued"] == len(want) and counts["kept"] == len(rows) - len(want)
    assert again["queued"] == 0                                         # a second run queues nothing twice
    assert all(queued[t] == rows[t]["tags"] for t in want)
    worker = Worker(store, {"zendesk": adapter}, settings, client=local_client())
    worker.drain(timeout_s=20)
    worker.stop()
    assert {t: [x for x in tags if x != "vip"] for t, tags in written.items() if t != "1"} == \
        {t: rows[t]["tags"] for t in want}
    assert all(tags[0] == "vip" for tags in written.values())           # nobody else's tag is lost
    store.close()


# -- Freshdesk ----------------------------------------------------------------------------------------------
def freshdesk_route(tickets):
    """List All Tickets with the 300-page limit (made small by the test) and the `link` header."""
    def route(method, path, query, headers, body):
        assert (method, path) == ("GET", "/api/v2/tickets")
        assert query["order_by"] == "updated_at" and query["order_type"] == "asc"
        assert query["include"] == "description"
        per_page, page = int(query["per_page"]), int(query["page"])
        if page > FreshdeskAdapter.max_page:
            return 400, {}, {"description": "Validation failed", "errors": [{"field": "page"}]}
        rows = [t for t in tickets if t["updated_at"] >= query["updated_since"]]
        chunk = rows[(page - 1) * per_page: page * per_page]
        more = page * per_page < len(rows)
        link = {"link": f'<http://x/api/v2/tickets?page={page + 1}&per_page={per_page}>; rel="next"'} if more else {}
        return 200, link, chunk

    return route


def test_freshdesk_pages_past_its_page_limit_without_repeating_a_ticket(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(FreshdeskAdapter, "max_page", 2)
    monkeypatch.setattr(FreshdeskAdapter, "per_page", 10)
    tickets = []
    for i in range(1, 58):   # updated_at repeats: several tickets share each second, across page boundaries
        tickets.append({"id": i, "subject": f"Q{i}", "description_text": TEXTS[i % len(TEXTS)],
                        "description": f"<div>{TEXTS[i % len(TEXTS)]}</div>", "source": 7 if i % 2 else 1,
                        "status": 2, "tags": [], "updated_at": f"2025-03-01T10:{i // 3:02d}:00Z"})
    api = serve(freshdesk_route(tickets))
    adapter = FreshdeskAdapter(base_url=api.url, api_key="key")
    with local_client() as client:
        backfill_helpdesk(adapter, tmp_path / "fd.jsonl", MODEL, client=client, since=1700000000)
    rows = _read(tmp_path / "fd.jsonl")
    assert sorted(int(r["ticket_id"]) for r in rows) == [t["id"] for t in tickets]     # each exactly once
    assert {r["channel"] for r in rows if int(r["ticket_id"]) % 2} == {"chat"}
    calls = api.gets("/api/v2/tickets")
    assert calls[0]["updated_since"] == "2023-11-14T22:13:20Z" and calls[0]["page"] == "1"
    assert all(int(c["page"]) <= 2 for c in calls) and len({c["updated_since"] for c in calls}) > 1
    auth = api.requests[0].headers["authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == "key:X"


# -- Help Scout ---------------------------------------------------------------------------------------------
def test_help_scout_conversations_are_paged_and_the_customer_thread_is_classified(serve, tmp_path, shipped_model):
    conversations = []
    for i in range(1, 8):
        threads = [{"id": 100 + i, "type": "customer", "body": TEXTS[i], "createdBy": {"type": "customer"},
                    "createdAt": "2025-02-01T10:00:00Z"},
                   {"id": 200 + i, "type": "message", "body": "Thanks, we are on it.", "createdBy": {"type": "user"},
                    "createdAt": "2025-02-01T11:00:00Z"}]
        if i == 4:   # an agent-started conversation without a customer word: nothing to classify
            threads = threads[1:]
        conversations.append({"id": i, "number": 1000 + i, "subject": f"S{i}", "type": "email", "status": "active",
                              "createdBy": {"type": "customer" if i != 4 else "user"}, "tags": [],
                              "modifiedAt": "2025-02-01T11:00:00Z", "_embedded": {"threads": threads}})

    def route(method, path, query, headers, body):
        assert (method, path) == ("GET", "/v2/conversations") and headers["Authorization"] == "Bearer hs-token"
        assert query["embed"] == "threads" and query["status"] == "all"
        page = int(query["page"])
        return 200, {}, {"_embedded": {"conversations": conversations[(page - 1) * 3: page * 3]},
                         "page": {"size": 3, "totalElements": 7, "totalPages": 3, "number": page}}

    api = serve(route)
    with local_client() as client:
        counts = backfill_helpdesk(HelpScoutAdapter(base_url=api.url, token="hs-token"), tmp_path / "hs.jsonl",
                                   MODEL, client=client)
    rows = _read(tmp_path / "hs.jsonl")
    assert [r["ticket_id"] for r in rows] == ["1", "2", "3", "5", "6", "7"] and counts["skipped"] == 1
    want = _expected(shipped_model, "S2", TEXTS[2], "ticket")
    assert (rows[1]["stage"], rows[1]["sentiment"], rows[1]["text"]) == (want.stage, want.sentiment, TEXTS[2])
    assert rows[1]["url"] == "https://secure.helpscout.net/conversation/2/1002/"
    assert [q["page"] for q in api.gets("/v2/conversations")] == ["1", "2", "3"]


# -- the CLI ------------------------------------------------------------------------------------------------
def test_cli_backfills_from_a_helpdesk_and_explains_misuse(serve, tmp_path, monkeypatch):
    api = serve(zendesk_route(zendesk_tickets(30), throttle_once=False))
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    env = {"TAGGER_ZENDESK_URL": api.url, "TAGGER_ZENDESK_TOKEN": "t", "TAGGER_ZENDESK_EMAIL": "a@example.com",
           "TAGGER_MODELS_DIR": str(MODELS), "TAGGER_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    runner = CliRunner()
    out = tmp_path / "cli.jsonl"
    result = runner.invoke(cli, ["backfill", "--helpdesk", "zendesk", "-o", str(out), "--since", "2025-01-01",
                                 "--write-back"], env=env)
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["tickets"] == len(_read(out)) == 30 and counts["queued"] > 0
    assert api.gets("/api/v2/incremental/tickets/cursor.json")[0]["start_time"] == "1735689600"
    both = runner.invoke(cli, ["backfill", str(out), "--helpdesk", "zendesk", "-o", str(tmp_path / "x")], env=env)
    assert both.exit_code == 2 and "not both" in both.output
    bad = runner.invoke(cli, ["backfill", "--helpdesk", "zendesk", "-o", str(tmp_path / "y"), "--since", "soon"],
                        env=env)
    assert bad.exit_code == 2 and "not a date" in bad.output
    missing = runner.invoke(cli, ["backfill", "--helpdesk", "zendesk", "-o", str(tmp_path / "z")],
                            env={**env, "TAGGER_ZENDESK_URL": ""})
    assert missing.exit_code != 0 and "TAGGER_ZENDESK_URL" in missing.output


def test_a_helpdesk_without_a_listing_says_what_to_do_instead():
    adapter = GenericAdapter(writeback_url="http://127.0.0.1:9/tickets/{ticket_id}/tags")
    with local_client() as client, pytest.raises(ConfigError, match="export the tickets"):
        adapter.list_tickets(client, None, None)


def test_every_built_in_helpdesk_with_a_ticket_api_can_be_backfilled():
    """Issue 11.6: Zammad, Chatwoot and LiveAgent joined Zendesk, Freshdesk, Help Scout and django-helpdesk;
    only the generic adapter (no API of ours to list) has no listing."""
    from tagger.helpdesks import ADAPTERS
    from tagger.helpdesks.contract import BaseAdapter

    listing = {name for name, cls in ADAPTERS.items() if cls.list_tickets is not BaseAdapter.list_tickets}
    assert listing == set(ADAPTERS) - {"generic"}
