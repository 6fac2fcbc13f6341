"""Team-lead commands against a real SQLite store: `tagger tickets` and `tagger report`."""
import csv
import datetime as dt
import io
import json

import pytest
from click.testing import CliRunner

from tagger.cli import cli
from tagger.service.store import Store

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _add(store, i, stage, sentiment, *, days_ago, conf=0.9, lang="en", channel="ticket", helpdesk="zendesk"):
    store.record_classification(
        helpdesk=helpdesk, ticket_id=str(i), event_id=f"e{i}", text_hash=f"h{i}",
        prediction={"stage": stage, "sentiment": sentiment, "stage_confidence": conf,
                    "sentiment_confidence": 0.95, "lang": lang, "review": conf < 0.5},
        channel=channel, model_version="v-test", add=[f"mot_{stage}", f"sentiment_{sentiment}"], remove=[],
        ticket_url=f"https://acme.zendesk.com/agent/tickets/{i}", now=NOW - dt.timedelta(days=days_ago))


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'tagger.db'}"
    store = Store(url)
    # this week: 3 smot/negative, 1 zmot/neutral (doubtful, Latvian chat); last week: 1 smot/negative
    _add(store, 1, "smot", "negative", days_ago=1)
    _add(store, 2, "smot", "negative", days_ago=2, helpdesk="freshdesk")
    _add(store, 3, "smot", "negative", days_ago=3)
    _add(store, 4, "zmot", "neutral", days_ago=1, conf=0.41, lang="lv", channel="chat")
    _add(store, 5, "smot", "negative", days_ago=9)
    _add(store, 6, "umot", "positive", days_ago=40)
    store.close()
    return url


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tickets_filters_and_links(db):
    out = run("tickets", "--db", db, "--stage", "smot", "--sentiment", "negative", "--since", "7d")
    assert "(3 messages)" in out
    assert "https://acme.zendesk.com/agent/tickets/1" in out and "/tickets/5" not in out
    out = run("tickets", "--db", db, "--max-confidence", "0.5", "--format", "json")
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["ticket_id"] for r in rows] == ["4"] and rows[0]["lang"] == "lv" and rows[0]["review"] is True
    out = run("tickets", "--db", db, "--helpdesk", "freshdesk", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 1 and table[0]["ticket_id"] == "2" and table[0]["stage"] == "smot"


def test_report_counts_and_trend(db):
    out = json.loads(run("report", "--db", db, "--period", "7d", "--json"))
    assert out["current"]["smot"]["negative"] == 3 and out["previous"]["smot"]["negative"] == 1
    assert out["current"]["zmot"]["neutral"] == 1 and out["current"]["umot"]["positive"] == 0
    text = run("report", "--db", db, "--period", "7d")
    smot = next(line for line in text.splitlines() if line.startswith("smot"))
    assert "3 (+200%)" in smot
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert "4 (+300%)" in total


def test_bad_time_is_a_clear_error(db):
    result = CliRunner().invoke(cli, ["tickets", "--db", db, "--since", "last tuesday"])
    assert result.exit_code == 1 and "cannot read time" in result.output and "Traceback" not in result.output
