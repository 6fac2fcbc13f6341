"""All helpdesk adapters: the registry, configuration from the environment, the generic adapter (a contract we
define ourselves, documented in tagger/helpdesks/generic.py and docs/helpdesks.md), shared helpers, and garbage
payloads (hypothesis): parse must answer with a Message, None or a WebhookError -- never anything else.

Per-helpdesk contract tests (each citing its documentation pages) are in tests/test_helpdesk_<name>.py.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagger.config import Settings
from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks import ADAPTERS, get_adapter
from tagger.helpdesks.contract import Adapter, BaseAdapter, Message
from tagger.helpdesks.generic import GenericAdapter, parse_fields
from tagger.helpdesks.payload import channel_from, get_in, split_tags, stable_event_id
from tagger.helpdesks.signing import Base64Hmac, HexHmac, SharedToken, TimestampedSha256, shared_token_ok

from .helpdesk_fake import FakeHelpdesk
from .test_helpdesk_chatwoot import PAYLOAD as CHATWOOT
from .test_helpdesk_djangohelpdesk import EMAIL_REPLY as DJANGOHELPDESK
from .test_helpdesk_freshdesk import REPLY as FRESHDESK
from .test_helpdesk_helpscout import PAYLOAD as HELPSCOUT
from .test_helpdesk_liveagent import PAYLOAD as LIVEAGENT
from .test_helpdesk_zammad import PAYLOAD as ZAMMAD
from .test_helpdesk_zendesk import PAYLOAD as ZENDESK

ENV = {
    "TAGGER_ZENDESK_URL": "https://acme.zendesk.com", "TAGGER_ZENDESK_TOKEN": "cred-1",
    "TAGGER_ZENDESK_EMAIL": "a@b.c", "TAGGER_ZENDESK_SECRET": "cred-2",
    "TAGGER_FRESHDESK_URL": "https://acme.freshdesk.com", "TAGGER_FRESHDESK_API_KEY": "cred-3",
    "TAGGER_ZAMMAD_URL": "https://zammad.acme.com", "TAGGER_ZAMMAD_TOKEN": "cred-4",
    "TAGGER_CHATWOOT_URL": "https://app.chatwoot.com", "TAGGER_CHATWOOT_TOKEN": "cred-5",
    "TAGGER_CHATWOOT_ACCOUNT_ID": "1",
    "TAGGER_LIVEAGENT_URL": "https://acme.ladesk.com", "TAGGER_LIVEAGENT_API_KEY": "cred-6",
    "TAGGER_HELPSCOUT_TOKEN": "cred-7",
    "TAGGER_DJANGOHELPDESK_URL": "https://desk.acme.com/helpdesk", "TAGGER_DJANGOHELPDESK_USER": "tagger",
    "TAGGER_DJANGOHELPDESK_PASSWORD": "cred-8",
    "TAGGER_GENERIC_WRITEBACK_URL": "https://desk.acme.com/api/tickets/{ticket_id}/tags",
}
EXAMPLES = {"zendesk": (ZENDESK, {}), "freshdesk": (FRESHDESK, {}), "zammad": (ZAMMAD, {}),
            "chatwoot": (CHATWOOT, {}), "liveagent": (LIVEAGENT, {}),
            "helpscout": (HELPSCOUT, {"X-HelpScout-Event": "convo.customer.reply.created"}),
            "djangohelpdesk": (DJANGOHELPDESK, {}),
            "generic": ({"ticket_id": "T-1", "text": "hello", "channel": "chat"}, {})}


# -- registry and configuration -------------------------------------------------------------------------------

def test_registry_has_every_adapter_and_each_follows_the_interface():
    assert set(ADAPTERS) == {"zendesk", "freshdesk", "zammad", "chatwoot", "liveagent", "helpscout", "djangohelpdesk",
                             "generic"}
    for name in ADAPTERS:
        adapter = get_adapter(name, ENV)
        assert isinstance(adapter, Adapter) and isinstance(adapter, BaseAdapter) and adapter.name == name
        assert "cred" not in repr(adapter) and "cred" not in str(vars(adapter).get("base_url"))


def test_unknown_helpdesk_names_the_known_ones():
    with pytest.raises(ConfigError, match="known: chatwoot, djangohelpdesk, freshdesk"):
        get_adapter("jira", ENV)


@pytest.mark.parametrize("name,missing", [("zendesk", "TAGGER_ZENDESK_URL"), ("zendesk", "TAGGER_ZENDESK_TOKEN"),
                                          ("freshdesk", "TAGGER_FRESHDESK_API_KEY"),
                                          ("chatwoot", "TAGGER_CHATWOOT_ACCOUNT_ID"),
                                          ("generic", "TAGGER_GENERIC_WRITEBACK_URL")])
def test_missing_variable_is_named(name, missing):
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        get_adapter(name, env)


def test_common_settings_come_from_env_or_settings():
    adapter = get_adapter("zendesk", {**ENV, "TAGGER_SIGNATURE_TOLERANCE_S": "60",
                                      "TAGGER_STAGE_TAG_PREFIX": "stage-"})
    assert adapter.tolerance_s == 60 and adapter.is_own("stage-zmot") and not adapter.is_own("mot_zmot")
    adapter = get_adapter("zendesk", ENV, settings=Settings(signature_tolerance_s=42, sentiment_tag_prefix="s_"))
    assert adapter.tolerance_s == 42 and adapter.is_own("s_negative")
    with pytest.raises(ConfigError, match="signature_tolerance_s"):      # Settings.load names the setting
        get_adapter("zendesk", {**ENV, "TAGGER_SIGNATURE_TOLERANCE_S": "soon"})


def test_every_adapter_parses_its_documented_example():
    for name, (payload, headers) in EXAMPLES.items():
        msg = get_adapter(name, ENV).parse(copy.deepcopy(payload), headers)
        assert isinstance(msg, Message) and msg.helpdesk == name and msg.text and msg.event_id
        assert msg.channel in ("ticket", "chat", "social")


# -- shared helpers -----------------------------------------------------------------------------------------

def test_merged_tags_keeps_other_tags_and_removes_only_ours():
    a = get_adapter("freshdesk", ENV)
    assert a.merged_tags(["vip", "mot_zmot", "x"], ["mot_fmot"], ["mot_zmot", "vip", "x"]) == ["vip", "x", "mot_fmot"]
    assert a.merged_tags([], ["mot_fmot", "mot_fmot"], []) == ["mot_fmot"]
    assert a.merged_tags(["mot_fmot"], ["mot_fmot"], ["mot_fmot"]) == ["mot_fmot"]


def test_split_tags_and_channels():
    assert split_tags("a b  c") == ("a", "b", "c")
    assert split_tags("a, b c,d") == ("a", "b c", "d")
    assert split_tags([{"tag": "vip"}, {"name": "x"}, 3, None, True]) == ("vip", "x", "3")
    assert split_tags("{{ticket.tags}}") == () and split_tags(None) == ()
    assert channel_from("WhatsApp") == "chat" and channel_from("Instagram DM") == "social"
    assert channel_from(None, "") == "ticket" and channel_from("email", default="chat") == "chat"


def test_get_in_never_raises():
    data = {"a": [{"b": 1}], "0": "zero"}
    assert get_in(data, "a", 0, "b") == 1 and get_in(data, "a", -1, "b") == 1 and get_in(data, 0) == "zero"
    assert get_in(data, "a", 5) is None and get_in(data, "a", "b") is None and get_in("x", "a") is None


def test_shared_token_checks_every_place():
    assert shared_token_ok({"authorization": "Bearer s3"}, None, "s3")
    assert not shared_token_ok({"authorization": "Bearer s3"}, {"token": "x"}, "s4")
    assert stable_event_id("x", 1, None) == stable_event_id("x", "1", "") != stable_event_id("y", 1, None)


SCHEMES = [SharedToken("s3cret", basic=True), Base64Hmac("s3cret", "X-Sig", digest="sha1"),
           Base64Hmac("s3cret", "X-Sig", timestamp_header="X-Ts", tolerance_s=60),
           HexHmac("s3cret", "X-Hub-Signature"), TimestampedSha256("s3cret", "X-Sig", "X-Ts", tolerance_s=60)]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: type(s).__name__)
def test_every_scheme_verifies_what_its_sign_twin_sends_and_nothing_else(scheme):
    body, now = b'{"ticket_id": 1}', 1_700_000_000.0
    headers = scheme.sign(body, now=now)
    scheme.verify(headers, body, now)
    scheme.verify({k.lower(): v for k, v in headers.items()}, body, now + 59)      # header names are case-blind
    assert "s3cret" not in repr(scheme)
    refused = [(dataclasses.replace(scheme, secret="other").sign(body, now=now), body, now), ({}, body, now)]
    if not isinstance(scheme, SharedToken):       # the token covers neither body nor time
        refused.append((headers, body + b" ", now))
    if getattr(scheme, "timestamp_header", None):
        refused.append((headers, body, now + 61))
    for h, b, at in refused:
        with pytest.raises(WebhookError) as err:
            scheme.verify(h, b, at)
        assert err.value.status == 401 and err.value.reason


def test_shared_token_sign_covers_every_place_it_is_read():
    token = SharedToken("s3cret", basic=True)
    for via in ("header", "bearer", "basic"):
        token.verify(token.sign(via=via), b"", 0.0)
    token.verify({}, b"", 0.0, query=token.sign(via="query"))
    assert token.sign(via="query") == {"token": "s3cret"} and token.sign() == {"X-Tagger-Token": "s3cret"}
    with pytest.raises(WebhookError, match="missing or wrong"):
        SharedToken("s3cret").verify(token.sign(via="basic"), b"", 0.0)     # Basic auth only where enabled


# -- generic (our own contract) -------------------------------------------------------------------------------

FIELDS = json.dumps({"ticket_id": "ticket.id", "text": "comments.-1.body", "subject": "ticket.subject",
                     "channel": "ticket.via", "tags": "ticket.tags", "event_id": "delivery",
                     "author_role": "comments.-1.author.role", "url": ["ticket", "links", "agent"]})
GENERIC_PAYLOAD = {"delivery": "d-1", "ticket": {"id": 991, "subject": "Late", "via": "facebook",
                                                 "tags": ["vip"], "links": {"agent": "https://desk/t/991"}},
                   "comments": [{"body": "first", "author": {"role": "customer"}},
                                {"body": "where is it?", "author": {"role": "customer"}}]}


def generic(base: str = "https://desk.acme.com", **env) -> GenericAdapter:
    values = {"TAGGER_GENERIC_WRITEBACK_URL": f"{base}/api/tickets/{{ticket_id}}/tags",
              "TAGGER_GENERIC_FIELDS": FIELDS, "TAGGER_GENERIC_SECRET": "gs", "TAGGER_GENERIC_TOKEN": "gt", **env}
    return get_adapter("generic", values)


def test_generic_parse_follows_the_configured_paths():
    msg = generic().parse(GENERIC_PAYLOAD, {})
    assert (msg.ticket_id, msg.text, msg.subject, msg.channel) == ("991", "where is it?", "Late", "social")
    assert (msg.tags, msg.event_id, msg.url) == (("vip",), "generic:d-1", "https://desk/t/991")
    agent_wrote = copy.deepcopy(GENERIC_PAYLOAD)
    agent_wrote["comments"][-1]["author"]["role"] = "agent"
    assert generic().parse(agent_wrote, {}) is None
    with pytest.raises(WebhookError, match="comments.-1.body"):
        generic().parse({"ticket": {"id": 1}}, {})


def test_generic_fields_config_errors():
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_fields("{")
    with pytest.raises(ConfigError, match="unknown field"):
        parse_fields('{"body": "x"}')
    with pytest.raises(ConfigError, match="must contain"):
        GenericAdapter(writeback_url="https://x/tags")


def test_generic_verify_signature_and_token():
    body = json.dumps(GENERIC_PAYLOAD).encode()
    headers = generic().scheme().sign(body, now=1700000000)
    # known answer, computed independently: sha256=<hex HMAC-SHA256(secret, "{timestamp}." + raw body)>
    assert headers == {"X-Tagger-Signature": "sha256=" + hmac.new(b"gs", b"1700000000." + body, hashlib.sha256).hexdigest(),
                       "X-Tagger-Timestamp": "1700000000"}
    generic().verify(headers, body, 1700000100.0)
    generic().verify({"X-Tagger-Token": "gs"}, body, 0.0)
    for h, b, now in [(headers, body + b" ", 1700000100.0), (headers, body, 1700000301.0),
                      ({**headers, "X-Tagger-Timestamp": "1700000001"}, body, 1700000100.0), ({}, body, 0.0)]:
        with pytest.raises(WebhookError) as err:
            generic().verify(h, b, now)
        assert err.value.status == 401


def test_generic_write_back_sends_add_and_own_remove_only():
    with FakeHelpdesk() as hd:
        hd.route("POST", "/api/tickets/T%2F1/tags", json={"ok": True})
        with hd.client() as client:
            generic(hd.url).write_tags(client, "T/1", ["mot_fmot"], ["mot_zmot", "vip", "mot_fmot"])
        rec = hd.requests[0]
        assert (rec.method, rec.path) == ("POST", "/api/tickets/T%2F1/tags")
        assert rec.json == {"ticket_id": "T/1", "add": ["mot_fmot"], "remove": ["mot_zmot"]}
        assert rec.headers["authorization"] == "Bearer gt"
        hd.route("POST", "/api/tickets/T%2F1/tags", status=429, headers={"Retry-After": "3"})
        with hd.client() as client, pytest.raises(HelpdeskError) as err:
            generic(hd.url).write_tags(client, "T/1", ["mot_fmot"], [])
        assert (err.value.status, err.value.retry_after, err.value.permanent) == (429, 3, False)


# -- garbage in: WebhookError or None (or a well-formed Message), nothing else --------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


def mutations(example: dict) -> st.SearchStrategy:
    """The documented example with one key (at any depth) replaced by garbage or removed."""
    paths: list[tuple] = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
    walk(example, ())

    @st.composite
    def mutate(draw):
        data = copy.deepcopy(example)
        path = draw(st.sampled_from(paths))
        parent = get_in(data, *path[:-1]) if len(path) > 1 else data
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
        return data
    return mutate()


def check_parse(adapter, payload, headers):
    try:
        result = adapter.parse(payload, headers)
    except WebhookError as exc:  # a 4xx refusal, or a 2xx "ignored, because ..." (not a customer's message)
        assert (400 <= exc.status < 500 or 200 <= exc.status < 300) and exc.reason
        return
    if result is not None:
        assert isinstance(result, Message) and result.helpdesk == adapter.name
        assert isinstance(result.ticket_id, str) and result.ticket_id and "/" not in result.ticket_id
        assert isinstance(result.text, str) and result.text.strip() and isinstance(result.event_id, str)
        assert result.channel in ("ticket", "chat", "social") and isinstance(result.subject, str)
        assert all(isinstance(t, str) for t in result.tags)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@FAST
@given(payload=json_values, event=st.sampled_from(["convo.created", "convo.customer.reply.created", "", "x"]))
def test_garbage_payloads(name, payload, event):
    check_parse(get_adapter(name, ENV), payload, {"X-HelpScout-Event": event} if event else {})


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@FAST
@given(data=st.data())
def test_mutated_documented_payloads(name, data):
    example, headers = EXAMPLES[name]
    check_parse(get_adapter(name, ENV), data.draw(mutations(example)), headers)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@FAST
@given(headers=st.dictionaries(st.sampled_from(["X-Zendesk-Webhook-Signature", "X-Zendesk-Webhook-Signature-Timestamp",
                                                "X-Hub-Signature", "X-HelpScout-Signature", "X-Chatwoot-Signature",
                                                "X-Chatwoot-Timestamp", "X-Tagger-Signature", "X-Tagger-Timestamp",
                                                "X-Tagger-Token", "Authorization"]), st.text(max_size=60)),
       body=st.binary(max_size=200))
def test_garbage_signatures_are_401(name, headers, body):
    env = {**ENV, **{f"TAGGER_{n.upper()}_SECRET": "a-secret-nobody-guesses" for n in ADAPTERS}}
    with pytest.raises(WebhookError) as err:
        get_adapter(name, env).verify(headers, body, 1_700_000_000.0, query={"token": "nope"})
    assert err.value.status == 401


ODD_VALUES = [None, True, False, 0, -1, 1.5, "", " ", "x", "{{ticket.id}}", [], {}, [1, "a"], {"a": {"b": []}}]


def all_paths(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, k)
            yield from all_paths(v, (*path, k))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_field_of_the_documented_payload_with_every_odd_type(name):
    """Exhaustive type confusion: each key at any depth removed or replaced by each odd value."""
    adapter = get_adapter(name, ENV)
    example, headers = EXAMPLES[name]
    for path in all_paths(example):
        for value in [*ODD_VALUES, KeyError]:
            data = copy.deepcopy(example)
            parent = get_in(data, *path[:-1]) if len(path) > 1 else data
            if value is KeyError:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            check_parse(adapter, data, headers)


def test_payload_fixtures_are_the_documented_ones():
    """The fixture files are the samples of the pages cited in their test modules (guard against edits)."""
    folder = Path(__file__).parent / "helpdesk_payloads"
    assert json.loads((folder / "zammad_default.json").read_text())["article"]["id"] == 104
    assert json.loads((folder / "chatwoot_message_created.json").read_text())["id"] == 118
    assert json.loads((folder / "helpscout_conversation.json").read_text())["number"] == 12


def test_headers_from_starlette_work_like_dicts():
    """The service hands Starlette's case-insensitive `Headers` (lower-case raw names) to verify/parse."""
    from starlette.datastructures import Headers

    from .test_helpdesk_zendesk import NOW, SECRET, sign

    body = json.dumps(ZENDESK).encode()
    raw = [(k.lower().encode(), v.encode()) for k, v in sign(body).items()]
    adapter = get_adapter("zendesk", {**ENV, "TAGGER_ZENDESK_SECRET": SECRET})
    adapter.verify(Headers(raw=raw), body, NOW)
    via_starlette = adapter.parse(ZENDESK, Headers(raw=raw)).event_id
    assert via_starlette == adapter.parse(ZENDESK, sign(body)).event_id and via_starlette.startswith("zendesk:")
