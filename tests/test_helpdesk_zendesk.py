"""Zendesk adapter against Zendesk's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://developer.zendesk.com/documentation/webhooks/verifying/ (signature),
https://developer.zendesk.com/documentation/webhooks/anatomy-of-a-webhook-request/ (headers, timestamp format),
https://support.zendesk.com/hc/en-us/articles/4408886858138 (placeholders in the trigger body),
https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/ (Add Tags PUT, Remove Tags DELETE).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.zendesk import ZendeskAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
TIMESTAMP = "2021-03-25T05:09:27Z"                         # the format shown in "Anatomy of a webhook request"
SIGNED_AT = datetime(2021, 3, 25, 5, 9, 27, tzinfo=UTC).timestamp()
NOW = SIGNED_AT + 33

# The trigger body of docs/helpdesks.md, as Zendesk renders it for a customer's public comment.
PAYLOAD = {
    "ticket_id": "35436",
    "subject": "Help, my printer is on fire!",
    "message": "<p>The smoke is very colorful. Ordered it last week, order 4711.</p>",
    "via": "Web Form",
    "tags": "enterprise printer vip mot_zmot",
    "url": "example.zendesk.com/agent/tickets/35436",
    "updated_at": "2021-03-25T05:09:20Z",
    "author_role": "end-user",
}


def sign(body: bytes, timestamp: str = TIMESTAMP, secret: str = SECRET) -> dict[str, str]:
    """Independent re-implementation of base64(HMACSHA256(TIMESTAMP + BODY)) from the verifying page."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return {"X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Invocation-Id": "8350205582", "X-Zendesk-Webhook-Id": "01F1KRFQ6BG29CNWFR60NK5FNY"}


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://example.zendesk.com", **kw) -> ZendeskAdapter:
    return ZendeskAdapter(base_url=base_url, token="6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv",
                          email="jdoe@example.com", secret=SECRET, **kw)


# -- parse (trigger body with placeholders, placeholders reference) -------------------------------------------

def test_parse_customer_comment():
    msg = adapter().parse(PAYLOAD, {"X-Zendesk-Webhook-Invocation-Id": "8350205582"})
    assert msg.helpdesk == "zendesk" and msg.ticket_id == "35436"
    assert msg.text.startswith("<p>The smoke") and msg.subject == "Help, my printer is on fire!"
    assert msg.event_id == "zendesk:8350205582"             # the invocation id header (anatomy page)
    assert msg.channel == "ticket"
    assert msg.tags == ("enterprise", "printer", "vip", "mot_zmot")   # {{ticket.tags}} is space separated
    assert msg.url == "https://example.zendesk.com/agent/tickets/35436"


@pytest.mark.parametrize("via,channel", [("Chat", "chat"), ("Messaging", "chat"), ("Twitter", "social"),
                                         ("Facebook Post", "social"), ("Mail", "ticket"), ("Web Form", "ticket")])
def test_parse_maps_via_to_channel(via, channel):
    assert adapter().parse({**PAYLOAD, "via": via}, {}).channel == channel


def test_parse_without_invocation_id_hashes_stably():
    a = adapter().parse(PAYLOAD, {})
    b = adapter().parse(dict(PAYLOAD), {})
    c = adapter().parse({**PAYLOAD, "updated_at": "2021-03-25T06:00:00Z"}, {})
    assert a.event_id == b.event_id != c.event_id and a.event_id.startswith("zendesk:")


@pytest.mark.parametrize("role", ["agent", "admin", "Agent"])
def test_parse_ignores_agent_comments(role):
    assert adapter().parse({**PAYLOAD, "author_role": role}, {}) is None


def test_parse_ignores_empty_comment():
    assert adapter().parse({**PAYLOAD, "message": ""}, {}) is None


@pytest.mark.parametrize("payload,reason", [
    ({k: v for k, v in PAYLOAD.items() if k != "ticket_id"}, "ticket_id"),
    ({k: v for k, v in PAYLOAD.items() if k != "message"}, "message"),
    ({**PAYLOAD, "ticket_id": "{{ticket.id}}"}, "placeholder"),
    ({**PAYLOAD, "ticket_id": "../../admin"}, "numeric"),
    ([PAYLOAD], "JSON object"),
])
def test_parse_rejects_unusable_payloads(payload, reason):
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 422 and reason in err.value.reason


# -- verify (https://developer.zendesk.com/documentation/webhooks/verifying/) --------------------------------

def test_verify_accepts_a_signed_delivery():
    body = json.dumps(PAYLOAD).encode()
    adapter().verify(sign(body), body, NOW)


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "stale", "future", "missing", "timestamp_swapped"])
def test_verify_rejects(case):
    body = json.dumps(PAYLOAD).encode()
    headers = sign(body)
    now = NOW
    if case == "tampered":
        body = body.replace(b"35436", b"35437")
    elif case == "wrong_secret":
        headers = sign(body, secret="not-the-secret")
    elif case == "stale":
        now = SIGNED_AT + 301                            # default window: 300 s
    elif case == "future":
        now = SIGNED_AT - 301
    elif case == "missing":
        del headers["X-Zendesk-Webhook-Signature"]
    elif case == "timestamp_swapped":                    # the timestamp is part of the signed message
        headers["X-Zendesk-Webhook-Signature-Timestamp"] = "2021-03-25T05:09:28Z"
    with pytest.raises(WebhookError) as err:
        adapter().verify(headers, body, now)
    assert err.value.status == 401


def test_verify_window_is_configurable():
    body = b"{}"
    adapter(tolerance_s=1000).verify(sign(body), body, SIGNED_AT + 999)
    with pytest.raises(WebhookError):
        adapter(tolerance_s=1000).verify(sign(body), body, SIGNED_AT + 1001)


def test_verify_without_secret_refuses():
    body = b"{}"
    no_secret = ZendeskAdapter(base_url="https://x.zendesk.com", token="t", email="a@b.c")
    with pytest.raises(WebhookError) as err:
        no_secret.verify(sign(body), body, NOW)
    assert "TAGGER_ZENDESK_SECRET" in err.value.reason


# -- write_tags (Tags API: PUT adds, DELETE removes) ----------------------------------------------------------

def test_write_tags_adds_and_removes_only_our_stale_tags(hd):
    path = "/api/v2/tickets/35436/tags"
    hd.route("PUT", path, json={"tags": ["enterprise", "mot_fmot", "sentiment_negative", "vip"]})
    hd.route("DELETE", path, json={"tags": ["enterprise", "mot_fmot", "sentiment_negative"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "35436", ["mot_fmot", "sentiment_negative"],
                                   ["mot_zmot", "sentiment_positive", "vip", "mot_fmot"])
    assert hd.calls() == [("PUT", path), ("DELETE", path)]
    put, delete = hd.requests
    assert put.json == {"tags": ["mot_fmot", "sentiment_negative"]}
    # "vip" is not ours: never removed, even when asked; "mot_fmot" is being added, so not removed either
    assert delete.json == {"tags": ["mot_zmot", "sentiment_positive"]}
    expected = "Basic " + base64.b64encode(b"jdoe@example.com/token:6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv").decode()
    assert put.headers["authorization"] == delete.headers["authorization"] == expected
    assert put.headers["content-type"] == "application/json"


def test_write_tags_without_stale_tags_sends_one_put(hd):
    hd.route("PUT", "/api/v2/tickets/7/tags", json={"tags": ["mot_smot"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "7", ["mot_smot"], [])
    assert hd.calls() == [("PUT", "/api/v2/tickets/7/tags")]


def test_oauth_token_without_email_is_a_bearer(hd):
    hd.route("PUT", "/api/v2/tickets/7/tags", json={"tags": ["mot_smot"]})
    with hd.client() as client:
        ZendeskAdapter(base_url=hd.url, token="oauth-abc").write_tags(client, "7", ["mot_smot"], [])
    assert hd.requests[0].headers["authorization"] == "Bearer oauth-abc"


def test_429_is_retryable_with_retry_after(hd):
    hd.route("PUT", "/api/v2/tickets/7/tags", status=429, headers={"Retry-After": "93"},
             json={"error": "TooManyRequests"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "7", ["mot_smot"], [])
    assert err.value.status == 429 and err.value.retry_after == 93 and not err.value.permanent


def test_500_is_retryable_and_404_is_permanent(hd):
    hd.route("PUT", "/api/v2/tickets/7/tags", Reply(500, {"error": "boom"}), Reply(404, {"error": "RecordNotFound"}))
    with hd.client() as client:
        with pytest.raises(HelpdeskError) as first:
            adapter(hd.url).write_tags(client, "7", ["mot_smot"], [])
        with pytest.raises(HelpdeskError) as second:
            adapter(hd.url).write_tags(client, "7", ["mot_smot"], [])
    assert first.value.status == 500 and not first.value.permanent
    assert second.value.status == 404 and second.value.permanent


def test_connection_refused_is_retryable():
    with FakeHelpdesk() as server:
        url = server.url
    with FakeHelpdesk().client() as client, pytest.raises(HelpdeskError) as err:
        adapter(url).write_tags(client, "7", ["mot_smot"], [])
    assert err.value.status is None and not err.value.permanent


def test_customer_text_quoting_a_placeholder_is_classified():
    """Issue 11.3: only a field that is wholly an unrendered placeholder is a configuration error."""
    text = "Your invoice e-mail shows {{customer.first_name}} instead of my name"
    msg = adapter().parse({**PAYLOAD, "message": text}, {})
    assert msg is not None and msg.text == text
    assert adapter().parse({**PAYLOAD, "message": "{{ticket.latest_public_comment_html}}"}, {}) is None
    assert adapter().parse({**PAYLOAD, "message": " {{ ticket.latest_public_comment | strip }} "}, {}) is None


def test_event_subscription_webhooks_are_refused_naming_the_event_type():
    """An event-subscription webhook's body (developer.zendesk.com/api-reference/webhooks/event-types/
    webhook-event-types/) is not the trigger body: refused with the type and the fix."""
    event = {"account_id": 10001, "detail": {"id": "35436", "subject": "Help"}, "event": {"comment": {"body": "x"}},
             "id": "cbe4028c", "subject": "zen:ticket:35436", "time": "2021-03-25T05:09:27Z",
             "type": "zen:event-type:ticket.comment_added", "zendesk_event_version": "2022-11-06"}
    with pytest.raises(WebhookError) as err:
        adapter().parse(event, {})
    assert err.value.status == 422 and "zen:event-type:ticket.comment_added" in err.value.reason
    assert "trigger" in err.value.reason
