"""Retention: `tagger prune` (and the worker with TAGGER_RETENTION_DAYS) removes old messages, settled tag writes
and event ids, keeps corrections and unsettled writes, and the reports read the same figures before and after.
SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from tagger.cli import cli
from tagger.config import Settings
from tagger.errors import ConfigError
from tagger.service.dashboard import summary
from tagger.service.store import Store
from tests.standin import wait_until
from tests.test_store import count, db_url, record  # noqa: F401 - db_url: SQLite and PostgreSQL

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _history(store: Store) -> dict[str, int]:
    """Messages 1 to 120 days old, every second one's write done; one old one corrected, one old write dead."""
    ids = {}
    for age in range(1, 121):
        stage = ("zmot", "smot", "umot")[age % 3]
        rec = record(store, f"T{age}", event=f"E{age}", now=NOW - dt.timedelta(days=age, hours=3),
                     pred={"stage": stage, "sentiment": ("positive", "negative")[age % 2], "review": age % 5 == 0},
                     channel=("ticket", "chat")[age % 2])
        ids[age] = rec
        [item] = [i for i in store.claim(limit=1, now=NOW) if i.id == rec.outbox_id] or [None]
        if item is not None:
            if age == 100:
                store.mark_dead(item, "permanent error: 403")
            else:
                store.mark_done(item)
    [msg] = store.list_messages(ticket_id="T90")
    store.record_correction(message=msg, event_id="C90", new_stage="fmot", new_sentiment="negative",
                            text="checkout broke")
    return ids


def test_prune_keeps_the_reports_and_what_must_stay(db_url):  # noqa: F811
    store = Store(db_url)
    _history(store)
    window = {"since": NOW - dt.timedelta(days=200), "until": NOW}
    before = store.stage_sentiment_counts(**window)
    chat_before = store.stage_sentiment_counts(**window, channel="chat")
    year = summary(store, period=dt.timedelta(days=200), until=NOW)
    assert sum(sum(v.values()) for v in before.values()) == 120

    dry = store.prune(NOW - dt.timedelta(days=30), dry_run=True)
    assert count(store, "messages") == 120 and dry["messages"] > 0
    removed = store.prune(NOW - dt.timedelta(days=30))
    # 31..120 days old are past the cutoff (the midnight 30 days back); the corrected and dead-lettered stay
    assert removed["messages"] == dry["messages"] == 88 and removed["outbox"] == 88
    kept = {r["ticket_id"] for r in store.list_messages(limit=None)}
    assert {"T90", "T100"} <= kept and "T31" not in kept and "T29" in kept
    assert [c["new_stage"] for c in store.list_corrections()] == ["fmot"]
    assert store.outbox_counts()["dead"] == 1
    assert not store.is_processed("zendesk", "E60") and store.is_processed("zendesk", "E10")

    assert store.stage_sentiment_counts(**window) == before
    assert store.stage_sentiment_counts(**window, channel="chat") == chat_before
    after = summary(store, period=dt.timedelta(days=200), until=NOW)
    assert (after["total"], after["review"], after["trend"]) == (year["total"], year["review"], year["trend"])
    again = store.prune(NOW - dt.timedelta(days=30))
    assert again == {"messages": 0, "outbox": 0, "events": 0}
    assert store.stage_sentiment_counts(**window) == before
    store.close()


def test_prune_cli_and_settings(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store(url)
    _history(store)
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["prune", "--db", url, "--days", "60", "--dry-run"])
    assert result.exit_code == 0 and "would remove 58 message(s)" in result.output, result.output
    result = runner.invoke(cli, ["prune", "--db", url], env={"TAGGER_RETENTION_DAYS": "60"})
    assert result.exit_code == 0 and "removed 58 message(s)" in result.output and "corrections 1" in result.output
    assert runner.invoke(cli, ["prune", "--db", url]).exit_code != 0        # no period given
    assert runner.invoke(cli, ["prune", "--db", url, "--days", "3"]).exit_code != 0
    with pytest.raises(ConfigError, match="at least 7"):
        Settings.load(env={"TAGGER_RETENTION_DAYS": "3"})


def test_the_worker_prunes_when_retention_is_set(tmp_path):
    from tagger.service.worker import Worker

    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    _history(store)
    worker = Worker(store, {}, Settings(retention_days=45, prune_every_s=0.05, worker_poll_s=0.02)).start()
    try:
        wait_until(lambda: count(store, "messages") < 120, timeout=10, what="the worker's prune")
    finally:
        worker.stop()
    assert count(store, "messages") == 120 - 73 and count(store, "daily_counts") > 0
    store.close()
