"""The text of each ticket's latest classified message, so that an agent's later correction of our labels
can be exported as training data even when it reaches us with the customer's next message. Only the latest
message of a ticket keeps its text (earlier ones are cleared when a newer one is classified), and retention
removes it with the message.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("text", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("text")
