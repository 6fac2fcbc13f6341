"""The dashboard: its JSON API and access rule over real HTTP, and the page in a real headless
Chromium (Debian's chromium + chromedriver): a screenshot that shows the heatmap, and a filter
interaction that changes the list."""
import datetime as dt
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tagger.config import Settings
from tagger.service.dashboard import dashboard_routes
from tagger.service.store import Store

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
ROWS = [  # ticket, stage, sentiment, days ago, confidence, lang, channel
    ("101", "smot", "negative", 0, 0.91, "lv", "ticket"),
    ("102", "smot", "negative", 1, 0.88, "en", "chat"),
    ("103", "smot", "negative", 2, 0.42, "de", "social"),
    ("104", "zmot", "neutral", 1, 0.77, "lv", "chat"),
    ("105", "umot", "positive", 3, 0.95, "it", "social"),
    ("106", "fmot", "negative", 9, 0.70, "en", "ticket"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('dash') / 'tagger.db'}")
    for ticket, stage, sentiment, days, conf, lang, channel in ROWS:
        store.record_classification(
            helpdesk="zendesk", ticket_id=ticket, event_id=f"e{ticket}", text_hash=ticket,
            prediction={"stage": stage, "sentiment": sentiment, "stage_confidence": conf,
                        "sentiment_confidence": 0.9, "lang": lang, "review": conf < 0.5},
            channel=channel, model_version="v-test", add=[f"mot_{stage}"], remove=[],
            ticket_url=f"https://acme.zendesk.com/agent/tickets/{ticket}", now=NOW - dt.timedelta(days=days, hours=1))
    yield store
    store.close()


@pytest.fixture(scope="module")
def server(store):
    app = Starlette(routes=dashboard_routes(store, Settings.load(env={})))
    srv, thread, url = _serve(app)
    yield url
    srv.should_exit = True
    thread.join(5)


def test_summary_and_tickets_api(server):
    s = httpx.get(f"{server}/api/summary?period=7d").json()
    assert s["current"]["smot"]["negative"] == 3 and s["previous"]["fmot"]["negative"] == 1
    assert s["total"] == 5 and s["review"] == 1 and s["review_share"] == 0.2
    assert len(s["trend"]["dates"]) == 7 and sum(s["trend"]["stages"]["smot"]) == 3
    t = httpx.get(f"{server}/api/tickets?stage=smot&lang=lv").json()
    assert [x["ticket_id"] for x in t["tickets"]] == ["101"]
    bad = httpx.get(f"{server}/api/tickets?stage=nope")
    assert bad.status_code == 400 and "stage must be one of" in bad.json()["reason"]


def test_token_is_required_when_configured(store):
    app = Starlette(routes=dashboard_routes(store, Settings.load(env={"TAGGER_API_TOKEN": "s3cret"})))
    srv, thread, url = _serve(app)
    try:
        assert httpx.get(f"{url}/api/summary").status_code == 401
        assert httpx.get(f"{url}/api/summary", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/api/summary", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = httpx.get(f"{url}/dashboard?token=s3cret")
        assert page.status_code == 200 and "tagger_token" in page.headers["set-cookie"]
        assert httpx.get(f"{url}/api/summary", cookies={"tagger_token": "s3cret"}).status_code == 200
    finally:
        srv.should_exit = True
        thread.join(5)


def test_non_local_clients_are_refused_without_a_token(store):
    from starlette.testclient import TestClient

    app = Starlette(routes=dashboard_routes(store, Settings.load(env={})))
    client = TestClient(app, client=("203.0.113.9", 5000))  # a documentation-range address; no traffic leaves
    answer = client.get("/api/summary")
    assert answer.status_code == 403 and "TAGGER_API_TOKEN" in answer.json()["reason"]


def test_page_has_no_external_assets(server):
    html = httpx.get(f"{server}/dashboard").text
    assert "<script src" not in html and "<link" not in html and "http://" not in html.replace("http://www.w3", "")
    assert "https://" not in html


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); "
                           "in CI (.ci/run installs them) it fails instead of skipping")
def test_dashboard_in_headless_chromium(server, tmp_path):
    assert CHROMIUM and CHROMEDRIVER, "CI must run the browser test: .ci/run installs chromium and chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"{server}/dashboard")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#tickets tbody tr[data-ticket]")
        assert len(rows) == 5
        cell = driver.find_element(By.CSS_SELECTOR, "td.cell[data-stage=smot][data-sentiment=negative]")
        assert cell.text.startswith("3")
        assert driver.find_element(By.ID, "review").text == "20.0%"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#trend polyline")) == 5
        shot = Path(os.environ.get("TAGGER_SCREENSHOT_DIR", tmp_path)) / "dashboard.png"
        driver.save_screenshot(str(shot))
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one

        # interaction: filter on Latvian, the list changes
        before = driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
        lang = driver.find_element(By.NAME, "lang")
        lang.send_keys("lv")
        driver.find_element(By.ID, "apply").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") != before)
        tickets = [r.get_attribute("data-ticket") for r in
                   driver.find_elements(By.CSS_SELECTOR, "#tickets tbody tr[data-ticket]")]
        assert sorted(tickets) == ["101", "104"]

        # clicking a heatmap cell filters by its stage and sentiment
        before = driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
        driver.find_element(By.CSS_SELECTOR, "td.cell[data-stage=zmot][data-sentiment=neutral]").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") != before)
        assert Select(driver.find_element(By.NAME, "stage")).first_selected_option.text == "zmot"
        tickets = [r.get_attribute("data-ticket") for r in
                   driver.find_elements(By.CSS_SELECTOR, "#tickets tbody tr[data-ticket]")]
        assert tickets == ["104"]
        link = driver.find_element(By.CSS_SELECTOR, "#tickets tbody a")
        assert link.get_attribute("href") == "https://acme.zendesk.com/agent/tickets/104"
    finally:
        driver.quit()
