"""Freshdesk adapter against Freshdesk's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules
(Trigger webhook: "Requires authentication", custom headers, JSON encoding, Advanced content with placeholders;
the `{{triggered_event}}` renderings `{ticket_action:created}` / `{note_type:public}` / `{status:{from:..,to:..}}`
as in Zulip's Freshdesk fixtures), https://developers.freshdesk.com/api/#view_a_ticket and
https://developers.freshdesk.com/api/#update_ticket (tags are replaced by PUT, so GET first and send the union),
https://developers.freshdesk.com/api/#authentication (Basic, API key as user, "X" as password),
https://developers.freshdesk.com/api/#ratelimit (429 + Retry-After),
https://developers.freshdesk.com/api/#me (View Me, the read-only check),
https://support.freshdesk.com/support/solutions/articles/99047 (ticket-update rules: "performed by" Agent /
Requester, events "Reply is sent", "Note is added"). Who wrote what comes from Freshdesk's own code
(github.com/Ramesh-Veeriaperumal/freshconsult): `Helpdesk::Note#update_observer_events` fires `{reply_sent:sent}`
for a requester's AND an agent's reply and `{note_type:...}` for agents' notes; `Helpdesk::Ticket#liquidize_comment`
renders `{{ticket.latest_public_comment}}` as "<author name> : <body>".
"""
from __future__ import annotations

import base64
import json

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.freshdesk import FreshdeskAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

SECRET = "k7Jd92-shared-token"
API_KEY = "sFSyPnm2DiYB4SD6vXmY"

# The rule body of docs/helpdesks.md as Freshdesk renders it when a requester replies (the latest public
# comment is "<author name> : <body html>", liquidize_comment in Freshdesk's code).
REQUESTER = "Requester Bob"
REPLY_BODY = "<div>Still not delivered, this is the third time I ask!</div>"
REPLY = {
    "ticket_id": "11",
    "subject": "Test ticket subject",
    "description": "<div>Test ticket description.</div>",
    "latest_public_comment": f"{REQUESTER} : {REPLY_BODY}",
    "requester_name": REQUESTER,
    "source": "Email",
    "tags": "billing, vip, mot_fmot",
    "url": "https://test1234zzz.freshdesk.com/helpdesk/tickets/11",
    "triggered_event": "{reply_sent:sent}",
}
CREATED = {**REPLY, "latest_public_comment": "", "triggered_event": "{ticket_action:created}"}

# "View a ticket" response (abridged from the API reference sample).
TICKET = {"id": 11, "subject": "Test ticket subject", "status": 2, "priority": 1, "source": 1,
          "requester_id": 1, "tags": ["billing", "vip", "mot_fmot", "sentiment_neutral"],
          "custom_fields": {}, "description": "<div>Test ticket description.</div>"}


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://test1234zzz.freshdesk.com") -> FreshdeskAdapter:
    return FreshdeskAdapter(base_url=base_url, api_key=API_KEY, secret=SECRET)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- parse (automation rule body) ---------------------------------------------------------------------------

def test_parse_requester_reply_reads_latest_public_comment_without_the_author_prefix():
    msg = adapter().parse(REPLY, {})
    assert (msg.helpdesk, msg.ticket_id, msg.channel, msg.author) == ("freshdesk", "11", "ticket", REQUESTER)
    assert msg.text == REPLY_BODY
    assert msg.subject == "Test ticket subject" and msg.tags == ("billing", "vip", "mot_fmot")
    assert msg.url == "https://test1234zzz.freshdesk.com/helpdesk/tickets/11"
    assert msg.event_type == "{reply_sent:sent}" and msg.event_id.startswith("freshdesk:")


def test_parse_new_ticket_reads_description():
    msg = adapter().parse(CREATED, {})
    assert msg.text == "<div>Test ticket description.</div>"
    assert adapter().parse(CREATED, {}).event_id == msg.event_id != adapter().parse(REPLY, {}).event_id


def test_parse_accepts_the_body_wrapped_one_level():
    assert adapter().parse({"freshdesk_webhook": REPLY}, {}).ticket_id == "11"


@pytest.mark.parametrize("source,channel", [("Chat", "chat"), ("7", "chat"), ("Twitter", "social"),
                                            ("Facebook", "social"), ("Portal", "ticket"), ("2", "ticket")])
def test_parse_maps_source(source, channel):
    assert adapter().parse({**REPLY, "source": source}, {}).channel == channel


def ignored(payload) -> str:
    """The reason of a 2xx WebhookError: the service answers `{"status": "ignored", "reason": ...}`."""
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 200
    return err.value.reason


@pytest.mark.parametrize("event,why", [("{status:{from:2,to:3}}", "property change"),
                                       ("{priority:{from:1,to:4}}", "property change"),
                                       ("{note_type:private}", "only agents add notes"),
                                       ("{note_type:public}", "only agents add notes"),     # issue 11.2
                                       ("{customer_feedback:happy}", "not a message written by the requester"),
                                       ("{ticket_action:update}", "not a message written by the requester")])
def test_parse_ignores_notes_property_changes_and_other_events_saying_why(event, why):
    # a public note carries the agent's text in latest_public_comment, prefixed with the agent's name
    payload = {**REPLY, "triggered_event": event, "latest_public_comment": "Agent Alice : <div>Checked it.</div>"}
    assert why in ignored(payload)


@pytest.mark.parametrize("comment,who", [
    ("Agent Alice : <div>We shipped it yesterday.</div>", "'Agent Alice'"),   # issue 11.2: an agent's reply_sent
    ("System : <div>Auto-reply</div>", "'System'"),                           # liquidize_comment without a user
    ("<div>no author prefix</div>", "without an author"),
])
def test_parse_ignores_a_reply_not_written_by_the_requester(comment, who):
    reason = ignored({**REPLY, "latest_public_comment": comment})
    assert who in reason and REQUESTER in reason


def test_a_reply_without_the_requester_name_is_a_configuration_error():
    """Freshdesk fires `{reply_sent:sent}` for agents too: without requester_name nobody can tell them apart."""
    for payload in ({k: v for k, v in REPLY.items() if k != "requester_name"},
                    {**REPLY, "requester_name": "{{ticket.requester.name}}"}):
        with pytest.raises(WebhookError) as err:
            adapter().parse(payload, {})
        assert err.value.status == 422 and "requester_name" in err.value.reason


def test_a_ticket_an_agent_opened_by_outbound_email_is_ignored():
    for source in ("Outbound Email", "10"):
        assert "outbound" in ignored({**CREATED, "source": source})


def test_the_attachment_list_freshdesk_appends_is_not_classified():
    comment = (f"{REQUESTER} : <div>Photo of the damage attached.</div>\n\nAttachments :\n"
               "1. <a href='https://x.freshdesk.com/helpdesk/attachments/1'>box.jpg</a>\n")
    assert adapter().parse({**REPLY, "latest_public_comment": comment}, {}).text == (
        "<div>Photo of the damage attached.</div>")


def test_a_missing_triggered_event_is_a_configuration_error():
    for event in (None, "{{triggered_event}}", "sent"):
        with pytest.raises(WebhookError) as err:
            adapter().parse({**REPLY, "triggered_event": event}, {})
        assert err.value.status == 422 and "triggered_event" in err.value.reason


@pytest.mark.parametrize("payload,reason", [
    ({k: v for k, v in REPLY.items() if k != "ticket_id"}, "ticket_id"),
    ({"ticket_id": "11", "subject": "x"}, "description"),
    ({**REPLY, "ticket_id": "{{ticket.id}}"}, "placeholder"),
    ("not an object", "JSON object"),
])
def test_parse_rejects_unusable_payloads(payload, reason):
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 422 and reason in err.value.reason


# -- verify: Freshdesk does not sign; shared token via Basic auth, header or query ---------------------------

@pytest.mark.parametrize("headers,query", [
    (basic("tagger", SECRET), None),          # "Requires authentication": username + password
    (basic(SECRET, "X"), None),               # "Requires authentication": API key mode
    ({"X-Tagger-Token": SECRET}, None),       # "Add custom headers"
    ({}, {"token": SECRET}),                  # token in the webhook URL
])
def test_verify_accepts_the_shared_token(headers, query):
    adapter().verify(headers, b"{}", 0.0, query=query)


@pytest.mark.parametrize("headers,query", [
    ({}, None), (basic("tagger", "wrong"), None), ({"X-Tagger-Token": SECRET[:-1]}, None),
    ({}, {"token": "wrong"}), ({"Authorization": "Basic !!!"}, None),
])
def test_verify_rejects_a_wrong_or_missing_token(headers, query):
    with pytest.raises(WebhookError) as err:
        adapter().verify(headers, b"{}", 0.0, query=query)
    assert err.value.status == 401


# -- write_tags: GET then PUT the union ---------------------------------------------------------------------

def test_write_tags_sends_the_union_and_keeps_other_tags(hd):
    hd.route("GET", "/api/v2/tickets/11", json=TICKET)
    hd.route("PUT", "/api/v2/tickets/11", json={**TICKET, "tags": ["billing", "vip", "mot_smot"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "11", ["mot_smot", "sentiment_negative"],
                                   ["mot_fmot", "sentiment_neutral", "billing"])
    assert hd.calls() == [("GET", "/api/v2/tickets/11"), ("PUT", "/api/v2/tickets/11")]
    put = hd.requests[1]
    # everyone else's tags stay, "billing" is not ours so it is never removed, our stale ones go
    assert put.json == {"tags": ["billing", "vip", "mot_smot", "sentiment_negative"]}
    auth = "Basic " + base64.b64encode(f"{API_KEY}:X".encode()).decode()
    assert hd.requests[0].headers["authorization"] == put.headers["authorization"] == auth


def test_write_tags_skips_the_put_when_nothing_changes(hd):
    hd.route("GET", "/api/v2/tickets/11", json={**TICKET, "tags": ["vip", "mot_smot"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "11", ["mot_smot"], ["mot_fmot"])
    assert hd.calls() == [("GET", "/api/v2/tickets/11")]


def test_429_on_put_is_retryable_with_retry_after(hd):
    hd.route("GET", "/api/v2/tickets/11", json=TICKET)
    hd.route("PUT", "/api/v2/tickets/11", status=429, headers={"Retry-After": "30"}, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "11", ["mot_smot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 30, False)


def test_500_retryable_401_permanent(hd):
    hd.route("GET", "/api/v2/tickets/11", Reply(503, {}), Reply(401, {"code": "invalid_credentials"}))
    with hd.client() as client:
        with pytest.raises(HelpdeskError) as first:
            adapter(hd.url).write_tags(client, "11", ["mot_smot"], [])
        with pytest.raises(HelpdeskError) as second:
            adapter(hd.url).write_tags(client, "11", ["mot_smot"], [])
    assert not first.value.permanent and second.value.permanent and second.value.status == 401


def test_customer_text_quoting_a_placeholder_is_classified():
    """Issue 11.3: "{{" inside a customer's words is text; a field that is wholly a placeholder is not."""
    text = "<div>Your invoice e-mail shows {{customer.first_name}} instead of my name</div>"
    msg = adapter().parse({**REPLY, "latest_public_comment": f"{REQUESTER} : {text}"}, {})
    assert msg is not None and msg.text == text
    unrendered = adapter().parse({**CREATED, "description": "{{ticket.description}}"}, {})
    assert unrendered is None


def test_the_feedback_widget_is_a_ticket_not_a_chat():
    assert adapter().parse({**REPLY, "source": "Feedback Widget"}, {}).channel == "ticket"
    assert adapter().parse({**REPLY, "source": "9"}, {}).channel == "ticket"
    assert adapter().parse({**REPLY, "source": "Chat"}, {}).channel == "chat"


# -- history, check and setup ---------------------------------------------------------------------------------

def test_list_tickets_skips_tickets_an_agent_opened_by_outbound_email(hd):
    """List All Tickets (https://developers.freshdesk.com/api/#list_all_tickets): source 10 is Outbound Email."""
    hd.route("GET", "/api/v2/tickets", json=[
        {"id": 1, "subject": "A", "description_text": "Where is my parcel?", "source": 1, "tags": ["vip"],
         "updated_at": "2025-03-01T10:00:00Z"},
        {"id": 2, "subject": "B", "description_text": "Hello, we noticed your card expired.", "source": 10,
         "tags": [], "updated_at": "2025-03-01T10:01:00Z"}])
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, 1700000000)
    assert [m.ticket_id for m in page.messages] == ["1"] and page.skipped == 1 and page.next_cursor is None
    assert page.messages[0].tags == ("vip",) and page.messages[0].text == "Where is my parcel?"
    assert hd.requests[0].query["updated_since"] == "2023-11-14T22:13:20Z"


def test_check_calls_view_me_with_the_api_key(hd):
    """View Me, https://developers.freshdesk.com/api/#me: the cheapest authenticated read."""
    hd.route("GET", "/api/v2/agents/me", json={"id": 19, "contact": {"name": "Tagger", "email": "tagger@acme.com"}})
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert hd.calls() == [("GET", "/api/v2/agents/me")]
    assert hd.requests[0].headers["authorization"] == "Basic " + base64.b64encode(f"{API_KEY}:X".encode()).decode()
    assert [(s.action, s.what) for s in steps] == [("ok", "freshdesk API")] and "tagger@acme.com" in steps[0].detail


def test_check_with_a_wrong_key_is_a_permanent_error(hd):
    hd.route("GET", "/api/v2/agents/me", status=401, json={"code": "invalid_credentials"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).check(client)
    assert err.value.status == 401 and err.value.permanent


def test_setup_returns_the_two_rules_to_create_by_hand_with_a_fresh_token(hd):
    """Freshdesk's rules are made in its admin UI: the steps say what to click and carry the body to paste."""
    a = FreshdeskAdapter(base_url=hd.url, api_key=API_KEY)          # no shared token configured yet
    with hd.client() as client:
        steps = a.setup(client, "https://tagger.example.com/webhooks/freshdesk")
    assert hd.calls() == []                                          # nothing to create through the API
    assert [s.action for s in steps] == ["manual", "manual"]
    token = steps[0].env["TAGGER_FRESHDESK_SECRET"]
    assert len(token) >= 40 and all(token in s.detail for s in steps)
    assert "Ticket Creation" in steps[0].detail and "Reply is sent" in steps[1].detail
    assert "Requester" in steps[1].detail and "https://tagger.example.com/webhooks/freshdesk" in steps[1].detail
    body = steps[1].detail[steps[1].detail.index("{"):]
    assert json.loads(body)["requester_name"] == "{{ticket.requester.name}}"
    again = a.setup(hd.client(), "https://tagger.example.com/webhooks/freshdesk")
    assert again[0].env["TAGGER_FRESHDESK_SECRET"] != token          # a fresh one each time none is configured


def test_setup_with_a_configured_token_does_not_print_it(hd):
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, "https://t.example.com/webhooks/freshdesk")
    assert all(not s.env and SECRET not in s.detail for s in steps)
    assert "TAGGER_FRESHDESK_SECRET" in steps[0].detail
