"""LiveAgent adapter against LiveAgent's documented contract, with a real HTTP server on 127.0.0.1.

Pages: https://support.liveagent.com/038465-Rules---Predefined-actions and
https://support.liveagent.com/908400-Triggers-conditions-and-actions (rules, "Message added" trigger, "HTTP request"
action; the request body is the admin's, see docs/helpdesks.md; LiveAgent does not sign it -> shared token),
https://support.liveagent.com/911737-API-v3 with the official client's reference
https://github.com/QualityUnit/LiveAgent-api-python (header `apikey`; GET/POST /tags; GET/PUT /tickets/{id} where
`tags` is a list of tag ids; ticket `channel_type` codes).
"""
from __future__ import annotations

import pytest

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.liveagent import LiveAgentAdapter

from .helpdesk_fake import FakeHelpdesk

SECRET = "la-shared-token"
# The rule body of docs/helpdesks.md, rendered for a customer's e-mail reply.
PAYLOAD = {"ticket_id": "fp80688h", "subject": "Order never arrived",
           "message": "<p>I ordered two weeks ago and still nothing.</p>", "channel": "E",
           "tags": "vip, mot_fmot", "author_role": "customer", "message_id": "a9s8d7f6"}
TAGS = [{"id": "t001", "name": "vip", "color": "#fff", "background_color": "#000", "is_public": "Y"},
        {"id": "t002", "name": "mot_fmot"}, {"id": "t003", "name": "sentiment_neutral"}]


@pytest.fixture
def hd():
    with FakeHelpdesk() as server:
        yield server


def adapter(base_url: str = "https://acme.ladesk.com") -> LiveAgentAdapter:
    return LiveAgentAdapter(base_url=base_url, api_key="0fca7dccba1aed8517ad44399c01d966", secret=SECRET)


def test_parse_customer_message():
    msg = adapter().parse(PAYLOAD, {})
    assert (msg.helpdesk, msg.ticket_id, msg.channel) == ("liveagent", "fp80688h", "ticket")
    assert msg.text.startswith("<p>I ordered") and msg.subject == "Order never arrived"
    assert msg.tags == ("vip", "mot_fmot") and msg.event_id.startswith("liveagent:")
    assert adapter().parse(dict(PAYLOAD), {}).event_id == msg.event_id
    assert adapter().parse({**PAYLOAD, "message_id": "zz"}, {}).event_id != msg.event_id


@pytest.mark.parametrize("code,channel", [("B", "chat"), ("I", "chat"), ("F", "social"), ("A", "social"),
                                          ("T", "social"), ("M", "ticket"), ("C", "ticket")])
def test_parse_maps_channel_type_codes(code, channel):
    assert adapter().parse({**PAYLOAD, "channel": code}, {}).channel == channel


@pytest.mark.parametrize("changes", [{"author_role": "agent"}, {"author_role": "system"}, {"message": ""},
                                     {"message": "{$message_body}"}])
def test_parse_ignores(changes):
    assert adapter().parse({**PAYLOAD, **changes}, {}) is None


@pytest.mark.parametrize("payload,reason", [
    ({k: v for k, v in PAYLOAD.items() if k != "ticket_id"}, "ticket_id"),
    ({**PAYLOAD, "ticket_id": "{$conversation_id}"}, "unrendered"),
    ({**PAYLOAD, "ticket_id": "a/../b"}, "ticket id"),
    ({k: v for k, v in PAYLOAD.items() if k != "message"}, "message"),
])
def test_parse_rejects(payload, reason):
    with pytest.raises(WebhookError) as err:
        adapter().parse(payload, {})
    assert err.value.status == 422 and reason in err.value.reason


def test_verify_shared_token():
    adapter().verify({"X-Tagger-Token": SECRET}, b"{}", 0.0)
    adapter().verify({}, b"{}", 0.0, query={"token": SECRET})
    for headers, query in [({}, None), ({"X-Tagger-Token": "wrong"}, None), ({}, {"token": ""})]:
        with pytest.raises(WebhookError) as err:
            adapter().verify(headers, b"{}", 0.0, query=query)
        assert err.value.status == 401


def test_write_tags_creates_missing_tags_and_puts_the_union_of_ids(hd):
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("POST", "/api/v3/tags", json={"id": "t009", "name": "mot_smot"})
    hd.route("GET", "/api/v3/tickets/fp80688h", json={"id": "fp80688h", "tags": ["t001", "t002", "t003", "t777"]})
    hd.route("PUT", "/api/v3/tickets/fp80688h", json={"id": "fp80688h"})
    with hd.client() as client:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_smot", "sentiment_neutral"], ["mot_fmot", "vip"])
    assert hd.calls() == [("GET", "/api/v3/tags"), ("POST", "/api/v3/tags"), ("GET", "/api/v3/tickets/fp80688h"),
                          ("PUT", "/api/v3/tickets/fp80688h")]
    assert hd.requests[1].json == {"name": "mot_smot"}
    # t777 is someone's tag we cannot even name: kept; vip (t001) is not ours: kept; mot_fmot (t002) is stale
    assert hd.requests[3].json == {"tags": ["t001", "t003", "t777", "t009"]}
    assert {r.headers["apikey"] for r in hd.requests} == {"0fca7dccba1aed8517ad44399c01d966"}


def test_429_and_permanent_errors(hd):
    hd.route("GET", "/api/v3/tags", status=429, headers={"Retry-After": "2"}, json={})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_smot"], [])
    assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 2, False)
    hd.route("GET", "/api/v3/tags", json=TAGS)
    hd.route("GET", "/api/v3/tickets/fp80688h", status=404, json={"message": "Ticket does not exist"})
    with hd.client() as client, pytest.raises(HelpdeskError) as err:
        adapter(hd.url).write_tags(client, "fp80688h", ["mot_fmot"], [])
    assert err.value.status == 404 and err.value.permanent
