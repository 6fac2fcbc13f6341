"""`tagger backfill`: an export file or a helpdesk's ticket API (a thin layer over tagger.service.backfill)."""
from __future__ import annotations

import json
import sys
import time

import click

from tagger.cli.common import db_option, model_option, model_path_of, overrides, pass_settings
from tagger.config import Settings
from tagger.errors import TaggerError


# ------------------------------------------------------------------------------------------------ backfill
@click.command()
@click.argument("source", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.option("--helpdesk", metavar="NAME",
              help="Page through this helpdesk's ticket API instead of reading SOURCE (every built-in helpdesk "
                   "with a listing API: zendesk, freshdesk, helpscout, djangohelpdesk, zammad, chatwoot, "
                   "liveagent; credentials from TAGGER_<NAME>_* as for `tagger serve`).")
@click.option("--since", metavar="DATE", help="With --helpdesk: only tickets changed since DATE (2024-01-31, "
                                               "ISO 8601, or back from now: 30d, 12w); default: the whole history.")
@click.option("--write-back", is_flag=True,
              help="With --helpdesk: also queue the tags in the store's outbox; `tagger serve` or `tagger "
                   "worker` writes them (rate limits honoured). Tickets that already carry our tags, or that "
                   "the service classified already, are left alone.")
@click.option("--max-tickets", type=click.IntRange(min=1), help="With --helpdesk: stop after about this many "
                                                                 "tickets (a trial run); --resume continues.")
@db_option
@click.option("--workers", "-j", default=1, show_default=True, help="Local worker processes (joblib).")
@click.option("--dask", "dask_address", metavar="tcp://HOST:8786", help="Run on this Dask cluster instead.")
@click.option("--chunk-size", default=2000, show_default=True, help="Messages per unit of work.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@model_option
@pass_settings
def backfill(settings: Settings, source, output, helpdesk, since, write_back, max_tickets, db_url, workers,
             dask_address, chunk_size, resume, model_path) -> None:
    """Tag your history: a large JSONL or CSV export, or a helpdesk's ticket API.

    Output lines keep the input fields (or the ticket's id, link, subject and text) and add the labels,
    in order. Interrupt it at any point and run it again with --resume: nothing is lost or written twice.

    \b
    Examples:
      tagger backfill tickets_2019_2025.jsonl -o tagged.jsonl -j 2
      tagger backfill tickets.csv -o tagged.jsonl --resume
      tagger backfill huge.jsonl -o tagged.jsonl --dask tcp://scheduler:8786
      tagger backfill --helpdesk zendesk --since 2025-01-01 -o zendesk.jsonl
      tagger backfill --helpdesk freshdesk -o fd.jsonl --write-back --resume
    """
    if helpdesk:
        if source:
            raise click.UsageError("give SOURCE or --helpdesk, not both")
        _backfill_helpdesk(settings, helpdesk, output, since, write_back, max_tickets, db_url, resume, model_path)
        return
    if not source:
        raise click.UsageError("give an export file (SOURCE) or --helpdesk NAME")
    if since or write_back or max_tickets:
        raise click.UsageError("--since, --write-back and --max-tickets go with --helpdesk")
    from tagger.service.backfill import backfill as run_backfill
    from tagger.service.backfill import count_lines

    total = count_lines(source)
    with click.progressbar(length=total, label="tagging", file=sys.stderr, show_pos=True,
                           show_eta=True) as bar:
        def progress(_n: int, done: int) -> None:
            bar.update(done - bar.pos)

        counts = run_backfill(source, output, model_path_of(settings, model_path), workers=workers,
                              chunk_size=chunk_size, resume=resume, dask_address=dask_address,
                              overrides=overrides(settings), progress=progress)
    click.echo(json.dumps(counts))


def _since(value: str | None) -> float | None:
    """`--since` of a helpdesk backfill as epoch seconds, read like every other time option (reports.parse_when)."""
    from tagger.service.reports import parse_when

    try:
        when = parse_when(value)
    except TaggerError as exc:
        raise click.BadParameter(f"{value!r} is not a date or look-back ({exc})", param_hint="--since") from exc
    return None if when is None else when.timestamp()


def _backfill_helpdesk(settings: Settings, name, output, since, write_back, max_tickets, db_url, resume,
                       model_path) -> None:
    import dataclasses
    import os

    import httpx

    from tagger.helpdesks import get_adapter
    from tagger.service.backfill import backfill_helpdesk

    adapter = get_adapter(name, os.environ, settings=settings)
    store = None
    if write_back:
        from tagger.service.store import Store

        if db_url:
            settings = dataclasses.replace(settings, db_url=db_url)
        store = Store(settings.db_url)
    started = time.monotonic()

    def progress(state: dict) -> None:
        rate = state["tickets"] / max(1e-9, time.monotonic() - started)
        queued = f", {state['queued']:,} queued for write-back, {state['kept']:,} left as they are" if store else ""
        click.echo(f"\rpage {state['pages']:,}: {state['tickets']:,} tickets tagged ({rate:,.0f}/s), "
                   f"{state['skipped']:,} without text{queued}", file=sys.stderr, nl=False)

    with httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False) as client:
        try:
            counts = backfill_helpdesk(adapter, output, model_path_of(settings, model_path), client=client,
                                       since=_since(since), resume=resume, store=store, settings=settings,
                                       max_tickets=max_tickets, overrides=overrides(settings),
                                       progress=progress)
        finally:
            click.echo("", file=sys.stderr)
            if store is not None:
                store.close()
    click.echo(json.dumps(counts))
