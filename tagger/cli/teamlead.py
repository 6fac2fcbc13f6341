"""The team leads' commands: tickets and report (a thin layer over tagger.service.store and tagger.service.reports)."""
from __future__ import annotations

import json

import click

from tagger.cli.common import db_option, json_option, pass_settings
from tagger.config import Settings


# -------------------------------------------------------------------------------------------- team leads
@click.command()
@click.option("--stage", type=click.Choice(["lzmot", "zmot", "fmot", "smot", "umot"]))
@click.option("--sentiment", type=click.Choice(["positive", "neutral", "negative"]))
@click.option("--lang", help="Detected language, e.g. lv.")
@click.option("--channel", type=click.Choice(["ticket", "chat", "social"]))
@click.option("--helpdesk", help="e.g. zendesk, freshdesk, zammad.")
@click.option("--min-confidence", type=float, help="Both confidences at least this.")
@click.option("--max-confidence", type=float, help="Either confidence at most this (the doubtful ones).")
@click.option("--since", help="2026-11-01, 2026-11-01T08:00, or back from now: 24h, 7d, 4w.")
@click.option("--until", help="Same forms as --since (exclusive).")
@click.option("--limit", default=50, show_default=True, help="At most this many rows (0: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@db_option
@pass_settings
def tickets(settings: Settings, stage, sentiment, lang, channel, helpdesk, min_confidence, max_confidence,
            since, until, limit, fmt, db_url) -> None:
    """List tagged messages from the store, newest first, with a link to each ticket.

    \b
    Examples:
      tagger tickets --stage smot --sentiment negative --since 7d
      tagger tickets --max-confidence 0.5 --format csv > doubtful.csv
      tagger tickets --lang lv --helpdesk zendesk --format json
    """
    from tagger.service.reports import format_tickets, parse_when
    from tagger.service.store import Store

    store = Store(db_url or settings.db_url)
    try:
        rows = store.list_messages(stage=stage, sentiment=sentiment, lang=lang, channel=channel, helpdesk=helpdesk,
                                   min_confidence=min_confidence, max_confidence=max_confidence,
                                   since=parse_when(since), until=parse_when(until), limit=limit or None)
    finally:
        store.close()
    click.echo(format_tickets(rows, fmt), nl=False)


@click.command()
@click.option("--period", default="7d", show_default=True, help="Length of the period: 24h, 7d, 4w, 3m.")
@click.option("--until", help="End of the period (default: now); 2026-11-01 or 2026-11-01T08:00.")
@click.option("--helpdesk")
@click.option("--channel", type=click.Choice(["ticket", "chat", "social"]))
@click.option("--lang")
@json_option
@db_option
@pass_settings
def report(settings: Settings, period, until, helpdesk, channel, lang, as_json, db_url) -> None:
    """Counts of stage by sentiment over a period, with the trend against the period before.

    \b
    Examples:
      tagger report                      # the last 7 days against the 7 before
      tagger report --period 4w --channel social
      tagger report --period 1m --until 2026-11-01 --json
    """
    from tagger.service.reports import build_report, format_report, parse_period, parse_when
    from tagger.service.store import Store

    store = Store(db_url or settings.db_url)
    try:
        data = build_report(store, period=parse_period(period), until=parse_when(until), helpdesk=helpdesk,
                            channel=channel, lang=lang)
    finally:
        store.close()
    click.echo(json.dumps(data, indent=2) if as_json else format_report(data), nl=not as_json)
