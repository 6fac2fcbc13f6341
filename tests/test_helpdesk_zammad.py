"""Zammad adapter against Zammad's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://admin-docs.zammad.org/en/latest/manage/webhook/payload.html (default payload -- the fixture
helpdesk_payloads/zammad_default.json is that example, trailing commas removed -- and the headers
X-Zammad-Trigger, X-Zammad-Delivery, X-Hub-Signature), https://admin-docs.zammad.org/en/latest/manage/webhook/add.html
(HMAC SHA1 signature token; `sha1=<hex>` as Zammad's UserAgent.set_signature writes it),
https://docs.zammad.org/en/latest/api/ticket/tags.html (GET /api/v1/tags, POST /api/v1/tags/add,
DELETE /api/v1/tags/remove), https://docs.zammad.org/en/latest/api/intro.html (Authorization: Token token=...).
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.zammad import ZammadAdapter

from .helpdesk_fake import FakeHelpdesk

PAYLOAD = json.loads((Path(__file__).parent / "helpdesk_payloads" / "zammad_default.json").read_text())
SECRET = "zammad-hmac-token"
HEADERS = {"User-Agent": "Zammad User Agent", "X-Zammad-Trigger": "MOT Tagger",
           "X-Zammad-Delivery": "c2ee4bb2-5a0e-4ad4-a4f7-ef0fc9e7ad43"}


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://zammad.example.com") -> ZammadAdapter:
    return ZammadAdapter(base_url=base_url, token="p9LBNxK8-token", secret=SECRET)


def payload(**article) -> dict:
    data = copy.deepcopy(PAYLOAD)
    data["article"].update(article)
    return data


# -- parse (default payload) ------------------------------------------------------------------------------

def test_parse_default_payload():
    msg = adapter().parse(PAYLOAD, HEADERS)
    assert (msg.helpdesk, msg.ticket_id, msg.subject) == ("zammad", "81", "Webhook-Test")
    assert msg.text.startswith("This is a simple Webhook Test.<div>")
    assert msg.event_id == "zammad:c2ee4bb2-5a0e-4ad4-a4f7-ef0fc9e7ad43"
    assert msg.event_type == "MOT Tagger" and msg.channel == "ticket"        # article type "phone"
    assert msg.url == "https://zammad.example.com/#ticket/zoom/81"
    assert msg.author == "Emily Adams <emily@example.com>" and msg.tags == ()


def test_parse_without_delivery_header_hashes_article():
    a, b = adapter().parse(PAYLOAD, {}), adapter().parse(payload(id=105), {})
    assert a.event_id.startswith("zammad:") and a.event_id != b.event_id
    assert adapter().parse(PAYLOAD, {}).event_id == a.event_id


@pytest.mark.parametrize("article_type,channel", [("email", "ticket"), ("web", "ticket"), ("chat", "chat"),
                                                  ("sms", "chat"), ("telegram personal-message", "chat"),
                                                  ("twitter status", "social"), ("facebook feed comment", "social")])
def test_parse_maps_article_type(article_type, channel):
    assert adapter().parse(payload(type=article_type), {}).channel == channel


def test_parse_reads_ticket_tags_when_the_payload_has_them():
    data = payload()
    data["ticket"]["tags"] = ["espresso", "mot_lzmot"]
    assert adapter().parse(data, {}).tags == ("espresso", "mot_lzmot")


@pytest.mark.parametrize("change", [{"sender": "Agent"}, {"sender": "System"}, {"internal": True}])
def test_parse_ignores_agent_system_and_internal_articles(change):
    assert adapter().parse(payload(**change), {}) is None


def test_parse_ignores_a_trigger_without_article():
    data = copy.deepcopy(PAYLOAD)
    data["article"] = {}
    assert adapter().parse(data, {}) is None
    del data["article"]
    assert adapter().parse(data, {}) is None


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d.pop("ticket"), "ticket"),
    (lambda d: d["ticket"].pop("id"), "ticket.id"),
    (lambda d: d["article"].pop("body"), "article.body"),
    (lambda d: d["ticket"].update(id="81/../../x"), "numeric"),
])
def test_parse_rejects_missing_fields(mutate, reason):
    data = copy.deepcopy(PAYLOAD)
    mutate(data)
    with pytest.raises(WebhookError) as err:
        adapter().parse(data, {})
    assert err.value.status == 422 and reason in err.value.reason


# -- verify (X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>) ---------------------------------------------

def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {**HEADERS, "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def test_verify_accepts_signed_body():
    body = json.dumps(PAYLOAD).encode()
    adapter().verify(signed(body), body, 0.0)


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "missing", "sha256_prefix", "bare_hex"])
def test_verify_rejects(case):
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    if case == "tampered":
        body = body.replace(b"Webhook-Test", b"Webhook-Tost")
    elif case == "wrong_secret":
        headers = signed(body, "other")
    elif case == "missing":
        headers = dict(HEADERS)
    elif case == "sha256_prefix":
        headers["X-Hub-Signature"] = headers["X-Hub-Signature"].replace("sha1=", "sha256=")
    elif case == "bare_hex":
        headers["X-Hub-Signature"] = headers["X-Hub-Signature"][5:]
    with pytest.raises(WebhookError) as err:
        adapter().verify(headers, body, 0.0)
    assert err.value.status == 401


# -- write_tags (Tags API: per-tag add and remove) ----------------------------------------------------------

def test_write_tags_adds_missing_and_removes_only_our_present_stale_tags(hd):
    hd.route("GET", "/api/v1/tags", json={"tags": ["americano", "complaint", "mot_zmot", "sentiment_neutral"]})
    hd.route("POST", "/api/v1/tags/add", status=201, json=True)
    hd.route("DELETE", "/api/v1/tags/remove", status=201, json=True)
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot", "sentiment_neutral"],
                                   ["mot_zmot", "mot_smot", "complaint"])
    assert hd.calls() == [("GET", "/api/v1/tags"), ("POST", "/api/v1/tags/add"), ("DELETE", "/api/v1/tags/remove")]
    get, add, remove = hd.requests
    assert get.query == {"object": "Ticket", "o_id": "81"}
    assert add.json == {"item": "mot_fmot", "object": "Ticket", "o_id": 81}     # sentiment_neutral already there
    assert remove.json == {"item": "mot_zmot", "object": "Ticket", "o_id": 81}  # mot_smot absent, complaint not ours
    assert {r.headers["authorization"] for r in hd.requests} == {"Token token=p9LBNxK8-token"}


def test_429_with_retry_after_and_permanent_422(hd):
    hd.route("GET", "/api/v1/tags", json={"tags": []})
    hd.route("POST", "/api/v1/tags/add", status=429, headers={"Retry-After": "12"}, json={"error": "slow down"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 12, False)
    hd.route("POST", "/api/v1/tags/add", status=422, json={"error": "Not authorized"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot"], [])
    assert err.value.permanent


def test_5xx_on_listing_is_retryable(hd):
    hd.route("GET", "/api/v1/tags", status=502, text="Bad Gateway")
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot"], [])
    assert err.value.status == 502 and not err.value.permanent and hd.calls() == [("GET", "/api/v1/tags")]
