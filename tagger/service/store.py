"""The database: tagged messages, the outbox of tag writes, processed event ids and agent corrections.

SQLAlchemy Core on SQLite (default, WAL mode) or PostgreSQL (`postgresql+psycopg://...`). A webhook's
message, its processed-event id and its outbox row are written in one transaction, so a crash either
keeps all three or none. Outbox rows are claimed with a lease (`lease_until`): on PostgreSQL with
`SELECT ... FOR UPDATE SKIP LOCKED`, on SQLite with one atomic `UPDATE ... WHERE status='pending'`;
a row whose worker died is claimed again once its lease expires.

    store = Store("sqlite:///tagger.db")
    store.list_messages(stage="smot", sentiment="negative", since=week_ago)
    store.stage_sentiment_counts(since=week_ago)
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import SQLAlchemyError

from tagger.classifier.text import clean
from tagger.errors import ConfigError, TaggerError
from tagger.labels import SENTIMENTS, STAGES
from tagger.service import migrations
from tagger.service.sanitize import no_nul, web_url

PENDING, DONE, DEAD = "pending", "done", "dead"
OUTBOX_STATUSES = (PENDING, DONE, DEAD)
SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(TaggerError):
    """The database cannot be reached or refused an operation."""


class DuplicateEvent(TaggerError):
    """This (helpdesk, event id) was processed before: the delivery is a retry and must not be acted on."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _midnight(when: dt.datetime) -> dt.datetime:
    """The UTC midnight at or before `when`."""
    return when.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text, PostgreSQL timestamptz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC datetimes")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# BIGINT ids on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("helpdesk", sa.String(40), nullable=False),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("text_hash", sa.String(64), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("sentiment", sa.String(16), nullable=False),
    sa.Column("stage_confidence", sa.Float, nullable=False),
    sa.Column("sentiment_confidence", sa.Float, nullable=False),
    sa.Column("lang", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("review", sa.Boolean, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("ticket_url", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("text", sa.Text),  # the latest message of a ticket only (what an agent's correction refers to)
    sa.Index("ix_messages_ticket", "helpdesk", "ticket_id", "id"),
    sa.Index("ix_messages_created", "created_at"),
    sa.Index("ix_messages_labels", "stage", "sentiment", "created_at"),
)

processed_events = sa.Table(
    "processed_events", metadata,
    sa.Column("helpdesk", sa.String(40), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("message_id", _ID, sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("helpdesk", sa.String(40), nullable=False),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("add_tags", sa.JSON, nullable=False),
    sa.Column("remove_tags", sa.JSON, nullable=False),
    sa.Column("status", sa.String(10), nullable=False, default=PENDING),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("claim_token", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.Column("queued_at", UTCDateTime, nullable=False),   # age for the dead-letter rule; reset by `retry`
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_outbox_ticket", "helpdesk", "ticket_id", "status", "id"),
    sa.Index("ix_outbox_message", "message_id"),
)

corrections = sa.Table(
    "corrections", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("helpdesk", sa.String(40), nullable=False),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("message_id", _ID, sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("old_stage", sa.String(16), nullable=False),
    sa.Column("old_sentiment", sa.String(16), nullable=False),
    sa.Column("new_stage", sa.String(16), nullable=False),
    sa.Column("new_sentiment", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("lang", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_corrections_message", "message_id", "id"),
    sa.Index("ix_corrections_created", "created_at"),
)


daily_counts = sa.Table(  # what the reports need of messages removed by retention (`prune`)
    "daily_counts", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("helpdesk", sa.String(40), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("lang", sa.String(16), primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True),
    sa.Column("sentiment", sa.String(16), primary_key=True),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("review", sa.Integer, nullable=False),
)

FIRST_REVISION_TABLES = ("messages", "processed_events", "outbox", "corrections")  # before migrations


def text_hash(text: str) -> str:
    """SHA-256 of the text the classifier reads (after cleaning), so re-rendered HTML or a re-quoted mail
    with the same content counts as unchanged."""
    return hashlib.sha256(clean(text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OutboxItem:
    """One pending tag write, as a worker claimed it."""

    id: int
    message_id: int
    helpdesk: str
    ticket_id: str
    add: list[str]
    remove: list[str]
    attempts: int           # including the attempt this claim is for
    queued_at: dt.datetime
    created_at: dt.datetime
    claim_token: str
    recovered: bool = False  # an earlier claim's lease expired unsettled: that write may have reached the helpdesk


@dataclass(frozen=True)
class Recorded:
    message_id: int
    outbox_id: int


def normalize_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Store:
    """All database access of the service, worker and reports."""

    def __init__(self, url: str = "sqlite:///tagger.db", *, create: bool = True, echo: bool = False):
        self.url = normalize_url(url)
        try:
            self.engine: Engine = _make_engine(self.url, echo=echo)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"cannot use database URL {sa.make_url(self.url).render_as_string()!r}: {exc}") from exc
        self.dialect = self.engine.dialect.name
        self._write_gate = threading.Lock() if self.dialect == "sqlite" else contextlib.nullcontext()
        # an in-memory SQLite database is one shared connection: every transaction takes turns on it
        self._read_gate = self._write_gate if _is_memory(self.url) else contextlib.nullcontext()
        if create:
            self.create_schema()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction. On SQLite a writing one takes the database write lock up front (BEGIN IMMEDIATE),
        so writers queue instead of failing on a lock upgrade; writers of this process queue on a Python
        lock first, which wakes the next one at once (SQLite's busy handler polls with sleeps of up to
        100 ms, which under load starves some writers for seconds). Other processes still wait on the busy
        timeout."""
        gate = self._write_gate if write else self._read_gate
        try:
            with gate, self.engine.connect() as conn:
                conn.execution_options(tagger_write=write)
                with conn.begin():
                    yield conn
        except SAIntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc

    def create_schema(self) -> None:
        """Make sure the schema is the code's: an empty database gets the tables (stamped with the newest
        migration); one at the code's revision is used as it is; any other is refused with the command that
        fixes it (SchemaError). Safe with several replicas starting at once."""
        with self._schema_tx() as (conn, cfg):
            state = migrations.state(conn, cfg)
            if state.empty:
                metadata.create_all(conn, checkfirst=True)
                migrations.stamp(cfg, "head")
                return
            migrations.refuse_unless_current(state, self)

    def schema_revision(self) -> migrations.SchemaState:
        with self._schema_tx() as (conn, cfg):
            return migrations.state(conn, cfg)

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate to the code's revision (`tagger db upgrade`); (revision before, revision after). A database
        of the release before migrations is recognised by its tables and stamped with the first revision."""
        with self._schema_tx() as (conn, cfg):
            state = migrations.state(conn, cfg)
            if state.empty:
                metadata.create_all(conn, checkfirst=True)
                migrations.stamp(cfg, "head")
                return None, state.head
            before = state.revision
            if before is None:
                missing = set(FIRST_REVISION_TABLES) - set(state.tables)
                if missing:
                    raise migrations.SchemaError(f"{self}: unversioned database without {', '.join(sorted(missing))}: "
                                                 "not one of ours; refusing to touch it")
                migrations.stamp(cfg, migrations.FIRST)
            elif state.newer:
                migrations.refuse_unless_current(state, self)
            migrations.upgrade(cfg, "head")
            return before, state.head

    @contextlib.contextmanager
    def _schema_tx(self):
        with self._tx() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(724011)"))
            yield conn, migrations.config(conn)

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self._tx(write=False) as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except (StoreError, SQLAlchemyError):
            return False

    # -- webhook side ------------------------------------------------------------------------------------
    def is_processed(self, helpdesk: str, event_id: str) -> bool:
        helpdesk, event_id = no_nul((helpdesk, event_id))
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(processed_events.c.outcome).where(
                processed_events.c.helpdesk == helpdesk, processed_events.c.event_id == event_id)).first()
        return row is not None

    def record_classification(self, *, helpdesk: str, ticket_id: str, event_id: str, text_hash: str,
                              prediction: dict[str, Any], channel: str, model_version: str,
                              add: Sequence[str], remove: Sequence[str], ticket_url: str | None = None,
                              now: dt.datetime | None = None, text: str | None = None) -> Recorded:
        """Store a classified message, its processed-event id and its outbox row in one transaction.

        Older pending rows of the same ticket that no worker holds are superseded (marked done): the new
        row sets all of our tags on the ticket, so writing the old ones first would only flicker.
        Raises `DuplicateEvent` when the event id was processed before (nothing is written then).
        """
        now = now or utcnow()
        # PostgreSQL cannot store NUL in text (every retry would fail); links must be web links
        helpdesk, ticket_id, event_id, channel, add, remove, prediction, text = no_nul(
            (helpdesk, ticket_id, event_id, channel, list(add), list(remove), prediction, text))
        ticket_url = web_url(ticket_url)
        try:
            with self._tx() as conn:
                conn.execute(processed_events.insert().values(
                    helpdesk=helpdesk, event_id=event_id, outcome="tagged", created_at=now))
                message_id = conn.execute(messages.insert().values(
                    helpdesk=helpdesk, ticket_id=ticket_id, event_id=event_id, text_hash=text_hash,
                    stage=prediction["stage"], sentiment=prediction["sentiment"],
                    stage_confidence=float(prediction["stage_confidence"]),
                    sentiment_confidence=float(prediction["sentiment_confidence"]),
                    lang=prediction.get("lang") or "und", channel=channel, review=bool(prediction["review"]),
                    tags=list(add), model_version=model_version, ticket_url=ticket_url, created_at=now, text=text,
                ).returning(messages.c.id)).scalar_one()
                if text is not None:  # only the latest message of a ticket keeps its text
                    conn.execute(messages.update().where(
                        messages.c.helpdesk == helpdesk, messages.c.ticket_id == ticket_id,
                        messages.c.id < message_id, messages.c.text.is_not(None)).values(text=None))
                outbox_id = conn.execute(outbox.insert().values(
                    message_id=message_id, helpdesk=helpdesk, ticket_id=ticket_id, add_tags=list(add),
                    remove_tags=list(remove), status=PENDING, attempts=0, next_attempt_at=now,
                    queued_at=now, created_at=now, updated_at=now,
                ).returning(outbox.c.id)).scalar_one()
                conn.execute(outbox.update().where(
                    outbox.c.helpdesk == helpdesk, outbox.c.ticket_id == ticket_id, outbox.c.status == PENDING,
                    outbox.c.id < outbox_id, sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
                ).values(status=DONE, last_error=f"superseded by #{outbox_id}", updated_at=now))
        except SAIntegrityError as exc:
            raise DuplicateEvent(f"{helpdesk} event {event_id} was processed before") from exc
        return Recorded(message_id=message_id, outbox_id=outbox_id)

    def record_event(self, helpdesk: str, event_id: str, outcome: str, *, now: dt.datetime | None = None) -> bool:
        """Remember an event that needed no classification (e.g. our own tag update); False if seen before."""
        helpdesk, event_id = no_nul((helpdesk, event_id))
        try:
            with self._tx() as conn:
                conn.execute(processed_events.insert().values(
                    helpdesk=helpdesk, event_id=event_id, outcome=outcome, created_at=now or utcnow()))
            return True
        except SAIntegrityError:
            return False

    def last_message(self, helpdesk: str, ticket_id: str) -> dict[str, Any] | None:
        """The last classified version of a ticket, with the status of its outbox row (`write_status`)."""
        helpdesk, ticket_id = no_nul((helpdesk, ticket_id))
        query = (sa.select(messages, outbox.c.status.label("write_status"))
                 .select_from(messages.outerjoin(outbox, outbox.c.message_id == messages.c.id))
                 .where(messages.c.helpdesk == helpdesk, messages.c.ticket_id == ticket_id)
                 .order_by(messages.c.id.desc()).limit(1))
        with self._tx(write=False) as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def labels_written_before(self, helpdesk: str, ticket_id: str, before_message_id: int) -> set[tuple[str, str]]:
        """(stage, sentiment) pairs of earlier classifications of a ticket (to spot stale tag snapshots)."""
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(messages.c.stage, messages.c.sentiment).where(
                messages.c.helpdesk == helpdesk, messages.c.ticket_id == ticket_id,
                messages.c.id < before_message_id).distinct()).all()
        return {(r.stage, r.sentiment) for r in rows}

    def ticket_corrections(self, helpdesk: str, ticket_id: str) -> list[dict[str, Any]]:
        """Every correction recorded on a ticket, oldest first (which labels the agents own)."""
        helpdesk, ticket_id = no_nul((helpdesk, ticket_id))
        with self._tx(write=False) as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(corrections).where(
                corrections.c.helpdesk == helpdesk, corrections.c.ticket_id == ticket_id).order_by(corrections.c.id))]

    def last_correction(self, message_id: int) -> dict[str, Any] | None:
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(corrections).where(corrections.c.message_id == message_id)
                               .order_by(corrections.c.id.desc()).limit(1)).first()
        return dict(row._mapping) if row else None

    def record_correction(self, *, message: dict[str, Any], event_id: str, new_stage: str, new_sentiment: str,
                          text: str, now: dt.datetime | None = None) -> int:
        """An agent changed our labels on a ticket: store it (training feedback) with the event id, atomically."""
        now = now or utcnow()
        event_id, new_stage, new_sentiment, text = no_nul((event_id, new_stage, new_sentiment, text))
        try:
            with self._tx() as conn:
                conn.execute(processed_events.insert().values(
                    helpdesk=message["helpdesk"], event_id=event_id, outcome="correction", created_at=now))
                return conn.execute(corrections.insert().values(
                    helpdesk=message["helpdesk"], ticket_id=message["ticket_id"], message_id=message["id"],
                    event_id=event_id, old_stage=message["stage"], old_sentiment=message["sentiment"],
                    new_stage=new_stage, new_sentiment=new_sentiment, text=text, lang=message["lang"],
                    channel=message["channel"], created_at=now,
                ).returning(corrections.c.id)).scalar_one()
        except SAIntegrityError as exc:
            raise DuplicateEvent(f"{message['helpdesk']} event {event_id} was processed before") from exc

    # -- outbox: worker side -------------------------------------------------------------------------------
    @staticmethod
    def _due(table, now: dt.datetime, limit: int):
        """Ids of pending rows that are due, not leased, and have no older pending row for the same ticket
        (tag writes of one ticket happen in order), oldest due first."""
        older = outbox.alias("older")
        blocked = sa.exists().where(older.c.helpdesk == table.c.helpdesk, older.c.ticket_id == table.c.ticket_id,
                                    older.c.status == PENDING, older.c.id < table.c.id)
        return (sa.select(table.c.id)
                .where(table.c.status == PENDING, table.c.next_attempt_at <= now,
                       sa.or_(table.c.lease_until.is_(None), table.c.lease_until < now), ~blocked)
                .order_by(table.c.next_attempt_at, table.c.id).limit(limit))

    def claim(self, *, limit: int = 16, lease_s: float = 60.0, now: dt.datetime | None = None) -> list[OutboxItem]:
        """Lease up to `limit` due outbox rows to this caller for `lease_s` seconds."""
        with self._tx() as conn:
            return self._claim_in(conn, limit, lease_s, now or utcnow())

    def settle_and_claim(self, done: Sequence[OutboxItem], *, limit: int, lease_s: float = 60.0,
                         now: dt.datetime | None = None) -> tuple[set[int], list[OutboxItem]]:
        """`mark_done_many(done)` and `claim(limit=...)` in one transaction (a busy worker's step: on SQLite
        every write transaction queues for the one write lock, so one instead of two matters). Returns the
        ids still ours that are now done, and the new claims."""
        if not done and limit <= 0:
            return set(), []
        now = now or utcnow()
        with self._tx() as conn:
            finished = self._done_in(conn, done, now)
            return finished, (self._claim_in(conn, limit, lease_s, now) if limit > 0 else [])

    def _claim_in(self, conn: Connection, limit: int, lease_s: float, now: dt.datetime) -> list[OutboxItem]:
        token = uuid.uuid4().hex
        lease = now + dt.timedelta(seconds=lease_s)
        # pending rows still holding an expired lease were in flight when their worker died (every outcome
        # clears the lease); the worker checks the ticket before writing them again (only pending rows: cheap)
        abandoned = set(conn.execute(sa.select(outbox.c.id).where(
            outbox.c.status == PENDING, outbox.c.lease_until.is_not(None), outbox.c.lease_until < now)).scalars())
        claim_values = dict(lease_until=lease, claim_token=token, attempts=outbox.c.attempts + 1, updated_at=now)
        # The claimed rows come back from the UPDATE itself (RETURNING): claim_token has no index, and a
        # SELECT by it would scan the whole outbox, done rows included (slower every day the service runs).
        if self.dialect == "postgresql":
            ids = conn.execute(self._due(outbox, now, limit)
                               .with_for_update(of=outbox, skip_locked=True)).scalars().all()
            if not ids:
                return []
            claim = outbox.update().where(outbox.c.id.in_(ids))
        else:  # SQLite: one UPDATE under the database write lock is the atomic claim
            due_ids = self._due(outbox.alias("candidate"), now, limit).scalar_subquery()
            claim = outbox.update().where(outbox.c.id.in_(due_ids), outbox.c.status == PENDING)
        rows = conn.execute(claim.values(**claim_values).returning(*outbox.c)).all()
        return [OutboxItem(id=r.id, message_id=r.message_id, helpdesk=r.helpdesk, ticket_id=r.ticket_id,
                           add=list(r.add_tags), remove=list(r.remove_tags), attempts=r.attempts,
                           queued_at=r.queued_at, created_at=r.created_at, claim_token=token,
                           recovered=r.id in abandoned)
                for r in sorted(rows, key=lambda r: r.id)]

    def _finish(self, item: OutboxItem, now: dt.datetime | None, **values) -> bool:
        with self._tx() as conn:
            result = conn.execute(outbox.update().where(
                outbox.c.id == item.id, outbox.c.claim_token == item.claim_token, outbox.c.status == PENDING,
            ).values(lease_until=None, claim_token=None, updated_at=now or utcnow(), **values))
        return result.rowcount == 1

    def mark_done(self, item: OutboxItem, *, now: dt.datetime | None = None) -> bool:
        """The tags are on the ticket. False when the lease was lost meanwhile (another worker has the row)."""
        return self._finish(item, now, status=DONE, last_error=None)

    def mark_done_many(self, items: Sequence[OutboxItem], *, now: dt.datetime | None = None) -> set[int]:
        """`mark_done` for a batch, in one transaction (one UPDATE per claim); returns the ids that were
        still ours."""
        if not items:
            return set()
        with self._tx() as conn:
            return self._done_in(conn, items, now or utcnow())

    @staticmethod
    def _done_in(conn: Connection, items: Sequence[OutboxItem], now: dt.datetime) -> set[int]:
        by_claim: dict[str, list[int]] = {}
        for item in items:
            by_claim.setdefault(item.claim_token, []).append(item.id)
        done: set[int] = set()
        for token, ids in by_claim.items():
            done.update(conn.execute(outbox.update().where(
                outbox.c.id.in_(ids), outbox.c.claim_token == token, outbox.c.status == PENDING,
            ).values(status=DONE, last_error=None, lease_until=None, claim_token=None, updated_at=now)
                .returning(outbox.c.id)).scalars().all())
        return done

    def mark_retry(self, item: OutboxItem, error: str, next_attempt_at: dt.datetime, *,
                   now: dt.datetime | None = None) -> bool:
        return self._finish(item, now, next_attempt_at=next_attempt_at, last_error=error[:2000])

    def mark_dead(self, item: OutboxItem, error: str, *, now: dt.datetime | None = None) -> bool:
        return self._finish(item, now, status=DEAD, last_error=error[:2000])

    def retry(self, ids: Sequence[int] | None = None, *, all_dead: bool = False,
              now: dt.datetime | None = None) -> int:
        """Put dead rows back in the queue (fresh attempts and age). Returns how many were requeued."""
        if not ids and not all_dead:
            return 0
        now = now or utcnow()
        query = outbox.update().where(outbox.c.status == DEAD)
        if not all_dead:
            query = query.where(outbox.c.id.in_(list(ids or [])))
        with self._tx() as conn:
            result = conn.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now, queued_at=now,
                                               lease_until=None, claim_token=None, updated_at=now))
        return result.rowcount

    # -- outbox: inspection ----------------------------------------------------------------------------------
    def outbox_counts(self) -> dict[str, int]:
        """Rows per status (`pending`, `done`, `dead`), zeros included."""
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
        counts = dict.fromkeys(OUTBOX_STATUSES, 0)
        counts.update({status: n for status, n in rows})
        return counts

    def helpdesk_activity(self) -> dict[str, dict[str, Any]]:
        """Per helpdesk: when its last webhook was processed, and its outbox rows per status (`tagger doctor`)."""
        out: dict[str, dict[str, Any]] = {}
        with self._tx(write=False) as conn:
            last_event = sa.type_coerce(sa.func.max(processed_events.c.created_at), UTCDateTime())  # aware UTC
            for helpdesk, last in conn.execute(sa.select(processed_events.c.helpdesk, last_event)
                                               .group_by(processed_events.c.helpdesk)):
                out.setdefault(helpdesk, {"last_event": None, **dict.fromkeys(OUTBOX_STATUSES, 0)})
                out[helpdesk]["last_event"] = last
            for helpdesk, status, n in conn.execute(sa.select(outbox.c.helpdesk, outbox.c.status, sa.func.count())
                                                    .group_by(outbox.c.helpdesk, outbox.c.status)):
                out.setdefault(helpdesk, {"last_event": None, **dict.fromkeys(OUTBOX_STATUSES, 0)})[status] = n
        return out

    def list_outbox(self, status: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox rows, newest first (dead letters: `status="dead"`)."""
        query = sa.select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if status:
            if status not in OUTBOX_STATUSES:
                raise ValueError(f"status must be one of {', '.join(OUTBOX_STATUSES)}, got {status!r}")
            query = query.where(outbox.c.status == status)
        with self._tx(write=False) as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    # -- reports ---------------------------------------------------------------------------------------------
    def list_messages(self, *, stage: str | None = None, sentiment: str | None = None, lang: str | None = None,
                      channel: str | None = None, helpdesk: str | None = None, ticket_id: str | None = None,
                      min_confidence: float | None = None, max_confidence: float | None = None,
                      since: dt.datetime | None = None, until: dt.datetime | None = None,
                      limit: int | None = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Classified messages, newest first. Confidence bounds apply to the lower of the two confidences
        (stage, sentiment); `since` is inclusive, `until` exclusive."""
        c = messages.c
        query = sa.select(messages)
        for column, value in ((c.stage, stage), (c.sentiment, sentiment), (c.lang, lang), (c.channel, channel),
                              (c.helpdesk, helpdesk), (c.ticket_id, ticket_id)):
            if value is not None:
                query = query.where(column == value)
        if min_confidence is not None:
            query = query.where(c.stage_confidence >= min_confidence, c.sentiment_confidence >= min_confidence)
        if max_confidence is not None:
            query = query.where(sa.or_(c.stage_confidence <= max_confidence,
                                       c.sentiment_confidence <= max_confidence))
        if since is not None:
            query = query.where(c.created_at >= since)
        if until is not None:
            query = query.where(c.created_at < until)
        query = query.order_by(c.created_at.desc(), c.id.desc()).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self._tx(write=False) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query).all()]
        for row in rows:  # rows stored before links were checked
            row["ticket_url"] = web_url(row.get("ticket_url"))
        return rows

    def _aggregated(self, since: dt.datetime | None, until: dt.datetime | None, filters: dict[str, Any]):
        """The daily_counts rows (pruned messages) of days that start inside [since, until)."""
        d = daily_counts.c
        query = sa.select(d.day, d.stage, d.sentiment, d.messages, d.review)
        for name, value in filters.items():
            if value is not None:
                query = query.where(d[name] == value)
        if since is not None:
            first = since.astimezone(dt.UTC).date()
            query = query.where(d.day >= (first if since == _midnight(since) else first + dt.timedelta(days=1)))
        if until is not None:
            last = until.astimezone(dt.UTC).date()
            query = query.where(d.day < (last if until == _midnight(until) else last + dt.timedelta(days=1)))
        return query

    def stage_sentiment_counts(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                               helpdesk: str | None = None, channel: str | None = None,
                               lang: str | None = None) -> dict[str, dict[str, int]]:
        """`{stage: {sentiment: count}}` over a period, every label present (zeros included). Messages removed by
        retention count through their daily aggregates (whole UTC days)."""
        c = messages.c
        filters = {"helpdesk": helpdesk, "channel": channel, "lang": lang}
        query = sa.select(c.stage, c.sentiment, sa.func.count()).group_by(c.stage, c.sentiment)
        for name, value in filters.items():
            if value is not None:
                query = query.where(c[name] == value)
        if since is not None:
            query = query.where(c.created_at >= since)
        if until is not None:
            query = query.where(c.created_at < until)
        table = {s: dict.fromkeys(SENTIMENTS, 0) for s in STAGES}
        with self._tx(write=False) as conn:
            for stage, sentiment, n in conn.execute(query).all():
                table.setdefault(stage, dict.fromkeys(SENTIMENTS, 0))[sentiment] += n
            for _day, stage, sentiment, n, _review in conn.execute(self._aggregated(since, until, filters)).all():
                table.setdefault(stage, dict.fromkeys(SENTIMENTS, 0))[sentiment] += n
        return table

    def daily_stage_counts(self, *, since: dt.datetime, until: dt.datetime, helpdesk: str | None = None,
                           channel: str | None = None, lang: str | None = None) -> tuple[Counter, int, int]:
        """Messages per (UTC date, stage) in [since, until), how many got the review tag, and the total:
        kept messages and the daily aggregates of pruned ones."""
        c = messages.c
        filters = {"helpdesk": helpdesk, "channel": channel, "lang": lang}
        query = sa.select(c.created_at, c.stage, c.review).where(c.created_at >= since, c.created_at < until)
        for name, value in filters.items():
            if value:
                query = query.where(c[name] == value)
        per_day: Counter = Counter()
        review = total = 0
        with self._tx(write=False) as conn:
            for created, stage, is_review in conn.execute(query):
                per_day[(created.astimezone(dt.UTC).date(), stage)] += 1
                review += bool(is_review)
                total += 1
            for day, stage, _sentiment, n, n_review in conn.execute(self._aggregated(since, until, filters)):
                per_day[(day, stage)] += n
                review += n_review
                total += n
        return per_day, review, total

    # -- retention -------------------------------------------------------------------------------------------
    def prune(self, older_than: dt.datetime, *, batch: int = 2000, dry_run: bool = False) -> dict[str, int]:
        """Remove what is older than the UTC midnight at or before `older_than`: classified messages (first
        added to `daily_counts`, which the reports read), their settled outbox rows, and processed-event ids.
        Kept whatever their age: corrections and the messages they refer to (training data), messages whose
        tag write is still pending or dead-lettered, and every aggregate. Batched; safe with replicas."""
        cutoff = _midnight(older_than)
        m, o, c = messages.c, outbox.c, corrections.c
        unsettled = sa.select(o.message_id).where(o.message_id == m.id, o.status != DONE)
        corrected = sa.select(c.message_id).where(c.message_id == m.id)
        doomed = (sa.select(m.id, m.created_at, m.helpdesk, m.channel, m.lang, m.stage, m.sentiment, m.review)
                  .where(m.created_at < cutoff, ~sa.exists(unsettled), ~sa.exists(corrected))
                  .order_by(m.id).limit(batch))
        removed = {"messages": 0, "outbox": 0, "events": 0}
        last_id = 0
        while True:
            with self._tx() as conn:
                if self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(724012)"))
                rows = conn.execute(doomed.where(m.id > last_id)).all()
                if not rows:
                    break
                last_id = rows[-1].id
                ids = [r.id for r in rows]
                removed["messages"] += len(ids)
                if dry_run:
                    continue
                self._add_daily(conn, rows)
                removed["outbox"] += conn.execute(outbox.delete().where(o.message_id.in_(ids))).rowcount
                conn.execute(messages.delete().where(m.id.in_(ids)))
        if not dry_run:
            with self._tx() as conn:
                removed["events"] = conn.execute(processed_events.delete().where(
                    processed_events.c.created_at < cutoff)).rowcount
        return removed

    @staticmethod
    def _add_daily(conn: Connection, rows) -> None:
        counts: Counter = Counter()
        reviews: Counter = Counter()
        for r in rows:
            key = (r.created_at.astimezone(dt.UTC).date(), r.helpdesk, r.channel, r.lang, r.stage, r.sentiment)
            counts[key] += 1
            reviews[key] += bool(r.review)
        d = daily_counts.c
        for key, n in counts.items():
            where = sa.and_(*(col == value for col, value in zip(
                (d.day, d.helpdesk, d.channel, d.lang, d.stage, d.sentiment), key, strict=True)))
            updated = conn.execute(daily_counts.update().where(where).values(
                messages=d.messages + n, review=d.review + reviews[key])).rowcount
            if not updated:
                conn.execute(daily_counts.insert().values(
                    day=key[0], helpdesk=key[1], channel=key[2], lang=key[3], stage=key[4], sentiment=key[5],
                    messages=n, review=reviews[key]))

    def row_counts(self) -> dict[str, int]:
        """Rows per table (for `tagger prune` and `tagger doctor`)."""
        with self._tx(write=False) as conn:
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                    for t in (messages, outbox, processed_events, corrections, daily_counts)}

    def list_corrections(self, *, since: dt.datetime | None = None, latest_only: bool = True) -> list[dict[str, Any]]:
        """Agent corrections, oldest first; with `latest_only` just the last one per classified message
        (an agent who changes a label twice meant the second)."""
        query = sa.select(corrections).order_by(corrections.c.id)
        if since is not None:
            query = query.where(corrections.c.created_at >= since)
        if latest_only:
            newest = (sa.select(sa.func.max(corrections.c.id)).group_by(corrections.c.message_id)).scalar_subquery()
            query = query.where(corrections.c.id.in_(newest))
        with self._tx(write=False) as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def feedback_examples(self) -> list[dict[str, str]]:
        """Corrections as training records (the format of `training_data/`); a correction whose message text is
        unknown (classified before texts were kept, revision 0003) is left out."""
        return [{"text": c["text"], "stage": c["new_stage"], "sentiment": c["new_sentiment"],
                 "channel": c["channel"], "lang": c["lang"]} for c in self.list_corrections() if c["text"].strip()]


def _is_memory(url: str) -> bool:
    parsed = sa.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        extra = {"poolclass": sa.pool.StaticPool} if _is_memory(url) else {}
        engine = sa.create_engine(url, echo=echo, connect_args={"check_same_thread": False,
                                                               "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **extra)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
            cursor = dbapi_conn.cursor()
            if parsed.database and parsed.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=FULL")  # a 202 promises the row survives a crash
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            write = conn.get_execution_options().get("tagger_write", True)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, echo=echo, pool_pre_ping=True)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its datetimes as ISO 8601 strings, ready for `json.dumps`."""
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}
