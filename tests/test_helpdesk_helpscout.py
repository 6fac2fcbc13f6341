"""Help Scout adapter against Help Scout's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://developer.helpscout.com/webhooks/ (events, X-HelpScout-Event, X-HelpScout-Signature =
base64 HMAC-SHA1 of the body), https://developer.helpscout.com/mailbox-api/endpoints/conversations/get/ (the
Conversation object; the fixture helpdesk_payloads/helpscout_conversation.json is its sample with embedded
threads), https://developer.helpscout.com/mailbox-api/endpoints/conversations/tags/update/ (PUT
/v2/conversations/{id}/tags replaces the list, 204), https://developer.helpscout.com/mailbox-api/overview/authentication/
(Bearer token; Client Credentials flow, POST /v2/oauth2/token),
https://developer.helpscout.com/mailbox-api/endpoints/users/me/ (Get Resource Owner, the read-only check),
https://developer.helpscout.com/mailbox-api/endpoints/webhooks/list/ (GET /v2/webhooks, HAL, no secrets),
https://developer.helpscout.com/mailbox-api/endpoints/webhooks/create/ (POST /v2/webhooks: url, events, secret of
at most 40 characters, payloadVersion V2) and https://developer.helpscout.com/mailbox-api/endpoints/webhooks/update/
(PUT /v2/webhooks/{id}). Thread authorship: `createdBy.type` is `customer` or `user` (thread object of the
Conversation docs).
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks.helpscout import HelpScoutAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

PAYLOAD = json.loads((Path(__file__).parent / "helpdesk_payloads" / "helpscout_conversation.json").read_text())
SECRET = "p6KxsG0ZbD2aV8Ww3Ltq"          # Help Scout secrets are at most 40 characters
REPLY = {"X-HelpScout-Event": "convo.customer.reply.created"}


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://api.helpscout.net", **auth) -> HelpScoutAdapter:
    auth = auth or {"token": "f4f4994a875f461ca4d4708b9e027df4"}
    return HelpScoutAdapter(base_url=base_url, secret=SECRET, **auth)


# -- parse ----------------------------------------------------------------------------------------------------

def test_parse_customer_reply_reads_newest_customer_thread():
    msg = adapter().parse(PAYLOAD, REPLY)
    assert (msg.helpdesk, msg.ticket_id, msg.subject, msg.channel) == ("helpscout", "123", "Help", "ticket")
    assert msg.text == "<p>This is what I have to say. Where is my parcel?</p>"
    assert msg.tags == ("vip",) and msg.event_type == "convo.customer.reply.created"
    assert msg.url == "https://secure.helpscout.net/conversation/123/12/"
    assert msg.meta["thread_id"] == "2198262392" and msg.event_id.startswith("helpscout:")


def test_parse_legacy_body_with_threads_list_and_string_tags():
    legacy = {k: v for k, v in PAYLOAD.items() if k != "_embedded"}
    legacy.update(threads=PAYLOAD["_embedded"]["threads"], tags=["vip", "mot_zmot"])
    msg = adapter().parse(legacy, {"X-HelpScout-Event": "convo.created"})
    assert msg.text.startswith("<p>This is what I have") and msg.tags == ("vip", "mot_zmot")


def test_parse_chat_conversation_is_chat_and_event_ids_differ_per_thread():
    chat = copy.deepcopy(PAYLOAD)
    chat["type"] = "chat"
    chat["_embedded"]["threads"][0]["type"] = "chat"
    first = adapter().parse(chat, REPLY)
    assert first.channel == "chat"
    chat["_embedded"]["threads"][0].update(id=2198262399, createdAt="2012-03-16T15:00:00Z", body="more")
    assert adapter().parse(chat, REPLY).event_id != first.event_id


def test_parse_falls_back_to_preview_without_threads():
    bare = {k: v for k, v in PAYLOAD.items() if k != "_embedded"}
    msg = adapter().parse(bare, REPLY)
    assert msg.text == "Preview" and msg.meta["from_preview"] is True


def ignored(payload, headers) -> str:
    """The reason of a 2xx WebhookError (the service answers `{"status": "ignored", "reason": ...}`)."""
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, headers)
    assert err.value.status == 200
    return err.value.reason


@pytest.mark.parametrize("event", ["convo.agent.reply.created", "convo.note.created", "convo.status",
                                   "convo.tags", "convo.assigned", "satisfaction.ratings", "customer.created"])
def test_parse_ignores_non_customer_events_saying_why(event):
    assert event in ignored(PAYLOAD, {"X-HelpScout-Event": event})


def test_parse_ignores_a_conversation_an_agent_started():
    started = {k: v for k, v in PAYLOAD.items() if k != "_embedded"}
    started["createdBy"] = {"id": 99, "type": "user"}
    assert "agent" in ignored(started, {"X-HelpScout-Event": "convo.created"})


@pytest.mark.parametrize("thread", [
    {"type": "message", "createdBy": {"type": "user"}},       # an agent's reply
    {"type": "note", "createdBy": {"type": "user"}},          # an internal note
    {"type": "customer", "createdBy": {"type": "user"}},      # a thread an agent wrote on the customer's behalf
    {"type": "phone", "createdBy": {"type": "user"}},         # a call an agent logged
    {"type": "note", "createdBy": {"type": "customer"}},      # never a message, whoever made it
    {"type": "lineitem", "createdBy": {"type": "customer"}},
])
def test_only_threads_created_by_the_customer_are_read(thread):
    """Issue 11.2: only `createdBy.type == customer` threads; with none, the preview (which may be the agent's
    newest thread) is not used either."""
    payload = copy.deepcopy(PAYLOAD)
    payload["_embedded"]["threads"] = [{"id": 5, "body": "<p>We refunded you.</p>", "createdAt": "2012-03-17T00:00:00Z",
                                        **thread}]
    assert "written by the customer" in ignored(payload, REPLY)


def test_the_customer_thread_wins_over_a_newer_agent_reply():
    payload = copy.deepcopy(PAYLOAD)
    payload["_embedded"]["threads"].insert(0, {"id": 9, "type": "message", "body": "<p>Agent here</p>",
                                               "createdBy": {"type": "user"}, "createdAt": "2012-03-18T00:00:00Z"})
    assert adapter().parse(payload, REPLY).text == "<p>This is what I have to say. Where is my parcel?</p>"


def test_event_id_comes_from_the_signed_body_not_the_unsigned_event_header():
    """Issue 11.5: X-HelpScout-Signature covers the body only. The same captured body re-posted under another
    X-HelpScout-Event value (still correctly signed) must be a duplicate, not a new message."""
    body = json.dumps(PAYLOAD).encode()
    first, second = signed(body), {**signed(body), "X-HelpScout-Event": "convo.created"}
    for headers in (first, second):
        adapter().verify(headers, body, 0.0)
    assert adapter().parse(json.loads(body), first).event_id == adapter().parse(json.loads(body), second).event_id
    other_thread = copy.deepcopy(PAYLOAD)
    other_thread["_embedded"]["threads"][0]["id"] = 2198262399
    assert adapter().parse(other_thread, first).event_id != adapter().parse(PAYLOAD, first).event_id


@pytest.mark.parametrize("payload,headers,reason", [
    (PAYLOAD, {}, "X-HelpScout-Event"),
    ({k: v for k, v in PAYLOAD.items() if k != "id"}, REPLY, "id"),
    ({"id": 5}, REPLY, "no customer thread"),
    ([1, 2], REPLY, "JSON object"),
])
def test_parse_rejects(payload, headers, reason):
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, headers)
    assert err.value.status == 422 and reason in err.value.reason


# -- verify (base64 HMAC-SHA1 of the raw body) -----------------------------------------------------------------

def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {**REPLY, **HelpScoutAdapter(token="t", secret=secret).scheme().sign(body)}


def test_verify_accepts():
    body = json.dumps(PAYLOAD).encode()
    adapter().verify(signed(body), body, 0.0)


def test_signature_is_the_documented_formula():
    """Known answer, computed independently of the adapter: X-HelpScout-Signature = base64(HMAC-SHA1(secret, body))."""
    body = json.dumps(PAYLOAD).encode()
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha1).digest()).decode()
    assert adapter().scheme().sign(body) == {"X-HelpScout-Signature": expected}
    adapter().verify({**REPLY, "X-HelpScout-Signature": expected}, body, 0.0)


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "missing", "hex_instead_of_base64"])
def test_verify_rejects(case):
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    if case == "tampered":
        body = body.replace(b"parcel", b"parcels")
    elif case == "wrong_secret":
        headers = signed(body, "x" * 40)
    elif case == "missing":
        headers = dict(REPLY)
    elif case == "hex_instead_of_base64":
        headers["X-HelpScout-Signature"] = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    with pytest.raises(WebhookError) as err:
        adapter().verify(headers, body, 0.0)
    assert err.value.status == 401


# -- write_tags (GET conversation, PUT the whole list) ---------------------------------------------------------

def test_write_tags_puts_the_union(hd):
    hd.route("GET", "/v2/conversations/123",
             json={**PAYLOAD, "tags": [{"id": 9150, "color": "#929499", "tag": "vip"},
                                       {"id": 9151, "color": "#929499", "tag": "mot_zmot"}]})
    hd.route("PUT", "/v2/conversations/123/tags", status=204)
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "123", ["mot_fmot", "sentiment_negative"], ["mot_zmot", "vip"])
    assert hd.calls() == [("GET", "/v2/conversations/123"), ("PUT", "/v2/conversations/123/tags")]
    assert hd.requests[1].json == {"tags": ["vip", "mot_fmot", "sentiment_negative"]}
    assert {r.headers["authorization"] for r in hd.requests} == {"Bearer f4f4994a875f461ca4d4708b9e027df4"}


def test_client_credentials_token_is_fetched_cached_and_refreshed_on_401(hd):
    hd.route("POST", "/v2/oauth2/token",
             Reply(200, {"token_type": "bearer", "access_token": "tok-1", "expires_in": 172800}),
             Reply(200, {"token_type": "bearer", "access_token": "tok-2", "expires_in": 172800}))
    hd.route("GET", "/v2/conversations/123", Reply(200, PAYLOAD), Reply(401, {"error": "expired"}),
             Reply(200, PAYLOAD))
    hd.route("PUT", "/v2/conversations/123/tags", status=204)
    a = adapter(hd.url, app_id="app-id", app_secret="app-secret")
    with hd.client() as client:
        a.write_tags(client, "123", ["mot_fmot"], [])      # token fetched once
        a.write_tags(client, "123", ["mot_fmot"], [])      # cached token gets 401 -> refresh -> retry
    token_calls = [r for r in hd.requests if r.path == "/v2/oauth2/token"]
    assert len(token_calls) == 2
    assert token_calls[0].body == b"grant_type=client_credentials&client_id=app-id&client_secret=app-secret"
    auths = [r.headers.get("authorization") for r in hd.requests if r.path != "/v2/oauth2/token"]
    assert auths == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]


def test_429_is_retryable(hd):
    hd.route("GET", "/v2/conversations/123", json=PAYLOAD)
    hd.route("PUT", "/v2/conversations/123/tags", status=429, headers={"Retry-After": "60"}, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "123", ["mot_fmot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 60, False)


def test_static_token_401_is_permanent_and_5xx_retryable(hd):
    hd.route("GET", "/v2/conversations/123", Reply(401, {}), Reply(503, {}))
    with hd.client() as client:
        with pytest.raises(HelpdeskError) as first:
            adapter(hd.url).write_tags(client, "123", ["mot_fmot"], [])
        with pytest.raises(HelpdeskError) as second:
            adapter(hd.url).write_tags(client, "123", ["mot_fmot"], [])
    assert first.value.permanent and not second.value.permanent


def test_needs_credentials():
    with pytest.raises(ConfigError):
        HelpScoutAdapter(secret=SECRET)


# -- check and setup -------------------------------------------------------------------------------------------

ME = {"id": 4, "firstName": "Vernon", "lastName": "Bear", "email": "bear@acme.com", "role": "owner", "type": "user"}
URL = "https://tagger.example.com/webhooks/helpscout"


def hooks_page(*hooks) -> dict:
    return {"_embedded": {"webhooks": list(hooks)}, "page": {"size": 50, "totalElements": len(hooks),
                                                             "totalPages": 1, "number": 1}}


def test_check_calls_get_resource_owner(hd):
    hd.route("GET", "/v2/users/me", json=ME)
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert hd.calls() == [("GET", "/v2/users/me")]
    assert hd.requests[0].headers["authorization"] == "Bearer f4f4994a875f461ca4d4708b9e027df4"
    assert steps[0].action == "ok" and "bear@acme.com (owner)" in steps[0].detail


def test_check_with_a_bad_token_is_a_permanent_error(hd):
    hd.route("GET", "/v2/users/me", status=401, json={"error": "invalid_token"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).check(client)
    assert err.value.status == 401 and err.value.permanent


def test_setup_creates_the_webhook_with_a_fresh_secret(hd):
    hd.route("GET", "/v2/webhooks", json=hooks_page({"id": 3, "url": "https://other.example.com/hook",
                                                     "state": "enabled", "events": ["convo.tags"]}))
    hd.route("POST", "/v2/webhooks", status=201, headers={"Resource-ID": "17", "Location": "/v2/webhooks/17"})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, URL)
    assert hd.calls() == [("GET", "/v2/webhooks"), ("POST", "/v2/webhooks")]
    sent = hd.requests[1].json
    secret = sent["secret"]
    assert sent == {"url": URL, "events": ["convo.created", "convo.customer.reply.created"], "secret": secret,
                    "payloadVersion": "V2", "notification": False, "label": "MOT Tagger"}
    assert 20 <= len(secret) <= 40                              # Help Scout's limit is 40 characters
    assert [(s.action, s.env) for s in steps] == [("created", {"TAGGER_HELPSCOUT_SECRET": secret})]
    assert "17" in steps[0].detail
    assert hd.requests[1].headers["authorization"] == "Bearer f4f4994a875f461ca4d4708b9e027df4"


def test_setup_is_idempotent_when_the_webhook_exists_and_a_secret_is_configured(hd):
    hd.route("GET", "/v2/webhooks", json=hooks_page({"id": 17, "url": URL, "state": "enabled", "notification": False,
                                                     "events": ["convo.created", "convo.customer.reply.created"]}))
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, URL)
    assert hd.calls() == [("GET", "/v2/webhooks")]               # nothing created, nothing changed
    assert [(s.action, s.env) for s in steps] == [("exists", {})]


def test_setup_updates_a_webhook_that_lacks_our_events_keeping_its_own(hd):
    hd.route("GET", "/v2/webhooks", json=hooks_page({"id": 17, "url": URL, "state": "enabled", "label": "mine",
                                                     "events": ["convo.created", "convo.tags"]}))
    hd.route("PUT", "/v2/webhooks/17", status=204)
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, URL)
    assert hd.calls() == [("GET", "/v2/webhooks"), ("PUT", "/v2/webhooks/17")]
    assert hd.requests[1].json == {"url": URL, "events": ["convo.created", "convo.customer.reply.created", "convo.tags"],
                                   "secret": SECRET, "payloadVersion": "V2", "notification": False, "label": "mine"}
    assert [(s.action, s.env) for s in steps] == [("updated", {})]      # the configured secret was kept


def test_setup_without_a_configured_secret_gives_the_existing_webhook_a_new_one(hd):
    """List Webhooks never returns secrets: the only way to know the secret is to set a new one."""
    hd.route("GET", "/v2/webhooks", json=hooks_page({"id": 17, "url": URL, "state": "disabled",
                                                     "events": ["convo.created", "convo.customer.reply.created"]}))
    hd.route("PUT", "/v2/webhooks/17", status=204)
    a = HelpScoutAdapter(base_url=hd.url, token="f4f4994a875f461ca4d4708b9e027df4")
    with hd.client() as client:
        steps = a.setup(client, URL)
    secret = hd.requests[1].json["secret"]
    assert [s.action for s in steps] == ["updated", "manual"] and steps[0].env == {"TAGGER_HELPSCOUT_SECRET": secret}
    assert "disabled" in steps[1].detail and "Enable" in steps[1].detail


def test_setup_pages_through_the_webhook_list(hd):
    hd.route("GET", "/v2/webhooks",
             Reply(200, {"_embedded": {"webhooks": [{"id": 1, "url": "https://a"}]},
                         "page": {"totalPages": 2, "number": 1}}),
             Reply(200, {"_embedded": {"webhooks": [{"id": 17, "url": URL, "state": "enabled",
                                                     "events": ["convo.created", "convo.customer.reply.created"]}]},
                         "page": {"totalPages": 2, "number": 2}}))
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, URL)
    assert [r.query.get("page") for r in hd.requests] == ["1", "2"] and steps[0].action == "exists"


def test_setup_falls_back_to_manual_steps_when_the_user_may_not_manage_webhooks(hd):
    hd.route("GET", "/v2/webhooks", status=403, json={"message": "Forbidden"})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, URL)
    assert [s.action for s in steps] == ["manual"] and URL in steps[0].detail and "Webhooks" in steps[0].detail
