"""Chatwoot adapter against Chatwoot's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://www.chatwoot.com/docs/product/others/webhook-events (the `message_created` sample is the fixture
helpdesk_payloads/chatwoot_message_created.json; `message_type` incoming/outgoing, `private` notes),
https://developers.chatwoot.com/api-reference/webhooks/add-a-webhook (Webhook `secret`: X-Chatwoot-Timestamp,
X-Chatwoot-Signature = "sha256=" + HMAC-SHA256 of "{timestamp}.{raw body}", X-Chatwoot-Delivery),
https://developers.chatwoot.com/api-reference/conversations/list-labels and .../add-labels (GET/POST
/api/v1/accounts/{account_id}/conversations/{id}/labels, the POST overwrites the list; header api_access_token).
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.chatwoot import ChatwootAdapter

from .helpdesk_fake import FakeHelpdesk

PAYLOAD = json.loads((Path(__file__).parent / "helpdesk_payloads" / "chatwoot_message_created.json").read_text())
SECRET = "cw-webhook-secret"
NOW = 1627063380.0
LABELS_PATH = "/api/v1/accounts/1/conversations/10/labels"


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://app.chatwoot.com", account_id: str = "1") -> ChatwootAdapter:
    return ChatwootAdapter(base_url=base_url, token="SAVEQtpR2nmvKfmpWTx6Cuhf", account_id=account_id, secret=SECRET)


def payload(**changes) -> dict:
    data = copy.deepcopy(PAYLOAD)
    data.update(changes)
    return data


# -- parse (message_created) ----------------------------------------------------------------------------------

def test_parse_incoming_message():
    msg = adapter().parse(PAYLOAD, {"X-Chatwoot-Delivery": "7d3f2c10-1111-4c8e-9a55-0d2f1b1c9e01"})
    assert (msg.helpdesk, msg.ticket_id, msg.text, msg.channel) == ("chatwoot", "10", "hi", "chat")
    assert msg.event_id == "chatwoot:7d3f2c10-1111-4c8e-9a55-0d2f1b1c9e01"
    assert msg.event_type == "message_created" and msg.author == "little-haze-776"
    assert msg.url == "https://app.chatwoot.com/app/accounts/1/conversations/10"


def test_parse_without_delivery_header_hashes_message():
    a, b = adapter().parse(PAYLOAD, {}), adapter().parse(payload(id=119, content="hi again"), {})
    assert a.event_id.startswith("chatwoot:") and a.event_id != b.event_id


def test_parse_reads_labels_subject_and_email_channel():
    data = payload()
    data["conversation"].update(labels=["billing", "mot_zmot"], channel="Channel::Email",
                                additional_attributes={"mail_subject": "Refund"})
    msg = adapter().parse(data, {})
    assert (msg.tags, msg.channel, msg.subject) == (("billing", "mot_zmot"), "ticket", "Refund")


@pytest.mark.parametrize("channel,expected", [("Channel::FacebookPage", "social"), ("Channel::Instagram", "social"),
                                              ("Channel::TwitterProfile", "social"), ("Channel::Whatsapp", "chat"),
                                              ("Channel::Api", "chat")])
def test_parse_maps_inbox_channel(channel, expected):
    data = payload()
    data["conversation"]["channel"] = channel
    assert adapter().parse(data, {}).channel == expected


@pytest.mark.parametrize("changes", [{"message_type": "outgoing"}, {"message_type": "template"},
                                     {"message_type": 1}, {"private": True}, {"event": "message_updated"},
                                     {"event": "conversation_status_changed"}, {"content": None},
                                     {"message_type": False}])
def test_parse_ignores_agent_messages_notes_and_other_events(changes):
    assert adapter().parse(payload(**changes), {}) is None


@pytest.mark.parametrize("mutate,status_reason", [
    (lambda d: d.pop("event"), "event"),
    (lambda d: d.pop("conversation"), "conversation"),
    (lambda d: d.pop("content"), "content"),
    (lambda d: d["account"].update(id=2), "TAGGER_CHATWOOT_ACCOUNT_ID"),
])
def test_parse_rejects(mutate, status_reason):
    data = copy.deepcopy(PAYLOAD)
    mutate(data)
    with pytest.raises(WebhookError) as err:
        adapter().parse(data, {})
    assert err.value.status == 422 and status_reason in err.value.reason


# -- verify ---------------------------------------------------------------------------------------------------

def signed(body: bytes, ts: str = "1627063369", secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": ts,
            "X-Chatwoot-Delivery": "7d3f2c10-1111-4c8e-9a55-0d2f1b1c9e01"}


def test_verify_accepts_signed_delivery():
    body = json.dumps(PAYLOAD).encode()
    adapter().verify(signed(body), body, NOW)


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "stale", "ts_swapped", "no_ts", "bad_prefix"])
def test_verify_rejects(case):
    body = json.dumps(PAYLOAD).encode()
    headers, now = signed(body), NOW
    if case == "tampered":
        body = body.replace(b'"hi"', b'"ho"')
    elif case == "wrong_secret":
        headers = signed(body, secret="nope")
    elif case == "stale":
        now = 1627063369 + 301
    elif case == "ts_swapped":
        headers["X-Chatwoot-Timestamp"] = "1627063370"
    elif case == "no_ts":
        del headers["X-Chatwoot-Timestamp"]
    elif case == "bad_prefix":
        headers["X-Chatwoot-Signature"] = headers["X-Chatwoot-Signature"].replace("sha256=", "sha1=")
    with pytest.raises(WebhookError) as err:
        adapter().verify(headers, body, now)
    assert err.value.status == 401


def test_unsigned_versions_need_the_shared_token():
    adapter().verify({}, b"{}", NOW, query={"token": SECRET})
    adapter().verify({"X-Tagger-Token": SECRET}, b"{}", NOW)
    for headers, query in [({}, None), ({}, {"token": "x"}), ({"X-Tagger-Token": "x"}, None)]:
        with pytest.raises(WebhookError):
            adapter().verify(headers, b"{}", NOW, query=query)


# -- write_tags (labels: GET, then POST the union) ------------------------------------------------------------

def test_write_tags_posts_the_union_of_labels(hd):
    hd.route("GET", LABELS_PATH, json={"payload": ["billing", "mot_zmot", "sentiment_positive", "vip"]})
    hd.route("POST", LABELS_PATH, json={"payload": ["billing", "vip", "mot_fmot", "sentiment_negative"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot", "sentiment_negative"],
                                   ["mot_zmot", "sentiment_positive", "vip"])
    assert hd.calls() == [("GET", LABELS_PATH), ("POST", LABELS_PATH)]
    assert hd.requests[1].json == {"labels": ["billing", "vip", "mot_fmot", "sentiment_negative"]}
    assert {r.headers["api_access_token"] for r in hd.requests} == {"SAVEQtpR2nmvKfmpWTx6Cuhf"}


def test_write_tags_no_change_no_post(hd):
    hd.route("GET", LABELS_PATH, json={"payload": ["mot_fmot"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot"], ["mot_zmot"])
    assert hd.calls() == [("GET", LABELS_PATH)]


def test_429_and_500_retryable_403_permanent(hd):
    hd.route("GET", LABELS_PATH, status=429, headers={"Retry-After": "4"}, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 4, False)
    hd.route("GET", LABELS_PATH, json={"payload": []})
    hd.route("POST", LABELS_PATH, status=500, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot"], [])
    assert err.value.status == 500 and not err.value.permanent
    hd.route("POST", LABELS_PATH, status=403, json={"error": "You are not authorized"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot"], [])
    assert err.value.permanent
