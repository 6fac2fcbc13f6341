"""Issue 12's attack findings, each against a real server on 127.0.0.1: no secret in a log line, /metrics and
/healthz details behind the token, forwarded headers believed only from a configured proxy, NUL bytes never a
5xx (SQLite and PostgreSQL), every dashboard parameter validated, only web links stored and no control
characters printed to a terminal."""
from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from tagger.cli import cli
from tagger.config import Settings
from tagger.service.app import create_app
from tagger.service.reports import format_tickets
from tagger.service.sanitize import printable, redact_query, web_url
from tagger.service.store import Store
from tests.standin import StandinAdapter, StandinHelpdesk, event, local_client
from tests.test_faults import ServeProcess
from tests.test_store import PRED, db_url, record  # noqa: F401 - db_url is the SQLite+PostgreSQL fixture

PARCEL = "My order #4411 hasn't arrived after two weeks. Where is my parcel?"


# -- 1. secrets in the log -------------------------------------------------------------------------------------
def test_no_query_secret_reaches_the_access_log(tmp_path):
    """`tagger serve` at log level info: every request is logged, none with its token."""
    helpdesk = StandinHelpdesk()
    serve = ServeProcess(tmp_path, f"sqlite:///{tmp_path / 'log.db'}", helpdesk.url, log_level="info",
                         env={"TAGGER_API_TOKEN": "dash-Secret-4711", "TAGGER_DJANGOHELPDESK_TOKEN": "dh-Secret-0815"})
    try:
        with local_client(5.0) as client:
            client.get(f"{serve.url}/dashboard?token=dash-Secret-4711")
            client.get(f"{serve.url}/api/tickets?limit=5&token=dash-Secret-4711")
            client.post(f"{serve.url}/webhooks/djangohelpdesk?token=dh-Secret-0815", json={})
            client.post(f"{serve.url}/webhooks/djangohelpdesk?x=1&token=wrong-Guess-99", json={})
    finally:
        serve.stop()
        helpdesk.down()
    log = (tmp_path / f"serve-{serve.port}.log").read_text(errors="replace")
    assert "/api/tickets?limit=5&token=***" in log, log[-2000:]  # the request is logged, its filters kept
    for secret in ("dash-Secret-4711", "dh-Secret-0815", "wrong-Guess-99"):
        assert secret not in log


def test_redaction_keeps_harmless_parameters():
    assert redact_query('GET /dashboard?token=abc&limit=5 HTTP/1.1') == "GET /dashboard?token=***&limit=5 HTTP/1.1"
    assert redact_query("https://h/x?api_key=k&Signature=s;period=7d") == "https://h/x?api_key=***&Signature=***;period=7d"
    assert redact_query("no query here") == "no query here"


# -- 4. access -------------------------------------------------------------------------------------------------
@pytest.fixture
def app_factory(tmp_path, shipped_model, helpdesk):
    def make(**env):
        settings = Settings.load(env={"TAGGER_DB_URL": f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}", **env})
        return create_app(settings, shipped_model, adapters={"standin": StandinAdapter(helpdesk.url)},
                          run_worker=False)
    return make


def test_metrics_and_healthz_details_need_the_token(app_factory):
    app = app_factory(TAGGER_API_TOKEN="api-tok", TAGGER_METRICS_TOKEN="prom-tok")
    with TestClient(app, client=("127.0.0.1", 5000)) as local:  # even from localhost, once a token is set
        assert local.get("/metrics").status_code == 401
        assert local.get("/metrics", headers={"Authorization": "Bearer api-tok"}).status_code == 401
        scraped = local.get("/metrics", headers={"Authorization": "Bearer prom-tok"})
        assert scraped.status_code == 200 and "tagger_events_received_total" in scraped.text
        assert local.get("/healthz").json() == {"status": "ok"}
        detail = local.get("/healthz", headers={"Authorization": "Bearer api-tok"}).json()
        assert detail["model_version"] and "queue_depth" in detail


def test_without_a_token_only_local_clients_see_metrics(app_factory):
    app = app_factory()
    with TestClient(app, client=("203.0.113.9", 5000)) as remote:
        answer = remote.get("/metrics")
        assert answer.status_code == 403 and "TAGGER_METRICS_TOKEN" in answer.json()["reason"]
        assert remote.get("/healthz").json() == {"status": "ok"}
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.get("/metrics").status_code == 200 and "model_version" in local.get("/healthz").json()


def test_forwarded_headers_are_believed_only_from_a_configured_proxy(app_factory):
    # a same-host proxy nobody configured: it forwards, so the request is not local
    plain = app_factory()
    with TestClient(plain, client=("127.0.0.1", 5000)) as via_proxy:
        assert via_proxy.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert via_proxy.get("/api/summary", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    proxied = app_factory(TAGGER_TRUSTED_PROXIES="127.0.0.1")
    with TestClient(proxied, client=("127.0.0.1", 5000)) as via_proxy:
        assert via_proxy.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
        assert via_proxy.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        # a client cannot prepend a fake local hop: the right-most untrusted address counts
        assert via_proxy.get("/metrics", headers={"X-Forwarded-For": "127.0.0.2, 203.0.113.9"}).status_code == 403
        assert via_proxy.get("/metrics").status_code == 403  # through the proxy, client unknown
    with pytest.raises(Exception, match="TAGGER_TRUSTED_PROXIES"):
        app_factory(TAGGER_TRUSTED_PROXIES="127.0.0.1, not-an-ip")


# -- 5. NUL bytes ----------------------------------------------------------------------------------------------
def test_nul_bytes_are_stored_without_them_on_every_database(db_url, shipped_model, helpdesk):  # noqa: F811
    store = Store(db_url)
    app = create_app(Settings(db_url=db_url), shipped_model, store=store,
                     adapters={"standin": StandinAdapter(helpdesk.url)}, run_worker=False)
    with TestClient(app, client=("127.0.0.1", 5000)) as client:
        payload = event("N\x001", "Where is\x00 my parcel? Order #4411", event_id="e\x00v1")
        payload["ticket"]["url"] = "https://helpdesk.example/tickets/N1\x00"
        answer = client.post("/webhooks/standin", json=payload)
        assert answer.status_code == 202, answer.text
        again = client.post("/webhooks/standin", json=payload)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        health = client.get("/healthz").json()
        assert health["status"] == "ok"
    [row] = store.list_messages()
    assert row["ticket_id"] == "N1" and "\x00" not in row["event_id"]
    assert row["ticket_url"] is None  # a URL with a control character is not a web link
    # and straight into the store (backfill's path): no 5xx-shaped failure either
    record(store, "B\x002", event="b\x00e", text="x\x00y")
    assert {r["ticket_id"] for r in store.list_messages()} == {"N1", "B2"}
    store.close()


# -- 6. dashboard parameters -------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", [
    "limit=-1", "limit=0", "limit=501", "limit=nan", "limit=inf", "limit=1e3", "limit=²",
    "min_confidence=nan", "max_confidence=inf", "max_confidence=-0.1", "min_confidence=abc",
    "since=99999999999d", "since=0001-01-01", "until=9999-12-31", "since=yesterday",
    "stage=nope", "lang=" + "x" * 65, "helpdesk=a%00b", "bogus=1", "stage=smot&stage=zmot",
])
def test_every_bad_tickets_parameter_is_a_400_with_the_reason(app_factory, query):
    with TestClient(app_factory(), client=("127.0.0.1", 5000)) as client:
        answer = client.get(f"/api/tickets?{query}")
    assert answer.status_code == 400, (query, answer.status_code, answer.text)
    assert answer.json()["reason"]


@pytest.mark.parametrize("query", ["period=99999999999d", "period=0d", "period=1y", "until=0001-01-01",
                                   "period=3661d", "channel=fax"])
def test_every_bad_summary_parameter_is_a_400_with_the_reason(app_factory, query):
    with TestClient(app_factory(), client=("127.0.0.1", 5000)) as client:
        answer = client.get(f"/api/summary?{query}")
    assert answer.status_code == 400, (query, answer.status_code, answer.text)


def test_good_parameters_still_work(app_factory):
    with TestClient(app_factory(), client=("127.0.0.1", 5000)) as client:
        assert client.get("/api/tickets?limit=500&min_confidence=0&max_confidence=1&since=3650d").status_code == 200
        assert client.get("/api/summary?period=3660d&lang=pt-BR&helpdesk=zendesk").status_code == 200


# -- 7. ticket links and terminal output ---------------------------------------------------------------------------
@pytest.mark.parametrize("url,kept", [
    ("https://acme.zendesk.com/agent/tickets/1", True), ("http://127.0.0.1:8000/helpdesk/tickets/2/", True),
    ("javascript:alert(1)", False), ("JAVASCRIPT:alert(1)", False), ("data:text/html,<b>x</b>", False),
    ("https://x.example/\x1b[2J", False), ("https://x.example/a\nb", False), ("//x.example/1", False),
    ("https:///nohost", False), ("https://x.example/a b", False), (None, False), (42, False),
])
def test_only_web_links_are_kept(url, kept):
    assert web_url(url) == (url if kept else None)


def test_tickets_output_carries_no_control_characters(tmp_path):
    db = f"sqlite:///{tmp_path / 't.db'}"
    store = Store(db)
    store.record_classification(helpdesk="generic", ticket_id="T\x1b[31mRED\x1b[0m", event_id="e1",
                                text_hash="h", prediction=PRED, channel="ticket", model_version="v", add=["mot_smot"],
                                remove=[], ticket_url="javascript:alert(1)",
                                now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    store.close()
    result = CliRunner().invoke(cli, ["tickets", "--db", db])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "javascript" not in result.output and "TRED" in result.output
    for fmt in ("table", "csv", "json"):
        out = format_tickets([{"created_at": dt.datetime.now(dt.UTC), "helpdesk": "h\x07", "ticket_id": "1\r2",
                               "stage": "smot", "sentiment": "neutral", "stage_confidence": 0.5,
                               "sentiment_confidence": 0.5, "lang": "en", "channel": "chat", "review": False,
                               "ticket_url": None}], fmt)
        assert "\x07" not in out and "\r" not in out.replace("\r\n", "\n")
    assert printable("a\u202eb\x9bc") == "abc"


def test_no_secret_in_a_helpdesk_request_log_line(caplog):
    """httpx logs every request URL at INFO; query credentials never show."""
    import logging

    from tagger.service.sanitize import install_log_redaction

    install_log_redaction()
    server = StandinHelpdesk()
    try:
        with caplog.at_level(logging.INFO, logger="httpx"), httpx.Client(trust_env=False) as client:
            client.get(f"{server.url}/tickets/1?apikey=Hidden-Key-1&page=2")
    finally:
        server.down()
    assert "apikey=***&page=2" in caplog.text and "Hidden-Key-1" not in caplog.text
