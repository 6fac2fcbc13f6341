"""Zammad adapter against Zammad's documented contract, with a real HTTP server on 127.0.0.1.

Pages (each test names the one it follows):
- WEBHOOK_PAYLOAD https://admin-docs.zammad.org/en/latest/manage/webhook/payload.html -- the default payload (the
  fixture helpdesk_payloads/zammad_default.json is that example, trailing commas removed: article 104 with
  sender "Customer", created_by the agent Christopher, origin_by the customer Emily; no ticket tags) and the
  headers X-Zammad-Trigger, X-Zammad-Delivery, X-Hub-Signature.
- WEBHOOK_ADD https://admin-docs.zammad.org/en/latest/manage/webhook/add.html -- HMAC SHA1 signature token,
  `sha1=<hex>` as Zammad's UserAgent.set_signature writes it; nothing else is signed.
- TAGS_API https://docs.zammad.org/en/latest/api/ticket/tags.html -- GET /api/v1/tags, POST /api/v1/tags/add,
  DELETE /api/v1/tags/remove, GET /api/v1/tag_search?term= (`[{"id", "value"}]`), POST /api/v1/tag_list
  `{"name"}` (admin.tag, answers `{}`); "New tags" off: Tag.tag_allowed? in zammad app/models/tag.rb.
- TICKETS_API https://docs.zammad.org/en/latest/api/ticket/index.html (GET /api/v1/tickets, a JSON list),
  INTRO https://docs.zammad.org/en/latest/api/intro.html (Authorization: Token token=...; pagination
  ?page=&per_page=, no total), ARTICLES_API https://docs.zammad.org/en/latest/api/ticket/articles.html
  (GET /api/v1/ticket_articles/by_ticket/{id}).
- WEBHOOK_API https://docs.zammad.org/en/latest/api/webhook.html, TRIGGER_API
  https://docs.zammad.org/en/latest/api/trigger.html, USER_API https://docs.zammad.org/en/latest/api/user.html
  (GET /api/v1/users/me).
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks.payload import iso_utc
from tagger.helpdesks.zammad import ZammadAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

PAYLOAD = json.loads((Path(__file__).parent / "helpdesk_payloads" / "zammad_default.json").read_text())
SECRET = "zammad-hmac-token"
TOKEN_HEADER = "Token token=p9LBNxK8-token"
HEADERS = {"User-Agent": "Zammad User Agent", "X-Zammad-Trigger": "MOT Tagger",
           "X-Zammad-Delivery": "c2ee4bb2-5a0e-4ad4-a4f7-ef0fc9e7ad43"}
OUR_TAGS = ["mot_lzmot", "mot_zmot", "mot_fmot", "mot_smot", "mot_umot", "sentiment_positive", "sentiment_neutral",
            "sentiment_negative", "mot_review"]
HOOK_URL = "https://tagger.example.com/webhooks/zammad"


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://zammad.example.com", secret: str | None = SECRET) -> ZammadAdapter:
    return ZammadAdapter(base_url=base_url, token="p9LBNxK8-token", secret=secret)


def payload(**article) -> dict:
    data = copy.deepcopy(PAYLOAD)
    data["article"].update(article)
    return data


def ignored(data: dict) -> str:
    """The reason an ignored event gives (a 2xx WebhookError becomes {"status": "ignored", "reason": ...})."""
    with pytest.raises(WebhookError) as err:
        adapter().parse(data, HEADERS)
    assert err.value.status == 200
    return err.value.reason


# -- parse (default payload: WEBHOOK_PAYLOAD) --------------------------------------------------------------

def test_parse_default_payload():
    """WEBHOOK_PAYLOAD: the documented example is a customer's phone article typed by an agent."""
    msg = adapter().parse(PAYLOAD, HEADERS)
    assert (msg.helpdesk, msg.ticket_id, msg.subject) == ("zammad", "81", "Webhook-Test")
    assert msg.text.startswith("This is a simple Webhook Test.<div>")
    assert msg.event_id == "zammad:article:104"
    assert msg.event_type == "MOT Tagger" and msg.channel == "ticket"        # article type "phone"
    assert msg.url == "https://zammad.example.com/#ticket/zoom/81"
    assert msg.author == "Emily Adams <emily@example.com>" and msg.tags == ()
    assert msg.meta["created_by"] == "chris@chrispresso.com" and msg.meta["article_id"] == "104"


def test_replay_with_a_new_delivery_header_is_the_same_event():
    """WEBHOOK_PAYLOAD + WEBHOOK_ADD: X-Zammad-Delivery is not signed, so the event id ignores it; the article id
    (in the signed body) decides, and the signature still verifies on the re-posted body."""
    body = json.dumps(PAYLOAD).encode()
    first = signed(body)
    replay = {**first, "X-Zammad-Delivery": "00000000-0000-4000-8000-000000000000"}
    adapter().verify(replay, body, 0.0)
    a = adapter().parse(json.loads(body), first)
    b = adapter().parse(json.loads(body), replay)
    assert a.event_id == b.event_id == "zammad:article:104"
    assert adapter().parse(json.loads(body), {}).event_id == a.event_id
    assert adapter().parse(payload(id=105), first).event_id == "zammad:article:105"


def test_event_id_without_article_id_hashes_the_signed_article():
    """WEBHOOK_PAYLOAD: a custom payload without article.id still gets an id from signed fields only."""
    data = copy.deepcopy(PAYLOAD)
    del data["article"]["id"]
    a = adapter().parse(data, HEADERS)
    b = adapter().parse(copy.deepcopy(data), {**HEADERS, "X-Zammad-Delivery": "other"})
    assert a.event_id == b.event_id and a.event_id.startswith("zammad:") and "c2ee4bb2" not in a.event_id
    data["article"]["body"] = "another text"
    assert adapter().parse(data, HEADERS).event_id != a.event_id


@pytest.mark.parametrize("article_type,channel", [("email", "ticket"), ("web", "ticket"), ("chat", "chat"),
                                                  ("sms", "chat"), ("telegram personal-message", "chat"),
                                                  ("twitter status", "social"), ("facebook feed comment", "social")])
def test_parse_maps_article_type(article_type, channel):
    assert adapter().parse(payload(type=article_type), {}).channel == channel


def test_parse_reads_ticket_tags_when_the_payload_has_them():
    """A custom payload may carry tags; the default one does not, hence payload_has_tags is False."""
    data = payload()
    data["ticket"]["tags"] = ["espresso", "mot_lzmot"]
    assert adapter().parse(data, {}).tags == ("espresso", "mot_lzmot")
    assert ZammadAdapter.payload_has_tags is False and "tags" not in PAYLOAD["ticket"]


@pytest.mark.parametrize("change,words", [
    ({"sender": "Agent", "sender_id": 1}, "written by Agent"),
    ({"sender": "System", "sender_id": 3}, "written by System"),
    ({"sender": None, "sender_id": 1}, "written by Agent"),          # only the id: seeded 1 = Agent
    ({"sender": None, "sender_id": None}, "unknown sender"),
    ({"internal": True}, "internal note"),
    ({"body": "  "}, "no text"),
])
def test_parse_ignores_what_the_customer_did_not_write_and_says_why(change, words):
    """WEBHOOK_PAYLOAD: article.sender is Customer, Agent or System; internal notes are not for the customer."""
    assert words in ignored(payload(**change))


def test_parse_accepts_every_customer_article_by_sender():
    """WEBHOOK_PAYLOAD: sender decides, not created_by: an e-mail the customer sent (created_by the customer)
    and the documented phone note (created_by an agent, origin_by the customer) are both the customer's."""
    emailed = payload(type="email", created_by={"login": "emily@example.com", "roles": ["Customer"]},
                      created_by_id=8, origin_by=None, origin_by_id=None)
    assert adapter().parse(emailed, HEADERS).meta["created_by"] == "emily@example.com"
    only_id = payload(sender=None, sender_id=2)
    assert adapter().parse(only_id, HEADERS).text.startswith("This is a simple Webhook Test.")


def test_parse_ignores_a_trigger_without_article():
    data = copy.deepcopy(PAYLOAD)
    data["article"] = {}
    assert "without an article" in ignored(data)
    del data["article"]
    assert "without an article" in ignored(data)


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


# -- verify (WEBHOOK_ADD: X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>) ---------------------------------

def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {**HEADERS, **adapter(secret=secret).scheme().sign(body)}


def test_verify_accepts_signed_body():
    body = json.dumps(PAYLOAD).encode()
    adapter().verify(signed(body), body, 0.0)


def test_signature_is_the_documented_formula():
    """Known answer, computed independently of the adapter as UserAgent.set_signature writes it:
    X-Hub-Signature = "sha1=" + hex HMAC-SHA1(signature token, body)."""
    body = json.dumps(PAYLOAD).encode()
    expected = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert adapter().scheme().sign(body) == {"X-Hub-Signature": expected}
    adapter().verify({**HEADERS, "X-Hub-Signature": expected}, body, 0.0)


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


# -- read_tags / write_tags (TAGS_API: list, per-tag add and remove) ----------------------------------------

def test_read_tags_lists_the_tickets_tags(hd):
    """TAGS_API "List": GET /api/v1/tags?object=Ticket&o_id={id} -> {"tags": [...]}."""
    hd.route("GET", "/api/v1/tags", json={"tags": ["americano", "mot_fmot"]})
    with hd.client() as client:
        assert adapter(hd.url).read_tags(client, "81") == ("americano", "mot_fmot")
    (request,) = hd.requests
    assert (request.method, request.path, request.query) == ("GET", "/api/v1/tags", {"object": "Ticket", "o_id": "81"})
    assert request.headers["authorization"] == TOKEN_HEADER


def test_read_tags_429_is_retryable(hd):
    hd.route("GET", "/api/v1/tags", status=429, headers={"Retry-After": "3"}, json={"error": "slow down"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).read_tags(client, "81")
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 3, False)


def test_write_tags_adds_missing_and_removes_only_our_present_stale_tags(hd):
    """TAGS_API "Add"/"Remove": per tag, {"item", "object": "Ticket", "o_id"}."""
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
    assert {r.headers["authorization"] for r in hd.requests} == {TOKEN_HEADER}


def test_429_with_retry_after_and_permanent_422(hd):
    hd.route("GET", "/api/v1/tags", json={"tags": []})
    hd.route("POST", "/api/v1/tags/add", status=429, headers={"Retry-After": "12"}, json={"error": "slow down"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 12, False)
    hd.route("POST", "/api/v1/tags/add", status=422, json={"error": "Not authorized"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot"], [])
    assert err.value.permanent and "tagger setup zammad" in str(err.value)


def test_5xx_on_listing_is_retryable(hd):
    hd.route("GET", "/api/v1/tags", status=502, text="Bad Gateway")
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "81", ["mot_fmot"], [])
    assert err.value.status == 502 and not err.value.permanent and hd.calls() == [("GET", "/api/v1/tags")]


# -- prepare (TAGS_API "Search" and "Admin - Create") ----------------------------------------------------------

def search_replies(existing: set[str]) -> list[Reply]:
    """tag_search answers in the order prepare asks (one term per tag); "contains" matches included."""
    return [Reply(json=[{"id": i, "value": f"x{tag}"}] + ([{"id": 100 + i, "value": tag}] if tag in existing else []))
            for i, tag in enumerate(OUR_TAGS)]


def test_prepare_creates_only_the_missing_tags(hd):
    """TAGS_API: search each of our tags (contains-match, so the exact value is compared), create the missing
    ones in the admin tag list: POST /api/v1/tag_list {"name": ...} -> 200 {}."""
    hd.route("GET", "/api/v1/tag_search", *search_replies(set(OUR_TAGS) - {"mot_smot", "mot_review"}))
    hd.route("POST", "/api/v1/tag_list", json={})
    with hd.client() as client:
        steps = adapter(hd.url).prepare(client)
    searches = [r for r in hd.requests if r.path == "/api/v1/tag_search"]
    assert [r.query for r in searches] == [{"term": tag} for tag in OUR_TAGS]
    creates = [r for r in hd.requests if r.method == "POST"]
    assert [r.json for r in creates] == [{"name": "mot_smot"}, {"name": "mot_review"}]
    assert all(r.path == "/api/v1/tag_list" and r.headers["authorization"] == TOKEN_HEADER for r in creates)
    assert [(s.action, s.what) for s in steps if s.action == "created"] == [("created", "tag mot_smot"),
                                                                            ("created", "tag mot_review")]
    assert sum(s.action == "exists" for s in steps) == 7


def test_prepare_twice_creates_nothing(hd):
    hd.route("GET", "/api/v1/tag_search", *search_replies(set(OUR_TAGS)))
    with hd.client() as client:
        steps = adapter(hd.url).prepare(client)
    assert {s.action for s in steps} == {"exists"} and len(steps) == 9
    assert {m for m, _ in hd.calls()} == {"GET"}


def test_prepare_refuses_with_the_fix_when_the_token_may_not_create_tags(hd):
    """TAGS_API: "Admin - Create" needs admin.tag; Zammad answers 403 otherwise. With "New tags" off the tags
    must exist, so prepare stops and says exactly what to do."""
    hd.route("GET", "/api/v1/tag_search", *search_replies(set(OUR_TAGS) - {"mot_smot", "sentiment_negative"}))
    hd.route("POST", "/api/v1/tag_list", status=403, json={"error": "Not authorized (user)!"})
    with hd.client() as client, pytest.raises(ConfigError) as err:
        adapter(hd.url).prepare(client)
    text = str(err.value)
    assert "mot_smot, sentiment_negative" in text and "admin.tag" in text and "Settings > Manage > Tags" in text
    assert "tagger setup zammad" in text


def test_prepare_retries_a_5xx_not_as_a_config_error(hd):
    hd.route("GET", "/api/v1/tag_search", status=503, text="down")
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).prepare(client)
    assert err.value.status == 503 and not err.value.permanent


# -- check (USER_API "me", TAGS_API "Search") ---------------------------------------------------------------

def test_check_reports_the_user_and_missing_tags_and_changes_nothing(hd):
    hd.route("GET", "/api/v1/users/me", json={"id": 3, "login": "chris@chrispresso.com"})
    hd.route("GET", "/api/v1/tag_search", *search_replies(set(OUR_TAGS) - {"mot_umot"}))
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert steps[0].action == "ok" and "chris@chrispresso.com" in steps[0].detail
    assert [(s.action, s.what) for s in steps[1:]] == [("missing", "tag mot_umot")]
    assert {m for m, _ in hd.calls()} == {"GET"} and hd.requests[0].headers["authorization"] == TOKEN_HEADER


def test_check_all_tags_present(hd):
    hd.route("GET", "/api/v1/users/me", json={"id": 3, "login": "chris@chrispresso.com"})
    hd.route("GET", "/api/v1/tag_search", *search_replies(set(OUR_TAGS)))
    with hd.client() as client:
        steps = adapter(hd.url).check(client)
    assert [s.action for s in steps] == ["ok", "ok"] and "9 tags" in steps[1].detail


def test_check_refused_token_is_a_config_error(hd):
    hd.route("GET", "/api/v1/users/me", status=401, json={"error": "authentication failed"})
    with hd.client() as client, pytest.raises(ConfigError, match="TAGGER_ZAMMAD_TOKEN"):
        adapter(hd.url).check(client)


# -- setup (WEBHOOK_API, TRIGGER_API) -----------------------------------------------------------------------

def all_tags_exist(hd: FakeHelpdesk) -> None:
    hd.route("GET", "/api/v1/tag_search", *search_replies(set(OUR_TAGS)))


def test_setup_creates_the_webhook_with_a_fresh_secret_and_the_trigger(hd):
    """WEBHOOK_API "Create" (POST /api/v1/webhooks with signature_token -> 201 with id) and TRIGGER_API "Create"
    (POST /api/v1/triggers, perform notification.webhook.webhook_id, condition on the article sender)."""
    all_tags_exist(hd)
    hd.route("GET", "/api/v1/webhooks", json=[{"id": 1, "name": "Other", "endpoint": "https://other.example/x"}])
    hd.route("POST", "/api/v1/webhooks", status=201, json={"id": 7, "name": "MOT Tagger", "endpoint": HOOK_URL,
                                                          "signature_token": "**********"})
    hd.route("GET", "/api/v1/triggers", json=[{"id": 2, "name": "auto reply", "perform": {
        "notification.email": {"recipient": "article_last_sender"}}}])
    hd.route("POST", "/api/v1/triggers", status=201, json={"id": 13, "name": "MOT Tagger"})
    with hd.client() as client:
        steps = adapter(hd.url, secret=None).setup(client, HOOK_URL)
    hook_step, trigger_step = steps[-2:]
    assert (hook_step.action, trigger_step.action) == ("created", "created")
    secret = hook_step.env["TAGGER_ZAMMAD_SECRET"]
    assert len(secret) >= 40
    (hook,) = [r for r in hd.requests if r.method == "POST" and r.path == "/api/v1/webhooks"]
    assert hook.json == {"name": "MOT Tagger", "endpoint": HOOK_URL, "http_method": "post", "signature_token": secret,
                         "ssl_verify": True, "customized_payload": False, "active": True,
                         "note": hook.json["note"]}
    (trigger,) = [r for r in hd.requests if r.method == "POST" and r.path == "/api/v1/triggers"]
    assert trigger.json["perform"] == {"notification.webhook": {"webhook_id": 7}}
    assert trigger.json["condition"] == {"article.action": {"operator": "is", "value": "create"},
                                         "article.sender_id": {"operator": "is", "value": 2}}
    assert (trigger.json["activator"], trigger.json["active"], trigger.json["name"]) == ("action", True, "MOT Tagger")
    assert {r.headers["authorization"] for r in hd.requests} == {TOKEN_HEADER}
    # a delivery signed with the new secret verifies
    body = json.dumps(PAYLOAD).encode()
    adapter(secret=secret).verify(signed(body, secret), body, 0.0)


def test_setup_twice_reuses_the_webhook_and_the_trigger(hd):
    """WEBHOOK_API "List" (token shown as **********, so it is set again with PUT) and TRIGGER_API "List":
    nothing is created a second time."""
    all_tags_exist(hd)
    hd.route("GET", "/api/v1/webhooks", json=[{"id": 7, "name": "MOT Tagger", "endpoint": HOOK_URL,
                                               "signature_token": "**********", "active": True}])
    hd.route("PUT", "/api/v1/webhooks/7", json={"id": 7})
    hd.route("GET", "/api/v1/triggers", json=[{"id": 13, "name": "MOT Tagger", "active": True,
                                               "perform": {"notification.webhook": {"webhook_id": "7"}}}])
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert [s.action for s in steps[-2:]] == ["exists", "exists"] and not any(s.env for s in steps)
    assert not [r for r in hd.requests if r.method == "POST"]
    (put,) = [r for r in hd.requests if r.method == "PUT"]
    assert put.path == "/api/v1/webhooks/7" and put.json["signature_token"] == SECRET
    assert put.json["endpoint"] == HOOK_URL


def test_setup_switches_on_our_inactive_trigger_and_moves_a_renamed_webhook(hd):
    """TRIGGER_API "Update" (a partial {"active": true} works); WEBHOOK_API "Update" for a webhook named ours
    that points elsewhere (webhook names are ours to reuse; creating a second would duplicate it)."""
    all_tags_exist(hd)
    hd.route("GET", "/api/v1/webhooks", json=[{"id": 7, "name": "MOT Tagger", "endpoint": "https://old/webhooks/zammad"}])
    hd.route("PUT", "/api/v1/webhooks/7", json={"id": 7})
    hd.route("GET", "/api/v1/triggers", json=[{"id": 13, "name": "Tagging", "active": False,
                                               "perform": {"notification.webhook": {"webhook_id": 7}}}])
    hd.route("PUT", "/api/v1/triggers/13", json={"id": 13})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert [s.action for s in steps[-2:]] == ["updated", "updated"]
    hook_put, trigger_put = [r for r in hd.requests if r.method == "PUT"]
    assert hook_put.json["endpoint"] == HOOK_URL and trigger_put.json == {"active": True}


def test_setup_points_the_trigger_named_ours_at_the_webhook(hd):
    """TRIGGER_API: trigger names are unique, so an existing "MOT Tagger" is updated, not created again."""
    all_tags_exist(hd)
    hd.route("GET", "/api/v1/webhooks", json=[])
    hd.route("POST", "/api/v1/webhooks", status=201, json={"id": 9})
    hd.route("GET", "/api/v1/triggers", json=[{"id": 4, "name": "mot tagger", "perform": {}}])
    hd.route("PUT", "/api/v1/triggers/4", json={"id": 4})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, "http://127.0.0.1:8080/webhooks/zammad")
    assert steps[-1].action == "updated"
    (hook,) = [r for r in hd.requests if r.path == "/api/v1/webhooks" and r.method == "POST"]
    assert hook.json["ssl_verify"] is False            # plain http: nothing to verify (WEBHOOK_API note)
    assert hook.json["signature_token"] != SECRET      # a new webhook gets a fresh token, reported in env
    assert steps[-2].env == {"TAGGER_ZAMMAD_SECRET": hook.json["signature_token"]}
    (put,) = [r for r in hd.requests if r.method == "PUT"]
    assert put.path == "/api/v1/triggers/4" and put.json["perform"] == {"notification.webhook": {"webhook_id": 9}}


def test_setup_without_admin_webhook_says_what_to_click(hd):
    """WEBHOOK_API needs admin.webhook: on 403 the steps say exactly what to create by hand, with a fresh secret."""
    all_tags_exist(hd)
    hd.route("GET", "/api/v1/webhooks", status=403, json={"error": "Not authorized (user)!"})
    with hd.client() as client:
        steps = adapter(hd.url, secret=None).setup(client, HOOK_URL)
    hook_step, trigger_step = steps[-2:]
    assert (hook_step.action, trigger_step.action) == ("manual", "manual")
    secret = hook_step.env["TAGGER_ZAMMAD_SECRET"]
    assert secret in hook_step.detail and HOOK_URL in hook_step.detail and "New Webhook" in hook_step.detail
    assert "Sender is Customer" in trigger_step.detail and "Webhook" in trigger_step.detail
    assert not [r for r in hd.requests if r.method in ("POST", "PUT")]


def test_setup_without_admin_trigger_keeps_the_webhook_and_says_what_to_click(hd):
    all_tags_exist(hd)
    hd.route("GET", "/api/v1/webhooks", json=[])
    hd.route("POST", "/api/v1/webhooks", status=201, json={"id": 5})
    hd.route("GET", "/api/v1/triggers", status=403, json={"error": "Not authorized (user)!"})
    with hd.client() as client:
        steps = adapter(hd.url).setup(client, HOOK_URL)
    assert [s.action for s in steps[-2:]] == ["created", "manual"] and "admin.trigger" in steps[-1].detail


# -- list_tickets (TICKETS_API, INTRO pagination, ARTICLES_API, TAGS_API) ----------------------------------

def ticket(ticket_id: int, updated: str = "2024-03-01T10:00:00.000Z", state: str = "open") -> dict:
    return {"id": ticket_id, "number": f"2200{ticket_id}", "title": f"Order {ticket_id}", "state": state,
            "updated_at": updated, "created_at": "2024-02-01T10:00:00.000Z"}


def article(article_id: int, sender: str, body: str, *, internal: bool = False, type_: str = "email") -> dict:
    return {"id": article_id, "ticket_id": 1, "sender": sender, "sender_id": {"Agent": 1, "Customer": 2}[sender],
            "type": type_, "internal": internal, "body": body, "content_type": "text/plain",
            "created_at": f"2024-02-01T10:00:{article_id:02d}.000Z"}


def test_list_tickets_pages_and_reads_the_customers_last_article(hd):
    """TICKETS_API "List" with INTRO's ?page=&per_page= (no total: a full page means ask again); ARTICLES_API
    by_ticket; TAGS_API list for the ticket's tags (the backfill must see agents' labels)."""
    hd.route("GET", "/api/v1/tickets", json=[ticket(1), ticket(2)])
    hd.route("GET", "/api/v1/ticket_articles/by_ticket/1", json=[
        article(1, "Customer", "My order never arrived"), article(2, "Agent", "We are sorry, checking"),
        article(3, "Customer", "It arrived today, thanks!", type_="web"), article(4, "Customer", "draft", internal=True)])
    hd.route("GET", "/api/v1/ticket_articles/by_ticket/2", json=[article(5, "Agent", "Outbound offer")])
    hd.route("GET", "/api/v1/tags", json={"tags": ["vip", "mot_smot"]})
    a = adapter(hd.url)
    a.per_page = 2
    with hd.client() as client:
        page = a.list_tickets(client, None, None)
    assert page.skipped == 1 and json.loads(page.next_cursor) == {"page": 2}
    (msg,) = page.messages
    assert (msg.ticket_id, msg.text, msg.subject, msg.tags) == ("1", "It arrived today, thanks!", "Order 1",
                                                                ("vip", "mot_smot"))
    assert msg.event_type == "backfill" and msg.meta["writable"] and msg.meta["article_id"] == "3"
    assert msg.url == f"{hd.url}/#ticket/zoom/1" and msg.meta["updated_at"] == "2024-03-01T10:00:00.000Z"
    listing = hd.requests[0]
    assert listing.query == {"page": "1", "per_page": "2", "expand": "true"}
    assert hd.calls() == [("GET", "/api/v1/tickets"), ("GET", "/api/v1/ticket_articles/by_ticket/1"),
                          ("GET", "/api/v1/tags"), ("GET", "/api/v1/ticket_articles/by_ticket/2")]
    assert {r.headers["authorization"] for r in hd.requests} == {TOKEN_HEADER}
    assert [r.query for r in hd.requests if r.path == "/api/v1/tags"] == [{"object": "Ticket", "o_id": "1"}]


def test_list_tickets_resumes_from_the_cursor_and_stops_on_a_short_page(hd):
    hd.route("GET", "/api/v1/tickets", json=[ticket(3)])
    hd.route("GET", "/api/v1/ticket_articles/by_ticket/3", json=[article(9, "Customer", "Hello")])
    hd.route("GET", "/api/v1/tags", json={"tags": []})
    a = adapter(hd.url)
    a.per_page = 2
    with hd.client() as client:
        page = a.list_tickets(client, json.dumps({"page": 2}), None)
    assert page.next_cursor is None and [m.text for m in page.messages] == ["Hello"]
    assert hd.requests[0].query["page"] == "2"
    with hd.client() as client, pytest.raises(HelpdeskError, match="cursor"):
        a.list_tickets(client, "not json", None)


def test_list_tickets_skips_old_and_merged_tickets_without_reading_them(hd):
    """`since` is compared with updated_at (the list endpoint has no filter); merged tickets have no articles
    of their own."""
    hd.route("GET", "/api/v1/tickets", json=[ticket(1, "2023-01-01T00:00:00.000Z"), ticket(2, state="merged"),
                                             ticket(3, "2024-06-01T00:00:00Z")])
    hd.route("GET", "/api/v1/ticket_articles/by_ticket/3", json=[article(9, "Customer", "Still broken")])
    hd.route("GET", "/api/v1/tags", json={"tags": []})
    from tagger.helpdesks.zammad import _epoch

    since = _epoch("2024-01-01T00:00:00Z")
    assert iso_utc(since) == "2024-01-01T00:00:00Z"
    with hd.client() as client:
        page = adapter(hd.url).list_tickets(client, None, since)
    assert page.skipped == 2 and [m.ticket_id for m in page.messages] == ["3"] and page.next_cursor is None
    assert ("GET", "/api/v1/ticket_articles/by_ticket/1") not in hd.calls()
    assert ("GET", "/api/v1/ticket_articles/by_ticket/2") not in hd.calls()


def test_list_tickets_429_on_articles_is_retryable(hd):
    hd.route("GET", "/api/v1/tickets", json=[ticket(1)])
    hd.route("GET", "/api/v1/ticket_articles/by_ticket/1", status=429, headers={"Retry-After": "30"},
             json={"error": "too many requests"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).list_tickets(client, None, None)
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 30, False)
