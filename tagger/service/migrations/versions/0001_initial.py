"""The schema of the release before migrations (2026-12-03): messages, processed_events, outbox, corrections.

A database that release created has exactly these tables and no alembic_version; `tagger db upgrade` stamps it
with this revision and goes on from here.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
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
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_messages_ticket", "messages", ["helpdesk", "ticket_id", "id"])
    op.create_index("ix_messages_created", "messages", ["created_at"])
    op.create_index("ix_messages_labels", "messages", ["stage", "sentiment", "created_at"])
    op.create_table(
        "processed_events",
        sa.Column("helpdesk", sa.String(40), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("message_id", _ID, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("helpdesk", sa.String(40), nullable=False),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("add_tags", sa.JSON, nullable=False),
        sa.Column("remove_tags", sa.JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("lease_until", _TS),
        sa.Column("claim_token", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("queued_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_ticket", "outbox", ["helpdesk", "ticket_id", "status", "id"])
    op.create_index("ix_outbox_message", "outbox", ["message_id"])
    op.create_table(
        "corrections",
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
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_corrections_message", "corrections", ["message_id", "id"])
    op.create_index("ix_corrections_created", "corrections", ["created_at"])


def downgrade() -> None:
    for table in ("corrections", "outbox", "processed_events", "messages"):
        op.drop_table(table)
