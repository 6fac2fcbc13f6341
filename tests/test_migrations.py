"""Upgrades keep data: a database created by the release before migrations (its exact DDL is in
tests/fixtures/), with data in it, is refused by the new code until `tagger db upgrade`, which keeps every row;
a schema newer or older than the code is refused with the command that fixes it. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tagger.cli import cli
from tagger.service.migrations import SchemaError, head
from tagger.service.store import Store
from tests.test_store import PRED, db_url, record  # noqa: F401 - db_url: SQLite and PostgreSQL

FIXTURES = Path(__file__).parent / "fixtures"
T0 = "2026-11-20 08:00:00"


def _old_release_db(url: str) -> None:
    """The previous release's schema and some of its data: two messages, their outbox rows, a correction."""
    engine = sa.create_engine(url)
    ddl = (FIXTURES / f"schema_20261203_{engine.dialect.name}.sql").read_text()
    with engine.begin() as conn:
        for statement in (s.strip() for s in ddl.split(";")):
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body:
                conn.exec_driver_sql(body)
        tags = json.dumps(["mot_smot", "sentiment_negative"])
        ids = {}
        for n, stage in ((1, "smot"), (2, "umot")):
            ids[n] = mid = conn.execute(sa.text(
                "INSERT INTO messages (helpdesk, ticket_id, event_id, text_hash, stage, sentiment, stage_confidence,"
                " sentiment_confidence, lang, channel, review, tags, model_version, ticket_url, created_at) VALUES "
                "('zendesk', :t, :e, 'h', :s, 'negative', 0.9, 0.8, 'en', 'ticket', false, :tags, 'v-old',"
                " 'https://x/1', :c) RETURNING id"), {"t": f"T{n}", "e": f"E{n}", "s": stage, "tags": tags,
                                                      "c": T0}).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO outbox (message_id, helpdesk, ticket_id, add_tags, remove_tags, status, attempts,"
                " next_attempt_at, queued_at, created_at, updated_at) VALUES (:m, 'zendesk', :t, :tags, '[]', :st, 0,"
                " :c, :c, :c, :c)"), {"m": mid, "t": f"T{n}", "tags": tags, "st": "pending" if n == 2 else "done",
                                      "c": T0})
            conn.execute(sa.text("INSERT INTO processed_events (helpdesk, event_id, outcome, created_at) VALUES "
                                 "('zendesk', :e, 'tagged', :c)"), {"e": f"E{n}", "c": T0})
        conn.execute(sa.text(
            "INSERT INTO corrections (helpdesk, ticket_id, message_id, event_id, old_stage, old_sentiment, new_stage,"
            " new_sentiment, text, lang, channel, created_at) VALUES ('zendesk', 'T1', :m, 'C1', 'smot', 'negative',"
            " 'fmot', 'negative', 'checkout broke', 'en', 'ticket', :c)"), {"c": T0, "m": ids[1]})
    engine.dispose()


def test_a_database_of_the_previous_release_is_upgraded_with_its_data(db_url):  # noqa: F811
    _old_release_db(db_url)
    with pytest.raises(SchemaError, match="tagger db upgrade"):
        Store(db_url)
    runner = CliRunner()
    status = runner.invoke(cli, ["db", "status", "--db", db_url])
    assert status.exit_code == 1 and "tagger db upgrade" in status.output
    result = runner.invoke(cli, ["db", "upgrade", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert f"schema at revision {head()}" in result.output
    store = Store(db_url)  # now accepted
    try:
        rows = store.list_messages(limit=None)
        assert sorted(r["ticket_id"] for r in rows) == ["T1", "T2"]
        assert rows[0]["created_at"].tzinfo is not None and rows[0]["tags"] == ["mot_smot", "sentiment_negative"]
        assert store.outbox_counts()["pending"] == 1 and store.outbox_counts()["done"] == 1
        assert store.is_processed("zendesk", "E1")
        assert [c["new_stage"] for c in store.list_corrections()] == ["fmot"]
        record(store, "T3")                             # and the new code writes to it
        assert len(store.list_messages(limit=None)) == 3
        assert store.stage_sentiment_counts()["smot"]["negative"] == 2
    finally:
        store.close()
    again = runner.invoke(cli, ["db", "upgrade", "--db", db_url])
    assert again.exit_code == 0 and "no change" in again.output


def test_a_schema_newer_than_the_code_is_refused(db_url):  # noqa: F811
    Store(db_url).close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="newer than this code"):
        Store(db_url)
    result = CliRunner().invoke(cli, ["db", "upgrade", "--db", db_url])
    assert result.exit_code != 0 and "newer than this code" in result.output


def test_a_schema_older_than_the_code_is_refused_until_upgraded(db_url):  # noqa: F811
    store = Store(db_url)
    record(store, "O1")
    store.close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # what revision 0001 left: no daily_counts, no messages.text
        conn.execute(sa.text("DROP TABLE daily_counts"))
        conn.execute(sa.text("ALTER TABLE messages DROP COLUMN text"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="older than this code's .*tagger db upgrade"):
        Store(db_url)
    assert CliRunner().invoke(cli, ["db", "upgrade", "--db", db_url]).exit_code == 0
    store = Store(db_url)
    assert [r["ticket_id"] for r in store.list_messages()] == ["O1"]
    store.prune(dt.datetime.now(dt.UTC))  # uses the migrated table
    store.close()


def test_migrations_build_the_schema_the_code_describes(tmp_path):
    """The head migration equals `metadata.create_all`: same tables, columns, types' nullability, indexes."""
    fresh, migrated = f"sqlite:///{tmp_path / 'fresh.db'}", f"sqlite:///{tmp_path / 'migrated.db'}"
    Store(fresh).close()
    _old_release_db(migrated)
    store = Store(migrated, create=False)
    store.upgrade_schema()
    store.close()

    def shape(url):
        engine = sa.create_engine(url)
        inspector = sa.inspect(engine)
        out = {t: ({(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(t)},
                   {(i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(t)},
                   tuple(inspector.get_pk_constraint(t)["constrained_columns"]))
               for t in inspector.get_table_names()}
        engine.dispose()
        return out

    assert shape(fresh) == shape(migrated)


def test_unversioned_foreign_tables_are_not_touched(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE messages (x INTEGER)"))
    engine.dispose()
    store = Store(url, create=False)
    with pytest.raises(SchemaError, match="not one of ours"):
        store.upgrade_schema()
    store.close()
    assert PRED
