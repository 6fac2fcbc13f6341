"""The `tagger` command line, one module per audience; each command parses its options, calls the library and
prints the result:

- `tagger.cli.model`: train, evaluate, classify, models, data (admins, the classifier);
- `tagger.cli.teamlead`: tickets, report (team leads);
- `tagger.cli.backfill`: backfill (history, from a file or a helpdesk's API);
- `tagger.cli.service`: serve, worker, outbox, feedback, prune, db, setup, doctor (the helpdesk side);
- `tagger.cli.common`: the settings, the shared options and helpers.
"""
from __future__ import annotations

import click

from tagger.cli import backfill, model, service, teamlead
from tagger.cli.common import TaggerGroup
from tagger.config import Settings


@click.group(cls=TaggerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mot-tagger")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """MOT Tagger: moment-of-truth stage and sentiment for helpdesk messages.

    \b
    Example:
      echo '{"text":"Where is my parcel?"}' | tagger classify
    """
    ctx.obj = Settings.load()


for command in (model.train, model.evaluate, model.classify, model.models, model.data, teamlead.tickets,
                teamlead.report, backfill.backfill, service.serve, service.worker, service.outbox, service.feedback,
                service.prune, service.db, service.setup, service.doctor):
    cli.add_command(command)

__all__ = ["cli"]
