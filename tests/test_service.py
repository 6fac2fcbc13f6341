"""The webhook service over real HTTP: a uvicorn server on 127.0.0.1, a real SQLite file, the shipped
model, and the helpdesk stand-in receiving the tag writes."""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagger.classifier.registry import META_FILE, Registry
from tagger.cli import cli as service_cli
from tagger.config import Settings
from tagger.errors import IntegrityError, WebhookError
from tagger.helpdesks.signing import hmac_hex
from tagger.labels import SENTIMENTS, STAGES
from tagger.service.app import create_app
from tagger.service.store import Store
from tests.standin import (
    LiveServer,
    StandinAdapter,
    StandinHelpdesk,
    event,
    local_client,
    model_versions,
    wait_until,
)

OWN_TAGS = {f"mot_{s}" for s in STAGES} | {f"sentiment_{s}" for s in SENTIMENTS} | {"mot_review"}
PARCEL = "My order #4411 hasn't arrived after two weeks. Where is my parcel?"
PRAISE = "5 stars, best support I've ever had! Recommended you to my whole team."


def service_settings(tmp_path, **kw) -> Settings:
    base = dict(db_url=f"sqlite:///{tmp_path / 'service.db'}", outbox_base_delay_s=0.05, outbox_max_delay_s=0.2,
                http_timeout_s=0.5, worker_poll_s=0.02, max_body_bytes=20_000)
    return Settings(**{**base, **kw})


@pytest.fixture
def start(tmp_path, helpdesk, shipped_model):
    """start(**options) -> a running LiveServer; stopped at the end of the test."""
    running: list[LiveServer] = []

    def _start(*, secret: str | None = None, adapters="standin", tagger="shipped", settings_kw=None, **app_kw) -> LiveServer:
        app = create_app(service_settings(tmp_path, **(settings_kw or {})),
                         shipped_model if tagger == "shipped" else tagger,
                         adapters={"standin": StandinAdapter(helpdesk.url, secret)} if adapters == "standin" else adapters,
                         worker_options={"client": local_client(0.5)}, **app_kw)
        server = LiveServer(app).__enter__()
        running.append(server)
        return server

    yield _start
    for server in running:
        server.__exit__(None, None, None)


@pytest.fixture
def live(start):
    return start()


def counts(server: LiveServer) -> dict[str, int]:
    with server.service.store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("messages", "processed_events", "outbox", "corrections")}


def written(helpdesk: StandinHelpdesk, ticket: str, n: int = 1) -> None:
    wait_until(lambda: len(helpdesk.writes_for(ticket)) >= n, timeout=10, what=f"{n} write(s) to ticket {ticket}")


# -- the happy path ------------------------------------------------------------------------------------------
def test_webhook_is_classified_answered_202_and_tags_arrive(live, helpdesk, shipped_model):
    helpdesk.tags["T1"] = {"vip", "mot_zmot"}
    response = live.post(event("T1", PARCEL, channel="chat"))
    assert response.status_code == 202, response.text
    body = response.json()
    expected = shipped_model.predict(PARCEL, channel="chat")
    assert body["status"] == "tagged" and body["ticket_id"] == "T1"
    assert (body["stage"], body["sentiment"], body["review"]) == (expected.stage, expected.sentiment, expected.review)
    assert body["tags"] == expected.tags and body["model_version"] == shipped_model.metadata["version"]
    written(helpdesk, "T1")
    [write] = helpdesk.writes_for("T1")
    assert write["add"] == body["tags"] and set(write["remove"]) == OWN_TAGS - set(body["tags"])
    assert helpdesk.tags["T1"] == {"vip", *body["tags"]}          # the agent's tag survives, our stale one goes
    [row] = live.service.store.list_messages(ticket_id="T1")
    assert (row["stage"], row["sentiment"], row["channel"], row["helpdesk"]) == (
        body["stage"], body["sentiment"], "chat", "standin")
    assert row["ticket_url"] == "https://helpdesk.example/tickets/T1" and row["lang"] == "en"
    wait_until(lambda: live.service.store.outbox_counts()["done"] == 1, what="the row to be marked done")


def test_same_delivery_twice_is_one_classification_and_one_write(live, helpdesk):
    payload = event("T2", PARCEL)
    first, second = live.post(payload), live.post(payload)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    written(helpdesk, "T2")
    time.sleep(0.3)                                   # give a second write the chance to (wrongly) happen
    assert len(helpdesk.writes_for("T2")) == 1
    assert counts(live)["messages"] == 1 and counts(live)["outbox"] == 1


def test_concurrent_redeliveries_classify_once(live, helpdesk):
    payload = event("T3", PRAISE)
    results: list[int] = []

    def deliver():
        with local_client(base_url=live.url) as client:
            results.append(client.post("/webhooks/standin", json=payload).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [200] * 7 + [202]
    written(helpdesk, "T3")
    time.sleep(0.3)
    assert len(helpdesk.writes_for("T3")) == 1 and counts(live)["messages"] == 1


# -- loop prevention and corrections -------------------------------------------------------------------------
def test_our_own_tag_update_is_not_classified_again(live, helpdesk):
    tagged = live.post(event("T4", PARCEL)).json()
    written(helpdesk, "T4")
    wait_until(lambda: live.service.store.outbox_counts()["done"] == 1)
    # the helpdesk tells us about the tag change we just made: same text (re-rendered as HTML), our tags
    echo = event("T4", f"<p>{PARCEL}</p>", kind="ticket.updated", tags=sorted(helpdesk.tags["T4"]))
    response = live.post(echo)
    assert response.status_code == 200 and response.json()["status"] == "unchanged", response.text
    assert response.json()["message_id"] == tagged["message_id"]
    time.sleep(0.3)
    assert len(helpdesk.writes_for("T4")) == 1
    assert counts(live)["messages"] == 1 and counts(live)["outbox"] == 1
    assert live.post(echo).json()["status"] == "duplicate"


def test_new_text_on_the_same_ticket_is_classified_and_written_again(live, helpdesk):
    live.post(event("T5", PARCEL))
    written(helpdesk, "T5")
    second = live.post(event("T5", PRAISE, kind="ticket.updated", tags=sorted(helpdesk.tags["T5"])))
    assert second.status_code == 202
    written(helpdesk, "T5", 2)
    assert helpdesk.tags["T5"] == set(second.json()["tags"])
    assert counts(live)["messages"] == 2


def test_agent_correction_is_recorded_and_exported(live, helpdesk, tmp_path):
    tagged = live.post(event("T6", PRAISE, channel="social")).json()
    written(helpdesk, "T6")
    wait_until(lambda: live.service.store.outbox_counts()["done"] == 1)
    new_stage = next(s for s in STAGES if s != tagged["stage"])
    agent_tags = ["vip", f"mot_{new_stage}", f"sentiment_{tagged['sentiment']}"]
    response = live.post(event("T6", PRAISE, kind="ticket.updated", tags=agent_tags, channel="social"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "correction"
    assert body["old"] == {"stage": tagged["stage"], "sentiment": tagged["sentiment"]}
    assert body["new"] == {"stage": new_stage, "sentiment": tagged["sentiment"]}
    # the same state delivered again (another event) is not a second correction, and nothing is rewritten
    again = live.post(event("T6", PRAISE, kind="ticket.updated", tags=agent_tags))
    assert again.json()["status"] == "unchanged" and "recorded before" in again.json()["reason"]
    assert counts(live)["corrections"] == 1 and len(helpdesk.writes_for("T6")) == 1

    out = tmp_path / "feedback.jsonl"
    result = CliRunner().invoke(service_cli, ["feedback", "export", "-o", str(out), "--db",
                                              live.service.settings.db_url])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records == [{"text": PRAISE, "stage": new_stage, "sentiment": tagged["sentiment"],
                        "channel": "social", "lang": "en"}]


def test_tags_seen_before_our_write_lands_are_not_corrections(start, helpdesk):
    live = start(run_worker=False)                     # nothing gets written: our row stays pending
    tagged = live.post(event("T7", PARCEL)).json()
    other = next(s for s in STAGES if s != tagged["stage"])
    response = live.post(event("T7", PARCEL, kind="ticket.updated", tags=[f"mot_{other}"]))
    assert response.json()["status"] == "unchanged" and "not written yet" in response.json()["reason"]
    assert counts(live)["corrections"] == 0


def test_a_stale_event_showing_an_earlier_classification_is_not_a_correction(live, helpdesk, shipped_model):
    first, second = shipped_model.predict(PARCEL), shipped_model.predict(PRAISE)
    assert (first.stage, first.sentiment) != (second.stage, second.sentiment)
    live.post(event("T8", PARCEL))
    written(helpdesk, "T8")
    old_tags = sorted(helpdesk.tags["T8"])
    live.post(event("T8", PRAISE))
    written(helpdesk, "T8", 2)
    wait_until(lambda: live.service.store.outbox_counts()["done"] == 2)
    late = live.post(event("T8", PRAISE, kind="ticket.updated", tags=old_tags))   # delivered late, tags of then
    assert late.json()["status"] == "unchanged" and "earlier classification" in late.json()["reason"]
    assert counts(live)["corrections"] == 0


# -- refusals ------------------------------------------------------------------------------------------------
REFUSALS = [
    ("too big", dict(content=b'{"pad": "' + b"x" * 30_000 + b'"}', headers={"Content-Type": "application/json"}),
     413, "exceeds the limit"),
    ("too big, chunked", dict(content=iter([b'{"pad": "', b"x" * 25_000, b'"}']),
                              headers={"Content-Type": "application/json"}), 413, "exceeds the limit"),
    ("wrong content type", dict(content=b'{"type": "ping"}', headers={"Content-Type": "text/plain"}),
     415, "content type 'text/plain'"),
    ("no content type", dict(content=b'{"type": "ping"}', headers={"Content-Type": ""}), 415, "(none)"),
    ("form post", dict(data={"type": "ping"}), 415, "application/x-www-form-urlencoded"),
    ("malformed JSON", dict(content=b'{"type": "message.created",', headers={"Content-Type": "application/json"}),
     400, "not valid JSON"),
    ("invalid UTF-8", dict(content=b'{"text": "caf\xe9"}', headers={"Content-Type": "application/json"}),
     400, "not valid UTF-8"),
    ("deeply nested", dict(content=b"[" * 50_000 + b"]" * 50_000, headers={"Content-Type": "application/json"}),
     413, "exceeds"),
    ("nested within the limit", dict(content=b"[" * 9_000 + b"]" * 9_000, headers={"Content-Type": "application/json"}),
     400, "nested too deeply"),
    ("missing text", dict(json={"type": "message.created", "event_id": "m1", "ticket": {"id": "9"}}),
     422, "missing field ticket.text"),
    ("missing event id", dict(json={"type": "message.created", "ticket": {"id": "9", "text": "hi"}}),
     422, "missing field event_id"),
    ("not an object", dict(json=[1, 2, 3]), 422, "missing field type"),
    ("unknown event", dict(json={"type": "ticket.exploded", "event_id": "u1", "ticket": {"id": "9", "text": "hi"}}),
     422, "unknown event type 'ticket.exploded'"),
]


@pytest.mark.parametrize("case, request_kw, status, reason", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_deliveries_are_refused_with_a_reason_and_nothing_is_stored(live, case, request_kw, status, reason):
    before = counts(live)
    response = live.client.post("/webhooks/standin", **request_kw)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and reason in body["reason"]
    assert "Traceback" not in response.text
    assert counts(live) == before
    assert live.client.get("/healthz").status_code == 200                 # still serving
    assert live.post(event(f"after-{uuid.uuid4().hex[:6]}", PARCEL)).status_code == 202


def test_known_but_irrelevant_events_are_ignored_with_200(live):
    response = live.post({"type": "ping", "event_id": "p1"})
    assert response.status_code == 200 and response.json()["status"] == "ignored" and response.json()["reason"]
    assert counts(live)["processed_events"] == 0


def test_unknown_helpdesk_and_wrong_method_answer_json(live):
    response = live.post(event("T9", PARCEL), helpdesk="nosuchdesk")
    assert response.status_code == 404 and "unknown helpdesk 'nosuchdesk'" in response.json()["reason"]
    response = live.client.get("/webhooks/standin")
    assert response.status_code == 405 and response.json()["status"] == "error"


def test_signed_helpdesk_needs_a_valid_signature_and_the_secret_is_never_shown(start, caplog):
    secret = "s3cr3t-do-not-log-" + uuid.uuid4().hex
    live = start(secret=secret)
    body = json.dumps(event("S1", PARCEL)).encode()
    unsigned = live.post(body)
    wrong = live.post(body, headers={"Content-Type": "application/json", "X-Standin-Signature": "00" * 32})
    good = live.post(body, headers={"Content-Type": "application/json",
                                    "X-Standin-Signature": hmac_hex(secret, body)})
    assert unsigned.status_code == 401 and "signature" in unsigned.json()["reason"]
    assert wrong.status_code == 401
    assert good.status_code == 202, good.text
    assert counts(live)["messages"] == 1
    assert secret not in caplog.text and all(secret not in r.text for r in (unsigned, wrong, good))


def test_an_adapter_that_trips_over_a_payload_gives_422_not_a_stack_trace(start):
    class Clumsy(StandinAdapter):
        def parse(self, payload, headers):
            return payload["ticket"]["id"].upper()     # KeyError/TypeError on odd payloads

    live = start(adapters={"standin": Clumsy("http://127.0.0.1:9")})
    response = live.post({"nothing": "here"})
    assert response.status_code == 422 and "(KeyError)" in response.json()["reason"]


def test_an_internal_error_is_a_json_500_without_a_stack_trace(start):
    class Broken:
        metadata = {"version": "broken"}

        def predict(self, text, channel=None):
            raise RuntimeError("model exploded at /secret/path")

    live = start(tagger=Broken())
    response = live.post(event("B1", PARCEL))
    assert response.status_code == 500
    assert response.json() == {"status": "error", "reason": "internal error; see the service log"}
    assert counts(live)["messages"] == 0
    assert live.client.get("/healthz").status_code == 200


def test_an_adapter_can_ignore_an_event_with_a_reason(start):
    class Picky(StandinAdapter):
        def parse(self, payload, headers):
            raise WebhookError(200, "note from an agent, not from the customer")

    live = start(adapters={"standin": Picky("http://127.0.0.1:9")})
    response = live.post(event("P1", PARCEL))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "reason": "note from an agent, not from the customer"}


def test_unconfigured_builtin_helpdesks_answer_503_with_the_reason(start, helpdesk, monkeypatch):
    for name in ("ZENDESK", "GENERIC"):
        for var in ("URL", "TOKEN", "EMAIL", "SECRET", "WRITEBACK_URL", "FIELDS", "SUBDOMAIN"):
            monkeypatch.delenv(f"TAGGER_{name}_{var}", raising=False)
    monkeypatch.setenv("TAGGER_STANDIN_URL", helpdesk.url)
    live = start(adapters=None, extra_adapters=("tests.standin:make_adapter",))
    for name in ("zendesk", "generic"):
        response = live.post({"x": 1}, helpdesk=name)
        assert response.status_code == 503, (name, response.text)
        assert f"helpdesk '{name}' is not configured" in response.json()["reason"]
    assert live.post(event("C1", PARCEL)).status_code == 202                # the custom adapter works
    health = live.client.get("/healthz").json()
    assert "standin" in health["helpdesks"] and "zendesk" in health["unconfigured"]


# -- garbage -------------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["message.created", "ticket.updated", "ping", "???"]) | st.text(max_size=10)},
    optional={"event_id": json_values, "ticket": st.fixed_dictionaries(
        {}, optional={"id": json_values, "text": json_values, "tags": json_values, "channel": json_values})})
garbage = (st.binary(max_size=600) | st.text(max_size=300).map(str.encode)
           | json_values.map(lambda v: json.dumps(v).encode())
           | event_like.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=garbage)
def test_garbage_bodies_never_crash_the_service(live, body):
    before = counts(live)
    response = live.post(body)
    assert response.status_code < 500, response.text
    answer = response.json()
    assert answer["status"] in {"error", "ignored", "tagged", "duplicate", "unchanged"}
    if response.status_code >= 400:
        assert answer["reason"] and "Traceback" not in response.text
        assert counts(live) == before
    if answer["status"] == "ignored":
        assert counts(live) == before


# -- health, metrics, hot reload -----------------------------------------------------------------------------
def test_healthz_and_metrics(live, helpdesk, shipped_model):
    live.post(event("M1", PARCEL))
    live.post(b"{", headers={"Content-Type": "application/json"})
    written(helpdesk, "M1")
    wait_until(lambda: live.service.store.outbox_counts()["done"] == 1)
    health = live.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() | {"helpdesks": None} == {
        "status": "ok", "model_version": shipped_model.metadata["version"], "db": "ok", "queue_depth": 0,
        "dead_letters": 0, "worker": "running", "helpdesks": None, "unconfigured": []}
    metrics = live.client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for line in ('tagger_events_received_total{helpdesk="standin"} 2.0',
                 'tagger_events_tagged_total{helpdesk="standin"} 1.0',
                 'tagger_events_rejected_total{helpdesk="standin",status="400"} 1.0',
                 'tagger_tags_written_total{helpdesk="standin"} 1.0',
                 "tagger_outbox_queue_depth 0.0", "tagger_outbox_dead_letters 0.0",
                 "tagger_classification_seconds_count 1.0",
                 'tagger_webhook_seconds_count{helpdesk="standin"} 2.0',
                 f'tagger_model_info{{version="{shipped_model.metadata["version"]}"}} 1.0'):
        assert line in text, line


def test_the_dashboard_is_served_by_the_same_app(live):
    live.post(event("DB1", PARCEL))
    assert live.client.get("/dashboard").status_code == 200
    tickets = live.client.get("/api/tickets").json()
    assert [t["ticket_id"] for t in tickets["tickets"]] == ["DB1"]


def test_healthz_reports_an_unreachable_database(start, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}", create=False)
    live = start(store=store, run_worker=False)
    health = live.client.get("/healthz")
    assert health.status_code == 503 and health.json()["db"] == "unreachable"
    response = live.post(event("D1", PARCEL))
    assert response.status_code == 503 and "database unavailable" in response.json()["reason"]


def test_activating_a_model_swaps_it_without_dropping_requests(start, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    v1, v2 = model_versions(root, 2)
    live = start(tagger=None, settings_kw={"models_dir": str(root)}, reload_check_s=0.1)
    assert live.client.get("/healthz").json()["model_version"] == v1
    statuses: list[int] = []
    stop = threading.Event()

    def traffic():
        with local_client(base_url=live.url) as client:
            while not stop.is_set():
                payload = event(uuid.uuid4().hex[:8], PARCEL)
                statuses.append(client.post("/webhooks/standin", json=payload).status_code)

    sender = threading.Thread(target=traffic)
    sender.start()
    time.sleep(0.3)
    Registry(root).activate(v2)
    wait_until(lambda: live.client.get("/healthz").json()["model_version"] == v2, timeout=10, what="reload")
    time.sleep(0.3)
    stop.set()
    sender.join(10)
    assert statuses and set(statuses) == {202}
    versions = {m["model_version"] for m in live.service.store.list_messages(limit=None)}
    assert versions == {v1, v2}

    # a tampered version is refused: the service keeps the model it has and says why
    meta = json.loads((root / v1 / META_FILE).read_text(encoding="utf-8"))
    meta["files"]["model.npz"] = "0" * 64
    (root / v1 / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(IntegrityError):
        Registry(root).activate(v1)  # activation itself refuses it, so the service must see it by other means
    state = json.loads((root / "ACTIVE.json").read_text(encoding="utf-8"))
    (root / "ACTIVE.json").write_text(json.dumps({**state, "current": v1}), encoding="utf-8")
    wait_until(lambda: "model_reload_error" in live.client.get("/healthz").json(), timeout=10, what="refusal")
    health = live.client.get("/healthz").json()
    assert health["model_version"] == v2 and "SHA-256" in health["model_reload_error"]
    assert live.post(event("R1", PARCEL)).json()["model_version"] == v2
