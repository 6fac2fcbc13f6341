"""Daily counts: what the reports need of messages that retention (`tagger prune`) has removed.

One row per UTC day, helpdesk, channel, language, stage and sentiment: how many messages, how many of them
got the review tag.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_counts",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("helpdesk", sa.String(40), primary_key=True),
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("lang", sa.String(16), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column("sentiment", sa.String(16), primary_key=True),
        sa.Column("messages", sa.Integer, nullable=False),
        sa.Column("review", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("daily_counts")
