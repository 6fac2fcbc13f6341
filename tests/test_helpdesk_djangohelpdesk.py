"""django-helpdesk adapter against django-helpdesk's contract, with a real HTTP server on 127.0.0.1.

Sources: django-helpdesk 2.6.1 as installed (helpdesk/webhooks.py: the new-ticket and follow-up payloads;
helpdesk/serializers.py `TicketSerializer`: custom fields as `custom_<name>`, `update` stores only those;
helpdesk/views/api.py `TicketViewSet`: GET/PATCH /api/tickets/{id}/) and docs/webhooks.rst of
django-helpdesk/django-helpdesk. The three payloads in helpdesk_payloads/djangohelpdesk_*.json were captured from a
real django-helpdesk 2.6.1: a ticket created through the REST API, an agent's follow-up through the REST API, and
a customer's e-mail reply fed through `helpdesk.email.extract_email_metadata`. The whole loop against a running
django-helpdesk is tests/test_e2e_djangohelpdesk.py. Authorship of follow-ups: helpdesk/update_ticket.py (`f.user`
is set only for staff), helpdesk/email.py (a follow-up made from an e-mail carries its `message_id`),
management/commands/escalate_tickets.py and views/public.py (public follow-ups without a user that django-helpdesk
writes itself). The set-up check reads DRF's metadata, `OPTIONS /api/tickets/` (rest_framework/metadata.py
SimpleMetadata: `actions.POST` with every writable field and a choice field's `choices`;
https://www.django-rest-framework.org/api-guide/metadata/).
"""
from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks import get_adapter
from tagger.helpdesks.djangohelpdesk import DjangoHelpdeskAdapter

from .helpdesk_fake import FakeHelpdesk, Reply

FOLDER = Path(__file__).parent / "helpdesk_payloads"
NEW_TICKET = json.loads((FOLDER / "djangohelpdesk_new_ticket.json").read_text(encoding="utf-8"))
AGENT_FOLLOWUP = json.loads((FOLDER / "djangohelpdesk_agent_followup.json").read_text(encoding="utf-8"))
EMAIL_REPLY = json.loads((FOLDER / "djangohelpdesk_email_reply.json").read_text(encoding="utf-8"))
PAYLOAD = NEW_TICKET

SECRET = "dh-shared-token-0b7f"
DESCRIPTION = "Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!"
REPLY_TEXT = "Paldies, paka šodien atnāca! Viss kārtībā.\n"

# GET /api/tickets/3/ after the e-mail reply, abridged (custom fields as django-helpdesk shows them).
TICKET = {**EMAIL_REPLY["ticket"], "custom_mot_stage": "smot", "custom_mot_sentiment": "negative",
          "custom_mot_review": False}


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:  # it routes OPTIONS too (DRF answers it with its metadata)
        yield server


def adapter(base_url: str = "https://desk.example.com/helpdesk", **kw) -> DjangoHelpdeskAdapter:
    return DjangoHelpdeskAdapter(base_url=base_url, user="tagger", password="pw", secret=SECRET, **kw)


def with_fields(payload: dict, stage="", sentiment="", review=False) -> dict:
    data = copy.deepcopy(payload)
    data["ticket"].update(custom_mot_stage=stage, custom_mot_sentiment=sentiment, custom_mot_review=review)
    return data


# -- configuration -------------------------------------------------------------------------------------------

def test_from_env_reads_url_credentials_and_the_shared_token():
    env = {"TAGGER_DJANGOHELPDESK_URL": "https://desk.example.com/helpdesk/", "TAGGER_DJANGOHELPDESK_USER": "u",
           "TAGGER_DJANGOHELPDESK_PASSWORD": "cred-pw", "TAGGER_DJANGOHELPDESK_TOKEN": SECRET}
    a = get_adapter("djangohelpdesk", env)
    assert a.base_url == "https://desk.example.com/helpdesk" and a.secret == SECRET
    assert get_adapter("djangohelpdesk", {**env, "TAGGER_DJANGOHELPDESK_SECRET": SECRET}).secret == SECRET
    with pytest.raises(ConfigError, match="both set and differ"):
        get_adapter("djangohelpdesk", {**env, "TAGGER_DJANGOHELPDESK_SECRET": "other"})
    with pytest.raises(ConfigError, match="TAGGER_DJANGOHELPDESK_PASSWORD"):
        get_adapter("djangohelpdesk", {k: v for k, v in env.items() if not k.endswith("PASSWORD")})
    with pytest.raises(ConfigError, match="STAGE_FIELD"):
        get_adapter("djangohelpdesk", {**env, "TAGGER_DJANGOHELPDESK_STAGE_FIELD": "mot stage"})
    assert "cred-pw" not in repr(a) and SECRET not in repr(a)


# -- parse -----------------------------------------------------------------------------------------------------

def test_parse_new_ticket_reads_title_and_description():
    msg = adapter().parse(NEW_TICKET, {})
    assert (msg.helpdesk, msg.ticket_id, msg.channel, msg.event_type) == ("djangohelpdesk", "3", "ticket",
                                                                           "ticket.created")
    assert (msg.subject, msg.text, msg.tags) == ("Pasūtījums nav atnācis", DESCRIPTION, ())
    assert msg.url == "https://desk.example.com/helpdesk/tickets/3/" and msg.author == "janis@example.lv"
    assert msg.event_id.startswith("djangohelpdesk:") and msg.meta["queue_slug"] == "support"
    assert adapter().parse(copy.deepcopy(NEW_TICKET), {}).event_id == msg.event_id   # same delivery, same id


def test_parse_customer_email_reply_reads_the_reply():
    msg = adapter().parse(EMAIL_REPLY, {})
    assert msg.text == REPLY_TEXT and msg.subject == "Pasūtījums nav atnācis"
    assert msg.event_type == "followup.created" and msg.meta == {"queue_slug": "support", "followup_id": "5",
                                                                 "customer_reply": True}
    ids = {adapter().parse(p, {}).event_id for p in (NEW_TICKET, AGENT_FOLLOWUP, EMAIL_REPLY)}
    assert len(ids) == 3


def test_parse_agent_followup_repeats_the_last_customer_text_with_the_labels_of_the_ticket():
    """An agent's follow-up is no customer message: it carries the text classified last (so the service
    answers `unchanged`) and the custom fields as tags (so an agent's change is seen as a correction)."""
    msg = adapter().parse(with_fields(AGENT_FOLLOWUP, "fmot", "Neutral", True), {})
    assert msg.text == DESCRIPTION and not msg.meta["customer_reply"]
    assert msg.tags == ("mot_fmot", "sentiment_neutral", "mot_review")
    later = copy.deepcopy(EMAIL_REPLY)
    later["ticket"]["followup_set"].append({**AGENT_FOLLOWUP["ticket"]["followup_set"][1], "id": 6})
    later["followup_id"] = 6
    assert adapter().parse(later, {}).text == REPLY_TEXT        # the newest customer text is still the reply


def with_followup(payload: dict, **followup) -> dict:
    """`payload` after one more follow-up (the newest), the webhook django-helpdesk sends for it."""
    data = copy.deepcopy(payload)
    data["ticket"]["followup_set"].append({**EMAIL_REPLY["ticket"]["followup_set"][-1], "id": 9, **followup})
    data["followup_id"] = 9
    return data


@pytest.mark.parametrize("followup", [
    # views/public.py: the submitter accepts the resolution; django-helpdesk writes the text (user None, public)
    {"user": None, "public": True, "message_id": None, "new_status": 4,
     "title": "Ticket Closed", "comment": "Submitter accepted resolution and closed ticket"},
    # management/commands/escalate_tickets.py: public, no user
    {"user": None, "public": True, "message_id": None, "title": "Ticket Escalated",
     "comment": "Ticket escalated after 3 days"},
    # an agent's private comment and an agent's public reply (staff follow-ups carry the user)
    {"user": 1, "public": False, "message_id": None, "comment": "internal: refund approved"},
    {"user": 1, "public": True, "message_id": None, "comment": "We refunded you."},
])
def test_only_a_customers_email_follow_up_is_classified(followup):
    """Issue 11.2: django-helpdesk's own follow-ups and agents' follow-ups never become the customer's text; the
    webhook repeats the customer's last words (so the service answers `unchanged` or records a correction)."""
    msg = adapter().parse(with_followup(EMAIL_REPLY, **followup), {})
    assert msg.text == REPLY_TEXT and msg.meta["customer_reply"] is False and msg.meta["followup_id"] == "9"


def test_an_email_follow_up_is_the_customers_message():
    msg = adapter().parse(with_followup(EMAIL_REPLY, comment="Kur ir mana nauda?", message_id="<r-2@example.lv>"), {})
    assert msg.text == "Kur ir mana nauda?" and msg.meta["customer_reply"] is True


def test_parse_reads_labels_in_either_form_and_ignores_other_values():
    assert adapter().parse(with_fields(NEW_TICKET, "MOT_ZMOT", "sentiment_positive"), {}).tags == (
        "mot_zmot", "sentiment_positive")
    assert adapter().parse(with_fields(NEW_TICKET, "later", 3, "yes"), {}).tags == ()
    assert adapter(stage_field="stage").parse(with_fields(NEW_TICKET, "zmot"), {}).tags == ()


def test_parse_ignores_a_ticket_without_text():
    empty = copy.deepcopy(NEW_TICKET)
    empty["ticket"].update(description="  ", followup_set=[])
    assert adapter().parse(empty, {}) is None


@pytest.mark.parametrize("payload,reason", [
    ({"queue_slug": "support"}, "missing field ticket"),
    ({"ticket": "3"}, "ticket must be an object"),
    ({"ticket": {"title": "x", "description": "y"}}, "ticket.id"),
    ({"ticket": {"id": "3; DROP", "description": "y"}}, "ticket.id"),
    ({**AGENT_FOLLOWUP, "followup_id": "4/5"}, "followup_id"),
    ([NEW_TICKET], "JSON object"),
])
def test_parse_rejects_unusable_payloads(payload, reason):
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 422 and reason in err.value.reason


# -- verify: django-helpdesk does not sign; the shared token is in the webhook URL ----------------------------

@pytest.mark.parametrize("headers,query", [({}, {"token": SECRET}), ({"X-Tagger-Token": SECRET}, None)])
def test_verify_accepts_the_shared_token(headers, query):
    adapter().verify(headers, b"{}", 0.0, query=query)


@pytest.mark.parametrize("headers,query", [({}, None), ({}, {"token": SECRET[:-1]}), ({}, {"token": ""}),
                                           ({"X-Tagger-Token": "nope"}, {"token": "nope"})])
def test_verify_rejects_a_wrong_or_missing_token(headers, query):
    with pytest.raises(WebhookError) as err:
        adapter().verify(headers, b"{}", 0.0, query=query)
    assert err.value.status == 401


def test_verify_without_a_configured_token_is_401_naming_the_variable():
    with pytest.raises(WebhookError, match="TAGGER_DJANGOHELPDESK_SECRET"):
        DjangoHelpdeskAdapter(base_url="https://d", user="u", password="p").verify({}, b"{}", 0.0, {"token": "x"})


# -- write_tags: GET, then PATCH only our custom fields ---------------------------------------------------------

PATH = "/helpdesk/api/tickets/3/"


def test_write_tags_patches_only_our_custom_fields(hd):
    hd.route("GET", PATH, json=TICKET)
    hd.route("PATCH", PATH, json={**TICKET, "custom_mot_stage": "umot", "custom_mot_sentiment": "positive"})
    with hd.client() as client:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_umot", "sentiment_positive"],
                                                 ["mot_smot", "sentiment_negative", "mot_review", "vip"])
    assert hd.calls() == [("GET", PATH), ("PATCH", PATH)]
    assert hd.requests[1].json == {"custom_mot_stage": "umot", "custom_mot_sentiment": "positive"}
    auth = "Basic " + base64.b64encode(b"tagger:pw").decode()
    assert hd.requests[0].headers["authorization"] == hd.requests[1].headers["authorization"] == auth


def test_write_tags_sets_and_clears_the_review_flag(hd):
    hd.route("GET", PATH, json=TICKET)
    hd.route("PATCH", PATH, json={**TICKET, "custom_mot_review": True})
    with hd.client() as client:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot", "sentiment_negative", "mot_review"], [])
    assert hd.requests[1].json == {"custom_mot_review": True}
    hd.route("GET", PATH, json={**TICKET, "custom_mot_review": True})
    hd.route("PATCH", PATH, json=TICKET)
    with hd.client() as client:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot", "sentiment_negative"], ["mot_review"])
    assert hd.requests[3].json == {"custom_mot_review": False}


def test_write_tags_skips_the_patch_when_the_ticket_already_shows_our_labels(hd):
    hd.route("GET", PATH, json=TICKET)
    with hd.client() as client:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot", "sentiment_negative"],
                                                 ["mot_zmot", "mot_review"])
    assert hd.calls() == [("GET", PATH)]


def test_write_tags_without_a_review_field_writes_the_rest(hd):
    ticket = {k: v for k, v in TICKET.items() if k != "custom_mot_review"}
    hd.route("GET", PATH, json={**ticket, "custom_mot_stage": ""})
    hd.route("PATCH", PATH, json=ticket)
    with hd.client() as client:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot", "sentiment_negative", "mot_review"], [])
    assert hd.requests[1].json == {"custom_mot_stage": "smot"}


def test_missing_custom_fields_are_a_permanent_error_that_says_what_to_create(hd):
    hd.route("GET", PATH, json={k: v for k, v in TICKET.items() if not k.startswith("custom_")})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot"], [])
    assert err.value.permanent and "mot_stage, mot_sentiment" in str(err.value)
    assert hd.calls() == [("GET", PATH)]


def test_a_value_the_helpdesk_did_not_store_is_reported(hd):
    hd.route("GET", PATH, json={**TICKET, "custom_mot_stage": ""})
    hd.route("PATCH", PATH, json={**TICKET, "custom_mot_stage": ""})
    with hd.client() as client, pytest.raises(HelpdeskError, match="did not store custom_mot_stage"):
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot"], [])


def test_errors_map_to_retry_or_permanent(hd):
    hd.route("GET", PATH, Reply(503, {}), Reply(404, {"detail": "No Ticket matches the given query."}))
    with hd.client() as client:
        with pytest.raises(HelpdeskError) as first:
            adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot"], [])
        with pytest.raises(HelpdeskError) as second:
            adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_smot"], [])
    assert not first.value.permanent and second.value.permanent and second.value.status == 404
    hd.route("GET", PATH, json=TICKET)
    hd.route("PATCH", PATH, status=400, json={"custom_mot_stage": ['"xmot" is not a valid choice.']})
    with hd.client() as client, pytest.raises(HelpdeskError) as bad:
        adapter(hd.url + "/helpdesk").write_tags(client, "3", ["mot_zmot"], [])
    assert bad.value.permanent and bad.value.status == 400


# -- read_tags, prepare, check, setup -------------------------------------------------------------------------

META = {"name": "Ticket List", "renders": ["application/json"], "parses": ["application/json"], "actions": {"POST": {
    "id": {"type": "integer", "required": False, "read_only": True, "label": "ID"},
    "title": {"type": "string", "required": True, "read_only": False, "label": "Title", "max_length": 200},
    "custom_mot_stage": {"type": "choice", "required": False, "read_only": False, "label": "MOT stage",
                         "choices": [{"value": "", "display_name": "---------"}] + [
                             {"value": v, "display_name": v} for v in ("lzmot", "zmot", "fmot", "smot", "umot")]},
    "custom_mot_sentiment": {"type": "choice", "required": False, "read_only": False, "label": "MOT sentiment",
                             "choices": [{"value": v, "display_name": v} for v in ("positive", "neutral", "negative")]},
    "custom_mot_review": {"type": "boolean", "required": False, "read_only": False, "label": "MOT review"}}}}
API = "/helpdesk/api/tickets/"


def test_read_tags_reads_the_custom_fields(hd):
    hd.route("GET", PATH, json=TICKET)
    with hd.client() as client:
        assert adapter(hd.url + "/helpdesk").read_tags(client, "3") == ("mot_smot", "sentiment_negative")
    assert hd.calls() == [("GET", PATH)]


def test_check_reads_the_fields_from_drf_metadata(hd):
    hd.route("OPTIONS", API, json=META)
    with hd.client() as client:
        steps = adapter(hd.url + "/helpdesk").check(client)
    assert hd.calls() == [("OPTIONS", API)]
    assert hd.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"tagger:pw").decode()
    assert [(s.action, s.what) for s in steps] == [("ok", "django-helpdesk API"), ("exists", "custom field mot_stage"),
                                                   ("exists", "custom field mot_sentiment"),
                                                   ("exists", "custom field mot_review")]


def test_check_reports_missing_fields_and_a_list_without_our_labels(hd):
    fields = {k: v for k, v in META["actions"]["POST"].items() if k not in ("custom_mot_sentiment", "custom_mot_review")}
    fields["custom_mot_stage"] = {**fields["custom_mot_stage"], "choices": [{"value": "zmot", "display_name": "z"}]}
    hd.route("OPTIONS", API, json={**META, "actions": {"POST": fields}})
    with hd.client() as client:
        steps = adapter(hd.url + "/helpdesk").check(client)
    detail = {s.what: (s.action, s.detail) for s in steps}
    assert detail["custom field mot_stage"] == ("missing", "its list lacks lzmot, fmot, smot, umot")
    assert detail["custom field mot_sentiment"] == ("missing", "required")
    assert detail["custom field mot_review"][0] == "missing" and "optional" in detail["custom field mot_review"][1]


def test_a_non_staff_user_is_told_why(hd):
    hd.route("OPTIONS", API, status=403, json={"detail": "You do not have permission to perform this action."})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url + "/helpdesk").check(client)
    assert err.value.permanent and err.value.status == 403 and "staff" in str(err.value)


def test_prepare_refuses_with_the_fix_when_a_required_field_is_missing(hd):
    """The REST API cannot create custom fields (Django admin models): say exactly what to add."""
    fields = {k: v for k, v in META["actions"]["POST"].items() if k != "custom_mot_stage"}
    hd.route("OPTIONS", API, json={**META, "actions": {"POST": fields}})
    with hd.client() as client, pytest.raises(ConfigError) as err:
        adapter(hd.url + "/helpdesk").prepare(client)
    assert "mot_stage" in str(err.value) and "Custom fields" in str(err.value) and "lzmot" in str(err.value)
    assert {m for m, _ in hd.calls()} == {"OPTIONS"}


def test_setup_returns_the_settings_to_paste_with_a_fresh_token(hd):
    hd.route("OPTIONS", API, json=META)
    a = DjangoHelpdeskAdapter(base_url=hd.url + "/helpdesk", user="tagger", password="pw")   # no token yet
    with hd.client() as client:
        steps = a.setup(client, "https://tagger.example.com/webhooks/djangohelpdesk")
    manual = steps[-1]
    token = manual.env["TAGGER_DJANGOHELPDESK_SECRET"]
    assert manual.action == "manual" and [s.action for s in steps[:-1]] == ["exists"] * 3
    assert f'TAGGER_WEBHOOK = "https://tagger.example.com/webhooks/djangohelpdesk?token={token}"' in manual.detail
    assert "def HELPDESK_GET_FOLLOWUP_WEBHOOK_URLS():" in manual.detail
    assert "HELPDESK_GET_NEW_TICKET_WEBHOOK_URLS" in manual.detail
    with hd.client() as client:
        configured = adapter(hd.url + "/helpdesk").setup(client, "https://t/webhooks/djangohelpdesk")
    assert not configured[-1].env and SECRET not in configured[-1].detail
