"""The outbox worker against a real SQLite file and a real helpdesk stand-in on 127.0.0.1, and the
`outbox` / `worker` CLI commands."""
from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid

import pytest
from click.testing import CliRunner

from tagger.config import Settings
from tagger.helpdesks import load_adapter_spec
from tagger.service.store import DEAD, DONE, PENDING, Store, text_hash, utcnow
from tagger.service.worker import DEAD as OUT_DEAD
from tagger.service.worker import RETRY, WRITTEN, Worker, backoff_delay
from tests.standin import PROXY_VARS, StandinAdapter, local_client, wait_until

PRED = {"stage": "smot", "sentiment": "negative", "stage_confidence": 0.9, "sentiment_confidence": 0.9,
        "lang": "en", "review": False}
OWN = ["mot_lzmot", "mot_zmot", "mot_fmot", "mot_umot", "mot_review", "sentiment_positive", "sentiment_neutral"]


def settings_for(db_url: str, **kw) -> Settings:
    base = dict(db_url=db_url, outbox_base_delay_s=0.05, outbox_max_delay_s=0.2, http_timeout_s=0.5,
                worker_poll_s=0.02, outbox_max_age_s=60)
    return Settings(**{**base, **kw})


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'worker.db'}"


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def queue(store: Store, ticket: str, add=("mot_smot", "sentiment_negative")) -> int:
    return store.record_classification(helpdesk="standin", ticket_id=ticket, event_id=uuid.uuid4().hex,
                                       text_hash=text_hash(ticket), prediction=PRED, channel="ticket",
                                       model_version="v", add=list(add), remove=OWN).outbox_id


def make_worker(store, helpdesk, settings, **kw) -> Worker:
    return Worker(store, {"standin": StandinAdapter(helpdesk.url)}, settings, rng=random.Random(1),
                  client=local_client(settings.http_timeout_s), **kw)


# -- backoff -------------------------------------------------------------------------------------------------
def test_backoff_is_full_jitter_under_an_exponential_cap():
    rng = random.Random(0)
    for attempts, cap in [(1, 2.0), (2, 4.0), (4, 16.0), (12, 600.0), (40, 600.0)]:
        delays = [backoff_delay(attempts, 2.0, 600.0, rng) for _ in range(300)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8 and min(delays) < cap * 0.2      # spread over the whole range


# -- writing -------------------------------------------------------------------------------------------------
def test_write_adds_ours_removes_our_old_ones_keeps_everyone_elses(store, helpdesk, db_url):
    helpdesk.tags["T1"] = {"vip", "mot_zmot", "sentiment_positive"}
    queue(store, "T1")
    worker = make_worker(store, helpdesk, settings_for(db_url))
    assert worker.drain() == 1
    assert helpdesk.tags["T1"] == {"vip", "mot_smot", "sentiment_negative"}
    assert store.outbox_counts() == {PENDING: 0, DONE: 1, DEAD: 0}
    assert worker.drain() == 0                                   # nothing written twice
    assert len(helpdesk.writes) == 1
    worker.stop()


def test_permanent_error_goes_to_dead_letters_and_retry_brings_it_back(store, helpdesk, db_url):
    outcomes = []
    oid = queue(store, "T1")
    helpdesk.fail_next(1, status=404)
    worker = make_worker(store, helpdesk, settings_for(db_url),
                         on_outcome=lambda h, outcome, item, s: outcomes.append((h, outcome)))
    worker.drain()
    assert outcomes == [("standin", OUT_DEAD)]
    dead = store.list_outbox(DEAD)
    assert [r["id"] for r in dead] == [oid] and "permanent error" in dead[0]["last_error"]
    assert "HTTP 404" in dead[0]["last_error"] and helpdesk.writes == []
    assert store.retry([oid]) == 1
    worker.drain()
    assert outcomes[-1] == ("standin", WRITTEN) and helpdesk.write_counts() == {"T1": 1}
    worker.stop()


def test_rows_older_than_max_age_are_dead_lettered(store, helpdesk, db_url):
    queue(store, "T1")
    helpdesk.fail_next(1, status=503)
    worker = make_worker(store, helpdesk, settings_for(db_url, outbox_max_age_s=0))
    worker.drain()
    [row] = store.list_outbox(DEAD)
    assert row["last_error"].startswith("gave up after 1 attempts") and "HTTP 503" in row["last_error"]
    worker.stop()


def test_missing_adapter_is_retried_not_lost(store, helpdesk, db_url):
    queue(store, "T1")
    worker = Worker(store, {}, settings_for(db_url))
    assert worker.run_once() == 1
    [row] = store.list_outbox(PENDING)
    assert "no adapter configured for helpdesk 'standin'" in row["last_error"]
    worker.stop()


def test_a_row_of_a_crashed_worker_is_reclaimed_after_its_lease(store, helpdesk, db_url):
    queue(store, "T1")
    [abandoned] = store.claim(lease_s=0.4)          # a worker claimed it and died before writing
    worker = make_worker(store, helpdesk, settings_for(db_url))
    assert worker.run_once() == 0                   # still leased
    time.sleep(0.45)
    assert worker.run_once() == 1
    assert helpdesk.write_counts() == {"T1": 1}
    assert store.mark_done(abandoned) is False      # the dead worker's claim cannot touch it any more
    worker.stop()


def test_a_write_cut_off_after_it_reached_the_helpdesk_is_not_sent_again(store, helpdesk, db_url):
    """A worker killed after the helpdesk applied its write, before marking the row done: whoever takes the
    row after its lease reads the ticket's tags back and, finding the write there, does not send it again."""
    queue(store, "T1")
    queue(store, "T2")
    [first, second] = store.claim(limit=2, lease_s=0.3)   # a worker claims both, writes T1 only, and dies
    assert not first.recovered and not second.recovered
    with local_client() as client:
        StandinAdapter(helpdesk.url).write_tags(client, "T1", list(first.add), list(first.remove))
    time.sleep(0.35)
    worker = make_worker(store, helpdesk, settings_for(db_url))
    assert worker.drain() == 2
    assert helpdesk.write_counts() == {"T1": 1, "T2": 1}      # T1 not written twice, T2 written once
    assert store.outbox_counts()["done"] == 2 and store.outbox_counts()["pending"] == 0
    worker.stop()


def test_recovered_rows_are_flagged_only_when_their_lease_expired_unsettled(store, helpdesk, db_url):
    queue(store, "T1")
    [item] = store.claim(lease_s=0.2)
    store.mark_retry(item, "HTTP 500", next_attempt_at=item.queued_at)   # settled: a failure was recorded
    [again] = store.claim(lease_s=0.2)
    assert not again.recovered
    time.sleep(0.25)                                   # this claim's worker dies
    [third] = store.claim(lease_s=5)
    assert third.recovered and third.attempts == 3


def test_background_thread_writes_on_notify_and_stops_cleanly(store, helpdesk, db_url):
    worker = make_worker(store, helpdesk, settings_for(db_url, worker_poll_s=5.0)).start()
    time.sleep(0.1)
    started = time.monotonic()
    queue(store, "T1")
    worker.notify()
    wait_until(lambda: helpdesk.write_counts().get("T1") == 1, timeout=4, what="the write")
    assert time.monotonic() - started < 2.0         # woken up, not waiting for the 5 s poll
    worker.stop(timeout_s=5)
    assert not worker._thread.is_alive()


def test_several_workers_write_every_row_exactly_once(store, helpdesk, db_url):
    tickets = [f"T{i}" for i in range(40)]
    for t in tickets:
        queue(store, t)
    helpdesk.fail_next(5, status=500)
    settings = settings_for(db_url)
    workers = [Worker(Store(db_url), {"standin": StandinAdapter(helpdesk.url)}, settings, concurrency=4,
                      client=local_client(0.5)) for _ in range(3)]
    for w in workers:
        w.start()
    wait_until(lambda: store.outbox_counts()[DONE] == 40, timeout=20, what="all rows done")
    for w in workers:
        w.stop()
    assert helpdesk.write_counts() == {t: 1 for t in tickets}


def test_a_slow_write_does_not_hold_up_the_others(store, helpdesk, db_url):
    helpdesk.slow_next(1, seconds=1.5)                # the first write takes 1.5 s (well inside the timeout)
    worker = make_worker(store, helpdesk, settings_for(db_url, http_timeout_s=5.0), concurrency=4).start()
    queue(store, "SLOW")
    worker.notify()
    wait_until(lambda: helpdesk.attempts, timeout=4, what="the slow write to start")
    started = time.monotonic()
    tickets = [f"T{i}" for i in range(6)]
    for t in tickets:
        queue(store, t)
    worker.notify()
    wait_until(lambda: set(helpdesk.write_counts()) >= set(tickets), timeout=4, what="the other writes")
    assert time.monotonic() - started < 1.2 and "SLOW" not in helpdesk.write_counts()   # not waiting for it
    wait_until(lambda: store.outbox_counts()[DONE] == 7, timeout=5, what="all rows done")
    worker.stop(timeout_s=5)
    assert helpdesk.write_counts() == {t: 1 for t in [*tickets, "SLOW"]}


def test_concurrency_comes_from_the_settings_unless_given(store, helpdesk, db_url):
    settings = settings_for(db_url, worker_concurrency=24)
    assert Settings.load(env={"TAGGER_WORKER_CONCURRENCY": "24"}).worker_concurrency == 24
    worker = make_worker(store, helpdesk, settings)
    assert worker.concurrency == 24 and worker._pool._max_workers == 24
    worker.stop()
    worker = make_worker(store, helpdesk, settings, concurrency=3)
    assert worker.concurrency == 3
    worker.stop()


# -- adapters from specs -------------------------------------------------------------------------------------
def test_adapter_specs_are_loaded_and_checked():
    adapter = load_adapter_spec("tests.standin:make_adapter", {"TAGGER_STANDIN_URL": "http://127.0.0.1:9"})
    assert adapter.name == "standin" and adapter.base_url == "http://127.0.0.1:9"
    from tagger.errors import ConfigError

    with pytest.raises(ConfigError, match="MODULE:FACTORY"):
        load_adapter_spec("no-colon", {})
    with pytest.raises(ConfigError, match="no_such_module"):
        load_adapter_spec("no_such_module:make", {})


# -- CLI -----------------------------------------------------------------------------------------------------
@pytest.fixture
def cli():
    from tagger.cli import cli as tagger_cli

    return tagger_cli


def test_outbox_cli_lists_dead_letters_and_retries_them(cli, store, helpdesk, db_url, monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TAGGER_STANDIN_URL", helpdesk.url)
    monkeypatch.setenv("TAGGER_DB_URL", db_url)
    a, b = queue(store, "T1"), queue(store, "T2")
    for item in store.claim(limit=5):
        store.mark_dead(item, "permanent error: HTTP 403 forbidden")
    runner = CliRunner()
    result = runner.invoke(cli, ["outbox", "--status", "dead", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {r["id"] for r in rows} == {a, b} and all(r["status"] == "dead" for r in rows)
    table = runner.invoke(cli, ["outbox"])
    assert "dead: 2" in table.output and "HTTP 403" in table.output
    usage = runner.invoke(cli, ["outbox", "retry"])
    assert usage.exit_code != 0 and "--all-dead" in usage.output
    result = runner.invoke(cli, ["outbox", "retry", str(a)])
    assert result.exit_code == 0 and "requeued 1" in result.output
    result = runner.invoke(cli, ["outbox", "retry", "--all-dead"])
    assert "requeued 1" in result.output
    result = runner.invoke(cli, ["worker", "--once", "--adapter", "tests.standin:make_adapter"])
    assert result.exit_code == 0, result.output
    assert "attempted 2" in result.output
    assert helpdesk.write_counts() == {"T1": 1, "T2": 1}
    assert store.outbox_counts()[DONE] == 2


def test_every_service_command_has_help_with_an_example(cli):
    runner = CliRunner()
    for args in (["serve"], ["worker"], ["outbox"], ["outbox", "retry"], ["feedback"], ["feedback", "export"]):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example" in result.output and "tagger " in result.output, args


def test_next_attempt_is_scheduled_with_backoff(store, helpdesk, db_url):
    queue(store, "T1")
    helpdesk.fail_next(1, status=502)
    worker = make_worker(store, helpdesk, settings_for(db_url, outbox_base_delay_s=30, outbox_max_delay_s=30))
    before = utcnow()
    assert worker.process(store.claim()[0]) == RETRY
    [row] = store.list_outbox(PENDING)
    assert before <= row["next_attempt_at"] <= before + dt.timedelta(seconds=31)
    assert row["attempts"] == 1 and "HTTP 502" in row["last_error"]
    worker.stop()


def test_worker_survives_a_database_outage(tmp_path, helpdesk):
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'x.db'}"
    worker = Worker(Store(url, create=False), {"standin": StandinAdapter(helpdesk.url)}, settings_for(url),
                    client=local_client(0.5))
    worker.start()
    time.sleep(0.2)                                   # rounds fail (no such directory), the loop keeps going
    assert worker._thread.is_alive() and helpdesk.writes == []
    folder.mkdir()                                    # the database comes back
    queue(Store(url), "T1")
    wait_until(lambda: helpdesk.write_counts() == {"T1": 1}, timeout=5, what="the write after the outage")
    worker.stop(timeout_s=5)
