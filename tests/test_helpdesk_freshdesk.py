"""Freshdesk adapter against Freshdesk's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules
(Trigger webhook: "Requires authentication", custom headers, JSON encoding, Advanced content with placeholders;
the `{{triggered_event}}` renderings `{ticket_action:created}` / `{note_type:public}` / `{status:{from:..,to:..}}`
as in Zulip's Freshdesk fixtures), https://developers.freshdesk.com/api/#view_a_ticket and
https://developers.freshdesk.com/api/#update_ticket (tags are replaced by PUT, so GET first and send the union),
https://developers.freshdesk.com/api/#authentication (Basic, API key as user, "X" as password),
https://developers.freshdesk.com/api/#ratelimit (429 + Retry-After).
"""
from __future__ import annotations

import base64

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.freshdesk import FreshdeskAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

SECRET = "k7Jd92-shared-token"
API_KEY = "sFSyPnm2DiYB4SD6vXmY"

# The rule body of docs/helpdesks.md as Freshdesk renders it when a requester replies.
REPLY = {
    "ticket_id": "11",
    "subject": "Test ticket subject",
    "description": "<div>Test ticket description.</div>",
    "latest_public_comment": "<div>Still not delivered, this is the third time I ask!</div>",
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

def test_parse_requester_reply_reads_latest_public_comment():
    msg = adapter().parse(REPLY, {})
    assert (msg.helpdesk, msg.ticket_id, msg.channel) == ("freshdesk", "11", "ticket")
    assert msg.text == "<div>Still not delivered, this is the third time I ask!</div>"
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


@pytest.mark.parametrize("event", ["{status:{from:2,to:3}}", "{priority:{from:1,to:4}}", "{note_type:private}"])
def test_parse_ignores_property_changes_and_private_notes(event):
    assert adapter().parse({**REPLY, "triggered_event": event}, {}) is None


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
    msg = adapter().parse({**REPLY, "latest_public_comment": text}, {})
    assert msg is not None and msg.text == text
    unrendered = adapter().parse({**CREATED, "description": "{{ticket.description}}"}, {})
    assert unrendered is None


def test_the_feedback_widget_is_a_ticket_not_a_chat():
    assert adapter().parse({**REPLY, "source": "Feedback Widget"}, {}).channel == "ticket"
    assert adapter().parse({**REPLY, "source": "9"}, {}).channel == "ticket"
    assert adapter().parse({**REPLY, "source": "Chat"}, {}).channel == "chat"
