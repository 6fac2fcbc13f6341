"""LiveAgent adapter against LiveAgent's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://support.liveagent.com/038465-Rules---Predefined-actions and
https://support.liveagent.com/908400-Triggers-conditions-and-actions (rules, "Message added" trigger, "HTTP request"
action; the request body is the admin's, see docs/helpdesks.md; LiveAgent does not sign it -> shared token),
https://support.liveagent.com/911737-API-v3 with the official client's reference
https://github.com/QualityUnit/LiveAgent-api-python (header `apikey`; GET/POST /tags; GET/PUT /tickets/{id} where
`tags` is a list of tag ids; ticket `channel_type` codes; docs/TicketsApi.md get_tickets_list and
get_ticket_message_groups with `_page`, `_perPage`, `_sortField`, `_sortDir`, `_filters`, `includeQuotedMessages`;
docs/MessageGroup.md and docs/Message.md for `userid` / `type`; docs/Ticket.md for `owner_contactid`,
`date_changed`), https://support.liveagent.com/761021-Message-group-types (the customer's and the agent's message
group types) and https://support.liveagent.com/217359-Request-rate-limits (180 API requests a minute per key).
"""
from __future__ import annotations

import json

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.liveagent import LiveAgentAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

SECRET = "la-shared-token"
# The rule body of docs/helpdesks.md, rendered for a customer's e-mail reply.
PAYLOAD = {"ticket_id": "fp80688h", "subject": "Order never arrived",
           "message": "<p>I ordered two weeks ago and still nothing.</p>", "channel": "E",
           "tags": "vip, mot_fmot", "author_role": "customer", "message_id": "a9s8d7f6"}
TAGS = [{"id": "t001", "name": "vip", "color": "#fff", "background_color": "#000", "is_public": "Y"},
        {"id": "t002", "name": "mot_fmot"}, {"id": "t003", "name": "sentiment_neutral"}]


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://acme.ladesk.com") -> LiveAgentAdapter:
    return LiveAgentAdapter(base_url=base_url, api_key="0fca7dccba1aed8517ad44399c01d966", secret=SECRET)


def test_parse_customer_message():
    msg = adapter().parse(PAYLOAD, {})
    assert (msg.helpdesk, msg.ticket_id, msg.channel) == ("liveagent", "fp80688h", "ticket")
    assert msg.text.startswith("<p>I ordered") and msg.subject == "Order never arrived"
    assert msg.tags == ("vip", "mot_fmot") and msg.event_id.startswith("liveagent:")
    assert adapter().parse(dict(PAYLOAD), {}).event_id == msg.event_id
    assert adapter().parse({**PAYLOAD, "message_id": "zz"}, {}).event_id != msg.event_id


@pytest.mark.parametrize("code,channel", [("B", "chat"), ("I", "chat"), ("F", "social"), ("A", "social"),
                                          ("T", "social"), ("M", "ticket"), ("C", "ticket")])
def test_parse_maps_channel_type_codes(code, channel):
    assert adapter().parse({**PAYLOAD, "channel": code}, {}).channel == channel


@pytest.mark.parametrize("changes", [{"message": ""}, {"message": "{$message_body}"}])
def test_parse_ignores_an_empty_message(changes):
    assert adapter().parse({**PAYLOAD, **changes}, {}) is None


@pytest.mark.parametrize("role", ["agent", "system", "A", "owner"])
def test_parse_ignores_messages_not_written_by_the_customer_saying_why(role):
    with pytest.raises(WebhookError) as err:
        adapter().parse({**PAYLOAD, "author_role": role}, {})
    assert err.value.status == 200 and "not by the customer" in err.value.reason


@pytest.mark.parametrize("role", ["customer", "visitor", "V", "R", "Contact"])
def test_parse_reads_the_customer_roles(role):
    assert adapter().parse({**PAYLOAD, "author_role": role}, {}).text.startswith("<p>I ordered")


@pytest.mark.parametrize("payload", [{k: v for k, v in PAYLOAD.items() if k != "author_role"},
                                     {**PAYLOAD, "author_role": "{$message_userType}"}, {**PAYLOAD, "author_role": ""}])
def test_a_body_without_the_author_is_refused(payload):
    """Issue 11.2: without the author nothing tells an agent's message from the customer's."""
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 422 and "author_role" in err.value.reason


@pytest.mark.parametrize("payload,reason", [
    ({k: v for k, v in PAYLOAD.items() if k != "ticket_id"}, "ticket_id"),
    ({**PAYLOAD, "ticket_id": "{$conversation_id}"}, "unrendered"),
    ({**PAYLOAD, "ticket_id": "a/../b"}, "ticket id"),
    ({k: v for k, v in PAYLOAD.items() if k != "message"}, "message"),
])
def test_parse_rejects(payload, reason):
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 422 and reason in err.value.reason


def test_verify_shared_token():
    adapter().verify({"X-Tagger-Token": SECRET}, b"{}", 0.0)
    adapter().verify({}, b"{}", 0.0, query={"token": SECRET})
    for headers, query in [({}, None), ({"X-Tagger-Token": "wrong"}, None), ({}, {"token": ""})]:
        with pytest.raises(WebhookError) as err:
            adapter().verify(headers, b"{}", 0.0, query=query)
        assert err.value.status == 401


def test_write_tags_creates_missing_tags_and_puts_the_union_of_ids(hd):
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("POST", "/api/v3/tags", json={"id": "t009", "name": "mot_smot"})
    hd.route("GET", "/api/v3/tickets/fp80688h", json={"id": "fp80688h", "tags": ["t001", "t002", "t003", "t777"]})
    hd.route("PUT", "/api/v3/tickets/fp80688h", json={"id": "fp80688h"})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_smot", "sentiment_neutral"], ["mot_fmot", "vip"])
    assert hd.calls() == [("GET", "/api/v3/tags"), ("POST", "/api/v3/tags"), ("GET", "/api/v3/tickets/fp80688h"),
                          ("PUT", "/api/v3/tickets/fp80688h")]
    assert hd.requests[1].json == {"name": "mot_smot"}
    # t777 is someone's tag we cannot even name: kept; vip (t001) is not ours: kept; mot_fmot (t002) is stale
    assert hd.requests[3].json == {"tags": ["t001", "t003", "t777", "t009"]}
    assert {r.headers["apikey"] for r in hd.requests} == {"0fca7dccba1aed8517ad44399c01d966"}


def test_429_and_permanent_errors(hd):
    hd.route("GET", "/api/v3/tags", status=429, headers={"Retry-After": "2"}, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_smot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 2, False)
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("GET", "/api/v3/tickets/fp80688h", status=404, json={"message": "Ticket does not exist"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_fmot"], [])
    assert err.value.status == 404 and err.value.permanent


def test_429_without_retry_after_waits_out_the_rate_limit_minute(hd):
    hd.route("GET", "/api/v3/tags", status=429, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_smot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 60.0, False)


# -- tags from the API (the payload's are not trusted: tickets hold tag ids) ---------------------------------

def test_read_tags_names_the_ticket_tag_ids(hd):
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("GET", "/api/v3/tickets/fp80688h", json={"id": "fp80688h", "tags": ["t002", "t001", "t777"]})
    with hd.client() as client:
        assert adapter(hd.url).read_tags(client, "fp80688h") == ("mot_fmot", "vip")
    assert LiveAgentAdapter.payload_has_tags is False
    assert {r.headers["apikey"] for r in hd.requests} == {"0fca7dccba1aed8517ad44399c01d966"}


# -- history: GET /api/v3/tickets paged by date_changed, the customer's messages per ticket -------------------

def group(gid, userid, gtype, *messages, status="V"):
    return {"id": gid, "userid": userid, "type": gtype, "status": status, "datecreated": "2025-03-01 10:00:00",
            "messages": [{"id": f"{gid}-{i}", "userid": uid, "type": mtype, "format": "T", "message": text}
                         for i, (uid, mtype, text) in enumerate(messages)]}


def ticket(tid, changed, owner="c1", **extra):
    return {"id": tid, "code": f"ABC-{tid}", "owner_contactid": owner, "subject": f"S {tid}", "status": "C",
            "channel_type": "E", "tags": ["t001"], "date_changed": changed, **extra}


def test_list_tickets_reads_the_customers_newest_message_and_pages_by_change_time(hd, monkeypatch):
    monkeypatch.setattr(LiveAgentAdapter, "per_page", 3)
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("GET", "/api/v3/tickets",
             Reply(200, [ticket("t1", "2025-03-01 10:00:00"), ticket("t2", "2025-03-01 10:05:00", channel_type="B"),
                         ticket("t3", "2025-03-01 10:05:00")]),
             Reply(200, [ticket("t3", "2025-03-01 10:05:00"), ticket("t4", "2025-03-01 11:00:00", status="X")]))
    hd.route("GET", "/api/v3/tickets/t1/messages", json=[
        group("g1", "c1", "3", ("c1", "H", "From: customer"), ("c1", "M", "My parcel never came.")),
        group("g2", "a1", "4", ("a1", "M", "We are checking.")),                     # the agent's outgoing e-mail
        group("g3", "a1", "I", ("a1", "N", "internal: call the courier")),           # an internal note
        group("g4", "c1", "3", ("c1", "M", "Still nothing, a week later!")),          # the newest customer words
        group("g5", "c1", "3", ("c1", "M", "deleted"), status="D")])
    hd.route("GET", "/api/v3/tickets/t2/messages", json=[
        group("g6", "c1", "C", ("c1", "M", "hi, is anyone there?"), ("a1", "M", "Yes, how can I help?"),
              ("c1", "M", "my order is late"))])                                     # a chat holds both sides
    hd.route("GET", "/api/v3/tickets/t3/messages", json=[
        group("g7", "a1", "4", ("a1", "M", "Your invoice is attached."))])            # the customer never wrote
    with hd.client() as client:
        first = adapter(hd.url).list_tickets(client, None, 1740823200)
        second = adapter(hd.url).list_tickets(client, first.next_cursor, None)
    assert [(m.ticket_id, m.text, m.channel) for m in first.messages] == [
        ("t1", "Still nothing, a week later!", "ticket"), ("t2", "hi, is anyone there?\nmy order is late", "chat")]
    assert first.skipped == 1 and first.messages[0].tags == ("vip",) and first.messages[0].event_type == "backfill"
    assert json.loads(first.next_cursor) == {"since": "2025-03-01 10:05:00", "page": 1, "seen": ["t2", "t3"]}
    assert second.messages == [] and second.skipped == 2 and second.next_cursor is None   # t3 seen, t4 deleted
    lists = [r for r in hd.requests if r.path == "/api/v3/tickets"]
    assert lists[0].query == {"_page": "1", "_perPage": "3", "_sortField": "date_changed", "_sortDir": "ASC",
                              "_filters": json.dumps([["date_changed", "D>=", "2025-03-01 10:00:00"]])}
    assert json.loads(lists[1].query["_filters"]) == [["date_changed", "D>=", "2025-03-01 10:05:00"]]
    messages = next(r for r in hd.requests if r.path == "/api/v3/tickets/t1/messages")
    assert messages.query == {"_page": "1", "_perPage": "100", "includeQuotedMessages": "false"}
    assert {r.headers["apikey"] for r in hd.requests} == {"0fca7dccba1aed8517ad44399c01d966"}


def test_list_tickets_pages_on_while_a_whole_page_shares_one_change_time(hd, monkeypatch):
    monkeypatch.setattr(LiveAgentAdapter, "per_page", 2)
    same = "2025-03-01 10:00:00"
    hd.route("GET", "/api/v3/tags", json=[])
    hd.route("GET", "/api/v3/tickets", json=[ticket("t1", same), ticket("t2", same)])
    for tid in ("t1", "t2"):
        hd.route("GET", f"/api/v3/tickets/{tid}/messages", json=[group("g", "c1", "3", ("c1", "M", "late"))])
    cursor = json.dumps({"since": same, "page": 1, "seen": []})
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, cursor, None)
    assert json.loads(page.next_cursor) == {"since": same, "page": 2, "seen": []}


def test_list_tickets_without_since_lists_everything_and_honours_429(hd):
    hd.route("GET", "/api/v3/tickets", Reply(429, {}, headers={"Retry-After": "7"}), Reply(200, []))
    with hd.client() as client:
        with pytest.raises(HelpdeskError) as err:
            adapter(hd.url).list_tickets(client, None, None)
        page = adapter(hd.url).list_tickets(client, None, None)
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 7, False)
    assert page.messages == [] and page.next_cursor is None
    assert "_filters" not in hd.requests[0].query


def test_a_ticket_with_many_message_groups_is_read_page_by_page(hd, monkeypatch):
    monkeypatch.setattr(LiveAgentAdapter, "messages_per_page", 2)
    hd.route("GET", "/api/v3/tags", json=[])
    hd.route("GET", "/api/v3/tickets", json=[ticket("t1", "2025-03-01 10:00:00")])
    hd.route("GET", "/api/v3/tickets/t1/messages",
             Reply(200, [group("g1", "c1", "3", ("c1", "M", "first")), group("g2", "a1", "4", ("a1", "M", "reply"))]),
             Reply(200, [group("g3", "c1", "3", ("c1", "M", "second"))]))
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, None)
    assert page.messages[0].text == "second"
    assert [r.query["_page"] for r in hd.requests if r.path.endswith("/messages")] == ["1", "2"]


# -- prepare, check, setup ---------------------------------------------------------------------------------

OURS = ["mot_lzmot", "mot_zmot", "mot_fmot", "mot_smot", "mot_umot", "sentiment_positive", "sentiment_neutral",
        "sentiment_negative", "mot_review"]


def test_prepare_creates_only_the_missing_tags(hd):
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("POST", "/api/v3/tags", json={"id": "t100", "name": "x"})
    with hd.client() as client:
        steps = adapter(hd.url).prepare(client)
    assert sorted(s.what for s in steps) == sorted(f"tag {t}" for t in OURS)
    created = [r.json["name"] for r in hd.requests if r.method == "POST"]
    assert sorted(created) == sorted(t for t in OURS if t not in ("mot_fmot", "sentiment_neutral"))
    assert {s.what: s.action for s in steps}["tag mot_fmot"] == "exists"
    assert hd.calls()[0] == ("GET", "/api/v3/tags") and hd.calls().count(("GET", "/api/v3/tags")) == 1


def test_check_is_read_only_and_names_the_missing_tags(hd):
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("GET", "/api/v3/tickets", json=[ticket("t1", "2025-03-01 10:00:00")])
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert {m for m, _ in hd.calls()} == {"GET"}
    assert hd.requests[1].query == {"_page": "1", "_perPage": "1"}
    assert [s.action for s in steps] == ["ok", "missing"] and "mot_smot" in steps[1].detail
    assert "mot_fmot" not in steps[1].detail


def test_check_with_a_bad_key_is_a_permanent_error(hd):
    hd.route("GET", "/api/v3/tags", status=401, json={"message": "Not authorized"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).check(client)
    assert err.value.status == 401 and err.value.permanent


def test_setup_creates_tags_then_says_which_rules_to_make_by_hand(hd):
    hd.route("GET", "/api/v3/tags", json=[{"id": f"t{i}", "name": t} for i, t in enumerate(OURS)])
    a = LiveAgentAdapter(base_url=hd.url, api_key="k")                # no shared token yet
    with hd.client() as client:
        steps = a.setup(client, "https://tagger.example.com/webhooks/liveagent")
    assert hd.calls() == [("GET", "/api/v3/tags")]
    manual = [s for s in steps if s.action == "manual"]
    token = manual[0].env["TAGGER_LIVEAGENT_SECRET"]
    assert len(manual) == 2 and f"https://tagger.example.com/webhooks/liveagent?token={token}" in manual[0].detail
    assert "Message added" in manual[0].detail and "Ticket created" in manual[1].detail
    assert '"author_role": "{$message_userType}"' in manual[0].detail
    with hd.client() as client:
        configured = adapter(hd.url).setup(client, "https://t/webhooks/liveagent")
    assert all(SECRET not in s.detail and not s.env for s in configured)
