"""What every `tagger` command shares: the settings object, the shared options (--db, --model, --json, --adapter,
--log-level) and the few helpers that turn options into library arguments. Commands parse and print; the work is
the library's."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from tagger.config import Settings
from tagger.errors import TaggerError

if TYPE_CHECKING:
    from tagger.service.store import Store

pass_settings = click.make_pass_decorator(Settings)

ADAPTER_HELP = ("Extra helpdesk adapter as MODULE:FACTORY (FACTORY(env) returns the adapter); repeatable. "
                "Also from TAGGER_ADAPTERS, space-separated.")

db_option = click.option("--db", "db_url", metavar="URL",
                         help="Database URL (default: TAGGER_DB_URL or sqlite:///tagger.db), e.g. "
                              "postgresql+psycopg://tagger@db/tagger.")
model_option = click.option("--model", "model_path", help="Model version or folder (default: the active model).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
adapter_option = click.option("--adapter", "adapters", multiple=True, envvar="TAGGER_ADAPTERS",
                              metavar="MODULE:FACTORY", help=ADAPTER_HELP)
log_option = click.option("--log-level", default="info", show_default=True,
                          type=click.Choice(["debug", "info", "warning", "error"]))


class TaggerGroup(click.Group):
    """Turns every TaggerError into a one-line error message instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TaggerError as exc:
            fail(exc)


def fail(exc: Exception) -> NoReturn:
    raise click.ClickException(str(exc)) from exc


def settings_of(ctx: click.Context, **options) -> Settings:
    """The group's settings with the command's options applied (None keeps the setting)."""
    base = ctx.find_object(Settings) or Settings.load()
    return dataclasses.replace(base, **{k: v for k, v in options.items() if v is not None})


def overrides(settings: Settings) -> dict:
    """What settings change in a loaded model (None keeps the model's own)."""
    return {"review_threshold": settings.review_threshold, "fast": settings.fast_model or None}


def model_path_of(settings: Settings, model: str | None) -> str:
    """`--model`: a version name, a folder, or (default) the active version of the models folder."""
    if not model:
        return str(Path(settings.models_dir) / "current")
    if Path(model).exists():
        return model
    return str(Path(settings.models_dir) / model)


def setup_logging(level: str) -> None:
    from tagger.service.sanitize import install_log_redaction

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


def open_store(settings: Settings) -> Store:
    from tagger.service.store import Store

    return Store(settings.db_url)
