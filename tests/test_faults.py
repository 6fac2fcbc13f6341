"""Faults between us and the helpdesk (500, 429 + Retry-After, a hanging API, connection refused) and the
service process being killed: every tag must still arrive, exactly once when no write was in flight.

The service runs for real: in-process uvicorn for the HTTP faults, and `tagger serve` as a subprocess
(killed with SIGKILL) for the crash tests. The helpdesk is the stand-in on 127.0.0.1."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tagger.config import Settings
from tagger.service.app import create_app
from tagger.service.store import Store
from tests.standin import (
    PROXY_VARS,
    SHIPPED_MODELS,
    LiveServer,
    StandinAdapter,
    StandinHelpdesk,
    event,
    free_port,
    local_client,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["My order #4411 hasn't arrived, where is my parcel?", "Coupon won't apply at checkout",
         "5 stars, best support ever!", "Does the Pro plan include SSO?", "Why do I get your promo SMS?"]


@pytest.fixture
def live(tmp_path, helpdesk, shipped_model):
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'faults.db'}", outbox_base_delay_s=0.05,
                        outbox_max_delay_s=0.2, http_timeout_s=0.4, worker_poll_s=0.02)
    app = create_app(settings, shipped_model, adapters={"standin": StandinAdapter(helpdesk.url)},
                     worker_options={"client": local_client(settings.http_timeout_s)})
    with LiveServer(app) as server:
        yield server


def deliver(server_url: str, tickets: list[str]) -> None:
    with local_client(base_url=server_url) as client:
        for i, ticket in enumerate(tickets):
            response = client.post("/webhooks/standin", json=event(ticket, TEXTS[i % len(TEXTS)]))
            assert response.status_code == 202, response.text


def exactly_once(helpdesk: StandinHelpdesk, tickets: list[str], timeout: float = 15) -> None:
    wait_until(lambda: set(helpdesk.write_counts()) >= set(tickets), timeout=timeout,
               what=f"writes to all of {len(tickets)} tickets")
    time.sleep(0.3)                                            # room for a (wrong) second write
    assert helpdesk.write_counts() == {t: 1 for t in tickets}
    for t in tickets:
        assert {x for x in helpdesk.tags[t] if x.startswith("mot_") and x != "mot_review"}, t


def metric(server: LiveServer, line_start: str) -> float:
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_server_errors_are_retried_until_the_tags_arrive_once(live, helpdesk):
    helpdesk.fail_next(4, status=500)
    tickets = [f"E{i}" for i in range(3)]
    deliver(live.url, tickets)
    exactly_once(helpdesk, tickets)
    assert len(helpdesk.attempts) == 7
    assert metric(live, 'tagger_tag_writes_failed_total{helpdesk="standin",outcome="retry"}') == 4
    assert live.service.store.outbox_counts() == {"pending": 0, "done": 3, "dead": 0}


def test_429_retry_after_is_honoured(live, helpdesk):
    helpdesk.fail_next(1, status=429, retry_after="1")
    deliver(live.url, ["R1"])
    exactly_once(helpdesk, ["R1"], timeout=10)
    first, last = helpdesk.attempts[0], helpdesk.attempts[-1]
    assert first["fault"] is not None and last["fault"] is None
    assert last["at"] - first["at"] >= 0.95           # backoff alone would retry after at most 0.05 s


def test_a_hanging_helpdesk_times_out_and_is_retried(live, helpdesk):
    helpdesk.hang_next(2, seconds=1.0)                 # longer than the 0.4 s client timeout
    tickets = ["H1", "H2"]
    deliver(live.url, tickets)
    exactly_once(helpdesk, tickets)
    assert sum(1 for a in helpdesk.attempts if a["fault"]) == 2
    assert metric(live, 'tagger_tag_writes_failed_total{helpdesk="standin",outcome="retry"}') == 2


def test_a_helpdesk_that_is_down_gets_every_tag_when_it_comes_back(live, helpdesk):
    helpdesk.down()
    tickets = [f"D{i}" for i in range(6)]
    deliver(live.url, tickets)
    store = live.service.store

    def retried():
        rows = store.list_outbox("pending")
        return len(rows) == 6 and all(r["attempts"] >= 2 and "connection failed" in (r["last_error"] or "")
                                      for r in rows)

    wait_until(retried, timeout=10, what="failed attempts to be recorded")
    assert live.client.get("/healthz").json()["queue_depth"] == 6
    helpdesk.up()
    exactly_once(helpdesk, tickets)
    assert store.outbox_counts()["done"] == 6


# -- kill -9 -------------------------------------------------------------------------------------------------
# the installed `tagger` command; `python -m tagger.cli` where it is not installed
_SCRIPT = Path(sys.executable).with_name("tagger")
TAGGER = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "tagger.cli"]


class ServeProcess:
    """`tagger serve` as a child process."""

    def __init__(self, tmp_path: Path, db_url: str, helpdesk_url: str, *, log_level: str = "warning",
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / f"serve-{self.port}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env = {**env, "NO_PROXY": "127.0.0.1,localhost", "TAGGER_STANDIN_URL": helpdesk_url, "TAGGER_OUTBOX_BASE_DELAY_S": "0.05",
               "TAGGER_OUTBOX_MAX_DELAY_S": "0.2", "TAGGER_HTTP_TIMEOUT_S": "0.5", "TAGGER_WORKER_POLL_S": "0.02",
               "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            [*TAGGER, "serve", "--port", str(self.port), "--db", db_url,
             "--models", str(SHIPPED_MODELS), "--adapter", "tests.standin:make_adapter", "--log-level", log_level],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._healthy, timeout=60, interval=0.1, what="tagger serve to start")
        except AssertionError:
            self.stop()
            raise AssertionError(Path(self.log.name).read_text(errors="replace")[-3000:]) from None

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"tagger serve exited with {self.proc.returncode}: "
                                 + Path(self.log.name).read_text(errors="replace")[-3000:])
        try:
            with local_client(1.0) as client:
                return client.get(f"{self.url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def test_kill_9_after_the_202s_loses_no_tag(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'kill.db'}"
    helpdesk = StandinHelpdesk(start=False)            # the helpdesk is down while the webhooks arrive
    first = ServeProcess(tmp_path, db_url, helpdesk.url)
    tickets = [f"K{i}-{uuid.uuid4().hex[:4]}" for i in range(15)]
    try:
        deliver(first.url, tickets)
        time.sleep(0.3)                                # the worker tries (connection refused) and backs off
    finally:
        first.kill()
    helpdesk.up()
    second = ServeProcess(tmp_path, db_url, helpdesk.url)
    try:
        exactly_once(helpdesk, tickets, timeout=30)    # a row leased at the kill waits for its lease to expire
    finally:
        second.stop()
        helpdesk.down()
    store = Store(db_url)
    assert store.outbox_counts() == {"pending": 0, "done": 15, "dead": 0}
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM messages")).scalar_one() == 15


def test_kill_9_while_writes_are_in_flight_loses_no_tag(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'inflight.db'}"
    helpdesk = StandinHelpdesk()
    helpdesk.slow_next(40, seconds=0.15)              # writes take a while: the kill lands among them
    first = ServeProcess(tmp_path, db_url, helpdesk.url)
    tickets = [f"F{i}-{uuid.uuid4().hex[:4]}" for i in range(20)]
    try:
        deliver(first.url, tickets)
        wait_until(lambda: len(helpdesk.writes) >= 3, timeout=10, what="some writes before the kill")
    finally:
        first.kill()
    second = ServeProcess(tmp_path, db_url, helpdesk.url)
    try:
        wait_until(lambda: set(helpdesk.write_counts()) >= set(tickets), timeout=40, what="every ticket tagged")
        wait_until(lambda: Store(db_url).outbox_counts()["done"] == 20, timeout=20, what="all rows done")
    finally:
        second.stop()
        helpdesk.down()
    counts = helpdesk.write_counts()
    # at least once for every ticket; a second write only where the kill hit between write and commit
    assert set(counts) == set(tickets)
    assert sum(counts.values()) - len(tickets) <= 8     # at most the writes in flight (worker concurrency)
