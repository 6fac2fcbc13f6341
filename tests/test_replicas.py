"""Several replicas on one PostgreSQL database: two real `tagger serve` processes (and, separately, two
standalone `tagger worker` processes) share one outbox against a helpdesk stand-in that fails 10% of the
tag writes. Every ticket must get exactly one successful write (outbox rows are claimed with
`FOR UPDATE SKIP LOCKED`), and a delivery repeated to the other replica must not be classified again.

Needs a PostgreSQL server (TAGGER_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test);
skipped with the reason when none answers. Each test runs in a schema of its own, dropped afterwards.
Every helpdesk write goes to `<stand-in>/<replica name>/tickets/...`, so the stand-in knows who wrote."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tagger.service.store import Store, text_hash
from tests.standin import PROXY_VARS, SHIPPED_MODELS, StandinHelpdesk, event, local_client, wait_until
from tests.test_store import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("tagger")
TAGGER = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "tagger.cli"]
TEXTS = ["My order #4411 hasn't arrived, where is my parcel?", "Coupon won't apply at checkout",
         "5 stars, best support ever!", "Does the Pro plan include SSO?", "Why do I get your promo SMS?",
         "Mans pasūtījums vēl nav atnācis", "我的订单还没到，怎么回事？", "Ik wil mijn bestelling retourneren"]
FAST_RETRIES = {"TAGGER_OUTBOX_BASE_DELAY_S": "0.05", "TAGGER_OUTBOX_MAX_DELAY_S": "0.2",
                "TAGGER_HTTP_TIMEOUT_S": "2", "TAGGER_WORKER_POLL_S": "0.05"}


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    yield from pg_schema_url("r")


@pytest.fixture
def helpdesk():
    h = StandinHelpdesk(fail_rate=0.10, fail_with=[(500, None)], seed=5)
    yield h
    h.down()


class TaggerProcess:
    """`tagger <args>` as a child process with TAGGER_DB_URL, the `standin` adapter (TAGGER_ADAPTERS) and
    fast retry settings; writes go to the stand-in under `/<name>/`."""

    def __init__(self, name: str, args: list[str], db_url: str, helpdesk: StandinHelpdesk, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("TAGGER_")}
        env.update({"NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT), "TAGGER_DB_URL": db_url,
                    "TAGGER_ADAPTERS": "tests.standin:make_adapter",
                    "TAGGER_STANDIN_URL": f"{helpdesk.url}/{name}", **FAST_RETRIES})
        self.proc = subprocess.Popen([*TAGGER, *args, "--log-level", "warning"], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class Replica(TaggerProcess):
    """`tagger serve` on its own port."""

    def __init__(self, name: str, db_url: str, helpdesk: StandinHelpdesk, log_dir: Path):
        from tests.standin import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, ["serve", "--port", str(self.port), "--models", str(SHIPPED_MODELS)], db_url,
                         helpdesk, log_dir)

    def healthy(self) -> bool:
        self.check_alive()
        try:
            with local_client(1.0) as client:
                return client.get(f"{self.url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (over all labels) on this replica."""
        with local_client() as client:
            text = client.get(f"{self.url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))


def start_all(processes: list[TaggerProcess], ready, timeout: float = 60) -> None:
    try:
        for p in processes:
            wait_until(lambda p=p: ready(p), timeout=timeout, interval=0.1, what=f"{p.name} to start")
    except BaseException:
        for p in processes:
            p.stop()
        raise


def table_count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def drained(store: Store, total: int) -> bool:
    return store.outbox_counts() == {"pending": 0, "done": total, "dead": 0}


def assert_written_exactly_once(helpdesk: StandinHelpdesk, store: Store, tickets: list[str]) -> None:
    time.sleep(0.3)                                                  # room for a (wrong) second write
    assert helpdesk.write_counts() == {t: 1 for t in tickets}
    with store.engine.connect() as conn:
        tags = dict(conn.execute(sa.text("SELECT ticket_id, tags FROM messages")).all())
    for t in tickets:
        assert helpdesk.tags[t] == set(tags[t]), t


def test_two_serve_replicas_write_every_ticket_once_and_ignore_repeats(pg_url, helpdesk, tmp_path):
    Store(pg_url).close()                                            # the schema, before two replicas race
    replicas = [Replica(f"replica{i}", pg_url, helpdesk, tmp_path) for i in (1, 2)]
    start_all(replicas, Replica.healthy)
    n, run = 200, uuid.uuid4().hex[:6]
    events = [event(f"{run}-{i}", TEXTS[i % len(TEXTS)] + f" (ticket {i})", channel=("ticket", "chat")[i % 2])
              for i in range(n)]
    tickets = [e["ticket"]["id"] for e in events]
    repeats = list(range(0, n, 4))                                   # 50 deliveries repeated to the other replica
    store = Store(pg_url, create=False)
    try:
        def deliver(job: tuple[int, int]) -> tuple[int, str]:
            i, replica = job
            with local_client(base_url=replicas[replica].url) as client:
                response = client.post("/webhooks/standin", json=events[i])
            return response.status_code, response.json()["status"]

        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(deliver, [(i, i % 2) for i in range(n)]))
            assert Counter(first) == {(202, "tagged"): n}
            again = list(pool.map(deliver, [(i, (i + 1) % 2) for i in repeats]))
        assert Counter(again) == {(200, "duplicate"): len(repeats)}

        wait_until(lambda: drained(store, n), timeout=40, interval=0.1, what="the outbox to drain")
        assert_written_exactly_once(helpdesk, store, tickets)
        assert table_count(store, "messages") == n and table_count(store, "processed_events") == n

        def total(metric: str) -> float:
            return sum(r.metric(metric) for r in replicas)

        assert total("tagger_classification_seconds_count") == n      # the repeats were not classified
        assert total("tagger_events_tagged_total") == n
        assert total("tagger_events_skipped_total") == len(repeats)
        assert total("tagger_tags_written_total") == n
        failures = sum(1 for a in helpdesk.attempts if a["fault"])
        assert failures > 0 and total("tagger_tag_writes_failed_total") == failures   # all retried, none dead
        assert {w["via"] for w in helpdesk.writes} == {"replica1", "replica2"}       # both workers wrote
    finally:
        store.close()
        codes = [r.stop() for r in replicas]
    assert all(code in (0, -signal.SIGTERM) for code in codes), codes   # uvicorn re-raises SIGTERM when done


def test_two_standalone_workers_share_one_outbox(pg_url, helpdesk, tmp_path):
    store = Store(pg_url)
    workers = [TaggerProcess(f"worker{i}", ["worker", "--concurrency", "4"], pg_url, helpdesk, tmp_path)
               for i in (1, 2)]

    def running(p: TaggerProcess) -> bool:
        p.check_alive()
        return "tagger worker running" in p.output()

    start_all(workers, running)
    n = 200
    tickets = [f"W{i}-{uuid.uuid4().hex[:4]}" for i in range(n)]
    prediction = {"stage": "smot", "sentiment": "negative", "stage_confidence": 0.9, "sentiment_confidence": 0.9,
                  "lang": "en", "review": False}
    try:
        for t in tickets:
            store.record_classification(helpdesk="standin", ticket_id=t, event_id=uuid.uuid4().hex,
                                        text_hash=text_hash(t), prediction=prediction, channel="ticket",
                                        model_version="v-test", add=["mot_smot", "sentiment_negative"],
                                        remove=["mot_zmot"])
        wait_until(lambda: drained(store, n), timeout=40, interval=0.1, what="the outbox to drain")
        assert_written_exactly_once(helpdesk, store, tickets)
        failures = sum(1 for a in helpdesk.attempts if a["fault"])
        with store.engine.connect() as conn:
            attempts = conn.execute(sa.text("SELECT sum(attempts) FROM outbox")).scalar_one()
        assert failures > 0 and attempts == n + failures           # one extra attempt per failure, no more
        assert {w["via"] for w in helpdesk.writes} == {"worker1", "worker2"}
    finally:
        store.close()
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.output()[-2000:] for w in workers]
