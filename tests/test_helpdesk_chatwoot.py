"""Chatwoot adapter against Chatwoot's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://www.chatwoot.com/docs/product/others/webhook-events (the `message_created` sample is the fixture
helpdesk_payloads/chatwoot_message_created.json; `message_type` incoming/outgoing/activity/template, `private`
notes, `sender.type`), https://developers.chatwoot.com/api-reference/webhooks/add-a-webhook (Webhook `secret`:
X-Chatwoot-Timestamp, X-Chatwoot-Signature = "sha256=" + HMAC-SHA256 of "{timestamp}.{raw body}", X-Chatwoot-Delivery),
https://developers.chatwoot.com/api-reference/conversations/list-labels and .../add-labels (GET/POST
/api/v1/accounts/{account_id}/conversations/{id}/labels, the POST overwrites the list; header api_access_token),
https://developers.chatwoot.com/api-reference/labels (account labels), https://developers.chatwoot.com/api-reference/webhooks
(list/add/update webhooks), https://developers.chatwoot.com/api-reference/conversations and
https://developers.chatwoot.com/api-reference/messages (history). Where the pages are silent, Chatwoot's source:
app/models/message.rb (`webhook_data`), app/listeners/webhook_listener.rb (`delivery_id: SecureRandom.uuid`),
app/finders/conversation_finder.rb (`sort_by`, 25 a page), app/finders/message_finder.rb (`after`),
app/views/api/v1/accounts/webhooks/*.jbuilder (`payload.webhooks`, `payload.webhook`, `secret`),
config/initializers/rack_attack.rb (one-minute windows), all under https://github.com/chatwoot/chatwoot/tree/develop.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks.chatwoot import ChatwootAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

PAYLOAD = json.loads((Path(__file__).parent / "helpdesk_payloads" / "chatwoot_message_created.json").read_text())
SECRET = "cw-webhook-secret"
TOKEN = "SAVEQtpR2nmvKfmpWTx6Cuhf"
NOW = 1627063380.0
LABELS_PATH = "/api/v1/accounts/1/conversations/10/labels"
ACCOUNT_LABELS = "/api/v1/accounts/1/labels"
WEBHOOKS = "/api/v1/accounts/1/webhooks"
CONVERSATIONS = "/api/v1/accounts/1/conversations"
OURS = ["mot_lzmot", "mot_zmot", "mot_fmot", "mot_smot", "mot_umot", "sentiment_positive", "sentiment_neutral",
        "sentiment_negative", "mot_review"]
HOOK_URL = "https://tagger.example.com/webhooks/chatwoot"


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://app.chatwoot.com", account_id: str = "1", secret: str = SECRET) -> ChatwootAdapter:
    return ChatwootAdapter(base_url=base_url, token=TOKEN, account_id=account_id, secret=secret)


def payload(**changes) -> dict:
    data = copy.deepcopy(PAYLOAD)
    data.update(changes)
    return data


def ignored(data: dict) -> str:
    """parse's reason for ignoring `data` (a 2xx WebhookError, answered `{"status": "ignored", "reason": ...}`)."""
    with pytest.raises(WebhookError) as err:
        adapter().parse(data, {})
    assert err.value.status == 200
    return err.value.reason


# -- parse (message_created) ----------------------------------------------------------------------------------

def test_parse_incoming_message_from_a_contact():
    """https://www.chatwoot.com/docs/product/others/webhook-events: incoming message, sender.type contact."""
    msg = adapter().parse(PAYLOAD, {"X-Chatwoot-Delivery": "7d3f2c10-1111-4c8e-9a55-0d2f1b1c9e01"})
    assert (msg.helpdesk, msg.ticket_id, msg.text, msg.channel) == ("chatwoot", "10", "hi", "chat")
    assert msg.event_id == "chatwoot:1:message:118"
    assert msg.event_type == "message_created" and msg.author == "little-haze-776"
    assert msg.url == "https://app.chatwoot.com/app/accounts/1/conversations/10"
    assert msg.meta["message_id"] == "118" and msg.meta["labels_in_payload"] is False


def test_event_id_comes_from_the_signed_body_not_the_delivery_header():
    """Point 5. The signature covers the body (message id 118), not X-Chatwoot-Delivery, which Chatwoot makes new for
    every delivery (app/listeners/webhook_listener.rb, `delivery_id: SecureRandom.uuid`): a captured delivery
    re-posted with another delivery id must be the same event."""
    body = json.dumps(PAYLOAD).encode()
    first = signed(body)
    replay = {**first, "X-Chatwoot-Delivery": "00000000-dead-beef-0000-000000000000"}
    a = adapter()
    a.verify(first, body, NOW)
    a.verify(replay, body, NOW)       # still correctly signed: only the unsigned header changed
    ids = {a.parse(json.loads(body), first).event_id, a.parse(json.loads(body), replay).event_id,
           a.parse(json.loads(body), {}).event_id}
    assert ids == {"chatwoot:1:message:118"}
    assert a.parse(payload(id=119, content="hi again"), first).event_id == "chatwoot:1:message:119"


def test_event_id_without_a_message_id_hashes_the_signed_fields():
    """webhook-events page: `id` is the message id; without one the signed fields are hashed (stable)."""
    data = payload()
    del data["id"]
    a, b = adapter().parse(data, {"X-Chatwoot-Delivery": "x"}), adapter().parse(copy.deepcopy(data), {})
    assert a.event_id == b.event_id and a.event_id.startswith("chatwoot:") and "message" not in a.event_id
    assert adapter().parse({**data, "content": "other"}, {}).event_id != a.event_id


def test_parse_reads_labels_subject_and_email_channel():
    """webhook-events page: conversation.labels, additional_attributes.mail_subject, channel Channel::Email."""
    data = payload()
    data["conversation"].update(labels=["billing", "mot_zmot"], channel="Channel::Email",
                                additional_attributes={"mail_subject": "Refund"})
    msg = adapter().parse(data, {})
    assert (msg.tags, msg.channel, msg.subject) == (("billing", "mot_zmot"), "ticket", "Refund")
    assert msg.meta["labels_in_payload"] is True


@pytest.mark.parametrize("channel,expected", [("Channel::FacebookPage", "social"), ("Channel::Instagram", "social"),
                                              ("Channel::TwitterProfile", "social"), ("Channel::Whatsapp", "chat"),
                                              ("Channel::Api", "chat")])
def test_parse_maps_inbox_channel(channel, expected):
    """webhook-events page: `conversation.channel` is the inbox's channel class."""
    data = payload()
    data["conversation"]["channel"] = channel
    assert adapter().parse(data, {}).channel == expected


def test_pre_2021_payload_without_sender_but_with_contact_is_the_customers():
    """Older Message#webhook_data (app/models/message.rb) sent `sender: user` (none for a contact) and `contact`."""
    data = payload(sender=None, contact={"id": 14, "name": "little-haze-776", "type": "contact"})
    msg = adapter().parse(data, {})
    assert msg.text == "hi" and msg.author == "little-haze-776"


@pytest.mark.parametrize("changes,reason", [
    ({"message_type": "outgoing", "sender": {"id": 1, "name": "John", "type": "user"}}, "agent"),
    ({"message_type": "outgoing", "sender": {"id": 3, "name": "Bot", "type": "agent_bot"}}, "bot"),
    ({"message_type": 1}, "outgoing"),
    ({"message_type": "activity", "sender": None}, "Chatwoot itself"),
    ({"message_type": "template"}, "template"),
    ({"message_type": False}, "message_type"),
    ({"message_type": "outgoing", "private": True, "sender": {"id": 1, "type": "user"}}, "outgoing"),
    ({"private": True}, "private note"),
    ({"sender": {"id": 1, "name": "John", "type": "user"}}, "sender is user"),
    ({"sender": {"id": 3, "name": "Captain", "type": "captain_assistant"}}, "captain_assistant"),
    ({"sender": None}, "sender is unknown"),
    ({"content": None}, "attachments only"),
    ({"content": "  "}, "no text"),
    ({"event": "message_updated"}, "message_updated"),
    ({"event": "conversation_status_changed"}, "not a new message"),
])
def test_only_contacts_public_incoming_messages_are_classified(changes, reason):
    """Point 2, https://www.chatwoot.com/docs/product/others/webhook-events: agents (`user`), bots (`agent_bot`),
    Chatwoot's activity messages, templates and private notes are not the customer's; the answer says why."""
    assert reason in ignored(payload(**changes))


@pytest.mark.parametrize("mutate,status_reason", [
    (lambda d: d.pop("event"), "event"),
    (lambda d: d.pop("conversation"), "conversation"),
    (lambda d: d.pop("content"), "content"),
    (lambda d: d.update(content=["x"]), "content must be a string"),
    (lambda d: d["account"].update(id=2), "TAGGER_CHATWOOT_ACCOUNT_ID"),
])
def test_parse_rejects(mutate, status_reason):
    """webhook-events page: event, conversation, content and account are part of every message_created payload."""
    data = copy.deepcopy(PAYLOAD)
    mutate(data)
    with pytest.raises(WebhookError) as err:
        adapter().parse(data, {})
    assert err.value.status == 422 and status_reason in err.value.reason


# -- verify ---------------------------------------------------------------------------------------------------

def signed(body: bytes, ts: str = "1627063369", secret: str = SECRET) -> dict[str, str]:
    return {**adapter(secret=secret).scheme().sign(body, now=float(ts)),
            "X-Chatwoot-Delivery": "7d3f2c10-1111-4c8e-9a55-0d2f1b1c9e01"}


def test_verify_accepts_signed_delivery():
    """https://developers.chatwoot.com/api-reference/webhooks/add-a-webhook (Webhook `secret`)."""
    body = json.dumps(PAYLOAD).encode()
    adapter().verify(signed(body), body, NOW)


def test_signature_is_the_documented_formula():
    """Known answer, computed independently of the adapter: X-Chatwoot-Signature = "sha256=" + hex
    HMAC-SHA256(secret, "{X-Chatwoot-Timestamp}." + raw body)."""
    body = json.dumps(PAYLOAD).encode()
    digest = hmac.new(SECRET.encode(), b"1627063369." + body, hashlib.sha256).hexdigest()
    documented = {"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": "1627063369"}
    assert adapter().scheme().sign(body, now=1627063369) == documented
    adapter().verify(documented, body, NOW)


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "stale", "ts_swapped", "no_ts", "bad_prefix"])
def test_verify_rejects(case):
    """https://developers.chatwoot.com/api-reference/webhooks/add-a-webhook: sha256= HMAC of "{timestamp}.{body}"."""
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
    """https://www.chatwoot.com/hc/user-guide/articles/1677693021-how-to-use-webhooks: older webhooks have no secret."""
    adapter().verify({}, b"{}", NOW, query={"token": SECRET})
    adapter().verify({"X-Tagger-Token": SECRET}, b"{}", NOW)
    for headers, query in [({}, None), ({}, {"token": "x"}), ({"X-Tagger-Token": "x"}, None)]:
        with pytest.raises(WebhookError):
            adapter().verify(headers, b"{}", NOW, query=query)


# -- write_tags / read_tags (conversation labels) ------------------------------------------------------------

def test_write_tags_posts_the_union_of_labels(hd):
    """https://developers.chatwoot.com/api-reference/conversations/add-labels: the POST overwrites the labels."""
    hd.route("GET", LABELS_PATH, json={"payload": ["billing", "mot_zmot", "sentiment_positive", "vip"]})
    hd.route("POST", LABELS_PATH, json={"payload": ["billing", "vip", "mot_fmot", "sentiment_negative"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot", "sentiment_negative"],
                                   ["mot_zmot", "sentiment_positive", "vip"])
    assert hd.calls() == [("GET", LABELS_PATH), ("POST", LABELS_PATH)]
    assert hd.requests[1].json == {"labels": ["billing", "vip", "mot_fmot", "sentiment_negative"]}
    assert {r.headers["api_access_token"] for r in hd.requests} == {TOKEN}


def test_write_tags_no_change_no_post(hd):
    """https://developers.chatwoot.com/api-reference/conversations/list-labels."""
    hd.route("GET", LABELS_PATH, json={"payload": ["mot_fmot"]})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "10", ["mot_fmot"], ["mot_zmot"])
    assert hd.calls() == [("GET", LABELS_PATH)]


def test_read_tags_lists_the_conversations_labels(hd):
    """Point 1, https://developers.chatwoot.com/api-reference/conversations/list-labels (`{"payload": [...]}`):
    payloads of older Chatwoot versions carry no labels, so the service always reads them."""
    assert ChatwootAdapter.payload_has_tags is False
    hd.route("GET", LABELS_PATH, json={"payload": ["mot_fmot", "vip"]})
    with hd.client() as client:
        assert adapter(hd.url).read_tags(client, "10") == ("mot_fmot", "vip")
    assert hd.calls() == [("GET", LABELS_PATH)] and hd.requests[0].headers["api_access_token"] == TOKEN
    hd.route("GET", LABELS_PATH, status=404, json={"error": "Resource could not be found"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).read_tags(client, "10")
    assert err.value.status == 404 and err.value.permanent


def test_429_and_500_retryable_403_permanent(hd):
    """config/initializers/rack_attack.rb: throttled calls get 429; Retry-After honoured when sent."""
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


def test_429_without_retry_after_waits_for_the_next_rack_attack_window(hd):
    """config/initializers/rack_attack.rb: `throttle('req/ip', ..., period: 1.minute)`; Rack::Attack sends no
    Retry-After unless enabled, so we wait at most until the next one-minute window."""
    hd.route("GET", LABELS_PATH, status=429, text="Retry later\n")
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).read_tags(client, "10")
    assert err.value.status == 429 and not err.value.permanent and 0 < err.value.retry_after <= 60


# -- prepare / check (account labels) ------------------------------------------------------------------------

def labels_payload(*titles: str) -> dict:
    return {"payload": [{"id": i, "title": t, "description": "", "color": "#1f93ff", "show_on_sidebar": True}
                        for i, t in enumerate(titles, 1)]}


def test_prepare_creates_only_the_missing_labels(hd):
    """Point 4, https://developers.chatwoot.com/api-reference/labels: list the account's labels, POST the missing
    ones with title/description/color/show_on_sidebar (Chatwoot shows only defined labels)."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload("billing", "mot_zmot", "Sentiment_Negative"))
    hd.route("POST", ACCOUNT_LABELS, json={"id": 9, "title": "x"})
    with hd.client() as client:
        steps = adapter(hd.url).prepare(client)
    created = [r.json for r in hd.requests if r.method == "POST"]
    expected = [t for t in OURS if t not in ("mot_zmot", "sentiment_negative")]
    assert [b["title"] for b in created] == expected
    assert created[0] == {"title": "mot_lzmot", "color": "#1f93ff", "show_on_sidebar": False,
                          "description": "MOT Tagger: customer-journey stage (an agent may correct it)"}
    assert all(r.path == ACCOUNT_LABELS and r.headers["api_access_token"] == TOKEN for r in hd.requests)
    assert {s.what: s.action for s in steps} == {f"label {t}": ("exists" if t not in expected else "created")
                                                 for t in OURS}


def test_prepare_is_idempotent(hd):
    """https://developers.chatwoot.com/api-reference/labels: when every label exists nothing is created."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    with hd.client() as client:
        steps = adapter(hd.url).prepare(client)
    assert hd.calls() == [("GET", ACCOUNT_LABELS)] and {s.action for s in steps} == {"exists"}


def test_prepare_refuses_with_the_fix_when_the_token_may_not_create_labels(hd):
    """app/policies/label_policy.rb: creating labels needs an administrator; the error names what to click."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS[1:]))
    hd.route("POST", ACCOUNT_LABELS, status=401, json={"error": "You are not authorized to do this action"})
    with hd.client() as client, pytest.raises(ConfigError) as err:
        adapter(hd.url).prepare(client)
    assert "Settings -> Labels" in str(err.value) and "mot_lzmot" in str(err.value)
    assert "administrator" in str(err.value)


def test_prepare_treats_a_label_created_meanwhile_as_existing(hd):
    """app/models/label.rb: titles are unique per account (422 "Title has already been taken")."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS[1:]))
    hd.route("POST", ACCOUNT_LABELS, status=422, json={"message": "Title has already been taken"})
    with hd.client() as client:
        steps = adapter(hd.url).prepare(client)
    assert steps[0].what == "label mot_lzmot" and steps[0].action == "exists"


def test_check_is_read_only_and_reports_missing_labels(hd):
    """Point 7, https://developers.chatwoot.com/api-reference/labels (list): authorised, and which labels lack."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS[:-1]))
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert hd.calls() == [("GET", ACCOUNT_LABELS)]
    assert steps[0].action == "ok" and [(s.action, s.what) for s in steps[1:]] == [("missing", "label mot_review")]
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    with hd.client() as client:
        assert [s.action for s in adapter(hd.url).check(client)] == ["ok", "ok"]


@pytest.mark.parametrize("status,fix", [(401, "Access Token"), (404, "TAGGER_CHATWOOT_ACCOUNT_ID")])
def test_check_names_the_fix_for_bad_credentials(hd, status, fix):
    """https://developers.chatwoot.com/api-reference/introduction: api_access_token of a user of the account."""
    hd.route("GET", ACCOUNT_LABELS, status=status, json={"error": "Invalid Access Token"})
    with hd.client() as client, pytest.raises(ConfigError, match=fix):
        adapter(hd.url).check(client)


# -- setup (account webhook) ---------------------------------------------------------------------------------

def test_setup_creates_the_webhook_and_reports_chatwoots_secret(hd):
    """Point 7, https://developers.chatwoot.com/api-reference/webhooks/add-a-webhook: POST {url, subscriptions,
    name}; Chatwoot generates the secret (not a permitted parameter) and returns it in the webhook object."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    hd.route("GET", WEBHOOKS, json={"payload": {"webhooks": [
        {"id": 3, "url": "https://other.example.com/hook", "subscriptions": ["message_created"], "secret": "zz"}]}})
    hd.route("POST", WEBHOOKS, json={"payload": {"webhook": {
        "id": 4, "name": "MOT Tagger", "url": HOOK_URL, "account_id": 1, "subscriptions": ["message_created"],
        "secret": "generated-by-chatwoot"}}})
    with hd.client() as client:
        steps = adapter(hd.url, secret="").setup(client, HOOK_URL)
    assert hd.calls() == [("GET", ACCOUNT_LABELS), ("GET", WEBHOOKS), ("POST", WEBHOOKS)]
    assert hd.requests[2].json == {"name": "MOT Tagger", "url": HOOK_URL, "subscriptions": ["message_created"]}
    assert hd.requests[2].headers["api_access_token"] == TOKEN
    last = steps[-1]
    assert (last.action, last.what) == ("created", f"webhook {HOOK_URL}")
    assert last.env == {"TAGGER_CHATWOOT_SECRET": "generated-by-chatwoot"}


def test_setup_is_idempotent(hd):
    """https://developers.chatwoot.com/api-reference/webhooks/list-all-webhooks: an existing webhook for the URL is
    reused; with the secret already configured nothing is changed or reported."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    hd.route("GET", WEBHOOKS, json={"payload": {"webhooks": [
        {"id": 4, "url": HOOK_URL, "subscriptions": ["conversation_created", "message_created"], "secret": SECRET}]}})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert hd.calls() == [("GET", ACCOUNT_LABELS), ("GET", WEBHOOKS)]
    assert (steps[-1].action, steps[-1].env) == ("exists", {})


def test_setup_subscribes_an_existing_webhook_and_reports_its_secret(hd):
    """https://developers.chatwoot.com/api-reference/webhooks (update: PATCH .../webhooks/{id} {subscriptions})."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    hd.route("GET", WEBHOOKS, json={"payload": {"webhooks": [
        {"id": 4, "url": HOOK_URL, "subscriptions": ["conversation_created"], "secret": "theirs"}]}})
    hd.route("PATCH", f"{WEBHOOKS}/4", json={"payload": {"webhook": {"id": 4}}})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert hd.calls()[-1] == ("PATCH", f"{WEBHOOKS}/4")
    assert hd.requests[-1].json == {"subscriptions": ["conversation_created", "message_created"]}
    assert (steps[-1].action, steps[-1].env) == ("updated", {"TAGGER_CHATWOOT_SECRET": "theirs"})


def test_setup_on_a_chatwoot_without_webhook_secrets_puts_a_fresh_token_in_the_url(hd):
    """Older Chatwoot (app/views/api/v1/accounts/webhooks/_webhook.json.jbuilder without `secret`) does not sign:
    the webhook URL gets `?token=<secrets.token_urlsafe(32)>`, and setup finds that webhook again next time."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    hd.route("GET", WEBHOOKS, json={"payload": {"webhooks": []}})
    hd.route("POST", WEBHOOKS, json={"payload": {"webhook": {"id": 7, "url": HOOK_URL,
                                                             "subscriptions": ["message_created"]}}})
    hd.route("PATCH", f"{WEBHOOKS}/7", json={"payload": {"webhook": {"id": 7}}})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    token = steps[-1].env["TAGGER_CHATWOOT_SECRET"]
    assert len(token) >= 40 and token != SECRET and steps[-1].action == "created"
    assert hd.requests[-1].json == {"url": f"{HOOK_URL}?token={token}", "subscriptions": ["message_created"]}
    assert token not in steps[-1].what + steps[-1].detail
    hd.requests.clear()
    hd.route("GET", WEBHOOKS, json={"payload": {"webhooks": [
        {"id": 7, "url": f"{HOOK_URL}?token={token}", "subscriptions": ["message_created"]}]}})
    with hd.client() as client:
        again = adapter(hd.url, secret=token).setup(client, HOOK_URL)
    assert [m for m, _ in hd.calls()] == ["GET", "GET"] and (again[-1].action, again[-1].env) == ("exists", {})


def test_setup_without_admin_rights_says_what_to_click(hd):
    """app/policies/webhook_policy.rb: administrators only; the manual step is the exact Settings path."""
    hd.route("GET", ACCOUNT_LABELS, json=labels_payload(*OURS))
    hd.route("GET", WEBHOOKS, status=401, json={"error": "You are not authorized to do this action"})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert steps[-1].action == "manual" and "Settings -> Integrations -> Webhooks" in steps[-1].detail
    assert "Message created" in steps[-1].detail and HOOK_URL in steps[-1].detail
    assert all(r.method == "GET" for r in hd.requests)


def test_setup_refuses_a_non_http_url():
    """app/models/webhook.rb: the URL must be http(s)."""
    with pytest.raises(ConfigError):
        adapter().setup(None, "ftp://x/webhooks/chatwoot")


# -- list_tickets (history) ----------------------------------------------------------------------------------

def conversation(display_id: int, created: int, activity: int, **extra) -> dict:
    """One item of the conversation list (app/views/api/v1/conversations/partials/_conversation.json.jbuilder)."""
    return {"id": display_id, "account_id": 1, "inbox_id": 1, "status": "resolved", "labels": ["vip"],
            "meta": {"sender": {"id": 14, "type": "contact"}, "channel": "Channel::Email"},
            "additional_attributes": {"mail_subject": "Parcel"}, "created_at": created, "timestamp": activity,
            "last_activity_at": activity, "messages": [], **extra}


def api_message(mid: int, kind: int, content: str | None, sender: str | None, private: bool = False) -> dict:
    """A message of the messages API (app/views/api/v1/models/_message.json.jbuilder): integer message_type."""
    data = {"id": mid, "content": content, "message_type": kind, "private": private, "created_at": 1700000000 + mid,
            "conversation_id": 10, "content_type": "text", "status": "sent"}
    if sender:
        data["sender"] = {"id": 1, "name": sender, "type": sender}
    return data


PAGE_1 = {"data": {"meta": {"mine_count": 0, "assigned_count": 1, "unassigned_count": 2, "all_count": 3},
                   "payload": [conversation(10, 1700000000, 1700009000), conversation(11, 1700000100, 1700000200),
                               conversation(12, 1700000200, 1700009500)]}}
MESSAGES_10 = {"meta": {"labels": ["vip"]}, "payload": [
    api_message(1, 2, "Conversation was created", None),
    api_message(2, 3, "Hi! How can we help?", "agent_bot"),
    api_message(3, 1, "internal: VIP customer", "user", private=True),
    api_message(4, 0, None, "contact"),                        # an attachment only
    api_message(5, 0, "My parcel never arrived", "contact"),
    api_message(6, 1, "Sorry, we will check", "user"),
    api_message(7, 0, "Any news?", "contact")]}
MESSAGES_12 = {"meta": {}, "payload": [api_message(20, 1, "We noticed your order failed", "user")]}


def test_list_tickets_pages_oldest_first_with_the_first_customer_message(hd):
    """Point 6, https://developers.chatwoot.com/api-reference/conversations (status=all, assignee_type=all, page;
    `sort_by=created_at_asc` from app/finders/conversation_finder.rb) and
    https://developers.chatwoot.com/api-reference/messages (`after=0`: the oldest messages, app/finders/message_finder.rb).
    Conversation 11 had no activity since `since` and is skipped without reading its messages; 12 has no
    customer message."""
    hd.route("GET", CONVERSATIONS, json=PAGE_1)
    hd.route("GET", f"{CONVERSATIONS}/10/messages", json=MESSAGES_10)
    hd.route("GET", f"{CONVERSATIONS}/12/messages", json=MESSAGES_12)
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, 1700001000.0)
    assert hd.calls() == [("GET", CONVERSATIONS), ("GET", f"{CONVERSATIONS}/10/messages"),
                          ("GET", f"{CONVERSATIONS}/12/messages")]
    assert hd.requests[0].query == {"status": "all", "assignee_type": "all", "sort_by": "created_at_asc", "page": "1"}
    assert hd.requests[1].query == {"after": "0"}
    assert all(r.headers["api_access_token"] == TOKEN for r in hd.requests)
    assert page.skipped == 2 and page.next_cursor is None        # 3 listed of all_count 3
    [msg] = page.messages
    assert (msg.ticket_id, msg.text, msg.subject, msg.channel, msg.tags) == (
        "10", "My parcel never arrived", "Parcel", "ticket", ("vip",))
    assert msg.event_type == "backfill" and msg.meta["message_id"] == "5" and msg.meta["writable"]
    assert msg.url.endswith("/app/accounts/1/conversations/10")


def test_list_tickets_cursor_is_resumable(hd):
    """https://developers.chatwoot.com/api-reference/conversations: `page` (25 a page); the cursor carries the next
    page, and a run resumed from it asks for that page."""
    hd.route("GET", CONVERSATIONS, json={"data": {"meta": {"all_count": 30},
                                                  "payload": [conversation(10, 1700000000, 1700009000)]}})
    hd.route("GET", f"{CONVERSATIONS}/10/messages", json=MESSAGES_10)
    with hd.client() as client:
        first = adapter(hd.url).list_tickets(client, None, None)
        assert first.next_cursor and len(first.messages) == 1
        hd.route("GET", CONVERSATIONS, json={"data": {"meta": {"all_count": 30}, "payload": []}})
        last = adapter(hd.url).list_tickets(client, first.next_cursor, None)
    assert hd.requests[-1].query["page"] == "2" and last.next_cursor is None and last.messages == []
    with pytest.raises(ConfigError):
        adapter(hd.url).list_tickets(None, "not-a-cursor", None)


def test_list_tickets_refuses_a_chatwoot_that_ignores_the_sort(hd):
    """app/finders/conversation_finder.rb: unknown sort_by falls back to last activity, newest first; page numbers
    would then shift while we read, so the backfill stops instead of missing conversations."""
    hd.route("GET", CONVERSATIONS, json={"data": {"meta": {"all_count": 2}, "payload": [
        conversation(12, 1700000200, 1700009500), conversation(10, 1700000000, 1700009000)]}})
    hd.route("GET", f"{CONVERSATIONS}/12/messages", json=MESSAGES_12)
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).list_tickets(client, None, None)
    assert err.value.permanent and "sort_by" in str(err.value)


def test_list_tickets_honours_rate_limits(hd):
    """config/initializers/rack_attack.rb: 429 (Retry-After when sent) is retryable; the backfill waits it out."""
    hd.route("GET", CONVERSATIONS, Reply(429, {}, {"Retry-After": "12"}), Reply(200, PAGE_1))
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).list_tickets(client, None, None)
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 12, False)


def test_list_tickets_skips_a_conversation_deleted_meanwhile(hd):
    """https://developers.chatwoot.com/api-reference/messages: 404 "Conversation not found"."""
    hd.route("GET", CONVERSATIONS, json={"data": {"meta": {"all_count": 1},
                                                  "payload": [conversation(10, 1700000000, 1700009000)]}})
    hd.route("GET", f"{CONVERSATIONS}/10/messages", status=404, json={"error": "not found"})
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, None)
    assert page.messages == [] and page.skipped == 1 and page.next_cursor is None
