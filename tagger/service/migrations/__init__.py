"""The store's schema history as Alembic migrations (`versions/`), run by `tagger db upgrade` and checked when
a store opens: the service, the worker and the CLI refuse a database whose schema is older or newer than the
code, naming the command that fixes it, instead of failing later on a missing column.

Adding a migration: change the tables in `tagger/service/store.py`, then add `versions/NNNN_<what>.py` (see
`script.py.mako`) whose `down_revision` is the previous head; `tests/test_migrations.py` checks that the
migrated schema equals the one `create_all` makes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from tagger.errors import TaggerError

FIRST = "0001"  # the schema of the release before migrations
LOCATION = "tagger.service:migrations"


class SchemaError(TaggerError):
    """The database's schema is not the one this code expects."""


@dataclass(frozen=True)
class SchemaState:
    revision: str | None   # what alembic_version says; None: unversioned (empty, or the release before migrations)
    head: str              # what this code expects
    tables: tuple[str, ...]
    known: bool            # the revision is one of this code's migrations

    @property
    def empty(self) -> bool:
        return self.revision is None and not (set(self.tables) & {"messages", "outbox", "processed_events"})

    @property
    def current(self) -> bool:
        return self.revision == self.head

    @property
    def newer(self) -> bool:
        return self.revision is not None and not self.known


def config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", LOCATION)
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script_info() -> tuple[str, frozenset[str]]:
    script = ScriptDirectory.from_config(config(None))  # type: ignore[arg-type] - reading needs no connection
    return script.get_current_head(), frozenset(r.revision for r in script.walk_revisions())


def head() -> str:
    return _script_info()[0]


def state(connection: Connection, cfg: Config | None = None) -> SchemaState:
    revision = MigrationContext.configure(connection).get_current_revision()
    head_rev, known = _script_info()
    tables = tuple(sorted(inspect(connection).get_table_names()))
    return SchemaState(revision=revision, head=head_rev, tables=tables, known=revision in known)


def refuse_unless_current(s: SchemaState, where: object) -> None:
    if s.current:
        return
    if s.revision is None:
        raise SchemaError(f"{where}: the database was created by a release before schema migrations; upgrade it "
                          f"first with `tagger db upgrade` (it keeps every row)")
    if s.newer:
        raise SchemaError(f"{where}: the database schema is at revision {s.revision}, newer than this code "
                          f"(which knows up to {s.head}); run the release that upgraded it, or a newer one")
    raise SchemaError(f"{where}: the database schema is at revision {s.revision}, older than this code's "
                      f"{s.head}; run `tagger db upgrade` (it keeps every row)")


def stamp(cfg: Config, revision: str) -> None:
    command.stamp(cfg, revision)


def upgrade(cfg: Config, revision: str = "head") -> None:
    command.upgrade(cfg, revision)
