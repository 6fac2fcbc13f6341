"""Alembic's environment for the store's migrations. It runs only on the connection `tagger.service.store` hands it
(inside the store's transaction and, on PostgreSQL, its advisory lock), never from an alembic.ini."""
from alembic import context

from tagger.service.store import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
