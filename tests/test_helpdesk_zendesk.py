"""Zendesk adapter against Zendesk's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://developer.zendesk.com/documentation/webhooks/verifying/ (signature),
https://developer.zendesk.com/documentation/webhooks/anatomy-of-a-webhook-request/ (headers, timestamp format),
https://support.zendesk.com/hc/en-us/articles/4408886858138 (placeholders in the trigger body),
https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/ (Add Tags PUT, Remove Tags DELETE,
Show Tags GET), and, per test below, the pages of the other endpoints.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks.zendesk import TRIGGER_BODY, ZendeskAdapter, signed_event_id

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
    "author_role": "End-user",                       # how {{current_user.role}} renders for an end user
}


def sign(body: bytes, at: float = SIGNED_AT, secret: str = SECRET) -> dict[str, str]:
    """The headers of a delivery Zendesk signs at epoch second `at` (the adapter scheme's `sign`; the scheme itself
    is checked against the verifying page in test_signature_is_the_documented_formula)."""
    signer = ZendeskAdapter(base_url="https://example.zendesk.com", token="t", secret=secret).scheme()
    return {**signer.sign(body, now=at),
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
    # issue 11.5: the invocation id header is not signed; the id comes from the signed body
    assert msg.event_id == signed_event_id(PAYLOAD) and msg.event_id.startswith("zendesk:")
    assert "8350205582" not in msg.event_id and msg.meta["invocation_id"] == "8350205582"
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


@pytest.mark.parametrize("role", ["End-user", "end-user", "end_user", "End user"])
def test_parse_accepts_every_spelling_of_the_end_user_role(role):
    """https://support.zendesk.com/hc/en-us/articles/4408883763866: end users are the customers; the placeholder
    renders `End-user`, the API (https://developer.zendesk.com/api-reference/ticketing/users/users/) `end-user`."""
    assert adapter().parse({**PAYLOAD, "author_role": role}, {}).text == PAYLOAD["message"]


@pytest.mark.parametrize("role", ["Agent", "Admin", "agent", "admin", "Light agent", ""])
def test_parse_ignores_staff_and_system_comments_with_the_reason(role):
    """Issue 11.2: `current_user` is "the user currently updating the ticket (an end-user or agent)"
    (placeholders reference); anything but an end user is ignored, and the answer says why."""
    with pytest.raises(WebhookError) as err:
        adapter().parse({**PAYLOAD, "author_role": role}, {})
    assert err.value.status == 200
    assert "not by an end user" in err.value.reason and "Current user Is (end user)" in err.value.reason


@pytest.mark.parametrize("field", ["author_role", "tags"])
def test_the_author_role_and_tags_fields_are_required(field):
    """Without `author_role` the author cannot be judged; without `tags` the ticket would look untagged (and
    our tags removed by an agent), so both are configuration errors that name the placeholder to add."""
    with pytest.raises(WebhookError) as err:
        adapter().parse({k: v for k, v in PAYLOAD.items() if k != field}, {})
    assert err.value.status == 422 and field in err.value.reason and TRIGGER_BODY[field] in err.value.reason
    with pytest.raises(WebhookError) as err:
        adapter().parse({**PAYLOAD, field: TRIGGER_BODY[field]}, {})
    assert err.value.status == 422 and "unrendered placeholder" in err.value.reason


def test_a_ticket_without_tags_is_an_empty_tuple():
    assert adapter().parse({**PAYLOAD, "tags": ""}, {}).tags == ()


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


def test_signature_is_the_documented_formula():
    """Known answer, computed independently of the adapter as the verifying page writes it:
    base64(HMACSHA256(TIMESTAMP + BODY)), the timestamp in the anatomy page's format."""
    body = json.dumps(PAYLOAD).encode()
    expected = base64.b64encode(hmac.new(SECRET.encode(), TIMESTAMP.encode() + body, hashlib.sha256).digest()).decode()
    documented = {"X-Zendesk-Webhook-Signature": expected, "X-Zendesk-Webhook-Signature-Timestamp": TIMESTAMP}
    assert adapter().scheme().sign(body, now=SIGNED_AT) == documented
    adapter().verify(documented, body, NOW)


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


# -- replay (issue 11.5): the event id is derived from what the signature covers -----------------------------

def test_a_captured_delivery_reposted_with_a_new_invocation_id_is_the_same_event():
    """https://developer.zendesk.com/documentation/webhooks/verifying/ signs timestamp + body only; the
    x-zendesk-webhook-invocation-id header of the anatomy page is outside the signature, so changing it must
    not make a new event."""
    body = json.dumps(PAYLOAD).encode()
    captured = sign(body)
    replayed = {**captured, "X-Zendesk-Webhook-Invocation-Id": "9999999999"}
    a, b = adapter(), adapter()
    a.verify(captured, body, NOW)
    b.verify(replayed, body, NOW)                       # still correctly signed: the header is not covered
    first, second = a.parse(json.loads(body), captured), b.parse(json.loads(body), replayed)
    assert first.event_id == second.event_id
    other = {**PAYLOAD, "message": "<p>And now the paper tray is melting too.</p>"}
    assert adapter().parse(other, captured).event_id != first.event_id
    with pytest.raises(WebhookError) as err:             # outside the window the replay is refused outright
        adapter().verify(replayed, body, SIGNED_AT + 301)
    assert err.value.status == 401


def test_the_service_answers_duplicate_to_a_replay_and_ignored_with_the_reason_to_an_agent(hd, tmp_path,
                                                                                           shipped_model):
    """The same through `tagger serve` over HTTP: a re-posted capture with a new invocation id is `duplicate`;
    an agent's comment is `ignored` with the reason; the tag write goes to the fake Zendesk."""
    from tagger.config import Settings
    from tagger.service.app import create_app
    from tests.standin import LiveServer, local_client, wait_until

    hd.route("PUT", "/api/v2/tickets/35436/tags", json={"tags": ["enterprise"]})
    hd.route("DELETE", "/api/v2/tickets/35436/tags", json={"tags": ["enterprise"]})
    hd.route("GET", "/api/v2/account/settings", json={"settings": {"tickets": {"tagging": True}}})
    hd.route("GET", "/api/v2/tickets/35436/tags", json={"tags": ["enterprise", "printer", "vip", "mot_zmot"]})
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'z.db'}", outbox_base_delay_s=0.05, worker_poll_s=0.02)
    app = create_app(settings, shipped_model, adapters={"zendesk": adapter(hd.url)},
                     worker_options={"client": local_client(2.0)})
    now = datetime.now(UTC).timestamp()
    body = json.dumps(PAYLOAD).encode()
    agent_body = json.dumps({**PAYLOAD, "author_role": "Agent", "message": "<p>We are on it.</p>"}).encode()
    with LiveServer(app) as server:
        def post(raw: bytes, invocation: str):
            headers = {**sign(raw, now), "X-Zendesk-Webhook-Invocation-Id": invocation,
                       "Content-Type": "application/json"}
            return server.client.post("/webhooks/zendesk", content=raw, headers=headers)

        first, replay = post(body, "8350205582"), post(body, "8350209999")
        ignored = post(agent_body, "8350200001")
        wait_until(lambda: any(r.method == "PUT" for r in hd.requests), timeout=10, what="the tag write")
    assert first.status_code == 202
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    assert "not by an end user" in ignored.json()["reason"]
    assert sum(r.method == "PUT" for r in hd.requests) == 1


def test_the_service_classifies_customer_text_that_quotes_a_placeholder(hd, tmp_path, shipped_model):
    """Issue 11.3 through `tagger serve` over HTTP (signed as the verifying page says): the delivery is tagged,
    not `ignored`, and the tags are written to the fake Zendesk's tags endpoint."""
    from tagger.config import Settings
    from tagger.service.app import create_app
    from tests.standin import LiveServer, local_client, wait_until

    hd.route("PUT", "/api/v2/tickets/35436/tags", json={"tags": ["enterprise"]})
    hd.route("DELETE", "/api/v2/tickets/35436/tags", json={"tags": ["enterprise"]})
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'p.db'}", outbox_base_delay_s=0.05, worker_poll_s=0.02)
    app = create_app(settings, shipped_model, adapters={"zendesk": adapter(hd.url)},
                     worker_options={"client": local_client(2.0)})
    raw = json.dumps({**PAYLOAD, "message": "<p>Your invoice e-mail shows {{customer.first_name}} instead of "
                                            "my name. Please fix it.</p>"}).encode()
    with LiveServer(app) as server:
        headers = {**sign(raw, datetime.now(UTC).timestamp()), "Content-Type": "application/json"}
        answer = server.client.post("/webhooks/zendesk", content=raw, headers=headers)
        wait_until(lambda: any(r.method == "PUT" for r in hd.requests), timeout=10, what="the tag write")
    assert answer.status_code == 202 and answer.json()["status"] == "tagged", answer.text


# -- read_tags (Show Tags: https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/) ------

def test_read_tags_gets_the_ticket_tags(hd):
    hd.route("GET", "/api/v2/tickets/35436/tags", json={"tags": ["enterprise", "mot_fmot"]})
    with hd.client() as client:
        assert adapter(hd.url).read_tags(client, "35436") == ("enterprise", "mot_fmot")
    (req,) = hd.requests
    assert (req.method, req.path) == ("GET", "/api/v2/tickets/35436/tags")
    assert req.headers["authorization"].startswith("Basic ")


# -- check and prepare -------------------------------------------------------------------------------------------
# Show Self: https://developer.zendesk.com/api-reference/ticketing/users/users/#show-self (anonymous callers get a
# user without an id); Show Settings: https://developer.zendesk.com/api-reference/ticketing/account-configuration/
# account_settings/ (`settings.tickets.tagging`); https://support.zendesk.com/hc/en-us/articles/4408829424794.

ME = {"user": {"id": 1900001, "name": "Jane Admin", "email": "jdoe@example.com", "role": "admin"}}
SETTINGS_ON = {"settings": {"tickets": {"tagging": True, "comments_public_by_default": True}}}


def test_check_reports_the_authorised_user_and_visible_tags(hd):
    hd.route("GET", "/api/v2/users/me", json=ME).route("GET", "/api/v2/account/settings", json=SETTINGS_ON)
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert [s.action for s in steps] == ["ok", "ok"]
    assert "jdoe@example.com (admin)" in steps[0].detail and "mot_zmot" in steps[1].detail
    assert hd.calls() == [("GET", "/api/v2/users/me"), ("GET", "/api/v2/account/settings")]
    assert all(r.headers["authorization"].startswith("Basic ") for r in hd.requests)


def test_check_says_an_agent_token_cannot_set_up(hd):
    hd.route("GET", "/api/v2/users/me", json={"user": {**ME["user"], "role": "agent"}})
    hd.route("GET", "/api/v2/account/settings", json=SETTINGS_ON)
    with hd.client() as client:
        ok = adapter(hd.url).check(client)[0]
    assert ok.action == "ok" and "need an admin" in ok.detail


@pytest.mark.parametrize("reply,fix", [
    (Reply(401, {"error": "Couldn't authenticate you"}), "TAGGER_ZENDESK_TOKEN"),
    (Reply(200, {"user": {"id": None, "name": "Anonymous user", "role": "end-user"}}), "anonymous"),
    (Reply(200, {"user": {"id": 7, "name": "Customer", "role": "end-user"}}), "an end user"),
])
def test_check_refuses_bad_credentials_with_the_fix(hd, reply, fix):
    hd.route("GET", "/api/v2/users/me", reply)
    with hd.client() as client, pytest.raises(ConfigError) as err:
        adapter(hd.url).check(client)
    assert fix in str(err.value)


def test_prepare_needs_no_tag_created_but_refuses_while_ticket_tags_are_off(hd):
    hd.route("GET", "/api/v2/account/settings", Reply(200, SETTINGS_ON),
             Reply(200, {"settings": {"tickets": {"tagging": False}}}))
    with hd.client() as client:
        assert [s.action for s in adapter(hd.url).prepare(client)] == ["ok"]
        with pytest.raises(ConfigError) as err:
            adapter(hd.url).prepare(client)
    assert "Enable tags on tickets" in str(err.value) and "Objects and rules" in str(err.value)
    assert all(r.method == "GET" for r in hd.requests)      # nothing is changed


def test_check_reports_hidden_tags_as_missing(hd):
    hd.route("GET", "/api/v2/users/me", json=ME)
    hd.route("GET", "/api/v2/account/settings", json={"settings": {"tickets": {"tagging": False}}})
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert steps[1].action == "missing" and "Enable tags on tickets" in steps[1].detail


# -- setup: Webhooks API (https://developer.zendesk.com/api-reference/webhooks/webhooks-api/webhooks/), Triggers
# API (https://developer.zendesk.com/api-reference/ticketing/business-rules/triggers/), conditions reference
# (https://developer.zendesk.com/documentation/ticketing/reference-guides/conditions-reference/), cursor pagination
# (https://developer.zendesk.com/api-reference/introduction/pagination/) -------------------------------------------

HOOK_URL = "https://tagger.example.com/webhooks/zendesk"
HOOK_ID = "01GK8E6BKWMJZD2T8Y5AXJQMG5"
NO_MORE = {"has_more": False, "after_cursor": None, "before_cursor": None}
OUR_HOOK = {"id": HOOK_ID, "name": "MOT Tagger", "status": "active", "endpoint": HOOK_URL, "http_method": "POST",
            "request_format": "json", "subscriptions": ["conditional_ticket_events"]}
OUR_TRIGGER = {"id": 360001, "title": "MOT Tagger", "active": True,
               "actions": [{"field": "notification_webhook", "value": [HOOK_ID, json.dumps(TRIGGER_BODY)]}]}
SECRET_REPLY = {"signing_secret": {"algorithm": "SHA256", "secret": "zd-generated-secret"}}


def script_setup(hd, webhooks, triggers) -> None:
    hd.route("GET", "/api/v2/account/settings", json=SETTINGS_ON)
    hd.route("GET", "/api/v2/webhooks", *[Reply(200, page) for page in webhooks])
    hd.route("POST", "/api/v2/webhooks", status=201, json={"webhook": OUR_HOOK})
    hd.route("GET", f"/api/v2/webhooks/{HOOK_ID}/signing_secret", json=SECRET_REPLY)
    hd.route("GET", "/api/v2/triggers", *[Reply(200, page) for page in triggers])
    hd.route("POST", "/api/v2/triggers", status=201, json={"trigger": OUR_TRIGGER})


def test_setup_creates_the_webhook_and_trigger_then_finds_them(hd):
    script_setup(hd, [{"webhooks": [], "meta": NO_MORE},
                      {"webhooks": [{**OUR_HOOK, "id": "01OTHER", "endpoint": "https://x.example/h"}],
                       "meta": {"has_more": True, "after_cursor": "aXQ"}},
                      {"webhooks": [OUR_HOOK], "meta": NO_MORE}],
                 [{"triggers": [], "meta": NO_MORE}, {"triggers": [OUR_TRIGGER], "meta": NO_MORE}])
    with hd.client() as client:
        first = adapter(hd.url).setup(client, HOOK_URL)
        created = len(hd.requests)
        again = ZendeskAdapter(base_url=hd.url, token="t", email="jdoe@example.com",
                               secret="zd-generated-secret").setup(client, HOOK_URL)
    assert [(s.action, s.what.split()[0]) for s in first] == [("ok", "zendesk"), ("created", "webhook"),
                                                             ("created", "trigger")]
    assert first[1].env == {"TAGGER_ZENDESK_SECRET": "zd-generated-secret"}      # read back, not invented
    post_hook = next(r for r in hd.requests if (r.method, r.path) == ("POST", "/api/v2/webhooks"))
    assert post_hook.json == {"webhook": {
        "name": "MOT Tagger", "endpoint": HOOK_URL, "http_method": "POST", "request_format": "json",
        "status": "active", "subscriptions": ["conditional_ticket_events"],
        "description": post_hook.json["webhook"]["description"]}}
    post_trigger = next(r for r in hd.requests if (r.method, r.path) == ("POST", "/api/v2/triggers"))
    trigger = post_trigger.json["trigger"]
    assert trigger["conditions"] == {"all": [{"field": "comment_is_public", "operator": "is", "value": "true"},
                                             {"field": "role", "operator": "is", "value": "end_user"}], "any": []}
    (action,) = trigger["actions"]
    assert action["field"] == "notification_webhook" and action["value"][0] == HOOK_ID
    assert json.loads(action["value"][1]) == TRIGGER_BODY
    assert all(r.headers["content-type"] == "application/json" for r in hd.requests if r.method == "POST")
    # the second run lists (following the cursor), finds both and creates nothing
    later = hd.requests[created:]
    assert not [r for r in later if r.method != "GET"]
    pages = [r.query for r in later if r.path == "/api/v2/webhooks"]
    assert pages == [{"page[size]": "100"}, {"page[size]": "100", "page[after]": "aXQ"}]
    assert [s.action for s in again] == ["ok", "exists", "exists"] and again[1].env == {}


def test_setup_does_not_reuse_an_event_subscription_webhook_and_says_to_delete_it(hd):
    events_hook = {**OUR_HOOK, "id": "01EVENTS", "subscriptions": ["zen:event-type:ticket.comment_added"]}
    script_setup(hd, [{"webhooks": [events_hook], "meta": NO_MORE}], [{"triggers": [], "meta": NO_MORE}])
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    manual = [s for s in steps if s.action == "manual"]
    assert len(manual) == 1 and "01EVENTS" in manual[0].what and "Delete" in manual[0].detail
    assert ("POST", "/api/v2/webhooks") in hd.calls() and ("POST", "/api/v2/triggers") in hd.calls()


def test_setup_reports_a_trigger_whose_body_differs(hd):
    old = {**OUR_TRIGGER, "actions": [{"field": "notification_webhook", "value": [HOOK_ID, '{"id": "{{ticket.id}}"}']}]}
    script_setup(hd, [{"webhooks": [OUR_HOOK], "meta": NO_MORE}], [{"triggers": [old], "meta": NO_MORE}])
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert steps[-1].action == "manual" and '"author_role": "{{current_user.role}}"' in steps[-1].detail
    assert not [r for r in hd.requests if r.method != "GET"]


def test_setup_without_permission_prints_what_to_click_and_paste(hd):
    hd.route("GET", "/api/v2/account/settings", json=SETTINGS_ON)
    hd.route("GET", "/api/v2/webhooks", status=403, json={"error": "Forbidden"})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    manual = [s for s in steps if s.action == "manual"]
    assert len(manual) == 2 and "HTTP 403" in manual[0].detail and HOOK_URL in manual[0].detail
    assert "Reveal secret" in manual[0].detail and "Current user Is (end user)" in manual[1].detail
    assert json.loads(manual[1].detail.split("JSON body:\n", 1)[1]) == TRIGGER_BODY


def test_the_trigger_body_in_the_docs_is_the_one_setup_creates():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "helpdesks.md").read_text(encoding="utf-8")
    section = text.split("## Zendesk", 1)[1].split("\n## ", 1)[0]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(block) == TRIGGER_BODY


# -- list_tickets: Incremental Ticket Export (https://developer.zendesk.com/api-reference/ticketing/ticket-management/
# incremental_exports/) + List Comments with side-loaded users (https://developer.zendesk.com/api-reference/ticketing/
# tickets/ticket_comments/, https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/side_loading/),
# rate limits: https://developer.zendesk.com/api-reference/introduction/rate-limits/ ----------------------------------

EXPORT = "/api/v2/incremental/tickets/cursor.json"
CUSTOMER = {"id": 501, "name": "Ana", "role": "end-user"}
CC = {"id": 502, "name": "Ana's colleague", "role": "end-user"}
AGENT = {"id": 601, "name": "Sam Agent", "role": "agent"}


def ticket(i: int, **kw) -> dict:
    return {"id": i, "subject": f"Order {i}", "description": f"first words of {i}", "status": "open",
            "via": {"channel": "email"}, "tags": ["vip"], "updated_at": f"2025-01-01T00:00:0{i}Z", **kw}


def comment(cid: int, author: dict, body: str, public: bool = True) -> dict:
    return {"id": cid, "type": "Comment", "author_id": author["id"], "body": body, "plain_body": body,
            "html_body": f"<p>{body}</p>", "public": public, "created_at": "2025-01-01T00:00:00Z"}


def comments_page(comments: list, users: list, after: str | None = None) -> dict:
    return {"comments": comments, "users": users, "meta": {"has_more": after is not None, "after_cursor": after},
            "links": {"next": None}}


def test_backfill_reads_every_customer_comment_and_no_agent_one(hd):
    hd.route("GET", EXPORT, json={"tickets": [ticket(1), ticket(2), ticket(3, status="closed")],
                                  "end_of_stream": True, "after_cursor": "MTU3", "before_cursor": None})
    hd.route("GET", "/api/v2/tickets/1/comments", json=comments_page(
        [comment(11, CUSTOMER, "My parcel is late."), comment(12, AGENT, "Sorry, checking."),
         comment(13, CC, "Still nothing today."), comment(14, AGENT, "Internal: courier lost it", public=False)],
        [CUSTOMER, CC, AGENT]))
    hd.route("GET", "/api/v2/tickets/2/comments",                         # an outbound ticket: agents only
             json=comments_page([comment(21, AGENT, "Your renewal is due.")], [AGENT]))
    hd.route("GET", "/api/v2/tickets/3/comments",
             Reply(200, comments_page([comment(31, CUSTOMER, "Is the blue one back?")], [CUSTOMER], after="eyJv")),
             Reply(200, comments_page([comment(32, AGENT, "Yes."), comment(33, CUSTOMER, "Ordered, thanks!")],
                                      [CUSTOMER, AGENT])))
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, 1735689600)
    assert page.next_cursor is None and page.skipped == 1
    one, three = page.messages
    assert one.text == "My parcel is late.\n\nStill nothing today." and one.subject == "Order 1"
    assert three.text == "Is the blue one back?\n\nOrdered, thanks!"
    assert one.meta["writable"] and not three.meta["writable"] and one.tags == ("vip",)
    assert one.url == f"{hd.url}/agent/tickets/1" and one.event_type == "backfill"
    assert hd.requests[0].query == {"start_time": "1735689600", "exclude_deleted": "true"}
    third = [r.query for r in hd.requests if r.path == "/api/v2/tickets/3/comments"]
    assert third == [{"include": "users", "page[size]": "100"},
                     {"include": "users", "page[size]": "100", "page[after]": "eyJv"}]
    assert all(r.headers["authorization"].startswith("Basic ") for r in hd.requests)


def test_a_rate_limited_comment_read_is_retried_without_reading_anything_twice(hd):
    hd.route("GET", EXPORT, json={"tickets": [ticket(1), ticket(2)], "end_of_stream": True, "after_cursor": "x"})
    hd.route("GET", "/api/v2/tickets/1/comments", json=comments_page([comment(11, CUSTOMER, "Hello?")], [CUSTOMER]))
    hd.route("GET", "/api/v2/tickets/2/comments",
             Reply(429, {"error": "APIRateLimitExceeded"}, headers={"Retry-After": "42"}),
             Reply(200, comments_page([comment(21, CUSTOMER, "Anyone?")], [CUSTOMER])))
    zd = adapter(hd.url)
    with hd.client() as client:
        with pytest.raises(HelpdeskError) as err:
            zd.list_tickets(client, None, None)
        assert err.value.status == 429 and err.value.retry_after == 42 and not err.value.permanent
        page = zd.list_tickets(client, None, None)                  # what the backfill does after waiting
    assert [m.text for m in page.messages] == ["Hello?", "Anyone?"]
    assert hd.calls().count(("GET", EXPORT)) == 1                   # the export allows 10 requests a minute
    assert hd.calls().count(("GET", "/api/v2/tickets/1/comments")) == 1


def test_a_ticket_deleted_since_the_export_is_skipped(hd):
    hd.route("GET", EXPORT, json={"tickets": [ticket(1), ticket(2)], "end_of_stream": True, "after_cursor": "x"})
    hd.route("GET", "/api/v2/tickets/1/comments", status=404, json={"error": "RecordNotFound"})
    hd.route("GET", "/api/v2/tickets/2/comments", json=comments_page([comment(21, CUSTOMER, "Hi")], [CUSTOMER]))
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, None)
    assert [m.ticket_id for m in page.messages] == ["2"] and page.skipped == 1


def test_the_cursor_is_resumable_inside_an_export_page_and_across_pages(hd, monkeypatch):
    monkeypatch.setattr(ZendeskAdapter, "comments_per_call", 2)
    hd.route("GET", EXPORT,
             Reply(200, {"tickets": [ticket(1), ticket(2), ticket(3)], "end_of_stream": False, "after_cursor": "c2"}),
             # the same page read again after a restart; ticket 1 was updated meanwhile and moved on
             Reply(200, {"tickets": [ticket(2), ticket(3)], "end_of_stream": False, "after_cursor": "c2"}),
             Reply(200, {"tickets": [ticket(4)], "end_of_stream": True, "after_cursor": "c3"}))
    for i in (1, 2, 3, 4):
        hd.route("GET", f"/api/v2/tickets/{i}/comments",
                 json=comments_page([comment(i * 10, CUSTOMER, f"text {i}")], [CUSTOMER]))
    with hd.client() as client:
        first = adapter(hd.url).list_tickets(client, None, None)
        second = adapter(hd.url).list_tickets(client, first.next_cursor, None)   # a new process: no cache
        third = adapter(hd.url).list_tickets(client, second.next_cursor, None)
    assert [m.ticket_id for m in first.messages] == ["1", "2"]
    assert [m.ticket_id for m in second.messages] == ["3"]           # after ticket 2, not after two tickets
    assert [m.ticket_id for m in third.messages] == ["4"] and third.next_cursor is None
    exports = [r.query for r in hd.requests if r.path == EXPORT]
    assert exports == [{"start_time": "0", "exclude_deleted": "true"}, {"start_time": "0", "exclude_deleted": "true"},
                       {"cursor": "c2", "exclude_deleted": "true"}]


def test_a_bare_export_cursor_from_an_older_checkpoint_still_resumes(hd):
    hd.route("GET", EXPORT, json={"tickets": [], "end_of_stream": True, "after_cursor": "z"})
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, "MTU3NjYxMzUzOS4wfHw0Njd8", None)
    assert page.messages == [] and page.next_cursor is None
    assert hd.requests[0].query == {"cursor": "MTU3NjYxMzUzOS4wfHw0Njd8", "exclude_deleted": "true"}


def test_setup_refused_at_the_trigger_keeps_the_webhook_and_explains_only_the_trigger(hd):
    script_setup(hd, [{"webhooks": [], "meta": NO_MORE}], [{"triggers": [], "meta": NO_MORE}])
    hd.route("POST", "/api/v2/triggers", status=403, json={"error": "Forbidden"})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert [s.action for s in steps] == ["ok", "created", "manual"]
    assert steps[1].env == {"TAGGER_ZENDESK_SECRET": "zd-generated-secret"}
    assert steps[2].what == "trigger 'MOT Tagger'" and "HTTP 403" in steps[2].detail


def test_setup_accepts_a_trigger_body_with_extra_fields(hd):
    body = json.dumps({**TRIGGER_BODY, "priority": "{{ticket.priority}}"})
    extra = {**OUR_TRIGGER, "actions": [{"field": "notification_webhook", "value": [HOOK_ID, body]}]}
    script_setup(hd, [{"webhooks": [OUR_HOOK], "meta": NO_MORE}], [{"triggers": [extra], "meta": NO_MORE}])
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert [s.action for s in steps] == ["ok", "exists", "exists"]
